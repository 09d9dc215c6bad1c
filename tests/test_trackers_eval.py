"""faceid eval trackers: our tracker against ByteTrack on synthetic walkers (random unit vectors as
faces, no models) and the scoring of ID switches, mixed tracks and fragments."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fake_cli
from test_video_eval import _lfw

from faceid.eval.trackers import _score, make_tracker, synthetic_figures, synthetic_scene
from faceid.results import Detection
from faceid.video.bytetrack import bytetrack_available
from faceid.video.tracker import Observation, TrackState

needs_bytetrack = pytest.mark.skipif(
    not bytetrack_available(), reason="ByteTrack's 'trackers' package is not installed (faceid/video/bytetrack.py)"
)


def _people(n: int, photos: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``n`` people, each ``photos`` unit vectors near their own direction (cosine ~0.7 within, ~0 +- 0.06 between)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        centre = rng.normal(size=256)
        v = centre / np.linalg.norm(centre) + 0.04 * rng.normal(size=(photos, 256))
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out


def _obs(frame: int, x: int) -> Observation:
    return Observation(frame, frame / 3, Detection((x, 0, 50, 60), 0.99, ()), np.ones(4, np.float32) / 2, 1.0)


def test_scoring_counts_switches_mixed_tracks_and_fragments():
    a = [_obs(i, 10 * i) for i in range(4)]
    b = [_obs(i, 300) for i in range(4)]
    person = {id(o): 0 for o in a} | {id(o): 1 for o in b}
    one = TrackState.start(1, a[0])
    for o in (a[1], b[2], a[3]):  # a, a, b, a: two switches
        one.add(o, 32)
    two = TrackState.start(2, b[0])
    two.add(b[1], 32)
    three = TrackState.start(3, a[2])  # a split off
    three.add(b[3], 32)
    assert _score([one, two, three], person) == {"tracks": 3, "id_switches": 3, "mixed_tracks": 2, "fragments": 3}


def test_walkers_cross_the_frame_and_each_face_is_its_person():
    faces = _people(3)
    samples = synthetic_scene(faces, np.random.default_rng(1), speed=1.5, fps=3.0, miss=0.0)
    assert len(samples) == 18 and [round(t, 3) for t, _ in samples[:2]] == [0.0, 0.333]
    seen = {p for _, s in samples for p, _ in s}
    assert seen == {0, 1, 2}
    for _, s in samples:
        for p, o in s:
            assert any(np.array_equal(o.embedding, v) for v in faces[p])
            assert -60 < o.detection.box[0] < 640


def test_our_tracker_keeps_crossing_people_apart():
    (ours,) = synthetic_figures(_people(30), 0.3, trackers=["faceid"], speeds=[1.5], scenes=10, miss=0.1)
    assert ours["appearances"] == 40
    assert ours["id_switches"] == 0 and ours["mixed_tracks"] == 0 and ours["fragments"] <= 4


@needs_bytetrack
def test_bytetrack_adapter_keeps_every_face_of_a_slow_walker_in_one_track():
    faces = _people(1)
    samples = synthetic_scene(faces, np.random.default_rng(2), speed=0.3, fps=3.0, miss=0.0)
    tracker = make_tracker("bytetrack-per-sample", 0.3, 3.0)
    done = []
    for t, seen in samples:
        done += tracker.update(t, [o for _, o in seen])
    done += tracker.finish()
    observed = sum(len(s) for _, s in samples)
    assert sum(t.frames for t in done) == observed  # nothing dropped, the first face included
    assert len(done) == 1 and tracker.dropped == 0


@needs_bytetrack
def test_bytetrack_loses_walkers_that_move_their_width_between_samples():
    figures = synthetic_figures(_people(30), 0.3, speeds=[3.0], scenes=10, miss=0.0)
    by = {f["tracker"]: f for f in figures}
    assert by["faceid"]["fragments"] < by["bytetrack"]["fragments"]


def test_cli_compares_on_a_tiny_lfw_and_refuses_unknown_trackers(tmp_path):
    root = _lfw(tmp_path / "data" / "lfw", {f"person{i}": 5 for i in range(6)})
    result = fake_cli(
        "eval", "trackers", "--data", root.parent, "--no-clips", "--scenes", "3", "--tracker", "faceid",
        "--cache", tmp_path / "c.db",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["speed_widths_per_s"] for line in lines] == [0.5, 1.5, 3.0]
    assert all(line["tracker"] == "faceid" and line["scenes"] == 3 for line in lines)
    bad = fake_cli("eval", "trackers", "--data", root.parent, "--tracker", "sort")
    assert bad.exit_code == 2 and "--tracker" in bad.stderr
