"""How similar a face must be to be named: calibrated per gallery, else measured per model and gallery size.

An unknown face is compared with every enrolled face, and the best of N impostor similarities
grows with N: a threshold that keeps strangers out of a 1,680-person gallery would call the cast
of a seven-person gallery unknown. So the default threshold depends on how many faces are
enrolled. For each model the table below holds, for several gallery sizes, the threshold at
which 1% of unknown faces are wrongly named (FPIR = 1%), measured on LFW's open-set protocol
(README, "Accuracy"): random galleries of N enrolled people, the 4,069 single-image LFW people as
strangers. Between sizes the threshold is interpolated in log N; beyond them it is held.

Precedence: an explicit value, then the gallery's calibrated value (``faceid calibrate``), then
this table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["DEFAULT_MARGIN", "TABLES", "decision_params", "threshold_for"]

#: How far the best person must lead the next for a face to be named rather than ambiguous.
DEFAULT_MARGIN = 0.0

#: model -> ((enrolled faces, threshold at FPIR 1%), ...), increasing in size.
TABLES: dict[str, Sequence[tuple[int, float]]] = {
    "facenet-20170512-110547": ((1, 0.405),),
}


def threshold_for(model: str, faces: int) -> float:
    """The default threshold for a gallery of ``faces`` enrolled faces made by ``model``."""
    table = TABLES.get(model)
    if not table:
        raise KeyError(f"no measured thresholds for model {model!r}; run `faceid calibrate` or pass --threshold")
    n = max(1, int(faces))
    if n <= table[0][0]:
        return table[0][1]
    for (n0, t0), (n1, t1) in zip(table, table[1:]):
        if n <= n1:
            w = (math.log(n) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return t0 + w * (t1 - t0)
    return table[-1][1]


def decision_params(gallery, *, threshold: float | None = None, margin: float | None = None) -> tuple[float, float]:
    """The ``(threshold, margin)`` an identification in ``gallery`` uses (see the module docstring)."""
    if threshold is None:
        threshold = gallery.get_setting("threshold")
    if threshold is None:
        key = gallery.embedding_key
        threshold = threshold_for(key["model"], gallery.face_count) if key else 1.0
    if margin is None:
        margin = gallery.get_setting("margin")
    if margin is None:
        margin = DEFAULT_MARGIN
    return float(threshold), float(margin)
