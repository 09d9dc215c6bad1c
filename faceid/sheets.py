"""Contact sheets: one PNG per group of kept unknown faces, each face's thumbnail with its id.

For reviewing groups without a browser (``faceid clusters --sheet DIR``): look at a sheet, then
``faceid name GROUP NAME`` or ``faceid move ID ... --unknown`` for a face that does not belong.
Files are written atomically (temp file, fsync, rename), named ``cluster-<id>.png``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from faceid._files import atomic_write_bytes
from faceid.errors import FaceIDError

__all__ = ["TILE", "contact_sheet", "write_sheets"]

#: Side of one face's tile, in pixels (thumbnails are at most 128: ``faceid.draw.face_thumbnail``).
TILE = 128
_LABEL = 18
_COLUMNS = 8


def contact_sheet(title: str, faces: Sequence[tuple[int, bytes | None]]) -> bytes:
    """A PNG of ``faces`` (``(face id, JPEG thumbnail or None)``) in rows of 8, each labelled with its id."""
    from PIL import Image, ImageDraw

    from faceid.fonts import text_fonts

    columns = max(1, min(_COLUMNS, len(faces)))
    rows = max(1, -(-len(faces) // columns))
    sheet = Image.new("RGB", (columns * TILE, _LABEL + rows * (TILE + _LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    fonts = text_fonts(13)
    fonts.draw(draw, (4, 3 - fonts.bbox("Ag")[1]), fonts.fit(title, sheet.width - 8), fill="black")
    for n, (face_id, jpeg) in enumerate(faces):
        x, y = (n % columns) * TILE, _LABEL + (n // columns) * (TILE + _LABEL)
        if jpeg:
            try:
                with Image.open(io.BytesIO(jpeg)) as thumb:
                    tile = thumb.convert("RGB")
                    tile.thumbnail((TILE, TILE))
                    sheet.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
            except OSError:  # not a readable image: the tile stays grey
                draw.rectangle((x + 1, y + 1, x + TILE - 2, y + TILE - 2), fill="#ccc")
        else:
            draw.rectangle((x + 1, y + 1, x + TILE - 2, y + TILE - 2), fill="#ccc")
        fonts.draw(draw, (x + 4, y + TILE + 3 - fonts.bbox("Ag")[1]), str(face_id), fill="black")
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def write_sheets(
    groups: Sequence[tuple[int | None, Sequence[int]]],
    thumbnail: Callable[[int], bytes | None],
    folder: str | os.PathLike[str],
) -> list[Path]:
    """Write ``cluster-<id>.png`` in ``folder`` (created) for each ``(group id, face ids)``, and
    ``no-group.png`` for group id ``None`` (the faces in no group); return the files.

    ``thumbnail(face_id)`` gives a face's JPEG (e.g. ``Gallery.face_thumbnail``).

    Raises:
        FaceIDError: the folder cannot be made or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for group_id, face_ids in groups:
            faces = [(int(i), thumbnail(int(i))) for i in face_ids]
            path = folder / ("no-group.png" if group_id is None else f"cluster-{int(group_id)}.png")
            title = "in no group" if group_id is None else f"group {group_id}"
            atomic_write_bytes(path, contact_sheet(f"{title}: {len(faces)} faces", faces))
            written.append(path)
    except OSError as exc:
        raise FaceIDError(f"{folder}: cannot write contact sheets ({exc.strerror or exc})") from None
    return written
