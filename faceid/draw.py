"""Annotated images in the style of the origin scenario: a box and "name (similarity)" over each
face; unknown faces red, ambiguous amber, known green."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid._files import atomic_write_bytes
from faceid.results import AMBIGUOUS, KNOWN, FaceMatch, Identification

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["COLOURS", "Label", "annotate", "face_thumbnail", "layout_labels", "plan_labels", "save_annotated"]

COLOURS = {KNOWN: (40, 200, 80), AMBIGUOUS: (255, 170, 0), "unknown": (230, 40, 40)}


def _label(face: FaceMatch) -> tuple[str, str]:
    """A face's label as ``(text that may be shortened, ending kept whole)``."""
    if face.status == KNOWN:
        return face.name or "?", f" ({face.similarity:.2f})"
    if face.status == AMBIGUOUS:
        best = face.candidates[0].name if face.candidates else "?"
        return f"ambiguous: {best}", f"? ({face.similarity:.2f})"
    return ("unknown", f" ({face.similarity:.2f})") if face.similarity > -1 else ("unknown", "")


Rect = tuple[int, int, int, int]  # left, top, right, bottom


def _overlap(a: Rect, b: Rect) -> int:
    """Area shared by two rectangles."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def layout_labels(boxes: list[Rect], sizes: list[tuple[int, int]], width: int, height: int) -> list[tuple[int, int]]:
    """Where to put each face's label: ``(left, top)`` of a ``sizes[i]`` rectangle for ``boxes[i]``.

    The rule (the web page shows images annotated by it too): a label sits just above its face
    box, else just below, else inside the box's top; it is slid sideways to stay inside the image,
    never clipped at an edge; it covers no other label and, where it can, no other face. Faces are
    placed from the top of the image down; a label whose usual places are taken moves down (then
    up) from its box until it finds a free place; in a photo too crowded for that, the place
    covering the least (labels first, then faces) is used.
    """
    placed: list[Rect] = []
    out: list[tuple[int, int]] = [(0, 0)] * len(boxes)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        tw, th = sizes[i]
        left = min(max(0, x0), max(0, width - tw))  # slide sideways into the image
        tops = [y0 - th, y1, y0]  # above, below, inside the top
        step = max(1, th // 2)
        tops += [y1 + k * step for k in range(1, 2 * (height // step) + 1)]
        tops += [y0 - th - k * step for k in range(1, 2 * (height // step) + 1)]
        faces = [b for j, b in enumerate(boxes) if j != i]
        # a free gap need not lie on the step grid: also try right under and right over every
        # label placed and every face, where such gaps begin and end
        tops += [edge for r in placed + faces for edge in (r[3], r[1] - th)]
        best: tuple[int, int] | None = None
        best_cover: tuple[int, int] | None = None
        for top in tops:
            top = min(max(0, top), max(0, height - th))  # never past the top or bottom edge
            rect = (left, top, left + tw, top + th)
            cover = (sum(_overlap(rect, other) for other in placed), sum(_overlap(rect, face) for face in faces))
            if cover == (0, 0):
                best = (left, top)
                break
            if best_cover is None or cover < best_cover:
                best, best_cover = (left, top), cover
        assert best is not None
        out[i] = best
        placed.append((best[0], best[1], best[0] + tw, best[1] + th))
    return out


@dataclass(frozen=True)
class Label:
    """Where one face's label goes: its text and rectangle ``(left, top, right, bottom)``."""

    text: str
    rect: Rect
    offset: tuple[int, int]  # the font's own offset of the text's ink inside its box


#: A label may be as wide as its face's box, and at least this many times the font size (a few
#: characters and the similarity); longer names end in an ellipsis.
MIN_LABEL_EMS = 6


def plan_labels(size: tuple[int, int], result: Identification) -> tuple[Any, int, list[Label]]:
    """The fonts, line width and label of each face of ``result`` on an image of ``size`` (:func:`layout_labels`).

    Names in any script are drawn with the bundled fonts (:mod:`faceid.fonts`); a label is at most
    as wide as its face's box (at least ``MIN_LABEL_EMS`` font sizes, at most the image), a longer
    name is cut and ended with an ellipsis, so no label runs across other faces.
    """
    from faceid.fonts import text_fonts

    width, height = size
    line = max(2, round(max(size) / 400))
    font_size = max(12, round(max(size) / 55))
    if MIN_LABEL_EMS * font_size + 2 * line > width:  # a tiny image: a smaller font, down to 8 px
        font_size = max(8, (width - 2 * line) // MIN_LABEL_EMS)
    fonts = text_fonts(font_size)
    boxes: list[Rect] = []
    sizes: list[tuple[int, int]] = []
    offsets: list[tuple[int, int]] = []
    texts: list[str] = []
    for face in result.faces:
        x, y, w, h = (int(v) for v in face.detection.box)
        boxes.append((x, y, x + w, y + h))
        room = min(width, max(w, MIN_LABEL_EMS * font_size)) - 2 * line
        name, ending = _label(face)
        text = fonts.fit(name, room, keep=ending)
        texts.append(text)
        left, top, right, bottom = fonts.bbox(text)
        offsets.append((left, top))
        sizes.append((right - left + 2 * line, bottom - top + 2 * line))
    places = layout_labels(boxes, sizes, width, height)
    labels = [
        Label(text, (x, y, x + w, y + h), offset) for text, (x, y), (w, h), offset in zip(texts, places, sizes, offsets)
    ]
    return fonts, line, labels


def annotate(pixels: np.ndarray, result: Identification) -> Image.Image:  # noqa: F821
    """A PIL image of ``pixels`` with every face of ``result`` boxed and labelled (see :func:`plan_labels`)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    fonts, line, labels = plan_labels(image.size, result)
    for face in result.faces:
        x, y, w, h = (int(v) for v in face.detection.box)
        draw.rectangle([x, y, x + w, y + h], outline=COLOURS.get(face.status, COLOURS["unknown"]), width=line)
    for face, label in zip(result.faces, labels):
        x0, y0, x1, y1 = label.rect
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=COLOURS.get(face.status, COLOURS["unknown"]))
        fonts.draw(
            draw,
            (x0 + line - label.offset[0], y0 + line - label.offset[1]),
            label.text,
            fill=(0, 0, 0) if face.status != "unknown" else (255, 255, 255),
        )
    return image


def face_thumbnail(pixels: np.ndarray, box: tuple[int, int, int, int], *, size: int = 128) -> bytes:
    """A small square JPEG of one face: its box with a quarter of margin around, at most ``size`` pixels."""
    import io

    from PIL import Image

    x, y, w, h = (int(v) for v in box)
    side = int(max(w, h) * 1.5)
    cx, cy = x + w // 2, y + h // 2
    height, width = pixels.shape[:2]
    x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
    x1, y1 = min(width, x0 + side), min(height, y0 + side)
    crop = Image.fromarray(pixels[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else pixels)
    crop.thumbnail((size, size))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def save_annotated(pixels: np.ndarray, result: Identification, out_dir: str | os.PathLike[str], source: str) -> Path:
    """Write the annotated image into ``out_dir`` (atomically) and return its path.

    The file is named after the source; ``out_dir`` is created if missing. JPEG sources give JPEG,
    anything else PNG.
    """
    import io

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(source).stem or "image"
    jpeg = Path(source).suffix.lower() in (".jpg", ".jpeg")
    target = out_dir / f"{stem}.{'jpg' if jpeg else 'png'}"
    buffer = io.BytesIO()
    annotate(pixels, result).save(buffer, format="JPEG" if jpeg else "PNG", quality=92)
    atomic_write_bytes(target, buffer.getvalue())
    return target
