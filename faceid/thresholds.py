"""How high a face's decision score must be to be named: calibrated per gallery, else measured.

The decision score (see :mod:`faceid.identify`) is ``similarity - BETA * max(0, best other
person's similarity)``. For each embedding key (model, weights, crop, mirror:
:class:`~faceid.embedding_key.EmbeddingKey`), the tables below hold the threshold at which 1% of
unknown faces are wrongly named (FPIR = 1%) in galleries of several sizes, measured on LFW's
open-set protocol with :func:`faceid.identify.decide` itself, margin and all (README, "Accuracy";
``faceid eval lfw-openset --sizes``): random galleries of N people with one enrolled photo each,
the 4,069 single-image LFW people as strangers, 10 draws per size. With the raw similarity that
threshold climbs with N (an unknown face meets more impostors: 0.75 at 1,680 people); with this
score it stays near 0.37 from 2 to 1,680 people, so one small table serves galleries of any size.
Each value is the mean over the draws; between sizes it is interpolated in log N; beyond the table it is held.

Precedence: a value passed in, then the gallery's calibrated value (``faceid calibrate``), then
the table of the gallery's key. A key with no table (another crop margin, say) has no default:
:class:`~faceid.errors.UncalibratedError` names the two ways to give one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faceid.embedding_key import EmbeddingKey
from faceid.errors import UncalibratedError

if TYPE_CHECKING:  # pragma: no cover
    from faceid.gallery import AnyGallery

__all__ = [
    "BETA",
    "DECISION_MARGIN",
    "GROUPING",
    "TABLES",
    "DecisionParams",
    "GroupingNumbers",
    "decision_params",
    "grouping_numbers",
    "threshold_for",
]

#: Weight of the best other person's similarity in the decision score. Measured on LFW open-set
#: with one enrolled photo: DIR at FPIR 1% 0.709 / 0.799 / 0.820 / 0.829 / 0.824 / 0.814 and at
#: FPIR 0.1% 0.271 / 0.285 / 0.324 / 0.365 / 0.383 / 0.377 for beta 0 / .3 / .4 / .5 / .6 / .7:
#: 0.6 is within 0.005 of the best at 1% and the best at 0.1%.
BETA = 0.6

#: How far the named person's similarity must lead every other available person, else the face is
#: "ambiguous": it catches near ties (twins, the same photo enrolled under two names). With the
#: score above, a face that passes the threshold rarely has a runner-up this close: on LFW
#: open-set the 1%-FPIR figures are the same with 0.05 as with no margin to within 0.001 (in an
#: exploratory sweep, not a shipped command), while 0.1 began to cost correct names.
DECISION_MARGIN = 0.05

#: embedding key -> ((people enrolled, threshold at FPIR 1%), ...), increasing in people.
TABLES: dict[EmbeddingKey, Sequence[tuple[int, float]]] = {
    EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.1): (
        (1, 0.3505),
        (2, 0.3861),
        (5, 0.364),
        (10, 0.3689),
        (20, 0.3807),
        (50, 0.3764),
        (100, 0.3679),
        (200, 0.3684),
        (500, 0.3706),
        (1000, 0.3712),
        (1680, 0.3758),
    ),
    # `enroll --mirror`: the same measurement with `faceid eval lfw-openset --sizes --mirror`
    EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.1, mirror=True): (
        (1, 0.3497),
        (2, 0.3841),
        (5, 0.366),
        (10, 0.367),
        (20, 0.383),
        (50, 0.3802),
        (100, 0.3681),
        (200, 0.371),
        (500, 0.3698),
        (1000, 0.3713),
        (1680, 0.3707),
    ),
    # `faceid eval lfw-openset --sizes --model sface`
    EmbeddingKey.for_model("sface"): (
        (1, 0.2981),
        (2, 0.2755),
        (5, 0.2475),
        (10, 0.243),
        (20, 0.2392),
        (50, 0.2391),
        (100, 0.2398),
        (200, 0.2424),
        (500, 0.2454),
        (1000, 0.2487),
        (1680, 0.2538),
    ),
    # `faceid eval lfw-openset --sizes --model arcface-mbf`
    EmbeddingKey.for_model("arcface-mbf"): (
        (1, 0.1629),
        (2, 0.1697),
        (5, 0.1719),
        (10, 0.1722),
        (20, 0.172),
        (50, 0.1754),
        (100, 0.1784),
        (200, 0.1822),
        (500, 0.1903),
        (1000, 0.1977),
        (1680, 0.2059),
    ),
}


@dataclass(frozen=True)
class DecisionParams:
    """The numbers an identification used, and where the threshold came from."""

    threshold: float
    margin: float
    beta: float = BETA
    source: str = "explicit"


def threshold_for(key: EmbeddingKey, people: int) -> float:
    """The default threshold for a gallery of ``people`` enrolled people whose embeddings have ``key``.

    Raises:
        UncalibratedError: no table was measured for ``key``.
    """
    table = TABLES.get(key)
    if not table:
        raise UncalibratedError(
            f"no default threshold is measured for embeddings of {key.describe()}: run `faceid calibrate` "
            "on your own photos, or pass --threshold"
        )
    n = max(1, int(people))
    if n <= table[0][0]:
        return table[0][1]
    for (n0, t0), (n1, t1) in zip(table, table[1:]):
        if n <= n1:
            w = (math.log(n) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return t0 + w * (t1 - t0)
    return table[-1][1]


def decision_params(
    gallery: AnyGallery, *, threshold: float | None = None, margin: float | None = None
) -> DecisionParams:
    """The parameters an identification in ``gallery`` uses (see the module docstring)."""
    source = "explicit"
    if threshold is None:
        stored = gallery.get_setting("threshold")
        if stored is not None:
            threshold, source = float(stored), "calibrated"  # type: ignore[arg-type]
    if threshold is None:
        key = gallery.embedding_key
        people = len(gallery)
        threshold = threshold_for(key, people) if key else 1.0
        source = f"default for {people} {'person' if people == 1 else 'people'}"
    if margin is None:
        stored = gallery.get_setting("margin")
        margin = DECISION_MARGIN if stored is None else float(stored)  # type: ignore[arg-type]
    return DecisionParams(float(threshold), float(margin), BETA, source)


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
        threshold=0.67, floor=0.61, margin=0.10, suggest=0.50, min_confidence=0.95, min_face_size=40
    ),
    EmbeddingKey.for_model("sface"): GroupingNumbers(
        threshold=0.49, floor=0.45, margin=0.06, suggest=0.38, min_confidence=0.90, min_face_size=40
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
