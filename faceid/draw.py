"""Annotated images in the style of the origin scenario: a box and "name (similarity)" over each
face; unknown faces red, ambiguous amber, known green."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid._files import atomic_write_bytes
from faceid.results import AMBIGUOUS, KNOWN, FaceMatch, Identification

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["COLOURS", "annotate", "save_annotated"]

COLOURS = {KNOWN: (40, 200, 80), AMBIGUOUS: (255, 170, 0), "unknown": (230, 40, 40)}


def _label(face: FaceMatch) -> str:
    if face.status == KNOWN:
        return f"{face.name} ({face.similarity:.2f})"
    if face.status == AMBIGUOUS:
        best = face.candidates[0].name if face.candidates else "?"
        return f"ambiguous: {best}? ({face.similarity:.2f})"
    return f"unknown ({face.similarity:.2f})" if face.similarity > -1 else "unknown"


def annotate(pixels: np.ndarray, result: Identification) -> Image.Image:  # noqa: F821
    """A PIL image of ``pixels`` with every face of ``result`` boxed and labelled."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, round(side / 400))
    font = ImageFont.load_default(size=max(12, round(side / 55)))
    for face in result.faces:
        x, y, w, h = face.detection.box
        colour = COLOURS.get(face.status, COLOURS["unknown"])
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        text = _label(face)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y - th - 2 * width if y - th - 2 * width >= 0 else y + h
        draw.rectangle([x, ty, x + tw + 2 * width, ty + th + 2 * width], fill=colour)
        draw.text(
            (x + width - left, ty + width - top),
            text,
            fill=(0, 0, 0) if face.status != "unknown" else (255, 255, 255),
            font=font,
        )
    return image


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
