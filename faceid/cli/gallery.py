"""``faceid gallery``: check, rebuild the index, migrate to another model, stats, retention of unknown faces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    GalleryOpt,
    JsonOpt,
    QuietOpt,
    check_detector,
    cli_errors,
    err,
    gallery_app,
    new_pipeline,
    opened_gallery,
    options,
    progress_bar,
    say,
)


@gallery_app.command("check")
def gallery_check(gallery: GalleryOpt = None) -> None:
    """Check the database's integrity and that the index agrees with it."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        problems = g.check()
        pending = g.compaction_pending
    if pending:  # not a problem: the removal took effect; a Milvus server erases in the background
        say("pending: a removal's erasure from the stored files is still under way (it took effect at once)")
    for p in problems:
        err(f"problem: {p}")
    if problems:
        raise typer.Exit(1)
    say("gallery is sound")


@gallery_app.command("rebuild-index")
def gallery_rebuild(gallery: GalleryOpt = None) -> None:
    """Rebuild the search index from the database."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        count = g.rebuild_index()
    say(f"index rebuilt: {count} faces")


@gallery_app.command("migrate")
def gallery_migrate(
    ctx: typer.Context,
    model: Annotated[
        Optional[str],
        typer.Option("--model", help="The model to move to (see `faceid models list`) [default: the gallery's]."),
    ] = None,
    detector: Annotated[
        Optional[str],
        typer.Option("--detector", help="The face detector to move to, mtcnn or yunet [default: the gallery's]."),
    ] = None,
    to: Annotated[
        Optional[Path], typer.Option("--to", help="Write the migrated gallery to this new folder; keep the old one.")
    ] = None,
    drop_unmigrated: Annotated[
        bool,
        typer.Option("--drop-unmigrated", help="Leave out faces that can be re-embedded from neither chip nor photo."),
    ] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-embed every face with another model or detector from the faces kept in the gallery; people, ids and
    log stay."""
    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import default_gallery_dir
    from faceid.migrate import MigrationError, migrate_gallery

    path = gallery if gallery is not None else default_gallery_dir()
    if model is None and detector is None:
        err("faceid: error: give --model, --detector or both: what to move the gallery to")
        raise typer.Exit(2)
    with cli_errors():
        with opened_gallery(path, create=False) as g:
            total = len(g.face_sources())  # kept unknown faces too
            old = g.embedding_key
        # what is not named stays the gallery's (a gallery without faces: the defaults)
        key = EmbeddingKey.for_model(
            model or (old.model if old else None),
            detector=check_detector(detector) or (old.detector if old else None),
        )
        pipeline = new_pipeline(ctx, key)
        with progress_bar(total, f"migrating to {key.describe()}", not quiet and not as_json) as tick:
            done = [0]

            def advance(count: int) -> None:
                for _ in range(count - done[0]):
                    tick()
                done[0] = count

            try:
                report = migrate_gallery(
                    path,
                    pipeline,
                    to=to,
                    drop_unmigrated=drop_unmigrated,
                    timeout=options["timeout"],
                    progress=advance,
                )
            except MigrationError as exc:
                for u in exc.unmigrated:
                    err(f"not migrated: face {u.face_id} of {u.person or 'no one'}: {u.reason}")
                raise
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    for u in report.unmigrated:
        err(f"dropped: face {u.face_id} of {u.person or 'no one'}: {u.reason}")
    say(
        f"migrated {report.faces} faces to {report.new_key} ({report.from_chips} from their chips, "
        f"{report.from_photos} from their photos) in {report.destination}"
    )
    if report.threshold_dropped:
        say("the calibrated threshold was for the old model and is removed: run `faceid calibrate` again")


# -- what the gallery holds, and how long it keeps unknown faces (faceid.retention) ---------------


def _size(n: int | None) -> str:
    if n is None:
        return "not a local folder"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


@gallery_app.command("stats")
def gallery_stats(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """People, faces, kept unknown faces and their groups, the disk the gallery uses, and its retention."""
    from faceid.retention import stats

    with cli_errors(), opened_gallery(gallery, create=False) as g:
        s = stats(g)
    if as_json:
        typer.echo(json.dumps(s.to_json(), ensure_ascii=False))
        return
    r = s.retention
    bound = ", ".join(
        part
        for part in (
            f"{r.days:g} days" if r.days is not None else "",
            f"at most {r.max_faces} faces" if r.max_faces is not None else "",
        )
        if part
    )
    say(f"gallery:        {s.path}")
    say(f"people:         {s.people} ({s.faces} faces)")
    say(f"kept unknown:   {s.kept_unknown} faces in {s.groups} groups")
    say(f"disk:           {_size(s.disk_bytes)}")
    say(f"retention:      {bound or 'none (kept until named or forgotten)'}")


@gallery_app.command("retention")
def gallery_retention(
    gallery: GalleryOpt = None,
    days: Annotated[
        Optional[float], typer.Option(help="Forget kept unknown faces older than this many days.", show_default=False)
    ] = None,
    max_faces: Annotated[
        Optional[int], typer.Option(min=0, help="Keep at most this many unknown faces (oldest forgotten first).")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="No bound: keep unknown faces until named or forgotten.")] = False,
) -> None:
    """Bound the unknown faces kept for review (identify --remember, serve --remember-unknown); forgetting is secure.

    With no option, shows the bound. The bound is applied at once and after every keep."""
    from faceid.retention import Retention, retention_of, set_retention

    with cli_errors(), opened_gallery(gallery, create=False) as g:
        if off or days is not None or max_faces is not None:
            current = Retention() if off else retention_of(g)
            wanted = Retention(
                days if days is not None else current.days, max_faces if max_faces is not None else current.max_faces
            )
            gone = set_retention(g, wanted)
            say(f"retention set: {json.dumps(wanted.to_json())}; {gone} kept faces forgotten now")
        else:
            say(f"retention: {json.dumps(retention_of(g).to_json())}")
