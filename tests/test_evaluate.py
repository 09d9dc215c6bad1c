"""The evaluation code on reduced data (the full runs are benchmarks, see docs/accuracy.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, FakeEmbedder, cli, fake_cli, make_fake_pipeline, save_png, tile_image

from faceid.embedding_key import EmbeddingKey
from faceid.eval.fpir import threshold_at_fpir
from faceid.eval.openset import openset_protocol
from faceid.eval.verification import best_threshold, tar_at_far


def test_best_threshold_is_the_midpoint_of_the_best_gap():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    assert best_threshold(scores, same) == pytest.approx(0.5, abs=1e-12)  # between 0.7 and 0.3
    # overlapping: accepting down to 0.58 gets 5 of 6 right (only 0.65 wrong), stopping at 0.7 only 4
    scores = np.array([0.9, 0.7, 0.65, 0.6, 0.58, 0.2])
    same = np.array([True, True, False, True, True, False])
    assert best_threshold(scores, same) == pytest.approx((0.58 + 0.2) / 2, abs=1e-12)


def tar_at_far_oracle(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """The best share of same pairs accepted by any threshold that accepts at most ``far`` of the others."""
    return max(float(np.mean(scores[same] >= t)) for t in np.r_[scores, np.inf] if np.mean(scores[~same] >= t) <= far)


@pytest.mark.parametrize("far, want", [(0.0, 0.80), (0.01, 0.82), (0.05, 0.91), (0.1, 1.0)])
def test_tar_at_far(far, want):
    """100 same pairs spread over 0.5..1.0, 100 others over -0.5..0.6: at FAR 0 only same pairs
    above 0.6 (80 of them) are accepted; at FAR 0.1 the threshold reaches 0.5 and all are."""
    scores = np.r_[np.linspace(0.5, 1.0, 100), np.linspace(-0.5, 0.6, 100)]
    same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert tar_at_far(scores, same, far) == pytest.approx(want, abs=1e-12)


def test_tar_at_far_against_the_oracle():
    rng = np.random.default_rng(0)
    same = rng.random(300) < 0.5
    scores = np.round(np.where(same, rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.15, 300)), 2)  # with ties
    for far in (0.0, 0.001, 0.01, 0.05, 0.2, 1.0):
        assert tar_at_far(scores, same, far) == pytest.approx(tar_at_far_oracle(scores, same, far), abs=1e-12), far


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
    from faceid.eval.verification import evaluate_lfw

    report = evaluate_lfw(data / "lfw", real_pipeline, folds=[0], plots=tmp_path)
    assert report.pairs == 600 and report.images == 807 and report.unreadable == 0
    assert report.accuracy >= 0.98  # measured 0.9933 on this fold
    assert report.auc >= 0.995
    assert (tmp_path / "roc.png").stat().st_size > 1000 and (tmp_path / "similarities.png").is_file()


@pytest.mark.model
@pytest.mark.shared
def test_lfw_openset_large_gallery_holds_its_fpir(data, real_pipeline):
    """The larger-gallery end of the default threshold, reduced for CI: 150 people, 300 strangers
    (the full 1,680-person run is in docs/accuracy.md)."""
    from faceid.eval.openset import evaluate_openset

    report = evaluate_openset(data / "lfw", real_pipeline, max_people=150, max_strangers=300, seed=1)
    assert report.people == 150 and report.unknown_probes == 300
    assert report.rank1 >= 0.95
    assert report.at_default["fpir"] <= 0.025  # 1% expected; at most 7 of 300 strangers named
    assert report.at_default["dir"] >= 0.80


# -- `faceid eval lfw` on a small LFW-shaped folder ---------------------------------------------------


def lfw_folder(root: Path, people: dict[str, list[np.ndarray]], same: list, different: list) -> Path:
    """``root/lfw-deepfunneled/NAME/NAME_000k.jpg`` and ``root/protocol/pairs.txt`` with one fold."""
    for name, images in people.items():
        for k, pixels in enumerate(images, 1):
            save_png(root / "lfw-deepfunneled" / name / f"{name}_{k:04d}.jpg", pixels)  # PNG bytes: lossless
    lines = [f"1 {len(same)}"] + [f"{n} {a} {b}" for n, a, b in same] + [f"{n} {a} {m} {b}" for n, a, m, b in different]
    assert len(same) == len(different)
    (root / "protocol").mkdir(parents=True)
    (root / "protocol" / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200), "grey": (120, 120, 120)}
BLACK = (0, 0, 0)  # the fake detector finds no face in black: the fallback box is embedded


def test_eval_lfw_cli_on_a_small_fixture(tmp_path):
    """Ann, Bob and Cy have two photos of one colour each (the same fake face); Dee's second photo
    is black (no face found, the central box is embedded, so the model gets that pair wrong)."""
    photos = {
        "Ann": [COLOURS["red"]] * 2,
        "Bob": [COLOURS["green"]] * 2,
        "Cy": [COLOURS["blue"]] * 2,
        "Dee": [COLOURS["grey"], BLACK],
    }
    same = [("Ann", 1, 2), ("Bob", 1, 2), ("Cy", 1, 2), ("Dee", 1, 2)]
    different = [("Ann", 1, "Bob", 1), ("Bob", 2, "Cy", 1), ("Cy", 2, "Dee", 1), ("Ann", 2, "Dee", 2)]
    root = lfw_folder(tmp_path / "lfw", {n: [tile_image([c]) for c in cs] for n, cs in photos.items()}, same, different)

    # the oracle: the fake embedding of each colour, the pairs' cosines, the best single threshold
    colour_of = {(n, k): c for n, cs in photos.items() for k, c in enumerate(cs, 1)}
    embedder = FakeEmbedder()

    def vector(colour):
        return embedder.embed(np.full((1, 160, 160, 3), colour, np.uint8))[0]

    scores = np.array(
        [vector(colour_of[n, a]) @ vector(colour_of[n, b]) for n, a, b in same]
        + [vector(colour_of[n, a]) @ vector(colour_of[m, b]) for n, a, m, b in different]
    )
    truth = np.array([True] * 4 + [False] * 4)
    accuracy = max(np.mean((scores >= t) == truth) for t in np.r_[scores, np.inf])
    auc = np.mean([(s > d) + 0.5 * (s == d) for s in scores[truth] for d in scores[~truth]])
    assert accuracy == 7 / 8 and auc == 15 / 16  # Dee's pair scores below one of the four different pairs

    result = fake_cli("eval", "lfw", "--data", root, "--no-cache", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 8 and report["folds"] == 1 and report["images"] == 8
    assert report["no_face"] == 1 and report["unreadable"] == 0
    assert report["accuracy"] == pytest.approx(accuracy, abs=1e-9) and report["fold_accuracies"] == [0.875]
    assert report["auc"] == pytest.approx(auc, abs=1e-9)
    assert report["tar_at_far"] == {"1e-2": 0.75, "1e-3": 0.75}  # the three one-colour pairs, not Dee's
    top_other = float(np.max(scores[~truth]))
    assert report["best_threshold"] == pytest.approx((1.0 + top_other) / 2, abs=1e-5)

    cache = ["--cache", tmp_path / "cache.db"]
    first = fake_cli("eval", "lfw", "--data", root, "--quiet", *cache)
    again = fake_cli("eval", "lfw", "--data", root, "--quiet", *cache)  # read back from the cache
    assert json.loads(first.stdout) == json.loads(again.stdout) == report


def test_eval_lfw_cli_on_a_folder_that_is_not_lfw(tmp_path):
    result = fake_cli("eval", "lfw", "--data", tmp_path, "--no-cache")
    assert result.exit_code == 1 and str(tmp_path) in result.stderr and "not an LFW folder" in result.stderr


@pytest.mark.model
def test_eval_lfw_cli_on_the_sample_photos(tmp_path, real_pipeline):
    """The three sample people, each photo and its mirror image as a same pair: the real models
    must separate all three same pairs from the three different ones."""
    from PIL import Image

    from faceid.images import load_image

    people = {"Obama": "barack_obama/obama.jpg", "Biden": "joe_biden/biden.jpg", "Hopper": "grace_hopper/hopper.jpg"}
    photos = {}
    for name, path in people.items():
        pixels = load_image(SAMPLES / "people" / path)
        photos[name] = [pixels, np.ascontiguousarray(pixels[:, ::-1])]
    same = [(n, 1, 2) for n in people]
    different = [("Obama", 1, "Biden", 2), ("Biden", 1, "Hopper", 2), ("Hopper", 1, "Obama", 2)]
    root = lfw_folder(tmp_path / "lfw", photos, same, different)
    for name, images in photos.items():  # JPEG like LFW's own files
        for k, pixels in enumerate(images, 1):
            Image.fromarray(pixels).save(root / "lfw-deepfunneled" / name / f"{name}_{k:04d}.jpg", quality=95)

    def embedding(name, k):
        (face,) = real_pipeline.faces(load_image(root / "lfw-deepfunneled" / name / f"{name}_{k:04d}.jpg"))
        return face.embedding

    same_scores = [embedding(n, a) @ embedding(n, b) for n, a, b in same]
    other_scores = [embedding(n, a) @ embedding(m, b) for n, a, m, b in different]
    assert min(same_scores) > max(other_scores)
    result = cli("eval", "lfw", "--data", root, "--no-cache", "--quiet", models=lambda key: real_pipeline)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 6 and report["images"] == 6 and report["no_face"] == 0 and report["unreadable"] == 0
    assert report["accuracy"] == 1.0 and report["auc"] == 1.0 and report["tar_at_far"] == {"1e-2": 1.0, "1e-3": 1.0}
    assert report["best_threshold"] == pytest.approx((min(same_scores) + max(other_scores)) / 2, abs=1e-4)


def test_threshold_by_size_on_a_small_fixture(tmp_path):
    """Four people with two photos of one colour each (the probe is the enrolled face, similarity 1)
    and ten strangers of other colours: every probe is named at every size, and with the whole
    gallery (one draw) the threshold is the one that names one stranger in ten, from an oracle
    that scores each stranger against the four people itself."""
    from faceid.eval.sizes import threshold_by_size
    from faceid.identify import Candidate, naming_thresholds
    from faceid.thresholds import BETA, DECISION_MARGIN, DecisionParams

    rng = np.random.default_rng(3)
    people = {f"P{i}": [tuple(int(c) for c in rng.integers(40, 250, 3))] * 2 for i in range(4)}
    strangers = {f"S{i:02d}": [tuple(int(c) for c in rng.integers(40, 250, 3))] for i in range(10)}
    for name, colours in {**people, **strangers}.items():
        for k, colour in enumerate(colours, 1):
            save_png(tmp_path / "lfw" / "lfw-deepfunneled" / name / f"{name}_{k:04d}.jpg", tile_image([colour]))

    rows = threshold_by_size(tmp_path / "lfw", make_fake_pipeline(), sizes=(1, 2, 4), draws=3, fpir=0.1)
    assert [(r["people"], r["draws"], r["dir"]) for r in rows] == [(1, 3, 1.0), (2, 3, 1.0), (4, 1, 1.0)]

    embedder = FakeEmbedder()
    gallery = {n: embedder.embed(np.full((1, 160, 160, 3), c[0], np.uint8))[0] for n, c in people.items()}
    params = DecisionParams(threshold=np.inf, margin=DECISION_MARGIN, beta=BETA, source="test")
    levels = []
    for (colour,) in strangers.values():
        v = embedder.embed(np.full((1, 160, 160, 3), colour, np.uint8))[0]
        best = sorted(((float(v @ g), n) for n, g in gallery.items()), reverse=True)[:2]
        (naming,) = naming_thresholds([[Candidate(n, s) for s, n in best]], params)
        levels.append(naming.threshold)
    want = threshold_at_fpir(np.array(levels), 0.1)
    assert np.mean(np.array(levels) >= want) <= 0.1
    assert rows[2]["threshold"] == pytest.approx(want, abs=5e-5) and rows[2]["spread"] == 0.0


def test_openset_with_a_migrated_gallery_gives_the_target_models_figures(tmp_path):
    """Enrolled with one (fake) model, moved to another from the chips alone: the same figures as
    enrolling with the other model, and every migrated embedding the one made from the photo."""
    from test_migrate import maker

    rng = np.random.default_rng(5)
    for i in range(6):  # six people with two photos each, eight strangers
        colour = tuple(int(c) for c in rng.integers(40, 250, 3))
        for k in (1, 2):
            save_png(tmp_path / "lfw" / "lfw-deepfunneled" / f"P{i}" / f"P{i}_{k:04d}.jpg", tile_image([colour]))
    for i in range(8):
        colour = tuple(int(c) for c in rng.integers(40, 250, 3))
        save_png(tmp_path / "lfw" / "lfw-deepfunneled" / f"S{i}" / f"S{i}_0001.jpg", tile_image([colour]))
    args = ("eval", "lfw-openset", "--data", tmp_path / "lfw", "--cache", tmp_path / "c.db", "--quiet")
    direct = cli(*args, "--model", "sface", models=maker)
    migrated = cli(*args, "--model", "sface", "--migrate-from", "facenet-20170512-110547", models=maker)
    assert direct.exit_code == 0 and migrated.exit_code == 0, migrated.output
    a, b = json.loads(direct.stdout), json.loads(migrated.stdout)
    assert b.pop("migration") == {
        "from": EmbeddingKey.for_model("facenet-20170512-110547").describe(),
        "to": EmbeddingKey.for_model("sface").describe(),
        "faces": 6,
        "from_chips": 6,
        "from_photos": 0,
        "unmigrated": 0,
        "cosine_to_photo_embedding": {"min": pytest.approx(1.0, abs=1e-5), "mean": pytest.approx(1.0, abs=1e-5)},
    }
    assert a.pop("migration") is None and a == b
