"""What every ``faceid`` command shares: the app and its groups, option types, output and error
helpers, and the one place pipelines, galleries and Ray runners are made."""

from __future__ import annotations

import logging
import math
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from faceid.errors import FaceIDError

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
DetectorOpt = Annotated[
    Optional[str],
    typer.Option(
        "--detector",
        help="Face detector: mtcnn or yunet (faster, no TensorFlow). A new gallery takes it [default: mtcnn]; "
        "a gallery keeps its own, and another is refused.",
        show_default=False,
    ),
]
RayWorkersOpt = Annotated[
    Optional[int],
    typer.Option("--ray-workers", min=1, help="Ray worker actors, one CPU each [default: the cluster's CPUs]."),
]


_KEPT = {"\t", "\u200c", "\u200d"}  # tab separates columns; joiners belong to names and emoji


def printable(text: str) -> str:
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


def say(message: str) -> None:
    typer.echo(printable(message))


def err(message: str) -> None:
    typer.echo(printable(message), err=True)


@contextmanager
def cli_errors():
    try:
        yield
    except FaceIDError as exc:
        err(f"faceid: error: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err("faceid: interrupted")
        raise typer.Exit(130) from None


options = {"timeout": 30.0}  # set by the top-level options, for every command


def check_detector(name: str | None) -> str | None:
    """``--detector``'s value, checked (:class:`~faceid.errors.OptionError` naming the known ones);
    ``None`` stays ``None``: the gallery's detector, or the default for a new one."""
    if name is None:
        return None
    from faceid.detectors import check_name

    return check_name(name)


def new_pipeline(ctx: typer.Context, key: EmbeddingKey | None = None) -> Pipeline:
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
def ray_runner(ctx: typer.Context, ray: bool, address: str | None, workers: int | None, *, keep_pixels: bool):
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
def opened_gallery(path: str | Path | None, *, create: bool = True):
    """The open gallery; afterwards, one warning line on stderr for each problem it found in its files."""
    from faceid.gallery import open_gallery

    g = open_gallery(path, create=create, timeout=options["timeout"])
    try:
        with g:
            yield g
    finally:
        for problem in g.problems:
            err(f"faceid: warning: {problem}")


@contextmanager
def progress_bar(total: int, label: str, enabled: bool):
    """A rich progress bar on stderr; yields the function to call once per finished item."""
    if not enabled or total <= 1:  # before rich's import: a one-photo command's cold start does not pay it
        yield lambda *_: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:  # no bar, and no stray line, in a pipe or a log
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


MAX_ID = 2**63 - 1  # the largest id SQLite stores


def finite(value: float) -> float:
    """An option's callback refusing ``nan`` (a range check lets it through: every comparison with
    it is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number in range")
    return value


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what faceid does.")] = False,
    timeout: Annotated[
        float,
        typer.Option(
            envvar="FACEID_TIMEOUT",
            min=0,
            max=86400,
            callback=finite,
            help="Seconds to wait while another process holds the gallery's lock.",
        ),
    ] = 30.0,
) -> None:
    options["timeout"] = timeout
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def print_identification(result) -> None:
    if result.error:
        err(f"faceid: error: {result.error}")
        return
    faces = result.faces
    params = result.params
    head = (
        f"{result.image}: {len(faces)} face{'s' if len(faces) != 1 else ''} "
        f"(threshold {params.threshold:.3f}, {params.source})"
    )
    say(head + (f" -> {result.annotated}" if result.annotated else ""))
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
        say(
            f"  {who:20} similarity {face.similarity:.3f} score {face.score:.3f}{hint}  "
            f"box {list(face.detection.box)}{kept}"
        )


def why_not_kept(reasons: list[str]) -> str:
    """`` (3 confidence below 0.90, 1 face below 40 px)`` from the not-kept reasons, or ``""``."""
    import re
    from collections import Counter

    counts = Counter(
        re.sub(r"(confidence|face) [0-9.]+( px)?,? below", r"\1 below", part)
        for why in reasons
        for part in why.split("; ")
    )
    return f" ({', '.join(f'{n} {what}' for what, n in sorted(counts.items()))})" if counts else ""
