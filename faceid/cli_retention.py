"""``faceid gallery stats`` and ``faceid gallery retention``: what a gallery holds, and the bound on
the unknown faces it keeps for review (:mod:`faceid.retention`).

Registered on the ``faceid gallery`` group by :mod:`faceid.cli` (one import line there).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from faceid.cli import GalleryOpt, JsonOpt, _errors, _gallery, _say, gallery_app

__all__ = ["gallery_retention", "gallery_stats"]


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

    with _errors(), _gallery(gallery, create=False) as g:
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
    _say(f"gallery:        {s.path}")
    _say(f"people:         {s.people} ({s.faces} faces)")
    _say(f"kept unknown:   {s.kept_unknown} faces in {s.groups} groups")
    _say(f"disk:           {_size(s.disk_bytes)}")
    _say(f"retention:      {bound or 'none (kept until named or forgotten)'}")


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

    with _errors(), _gallery(gallery, create=False) as g:
        if off or days is not None or max_faces is not None:
            current = Retention() if off else retention_of(g)
            wanted = Retention(
                days if days is not None else current.days, max_faces if max_faces is not None else current.max_faces
            )
            gone = set_retention(g, wanted)
            _say(f"retention set: {json.dumps(wanted.to_json())}; {gone} kept faces forgotten now")
        else:
            _say(f"retention: {json.dumps(retention_of(g).to_json())}")
