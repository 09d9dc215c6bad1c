"""The 1:1 threshold, measured and reported: calibrated on LFW people outside ``pairs.txt``,
reported on ``pairs.txt`` itself (``faceid eval verify``).

Calibration set: every image of the LFW people that ``pairs.txt`` never names (1,468 people,
1,549 images in LFW as published). Every pair of images of two different people there is an
impostor pair (about 1.2 million); the threshold at a false-match rate ``f`` is the lowest at which
at most ``f`` of them score at or above it (:func:`faceid.eval.fpir.threshold_at_fpir`). Images
where no face is found are left out of the calibration (``faceid verify`` refuses them), and
counted. The thresholds are then applied, unchanged, to the 3,000 same and 3,000 different pairs
of ``pairs.txt`` (with the LFW image policy of :mod:`faceid.eval`: a central box where no face
is found, a pair with an unreadable image counted wrong), whose people the calibration never saw.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from faceid.cache import EmbeddingCache
from faceid.errors import FaceIDError
from faceid.eval.fpir import threshold_at_fpir
from faceid.eval.lfw import embed_lfw_images, lfw_people, read_pairs
from faceid.eval.verification import pair_scores
from faceid.pipeline import Pipeline
from faceid.thresholds import VERIFY_FMR, VERIFY_TABLES

__all__ = [
    "FMRS",
    "VerifyEvalReport",
    "calibration_images",
    "evaluate_verify",
    "image_count",
    "impostor_scores",
    "rates_at",
]

log = logging.getLogger(__name__)

#: The false-match rates a threshold is measured at (the table in :mod:`faceid.thresholds`).
FMRS = (1e-2, 1e-3, 1e-4)


@dataclass(frozen=True)
class VerifyEvalReport:
    """Thresholds measured on the calibration set, and what each does on ``pairs.txt``.

    ``measured[fmr]``: the threshold measured here at that FMR, with its ``accuracy``, ``fmr`` and
    ``fnmr`` on ``pairs.txt`` (``fmr_pairs`` / ``fnmr_pairs``: the counts). ``shipped``: the same
    for the threshold faceid ships for this model at the default FMR (``None`` where none is
    measured), i.e. what ``faceid verify`` does.
    """

    model: str
    default_fmr: float
    calibration_people: int
    calibration_images: int
    calibration_no_face: int
    impostor_pairs: int
    genuine_pairs: int
    measured: dict[str, dict[str, float]]
    shipped: dict[str, float] | None
    pairs: int
    pairs_no_face: int
    failed_pairs: int
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def calibration_images(root: Path) -> dict[str, list[str]]:
    """The LFW people ``pairs.txt`` does not name, with their images."""
    pairs, _, _ = read_pairs(root)
    used = {p.parent.name for pair in pairs for p in pair}
    return {name: images for name, images in lfw_people(root).items() if name not in used}


def image_count(root: Path) -> int:
    """How many images :func:`evaluate_verify` embeds (for a progress bar).

    Raises:
        FaceIDError: ``root`` is not an LFW folder with ``protocol/pairs.txt``.
    """
    try:
        pairs, _, _ = read_pairs(root)
        calibration = calibration_images(root)
    except (OSError, ValueError) as exc:
        raise FaceIDError(f"{root}: not an LFW folder with protocol/pairs.txt ({exc})") from None
    return len({p for pair in pairs for p in pair}) + sum(len(v) for v in calibration.values())


def impostor_scores(embeddings: np.ndarray, owners: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(impostor, genuine)`` cosine similarities of every pair of ``(N, D)`` unit rows: pairs of
    different owners, and pairs of the same owner (each unordered pair once)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    labels = np.unique(np.asarray(owners), return_inverse=True)[1]
    impostor, genuine = [], []
    for start in range(0, len(x), 512):  # blocks of rows, so memory stays small
        block = x[start : start + 512] @ x.T
        rows = np.arange(start, min(start + 512, len(x)))
        upper = np.arange(len(x))[None, :] > rows[:, None]
        same = labels[rows][:, None] == labels[None, :]
        impostor.append(block[upper & ~same])
        genuine.append(block[upper & same])
    return np.concatenate(impostor), np.concatenate(genuine)


def rates_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, false-match and false-non-match rates of ``scores >= threshold`` on labelled pairs."""
    called = scores >= threshold
    false_match = int(np.sum(called & ~same))
    false_non_match = int(np.sum(~called & same))
    return {
        "threshold": round(float(threshold), 4),
        "accuracy": float(np.mean(called == same)),
        "fmr": false_match / max(1, int(np.sum(~same))),
        "fnmr": false_non_match / max(1, int(np.sum(same))),
        "fmr_pairs": false_match,
        "fnmr_pairs": false_non_match,
    }


def evaluate_verify(
    root: Path,
    pipeline: Pipeline,
    *,
    cache: EmbeddingCache | None = None,
    fmrs: Sequence[float] = FMRS,
    progress: Callable[[object], None] | None = None,
) -> VerifyEvalReport:
    """Measure the 1:1 thresholds at ``fmrs`` on the calibration set and report them on ``pairs.txt``."""
    people = calibration_images(root)
    paths = [p for images in people.values() for p in images]
    owner = {p: name for name, images in people.items() for p in images}
    calibration = embed_lfw_images(paths, pipeline, cache=cache, progress=progress)
    skip = set(calibration.no_face) | calibration.missing
    kept = [i for i, p in enumerate(calibration.paths) if p not in skip]
    if len(kept) < 2:
        raise FaceIDError(f"{root}: fewer than two usable calibration images")
    impostor, genuine = impostor_scores(calibration.embeddings[kept], [owner[calibration.paths[i]] for i in kept])
    log.info("calibration: %d impostor and %d genuine pairs", len(impostor), len(genuine))

    pairs, same, _ = read_pairs(root)
    images = sorted({os.fspath(p) for pair in pairs for p in pair})
    embedded = embed_lfw_images(images, pipeline, cache=cache, progress=progress)
    scores = pair_scores(pairs, embedded, same)
    lost = embedded.missing
    measured = {f"{f:g}": rates_at(scores, same, threshold_at_fpir(impostor, f)) for f in fmrs}
    shipped = None
    table = VERIFY_TABLES.get(pipeline.key)
    if table:
        from faceid.thresholds import verify_threshold

        shipped = rates_at(scores, same, verify_threshold(pipeline.key, VERIFY_FMR))
    return VerifyEvalReport(
        model=pipeline.key.model,
        default_fmr=VERIFY_FMR,
        calibration_people=len({owner[calibration.paths[i]] for i in kept}),
        calibration_images=len(kept),
        calibration_no_face=len(calibration.no_face),
        impostor_pairs=int(len(impostor)),
        genuine_pairs=int(len(genuine)),
        measured=measured,
        shipped=shipped,
        pairs=len(pairs),
        pairs_no_face=len(embedded.no_face),
        failed_pairs=sum(os.fspath(p) in lost or os.fspath(q) in lost for p, q in pairs),
        errors=sorted({**calibration.errors, **embedded.errors}.values()),
    )
