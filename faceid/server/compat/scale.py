"""The similarity the compatibility APIs answer with: faceid's decision score on a 0-1 scale on
which faceid's own known/unknown decision falls at :data:`DECISION_AT` (0.60).

CompreFace and DeepStack clients compare one number per face with a threshold of their own
(Double Take: a match at 60%, a name at all from 40%; deepstack-python's ``min_confidence``).
faceid decides on its decision score (:mod:`faceid.identify`) against a threshold that depends on
the model and the gallery (:func:`faceid.thresholds.decision_params`), so the raw cosine means
nothing fixed. The answer is the score mapped piecewise linearly: ``-1 -> 0``, ``threshold ->
0.60``, ``1 -> 1``. A face faceid names gets at least 0.60 for that person; every other subject of
every face (strangers, ambiguous faces, a person named on another face of the photo) at most
:data:`BELOW` (0.595), so a client threshold of 0.60 (Double Take's default ``match``
confidence of 60) reproduces faceid's decision exactly, and strangers stay strangers.
"""

from __future__ import annotations

__all__ = ["BELOW", "DECISION_AT", "to_scale"]

#: Where faceid's decision threshold falls on the answered scale.
DECISION_AT = 0.60

#: The most a subject that faceid does not name the face as can get (below 0.60 even after a
#: client's rounding to two decimals of a percentage).
BELOW = 0.595


def to_scale(score: float, threshold: float, *, named: bool) -> float:
    """``score`` (a decision score) on the answered scale; ``named``: faceid names the face as this subject."""
    t = min(max(float(threshold), -0.999), 0.999)
    s = min(max(float(score), -1.0), 1.0)
    if s >= t:
        value = DECISION_AT + (1.0 - DECISION_AT) * (s - t) / (1.0 - t)
    else:
        value = DECISION_AT * (s + 1.0) / (t + 1.0)
    if not named:
        value = min(value, BELOW)
    elif value < DECISION_AT:  # named below the threshold cannot happen; keep the promise anyway
        value = DECISION_AT
    return round(value, 5)
