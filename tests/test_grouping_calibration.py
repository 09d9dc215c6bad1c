"""Grouping numbers as a property of the embedding key: the impostor-rate rule against a numpy
oracle, the per-model table, and the one-line error for a key without numbers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KEY

from faceid.cluster import GroupingParams, keep_filters, params_for
from faceid.cluster.calibration import RULE, GroupingRule, derive, impostor_tail
from faceid.embedding_key import EmbeddingKey
from faceid.errors import UncalibratedError
from faceid.thresholds import GROUPING, TABLES, grouping_numbers


def clustered(people: int, per: int, seed: int, noise: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 32))
    x = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(people * per, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(people), per)


def test_impostor_tail_matches_a_numpy_oracle():
    x, who = clustered(40, 5, 1)
    tail = impostor_tail(x, who)
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    i, j = np.triu_indices(len(x), 1)
    impostor = s[i, j][who[i] != who[j]]
    assert tail.pairs == len(impostor)
    for rate in (1e-3, 1e-2, 0.1, 0.5):
        bar = tail.similarity_at(rate)
        # at most `rate` of the pairs reach the bar, and one bin (1e-4) lower more than `rate` would
        assert np.mean(impostor >= bar) <= rate + 1e-12
        assert np.mean(impostor >= bar - 2e-4) > rate - 1.0 / len(impostor)
        assert tail.rate_at(bar) == pytest.approx(np.mean(impostor >= bar), abs=2.0 / len(impostor))


def test_the_rule_orders_its_numbers_and_follows_the_spread():
    x, who = clustered(60, 4, 2)
    tight = derive(impostor_tail(x, who))
    assert tight.floor <= tight.threshold and tight.margin >= 0 and tight.suggest <= tight.floor
    # a model whose strangers score higher (all similarities shifted up) gets higher bars
    shifted = np.hstack([x, np.full((len(x), 1), 1.0, np.float32)])
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    loose = derive(impostor_tail(shifted, who))
    assert loose.threshold > tight.threshold and loose.impostor_median > tight.impostor_median
    with pytest.raises(ValueError, match="floor_rate"):
        GroupingRule(merge_rate=1e-3, floor_rate=1e-4, margin_share=0.1, suggest_rate=1e-2)


def test_every_model_with_an_identify_table_and_weights_here_has_grouping_numbers():
    assert KEY in GROUPING  # the default model
    facenet = EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.1)
    assert facenet in GROUPING
    for key, numbers in GROUPING.items():
        assert key in TABLES, f"{key.describe()} has grouping numbers but no identify table"
        assert -1 < numbers.floor <= numbers.threshold < 1 and 0 <= numbers.margin < 0.5
        assert 0 < numbers.min_confidence < 1 and numbers.min_face_size > 0
    assert params_for(KEY) == GroupingParams(
        threshold=GROUPING[KEY].threshold, floor=GROUPING[KEY].floor, margin=GROUPING[KEY].margin
    )
    assert keep_filters(KEY) == (GROUPING[KEY].min_face_size, GROUPING[KEY].min_confidence)
    assert RULE.merge_rate < RULE.floor_rate


def test_a_key_without_numbers_is_one_uncalibrated_line():
    other = EmbeddingKey.for_model("sface", mirror=True)
    with pytest.raises(UncalibratedError) as err:
        grouping_numbers(other)
    message = str(err.value)
    assert "\n" not in message and "mirror" in message and "faceid eval cluster" in message
    with pytest.raises(UncalibratedError):
        params_for(None)


def test_the_keep_rule_takes_the_highest_confidence_that_loses_at_most_a_tenth_of_a_percent():
    """The rows of `faceid eval cluster --filters` for YuNet with SFace (LFW, 13,233 central faces):
    0.85 loses none, 0.88 loses 15 (0.11%), so the rule keeps from 0.85; rows at other sizes do
    not count, and a table where every bar loses too many is an error."""
    from faceid.eval.grouping import chosen_filter

    buckets = [{"row": "bucket", "central": 13_024}, {"row": "bucket", "central": 209}]

    def keep(size, confidence, lost):
        return {
            "row": "keep",
            "min_size": size,
            "min_confidence": confidence,
            "central_lost": lost,
            "bcubed_precision": 0.96,
            "bcubed_f": 0.97,
        }

    rows = buckets + [keep(40, 0.0, 0), keep(40, 0.85, 0), keep(40, 0.88, 15), keep(40, 0.9, 168), keep(30, 0.92, 0)]
    chosen = chosen_filter(rows, 40)
    assert chosen["min_confidence"] == 0.85 and chosen["central"] == 13_233 and chosen["central_lost"] == 0
    assert chosen_filter(rows, 40, max_lost=0.002)["min_confidence"] == 0.88
    with pytest.raises(ValueError, match="40 px"):
        chosen_filter(buckets + [keep(40, 0.9, 168)], 40)


def test_the_sweep_derives_each_rule_on_a_m_and_scores_it_on_a_m_n_z_and_all():
    """`faceid eval cluster --sweep` rows: every (merge, floor) pair with floor >= merge, the numbers
    derived on the A-M people's impostor pairs only, and grouping with exactly those numbers."""
    from faceid.cluster import group_faces
    from faceid.cluster.metrics import cluster_scores
    from faceid.eval.grouping import LfwFaces, subset_mask, sweep_rules

    x, who = clustered(60, 4, seed=3)
    names = [f"{'AN'[i % 2]}person{i:03d}" for i in range(60)]  # half A-M, half N-Z
    faces = LfwFaces(x, who, names, [f"{i}.jpg" for i in range(len(x))], 0, {})
    rows = sweep_rules(faces, merge_rates=(1e-3, 1e-2), floor_rates=(5e-3, 2e-2))
    assert [(r["merge_rate"], r["floor_rate"]) for r in rows] == [(1e-3, 5e-3), (1e-3, 2e-2), (1e-2, 2e-2)]
    am = subset_mask(faces, "A-M")
    for row in rows:
        tail = impostor_tail(x[am], who[am])
        d = derive(tail, GroupingRule(row["merge_rate"], row["floor_rate"], RULE.margin_share, RULE.suggest_rate))
        assert (row["threshold"], row["floor"], row["margin"]) == (d.threshold, d.floor, d.margin)
        params = GroupingParams(threshold=d.threshold, floor=d.floor, margin=d.margin)
        s = cluster_scores(who, group_faces(x, params=params).labels)
        assert row["all"] == [round(v, 4) for v in (s.bcubed_precision, s.bcubed_recall, s.bcubed_f)]
        assert len(row["a_m"]) == len(row["n_z"]) == 3
