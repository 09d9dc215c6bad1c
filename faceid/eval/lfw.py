"""LFW's files read: the pairs protocol, the people, and each image's embedding (the face nearest
the centre, else :data:`LFW_CENTRE_BOX`), through the embedding cache."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceid.batch import process
from faceid.cache import EmbeddingCache
from faceid.detect import Detection
from faceid.pipeline import Pipeline

log = logging.getLogger(__name__)


#: Fallback face box for 250x250 LFW images where MTCNN finds nothing (x, y, w, h): the median
#: MTCNN box over the 7,701 images of LFW's pairs.txt.
LFW_CENTRE_BOX = (79, 65, 91, 123)


def lfw_path(root: Path, name: str, number: int) -> Path:
    return root / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"


def read_pairs(root: Path, protocol: str = "pairs.txt") -> tuple[list[tuple[Path, Path]], np.ndarray, np.ndarray]:
    """LFW pairs as ``(pairs, same (N,) bool, fold (N,) int)`` from ``root/protocol/pairs.txt``.

    The official file has a header "folds pairs_per_side", then per fold that many same-person
    lines ("name n1 n2") and as many different-person lines ("name1 n1 name2 n2").
    """
    lines = (Path(root) / "protocol" / protocol).read_text().split("\n")
    header = lines[0].split()
    folds, per_side = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    pairs, same, fold = [], [], []
    body = [line.split() for line in lines[1:] if line.strip()]
    if len(body) != folds * per_side * 2:
        raise ValueError(f"{protocol}: expected {folds * per_side * 2} pairs, found {len(body)}")
    for i, parts in enumerate(body):
        if len(parts) == 3:
            a, b = lfw_path(root, parts[0], int(parts[1])), lfw_path(root, parts[0], int(parts[2]))
            same.append(True)
        else:
            a, b = lfw_path(root, parts[0], int(parts[1])), lfw_path(root, parts[2], int(parts[3]))
            same.append(False)
        pairs.append((a, b))
        fold.append(i // (2 * per_side))
    return pairs, np.array(same), np.array(fold)


@dataclass
class EmbeddedSet:
    """Embeddings of a list of images (one face each) and how each face was found.

    ``no_face``: the pipeline found no face; the fallback box was embedded. ``unreadable`` and
    ``failed``: the file could not be read, or the pipeline failed on it; their rows are NaN and
    ``errors`` maps each of them to its one-line message.
    """

    paths: list[str]
    embeddings: np.ndarray
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: the face each row embeds (the central detection, or the fallback box); ``None`` where none
    detections: list[Detection | None] = field(default_factory=list)

    @property
    def missing(self) -> set[str]:
        """Images without an embedding: unreadable or failed."""
        return set(self.unreadable) | set(self.failed)


def _central(detections: Sequence, width: int, height: int):
    cx, cy = width / 2, height / 2
    return min(
        detections,
        key=lambda f: (
            (f.detection.box[0] + f.detection.box[2] / 2 - cx) ** 2
            + (f.detection.box[1] + f.detection.box[3] / 2 - cy) ** 2
        ),
    )


def embed_lfw_images(
    paths: Sequence[str | os.PathLike],
    pipeline: Pipeline,
    *,
    cache: EmbeddingCache | None = None,
    progress: Callable[[object], None] | None = None,
) -> EmbeddedSet:
    """One embedding per image: the central face, or the fallback box where none was found; none
    (a NaN row) for an image that cannot be read or that the pipeline failed on."""
    names = [os.fspath(p) for p in paths]
    rows = np.zeros((len(names), pipeline.spec.dimension), dtype=np.float32)
    result = EmbeddedSet(names, rows, detections=[None] * len(names))
    for i, item in enumerate(process(names, pipeline, batch_size=32, cache=cache, on_done=progress)):
        if item.image is None or item.error is not None:
            (result.unreadable if item.image is None else result.failed).append(item.source)
            result.errors[item.source] = item.error or f"{item.source}: unreadable"
            log.warning("%s", result.errors[item.source])
            rows[i] = np.nan
            continue
        if item.faces:
            central = _central(item.faces, item.image.width, item.image.height)
            rows[i] = central.embedding
            result.detections[i] = central.detection
            continue
        result.no_face.append(item.source)
        h, w = item.image.height, item.image.width
        x, y, bw, bh = LFW_CENTRE_BOX
        sx, sy = w / 250, h / 250
        box = (round(x * sx), round(y * sy), round(bw * sx), round(bh * sy))
        fallback = Detection(box, 0.0, ((0.0, 0.0),) * 5)
        rows[i] = pipeline.embed(item.image.pixels, [fallback])[0]
        result.detections[i] = fallback
    return result


def lfw_people(root: Path) -> dict[str, list[str]]:
    """Every LFW person and their image paths, sorted."""
    folder = Path(root) / "lfw-deepfunneled"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    people = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(str(p) for p in person.glob("*.jpg"))
        if images:
            people[person.name] = images
    return people
