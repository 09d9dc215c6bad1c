"""``faceid verify A B`` and ``faceid eval verify``: the 1:1 check and the measurement of its threshold.

Registered on the ``faceid`` app by :mod:`faceid.cli` (one import line there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli import (
    CacheOpt,
    DataOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    _err,
    _errors,
    _eval_pipeline,
    _progress,
    _say,
    app,
    eval_app,
)
from faceid.errors import FaceIDError

__all__ = ["eval_verify", "verify"]

BoxOpt = Annotated[
    Optional[str], typer.Option(help="x,y,width,height: use the face at this box instead of the largest.")
]


def parse_box(text: str | None, option: str) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` as four integers (pixels), or ``None``."""
    if text is None:
        return None
    try:
        values = tuple(int(round(float(v))) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise FaceIDError(f"{option} must be x,y,width,height in pixels, got {text[:60]!r}")
    return (values[0], values[1], values[2], values[3])


@app.command("verify")
def verify(
    ctx: typer.Context,
    a: Annotated[Path, typer.Argument(help="The first photo.", show_default=False)],
    b: Annotated[Path, typer.Argument(help="The second photo.", show_default=False)],
    fmr: Annotated[
        Optional[float],
        typer.Option(help="False-match rate to decide at, 1e-4 to 1e-2 (default 0.001: 0.1%)."),
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(min=-1.0, max=1.0, help="Cosine similarity to decide at, instead of --fmr.")
    ] = None,
    box_a: Annotated[Optional[str], typer.Option("--box-a", help="x,y,w,h: the face to use in A.")] = None,
    box_b: Annotated[Optional[str], typer.Option("--box-b", help="x,y,w,h: the face to use in B.")] = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Are the faces in two photos the same person? Each photo's largest face (or the one at --box-a/--box-b)."""
    from faceid.verify import verify_files

    with _errors():
        if fmr is not None and threshold is not None:
            raise FaceIDError("give --fmr or --threshold, not both")
        boxes = parse_box(box_a, "--box-a"), parse_box(box_b, "--box-b")
        pipeline = _eval_pipeline(ctx, None, None, None, model)
        result = verify_files(a, b, pipeline, box_a=boxes[0], box_b=boxes[1], fmr=fmr, threshold=threshold)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    verdict = "same person" if result.same else "different people"
    at = f"FMR {result.fmr:g}" if result.fmr is not None else "the given threshold"
    sign = ">=" if result.same else "<"
    _say(f"{verdict}: similarity {result.similarity:.3f} {sign} {result.threshold:.3f} ({at}, {result.model})")


@eval_app.command("verify")
def eval_verify(
    ctx: typer.Context,
    data: DataOpt,
    model: ModelOpt = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The 1:1 thresholds at FMR 1e-2/1e-3/1e-4, measured on LFW people outside pairs.txt and
    reported on pairs.txt: accuracy, FMR, FNMR (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.verify_eval import evaluate_verify, image_count

    with _errors():
        total = image_count(data)
        store = EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, None, None, None, model)
        with _progress(total, "embedding LFW", not quiet) as tick:
            report = evaluate_verify(data, pipeline, cache=store, progress=tick)
    typer.echo(json.dumps(report.to_json()))
    for message in report.errors:
        _err(f"faceid: error: {message}")
    if report.errors:
        _err(f"faceid: {len(report.errors)} images unreadable or failed; the figures count them")
        raise typer.Exit(1)
