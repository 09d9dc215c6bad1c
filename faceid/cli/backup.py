"""``faceid gallery backup DEST`` and ``faceid gallery restore SRC`` (the library: :mod:`faceid.backup`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceid.cli._common import GalleryOpt, JsonOpt, cli_errors, gallery_app, options, say


@gallery_app.command("backup")
def gallery_backup(
    dest: Annotated[Path, typer.Argument(help="A new folder for the backup (itself a gallery any command can open).")],
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the gallery, as one consistent state, into a new folder; safe while others use it."""
    from faceid.backup import backup_gallery

    with cli_errors():
        report = backup_gallery(gallery, dest, timeout=options["timeout"])
    if as_json:
        typer.echo(json.dumps(report.__dict__, ensure_ascii=False))
        return
    say(f"backed up {report.source} into {report.backup}: {report.people} people, {report.faces} faces")
    say(f"restore it with: faceid gallery restore {report.backup} --gallery {report.source}")


@gallery_app.command("restore")
def gallery_restore(
    src: Annotated[Path, typer.Argument(help="A backup folder written by `faceid gallery backup`.")],
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the gallery's contents with a backup in one step; its state before is kept beside it."""
    from faceid.backup import restore_gallery

    with cli_errors():
        report = restore_gallery(src, gallery, timeout=options["timeout"])
    if as_json:
        typer.echo(json.dumps(report.__dict__, ensure_ascii=False))
        return
    say(f"restored {report.gallery} from {report.backup}: {report.people} people, {report.faces} faces")
    if report.previous:
        say(f"its state before the restore is kept in {report.previous}")
