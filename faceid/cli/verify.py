"""``faceid verify A B``: are the faces in two photos the same person? (:mod:`faceid.verify`)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import DetectorOpt, JsonOpt, app, check_detector, cli_errors, new_pipeline, say
from faceid.cli.measure import ModelOpt
from faceid.errors import FaceIDError

__all__ = ["verify"]


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
    detector: DetectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Are the faces in two photos the same person? Each photo's largest face (or the one at --box-a/--box-b)."""
    from faceid.embedding_key import EmbeddingKey
    from faceid.verify import parse_box, verify_files

    with cli_errors():
        if fmr is not None and threshold is not None:
            raise FaceIDError("give --fmr or --threshold, not both")
        boxes = parse_box(box_a, "--box-a"), parse_box(box_b, "--box-b")
        key = EmbeddingKey.for_model(model, detector=check_detector(detector))  # the thresholds are the key's
        pipeline = new_pipeline(ctx, key)
        result = verify_files(a, b, pipeline, box_a=boxes[0], box_b=boxes[1], fmr=fmr, threshold=threshold)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    verdict = "same person" if result.same else "different people"
    at = f"FMR {result.fmr:g}" if result.fmr is not None else "the given threshold"
    sign = ">=" if result.same else "<"
    say(f"{verdict}: similarity {result.similarity:.3f} {sign} {result.threshold:.3f} ({at}, {result.model})")
