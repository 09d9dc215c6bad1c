"""The evaluation code on reduced data (the full runs are benchmarks, see the README)."""

from __future__ import annotations

import numpy as np
import pytest

from faceid.evaluate import best_threshold, openset_protocol, tar_at_far, threshold_at_fpir


def test_best_threshold_separates_clean_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.7


def test_tar_at_far():
    scores = np.r_[np.linspace(0.5, 1.0, 100), np.linspace(-0.5, 0.6, 100)]
    same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert tar_at_far(scores, same, 0.0) < tar_at_far(scores, same, 0.1) <= 1.0


def test_threshold_at_fpir_is_strict():
    unknown = np.arange(100) / 100.0  # 0.00 .. 0.99
    t = threshold_at_fpir(unknown, 0.01)
    assert np.mean(unknown >= t) == 0.01
    assert np.mean(unknown >= threshold_at_fpir(unknown, 0.0)) == 0.0


def test_openset_protocol_split():
    people = {"a": ["a1", "a2", "a3", "a4"], "b": ["b1", "b2"], "c": ["c1"], "d": ["d1"]}
    one = openset_protocol(people, enrol=1)
    assert one.enrolled == [("a", "a1"), ("b", "b1")]
    assert one.known == [("a", "a2"), ("a", "a3"), ("a", "a4"), ("b", "b2")]
    assert one.unknown == ["c1", "d1"]
    three = openset_protocol(people, enrol=3)
    assert three.enrolled == [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1")]  # b keeps a probe
    assert three.known == [("a", "a4"), ("b", "b2")]


@pytest.mark.model
@pytest.mark.shared
def test_lfw_one_fold(data, real_pipeline, tmp_path):
    """One fold of the official pairs (807 images) through the real pipeline."""
    from faceid.evaluate import evaluate_lfw

    report = evaluate_lfw(data / "lfw", real_pipeline, folds=[0], plots=tmp_path)
    assert report.pairs == 600 and report.images == 807 and report.unreadable == 0
    assert report.accuracy >= 0.98  # measured 0.9933 on this fold
    assert report.auc >= 0.995
    assert (tmp_path / "roc.png").stat().st_size > 1000 and (tmp_path / "similarities.png").is_file()


@pytest.mark.model
@pytest.mark.shared
def test_lfw_openset_large_gallery_holds_its_fpir(data, real_pipeline):
    """The larger-gallery end of the default threshold, reduced for CI: 150 people, 300 strangers
    (the full 1,680-person run is in the README)."""
    from faceid.evaluate import evaluate_openset

    report = evaluate_openset(data / "lfw", real_pipeline, max_people=150, max_strangers=300, seed=1)
    assert report.people == 150 and report.unknown_probes == 300
    assert report.rank1 >= 0.95
    assert report.at_default["fpir"] <= 0.025  # 1% expected; at most 7 of 300 strangers named
    assert report.at_default["dir"] >= 0.80
