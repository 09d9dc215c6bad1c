"""``faceid demo``: the sample people and photos shipped with faceid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    app,
    cli_errors,
    new_pipeline,
    opened_gallery,
    print_identification,
)

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

    with cli_errors():
        key = None
        if gallery is not None:  # an existing gallery's embeddings, as for `faceid enroll`
            with opened_gallery(gallery) as g:
                key = g.embedding_key
        results = run_demo(out, gallery, new_pipeline(ctx, key))
    for result in results:
        print_identification(result)
