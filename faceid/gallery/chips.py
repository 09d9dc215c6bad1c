"""Face chips: what another embedding model needs of each face, kept beside its embedding.

A chip is the part of the photo around one face that every registered model's crop reads
(FaceNet's margin crop of the detected box, up to :data:`CHIP_MARGIN`; the 5-point similarity
crops, the 112x112 ArcFace template that SFace and ArcFace take, and faceid's own 160 one),
cut axis-aligned from the photo, clipped to it, shrunk only when the face is larger than
:data:`CHIP_FACE_SIDE` pixels, and stored losslessly (PNG). With it are the face's box and five
landmarks in chip pixels and the transform back to the photo (``photo = origin + chip / scale``).

Because the chip is a piece of the photo and not a warped copy, the crops a model takes from it
are the crops it takes from the photo: :meth:`FaceChip.detection` gives the face in chip pixels,
and :meth:`faceid.pipeline.Pipeline.embed` on the chip then re-makes the embedding of any model
(``faceid gallery migrate``). Where the chip was not shrunk (every LFW face), the crop is the same
pixels; docs/models.md, "Moving a gallery to another model", has the measured agreement.

Biometric data like the embedding and thumbnail: rows reference their face (``ON DELETE
CASCADE``) and are cleared from the file by the same secure deletion
(:mod:`faceid.gallery.deletion`); never in the audit log. The table is made with the first chip,
so a gallery made before chips reads as having none.

This module stores and returns chips (PNG bytes and their geometry); making one from a photo is
pixel work and lives beside the other pixel work, in :func:`faceid.chips.make_chip`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faceid.results import Detection

__all__ = ["CHIP_FACE_SIDE", "CHIP_MARGIN", "FaceChip", "read", "store"]

#: The largest margin crop (a fraction of the box, split over both sides) a chip holds.
CHIP_MARGIN = 0.5
#: A face whose box is larger than this many pixels (its longer side) is shrunk to it in its chip.
CHIP_FACE_SIDE = 224

_TABLE = (
    "CREATE TABLE IF NOT EXISTS face_chips ("
    "face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE, "
    "png BLOB NOT NULL, geometry TEXT NOT NULL)"
)


@dataclass(frozen=True)
class FaceChip:
    """One face's chip: a PNG of the photo around it and where the face is in it.

    Attributes:
        png: the chip, a lossless RGB PNG.
        box: the detected box ``(x, y, w, h)`` in chip pixels (fractional where the chip was shrunk).
        landmarks: the five landmarks (eyes, nose, mouth corners) in chip pixels.
        origin: where the chip's top-left corner is in the photo, in photo pixels.
        scale: chip pixels per photo pixel, ``(sx, sy)`` (1.0 unless the face was shrunk).
        margin: the largest margin crop the chip holds (:data:`CHIP_MARGIN` when it was made).
    """

    png: bytes
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    origin: tuple[int, int]
    scale: tuple[float, float]
    margin: float = CHIP_MARGIN

    def pixels(self) -> np.ndarray:
        """The chip as ``(h, w, 3)`` uint8 RGB."""
        import cv2

        data = cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR)
        if data is None:
            raise ValueError("a face chip that is not a PNG image")
        return np.ascontiguousarray(data[:, :, ::-1])

    def detection(self, confidence: float = 1.0) -> Detection:
        """The face as a :class:`~faceid.results.Detection` in chip pixels."""
        from faceid.results import Detection

        return Detection(self.box, float(confidence), self.landmarks)  # type: ignore[arg-type]  # crops take floats

    def photo_landmarks(self) -> np.ndarray:
        """The five landmarks in photo pixels, ``(5, 2)`` float64."""
        points = np.asarray(self.landmarks, dtype=np.float64)
        return points / np.asarray(self.scale) + np.asarray(self.origin, dtype=np.float64)

    def geometry(self) -> str:
        """Everything but the pixels, as JSON (what the table stores beside the PNG)."""
        return json.dumps(
            {
                "box": list(self.box),
                "landmarks": [list(p) for p in self.landmarks],
                "origin": list(self.origin),
                "scale": list(self.scale),
                "margin": self.margin,
            }
        )

    @classmethod
    def from_row(cls, png: bytes, geometry: str) -> FaceChip:
        g = json.loads(geometry)
        return cls(
            bytes(png),
            tuple(float(v) for v in g["box"]),  # type: ignore[arg-type]
            tuple((float(x), float(y)) for x, y in g["landmarks"]),
            (int(g["origin"][0]), int(g["origin"][1])),
            (float(g["scale"][0]), float(g["scale"][1])),
            float(g["margin"]),
        )


def store(db: sqlite3.Connection, face_id: int, chip: FaceChip) -> None:
    """Keep ``chip`` as face ``face_id``'s; call inside the write transaction that adds the face."""
    db.execute(_TABLE)
    db.execute("INSERT OR REPLACE INTO face_chips VALUES (?, ?, ?)", (int(face_id), chip.png, chip.geometry()))


def read(db: sqlite3.Connection, face_id: int) -> FaceChip | None:
    """The chip of face ``face_id``, or ``None`` (enrolled before chips were kept). Call inside a read snapshot."""
    if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'face_chips'").fetchone()[0] == 0:
        return None
    row = db.execute("SELECT png, geometry FROM face_chips WHERE face_id = ?", (int(face_id),)).fetchone()
    return FaceChip.from_row(row[0], row[1]) if row else None
