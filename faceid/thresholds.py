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
    "VERIFY_FMR",
    "VERIFY_TABLES",
    "DecisionParams",
    "GroupingNumbers",
    "decision_params",
    "grouping_numbers",
    "threshold_for",
    "verify_threshold",
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
    # `faceid eval lfw-openset --sizes --model sface --detector yunet`: within 0.011 of MTCNN's table
    # above at every size (docs/detectors.md); measured again when YuNet began enlarging photos under
    # 640 px (its landmarks, and so the embeddings, moved)
    EmbeddingKey.for_model("sface", detector="yunet"): (
        (1, 0.2874),
        (2, 0.2732),
        (5, 0.2481),
        (10, 0.2405),
        (20, 0.2352),
        (50, 0.238),
        (100, 0.2373),
        (200, 0.2402),
        (500, 0.2421),
        (1000, 0.2454),
        (1680, 0.2492),
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


# -- 1:1 verification (faceid.verify) -----------------------------------------------------------------

#: The false-match rate ``faceid verify`` decides at unless told otherwise: 0.1% of different-person
#: pairs called the same.
VERIFY_FMR = 1e-3

#: embedding key -> ((false-match rate, cosine threshold), ...), decreasing in rate. Measured by
#: ``faceid eval verify --data ../shared/data/lfw [--model M]`` on impostor pairs of the LFW people
#: outside ``pairs.txt`` (see :mod:`faceid.eval.verify`), and reported on ``pairs.txt`` (docs/verify.md).
VERIFY_TABLES: dict[EmbeddingKey, Sequence[tuple[float, float]]] = {
    # 1,198,786 impostor pairs of 1,549 images of 1,468 people
    EmbeddingKey.for_model("sface"): ((1e-2, 0.3036), (1e-3, 0.3704), (1e-4, 0.4252)),
    # the same pairs, `faceid eval verify --data ../shared/data/lfw --detector yunet`
    EmbeddingKey.for_model("sface", detector="yunet"): ((1e-2, 0.2974), (1e-3, 0.3636), (1e-4, 0.4184)),
    # the same pairs, `faceid eval verify --data ../shared/data/lfw --model facenet-20170512-110547`
    EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.1): (
        (1e-2, 0.3628),
        (1e-3, 0.4976),
        (1e-4, 0.6144),
    ),
}


def verify_threshold(key: EmbeddingKey, fmr: float = VERIFY_FMR) -> float:
    """The cosine threshold at which ``fmr`` of different-person pairs pass, for embeddings of ``key``;
    between measured rates, interpolated in log rate.

    Raises:
        UncalibratedError: no verification table was measured for ``key``.
        OptionError: ``fmr`` is outside the measured range.
    """
    from faceid.errors import OptionError

    table = VERIFY_TABLES.get(key)
    if not table:
        raise UncalibratedError(
            f"no verification threshold is measured for embeddings of {key.describe()}: "
            "pass --threshold, or measure one with `faceid eval verify`"
        )
    rates = [r for r, _ in table]
    if not (min(rates) <= fmr <= max(rates)):
        raise OptionError(f"--fmr must be between {min(rates):g} and {max(rates):g} (the measured range), got {fmr:g}")
    for (r0, t0), (r1, t1) in zip(table, table[1:]):
        if r1 <= fmr <= r0:
            w = (math.log(fmr) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return t0 + w * (t1 - t0)
    return table[0][1]
