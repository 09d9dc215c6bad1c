"""Grouping numbers per embedding key, beside identify's threshold tables (:mod:`faceid.thresholds`,
which re-exports them): the bars of :mod:`faceid.cluster` and the keep filters of kept unknown
faces. A module of its own so that :mod:`faceid.cluster` reads it without importing the gallery.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceid.embedding_key import EmbeddingKey
from faceid.errors import UncalibratedError

__all__ = ["GROUPING", "GroupingNumbers", "grouping_numbers"]


@dataclass(frozen=True)
class GroupingNumbers:
    """A model's numbers for keeping and grouping unknown faces (:mod:`faceid.cluster`).

    ``threshold``, ``floor``: the average cosine similarity two single faces need to be grouped,
    and what it falls to for big groups; ``margin``: how far a new face's best group must lead
    the runner-up in :func:`faceid.cluster.attach`; ``suggest``: the similarity above which an
    unknown face is offered to the enrolled person it matches best. These four come from the
    model's own impostor similarities by one rule (:mod:`faceid.cluster.calibration`).
    ``min_confidence``, ``min_face_size``: the detections kept for grouping (confidence, shorter
    box side in pixels).
    """

    threshold: float
    floor: float
    margin: float
    suggest: float
    min_confidence: float
    min_face_size: int


#: embedding key -> grouping numbers. Each line is what `faceid eval cluster --subset A-M --model M`
#: prints as "derived" (impostor pairs of LFW people A-M only; N-Z and all of LFW are the check),
#: and the keep filters from `faceid eval cluster --filters --model M` (docs/grouping.md).
GROUPING: dict[EmbeddingKey, GroupingNumbers] = {
    # the keep filters measured with FaceNet before the rule (README, "Grouping unknown faces")
    EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.1): GroupingNumbers(
        threshold=0.68, floor=0.60, margin=0.10, suggest=0.50, min_confidence=0.95, min_face_size=40
    ),
    # `faceid eval cluster --model sface --detector yunet`: the rule on A-M ("derived_on_a_m"; YuNet
    # enlarging photos under 640 px moved it from 0.48 / 0.42); keep filters from `faceid eval
    # cluster --filters --model sface --detector yunet` ("chosen" row: YuNet scores faces lower than
    # MTCNN; 0.85 loses 7 of 13,233 central faces)
    EmbeddingKey.for_model("sface", detector="yunet"): GroupingNumbers(
        threshold=0.49, floor=0.43, margin=0.06, suggest=0.37, min_confidence=0.85, min_face_size=40
    ),
    EmbeddingKey.for_model("sface"): GroupingNumbers(
        threshold=0.50, floor=0.44, margin=0.06, suggest=0.38, min_confidence=0.90, min_face_size=40
    ),
}


def grouping_numbers(key: EmbeddingKey | None) -> GroupingNumbers:
    """The grouping numbers measured for embeddings of ``key``.

    Raises:
        UncalibratedError: none were measured for ``key`` (or the gallery has no key yet).
    """
    numbers = GROUPING.get(key) if key is not None else None
    if numbers is None:
        what = key.describe() if key is not None else "an empty gallery"
        raise UncalibratedError(
            f"no grouping thresholds are measured for embeddings of {what}: measure them with "
            "`faceid eval cluster --model MODEL` and add them to faceid.thresholds.GROUPING"
        )
    return numbers
