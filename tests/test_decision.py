"""One decision rule: naming_thresholds is decide at every threshold, and what calibration and
evaluation measure through it is what identify does."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from faceid.eval.fpir import threshold_at_fpir
from faceid.identify import AMBIGUOUS, KNOWN, UNKNOWN, Candidate, decide, naming_thresholds
from faceid.thresholds import BETA, DECISION_MARGIN, DecisionParams

PEOPLE = ["ann", "bob", "cy", "dee", "eve"]


def params(threshold: float = 0.0, margin: float = DECISION_MARGIN) -> DecisionParams:
    return DecisionParams(threshold=threshold, margin=margin, beta=BETA)


@st.composite
def photos(draw):
    """Candidates of the faces of one photo: each face's people, best first, similarities in [-1, 1]."""
    faces = draw(st.integers(1, 4))
    out = []
    for _ in range(faces):
        names = draw(st.lists(st.sampled_from(PEOPLE), unique=True, max_size=4))
        sims = sorted((draw(st.floats(-1, 1, allow_nan=False).map(lambda x: round(x, 2))) for _ in names), reverse=True)
        out.append([Candidate(n, s) for n, s in zip(names, sims)])
    return out


@settings(max_examples=300, deadline=None)
@given(photos(), st.floats(0.0, 0.2), st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=8))
def test_naming_thresholds_is_decide_at_every_threshold(candidates, margin, thresholds):
    namings = naming_thresholds(candidates, params(margin=margin))
    for t in thresholds + [n.threshold for n in namings if math.isfinite(n.threshold)]:
        for naming, decision in zip(namings, decide(candidates, params(t, margin))):
            named = decision.status == KNOWN
            assert named == (t <= naming.threshold), (t, naming, decision)
            if named:
                assert decision.name == naming.name


def test_an_ambiguous_face_is_never_named_at_any_threshold():
    # twins: 0.80 and 0.78 lead each other by less than the margin
    (naming,) = naming_thresholds([[Candidate("ann", 0.80), Candidate("bob", 0.78)]], params())
    assert naming == naming.__class__(None, -math.inf)
    assert decide([[Candidate("ann", 0.80), Candidate("bob", 0.78)]], params(-1.0))[0].status == AMBIGUOUS


def test_one_person_per_photo_shows_in_the_naming():
    # both faces look most like ann; the stronger one takes her, the other falls to bob, at a lower threshold
    faces = [[Candidate("ann", 0.9), Candidate("bob", 0.2)], [Candidate("ann", 0.7), Candidate("bob", 0.6)]]
    first, second = naming_thresholds(faces, params())
    assert (first.name, round(first.threshold, 4)) == ("ann", round(0.9 - BETA * 0.2, 4))
    assert second.name == "bob"
    assert round(second.threshold, 4) == round(0.6 - BETA * 0.7, 4)
    assert [d.status for d in decide(faces, params(0.5))] == [KNOWN, UNKNOWN]


def test_threshold_at_fpir_holds_the_rate_with_never_named_faces():
    levels = np.array([0.9, 0.5, 0.4, -math.inf, -math.inf, 0.1, 0.3, 0.2, -math.inf, 0.0])
    t = threshold_at_fpir(levels, 0.1)  # one of ten may be named
    assert np.mean(levels >= t) == 0.1
    assert t == np.nextafter(0.5, np.inf)
    assert np.mean(levels >= threshold_at_fpir(levels, 0.0)) == 0.0
