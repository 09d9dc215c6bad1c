"""``faceid gallery``: check, rebuild the index, migrate to another model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    GalleryOpt,
    JsonOpt,
    QuietOpt,
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
    model: Annotated[str, typer.Option("--model", help="The model to move to (see `faceid models list`).")],
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
    """Re-embed every face with another model from the faces kept in the gallery; people, ids and log stay."""
    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import default_gallery_dir
    from faceid.migrate import MigrationError, migrate_gallery

    path = gallery if gallery is not None else default_gallery_dir()
    with cli_errors():
        with opened_gallery(path, create=False) as g:
            total = len(g.face_sources())  # kept unknown faces too
        pipeline = new_pipeline(ctx, EmbeddingKey.for_model(model))
        with progress_bar(total, f"migrating to {model}", not quiet and not as_json) as tick:
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
