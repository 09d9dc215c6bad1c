"""Open-set thresholds from scores: the threshold for a target false-identification rate (FPIR),
and the namings it is read from (also what :mod:`faceid.calibrate` uses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from faceid.gallery import Gallery
    from faceid.identify import Naming
    from faceid.thresholds import DecisionParams


def threshold_at_fpir(unknown_scores: np.ndarray, fpir: float) -> float:
    """The lowest threshold at which at most ``fpir`` of the unknown probes pass (score >= threshold)."""
    ranked = np.sort(np.asarray(unknown_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(fpir * len(ranked)))
    if allowed >= len(ranked):
        return float(ranked[-1]) if len(ranked) else 0.0
    return float(np.nextafter(ranked[allowed], np.inf))


def naming_arrays(namings: Sequence[Naming]) -> tuple[list[str | None], np.ndarray]:
    """Names and naming thresholds of one-face photos as ``(names, (N,) float64)``."""
    return [n.name for n in namings], np.array([n.threshold for n in namings], dtype=np.float64)


def single_face_namings(
    gallery: Gallery, vectors: np.ndarray, params: DecisionParams
) -> tuple[list[str | None], np.ndarray]:
    """What identify names each of these one-face photos as, and up to which threshold."""
    from faceid.identify import photo_namings

    namings = photo_namings(gallery, [v[None] for v in vectors], params)
    return naming_arrays([n[0] for n in namings])
