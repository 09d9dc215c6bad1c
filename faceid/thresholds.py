"""How high a face's decision score must be to be named: calibrated per gallery, else measured.

The decision score (see :mod:`faceid.identify`) is ``similarity - BETA * max(0, best other
person's similarity)``. For each embedding key (model, weights, crop, mirror:
:class:`~faceid.embedding_key.EmbeddingKey`), the tables below hold the threshold at which 1% of
unknown faces are wrongly named (FPIR = 1%) in galleries of several sizes, measured on LFW's
open-set protocol with :func:`faceid.identify.decide` itself, margin and all (docs/accuracy.md;
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
from typing import TYPE_CHECKING

from faceid.embedding_key import EmbeddingKey
from faceid.errors import UncalibratedError
from faceid.grouping_thresholds import GROUPING, GroupingNumbers, grouping_numbers  # re-exported: beside TABLES
from faceid.results import BETA, DecisionParams  # re-exported: they live on the ground floor

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
