"""faceid eval video: track decisions against per-frame ones at one false-name rate (fakes: a person is a colour)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fake_cli, make_fake_pipeline, save_png, tile_image

from faceid.eval.video import _rates, _vote, evaluate_tracks, track_units
from faceid.identify import Naming


def _lfw(root, counts: dict[str, int]):
    rng = np.random.default_rng(3)
    for name, n in counts.items():
        colour = tuple(int(c) for c in rng.integers(40, 255, 3))
        for i in range(n):
            save_png(root / "lfw-deepfunneled" / name / f"{name}_{i + 1:04d}.jpg", tile_image([colour]))
    return root


def test_units_split_people_into_enrolled_and_strangers():
    people = {f"p{i}": [f"p{i}/{j}" for j in range(n)] for i, n in enumerate([5, 5, 6, 4, 2, 5])}
    enrolled, known, strangers = track_units(people, frames=4, seed=1)
    assert len(enrolled) == len(known) == 2 and len(strangers) == 3  # 4 of 5+ photos split; one of exactly 4
    for (name, photo), (same, track) in zip(enrolled, known):
        assert name == same and photo not in track and len(track) == 4
    assert all(len(t) == 4 for t in strangers)
    assert not {p for t in strangers for p in t} & {p for _, t in known for p in t}


def test_a_vote_needs_a_strict_majority():
    namings = [Naming("a", 0.5), Naming("a", 0.3), Naming("b", 0.6), Naming(None, -np.inf)]
    assert _vote(namings) == Naming(None, -np.inf)  # 2 of 4 is no majority
    assert _vote(namings[:3]) == Naming("a", 0.3)  # both "a" frames name it up to 0.3


def test_rates_hold_the_false_name_rate_on_strangers():
    namings = [Naming("a", 0.5), Naming("b", 0.2), Naming("x", 0.4), Naming(None, -np.inf)]
    rates = _rates(namings, ["a", "b", None, None], [0.0, 0.5])
    # no stranger may be named: the threshold rises just above 0.4; "b" (0.2) is not named
    assert rates["0"]["named_right"] == 0.5 and rates["0"]["named_wrong"] == 0.0 and rates["0"]["threshold"] >= 0.4
    # one of two may be: the threshold falls past every stranger, and both known are named
    assert rates["0.5"]["named_right"] == 1.0


def test_eval_video_on_a_tiny_lfw(tmp_path):
    root = _lfw(tmp_path / "lfw", {f"person{i}": n for i, n in enumerate([5, 5, 5, 5, 4, 4])})
    report = evaluate_tracks(root, make_fake_pipeline(), frames=4, fpirs=(0.5,))
    assert report.known_tracks == 2 and report.stranger_tracks == 4 and report.known_frames == 8
    for way in ("frame", "pool", "vote"):
        assert report.rates[way]["0.5"]["named_right"] == 1.0 and report.rates[way]["0.5"]["named_wrong"] == 0.0
    result = fake_cli("eval", "video", "--data", root, "--frames", "2,4", "--cache", tmp_path / "c.db")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frames_per_track"] for line in lines] == [2, 4]


@pytest.mark.parametrize("frames", ["x", "0"])
def test_eval_video_refuses_bad_track_lengths(tmp_path, frames):
    result = fake_cli("eval", "video", "--data", tmp_path, "--frames", frames)
    assert result.exit_code == 2 and "--frames" in result.stderr
