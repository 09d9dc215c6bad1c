"""Failures are failures: a detector result that does not fit, an error inside MTCNN or a bad
option is an error with a message, never "no face"; a bug is not dressed up as a bad image; the
evaluation counts failed images apart from images without a face."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeDetector, FakeEmbedder, cli, fake_cli, save_png, tile_image

from faceid.batch import process
from faceid.detect import Detector
from faceid.errors import EmbeddingKeyError, FaceIDError, ModelError, OptionError, PipelineError
from faceid.pipeline import Pipeline

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
FACE = {
    "box": [10, 10, 30, 30],
    "confidence": 0.99,
    "keypoints": {k: [20, 20] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")},
}


class FakeMTCNN:
    """Stands in for mtcnn.MTCNN: returns ``result`` (or raises it) whatever the images."""

    def __init__(self, result):
        self.result = result

    def detect_faces(self, images, **kwargs):
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def detector_with(result) -> Detector:
    detector = Detector()
    detector._mtcnn = FakeMTCNN(result)
    return detector


def images(n: int) -> list[np.ndarray]:
    return [np.full((60, 60, 3), 100 + i, dtype=np.uint8) for i in range(n)]


# -- the detector -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        [[]],  # one list for a batch of two images: the case that used to become "no faces" for both
        [[], [], []],
        None,
        "faces",
        [[], {"box": [1, 2, 3, 4]}],
        [[{"box": [1, 2, 3, 4], "confidence": 0.9}], []],  # no keypoints
        [[{**FACE, "box": [1, 2]}], []],
    ],
)
def test_a_batch_result_that_does_not_fit_is_an_error_not_zero_faces(result, caplog):
    with caplog.at_level(logging.ERROR, logger="faceid.detect"), pytest.raises(PipelineError, match="does not fit"):
        detector_with(result).detect_many(images(2))
    assert any("does not fit" in r.getMessage() for r in caplog.records)


def test_a_single_image_result_that_does_not_fit_is_an_error():
    with pytest.raises(PipelineError, match="does not fit"):
        detector_with({"box": [1, 2, 3, 4]}).detect(images(1)[0])


def test_a_result_that_fits_is_converted():
    found = detector_with([[FACE], []]).detect_many(images(2))
    assert [len(f) for f in found] == [1, 0]
    assert found[0][0].box == (10, 10, 30, 30)
    assert detector_with([]).detect(images(1)[0]) == []  # mtcnn's "no face" for one image


def test_a_value_error_inside_mtcnn_is_reported_not_taken_for_no_face():
    with pytest.raises(PipelineError, match="MTCNN failed on a 60x60 image: cannot reshape"):
        detector_with(ValueError("cannot reshape array")).detect_many(images(3))


def test_an_image_too_small_for_mtcnn_is_not_run_and_has_no_face():
    detector = detector_with(AssertionError("mtcnn must not be called"))
    assert detector.detect_many([np.zeros((10, 300, 3), np.uint8)]) == [[]]


# -- the batch ------------------------------------------------------------------------------------------


class FailingDetector(FakeDetector):
    """The fake detector, failing with ``error`` on any image holding a red tile."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def detect(self, image):
        if (image.reshape(-1, 3) == RED).all(axis=1).any():
            raise self.error
        return super().detect(image)


def failing_models(key=None) -> Pipeline:
    """A pipeline maker for the CLI (``cli(..., models=failing_models)``): the fake embedder and a
    detector failing on red."""
    return Pipeline.from_key(key, detector=FailingDetector(PipelineError("odd")), embedder=FakeEmbedder())


def photos(folder: Path) -> list[str]:
    return [
        str(save_png(folder / "a.png", tile_image([GREEN]))),
        str(save_png(folder / "b.png", tile_image([RED]))),
        str(save_png(folder / "c.png", tile_image([BLUE, GREEN]))),
        str(save_png(folder / "d.png", tile_image([(0, 0, 0)]))),
    ]


def test_a_failed_image_gets_an_error_naming_it_and_the_run_goes_on(tmp_path, caplog):
    pipeline = Pipeline(
        detector=FailingDetector(PipelineError("MTCNN failed on a 40x40 image: odd")), embedder=FakeEmbedder()
    )
    names = photos(tmp_path) + [str(tmp_path / "missing.png")]
    with caplog.at_level(logging.ERROR, logger="faceid.batch"):
        out = list(process(names, pipeline))
    assert [len(o.faces) for o in out] == [1, 0, 2, 0, 0]
    assert [o.failed for o in out] == [False, True, False, False, False]
    assert out[1].error == f"{names[1]}: the face pipeline failed on it: MTCNN failed on a 40x40 image: odd"
    assert "\n" not in out[1].error
    assert out[3].error is None  # no face is not an error
    assert out[4].error is not None and out[4].image is None  # unreadable, not failed
    assert any(names[1] in r.getMessage() and r.exc_info for r in caplog.records)  # logged with its traceback


def test_a_library_error_on_one_image_is_reported_against_it(tmp_path):
    pipeline = Pipeline(detector=FailingDetector(MemoryError()), embedder=FakeEmbedder())
    out = list(process(photos(tmp_path), pipeline))
    assert out[1].error.endswith("the face pipeline failed on it: MemoryError")
    assert [o.failed for o in out] == [False, True, False, False]


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), AttributeError("no attribute 'box'"), KeyError("x")])
def test_a_bug_in_the_pipeline_is_not_dressed_up_as_a_bad_image(tmp_path, bug):
    pipeline = Pipeline(detector=FailingDetector(bug), embedder=FakeEmbedder())
    with pytest.raises(type(bug)):
        list(process(photos(tmp_path), pipeline))


def test_identify_reports_a_failed_image_and_exits_non_zero(tmp_path):
    gallery = tmp_path / "g"
    enrolled = cli("enroll", "green", photos(tmp_path / "p")[0], "--gallery", gallery, "--quiet", models=failing_models)
    assert enrolled.exit_code == 0
    result = cli("identify", tmp_path / "p", "--gallery", gallery, "--quiet", models=failing_models)
    assert result.exit_code == 1
    assert f"{tmp_path / 'p' / 'b.png'}: the face pipeline failed on it: odd" in result.stderr
    assert "1 of 4 inputs failed" in result.stderr
    assert "green" in result.stdout  # the others were identified


# -- options are checked when built ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"align": "typo"}, "unknown crop method 'typo'; choose one of margin, similarity, arcface-112"),
        ({"align": 3}, "unknown crop method 3"),  # None is the model's own crop
        ({"crop_margin": -0.1}, "crop margin must be between 0 and 1"),
        ({"crop_margin": float("nan")}, "crop margin must be between 0 and 1"),
        ({"crop_margin": "0.1"}, "crop margin must be between 0 and 1"),
        ({"crop_margin": 1.5}, "crop margin must be between 0 and 1"),
        ({"mirror": "no"}, "mirror must be True or False"),
        ({"frozen": 1}, "frozen must be True or False"),
        ({"min_face_size": 2}, "min_face_size must be at least 4"),
        ({"min_face_size": 20.5}, "min_face_size must be a whole number"),
    ],
)
def test_pipeline_options_are_checked_at_construction(options, message):
    # FaceNet named: the crop margin is an option of its margin crop (SFace's aligned crop has none)
    with pytest.raises((OptionError, EmbeddingKeyError), match=message) as caught:
        Pipeline("facenet-20170512-110547", **options, detector=FakeDetector(), embedder=FakeEmbedder())
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, FaceIDError)


def test_pipeline_refuses_an_unknown_model_and_a_mismatched_embedder():
    with pytest.raises(ModelError, match="unknown model 'facenet-nope'"):
        Pipeline("facenet-nope", detector=FakeDetector(), embedder=FakeEmbedder())
    with pytest.raises(OptionError, match="embedder's dimension is 8"):
        Pipeline(detector=FakeDetector(), embedder=FakeEmbedder(dimension=8))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_face_size": 3}, "min_face_size must be at least 4"),
        ({"min_confidence": 1.2}, "min_confidence must be between 0 and 1"),
        ({"max_side": 10}, "max_side must be at least 24"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"thresholds": (0.6, 0.7)}, "thresholds must be three numbers"),
        ({"thresholds": (0.6, 0.7, 8)}, "thresholds must be between 0 and 1"),
    ],
)
def test_detector_options_are_checked_at_construction(options, message):
    with pytest.raises(OptionError, match=message):
        Detector(**options)


def test_embedder_options_are_checked_at_construction():
    from faceid.embed import Embedder

    with pytest.raises(OptionError, match="batch_size must be at least 1"):
        Embedder(batch_size=0)
    with pytest.raises(OptionError, match="mirror must be True or False"):
        Embedder(mirror="yes")
    with pytest.raises(ModelError, match="unknown model"):
        Embedder("nope")


def test_the_cli_reports_a_bad_option_in_one_line(tmp_path):
    result = cli("eval", "lfw", "--data", tiny_lfw(tmp_path / "lfw"), "--align", "typo", "--no-cache")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "faceid: error: embedding key: unknown crop method 'typo'; choose one of margin, similarity, arcface-112"
    ]
    result = cli("eval", "lfw", "--data", tmp_path / "lfw", "--folds", "0")
    assert (result.exit_code, result.stderr.strip()) == (1, "faceid: error: --folds takes fold numbers 1-10, got '0'")


# -- evaluation ----------------------------------------------------------------------------------------


def tiny_lfw(root: Path) -> Path:
    """A 1-fold LFW with 2 same and 2 different pairs: ann (green), bob (blue, red: the detector
    fails on red), cat (black: no face)."""
    for name, number, colour in [
        ("ann", 1, GREEN),
        ("ann", 2, GREEN),
        ("bob", 1, BLUE),
        ("bob", 2, RED),
        ("cat", 1, (0, 0, 0)),
    ]:
        png = save_png(root / "lfw-deepfunneled" / name / f"{name}_{number:04d}.png", tile_image([colour]))
        png.rename(png.with_suffix(".jpg"))  # PNG bytes under LFW's name: exact colours for the fakes
    (root / "protocol").mkdir()
    (root / "protocol" / "pairs.txt").write_text("1\t2\nann\t1\t2\nbob\t1\t2\nann\t1\tbob\t2\nann\t2\tcat\t1\n")
    return root


def test_evaluation_counts_a_failed_image_apart_from_no_face(tmp_path):
    from faceid.eval.lfw import embed_lfw_images
    from faceid.eval.verification import evaluate_lfw

    root = tiny_lfw(tmp_path / "lfw")
    pipeline = Pipeline(detector=FailingDetector(PipelineError("odd")), embedder=FakeEmbedder())
    paths = sorted(str(p) for p in (root / "lfw-deepfunneled").rglob("*.jpg"))
    embedded = embed_lfw_images(paths + [str(tmp_path / "gone.jpg")], pipeline)
    red = str(root / "lfw-deepfunneled" / "bob" / "bob_0002.jpg")
    assert embedded.failed == [red]
    assert embedded.no_face == [str(root / "lfw-deepfunneled" / "cat" / "cat_0001.jpg")]
    assert embedded.unreadable == [str(tmp_path / "gone.jpg")]
    assert np.isnan(embedded.embeddings[paths.index(red)]).all()  # not embedded with the fallback box
    assert embedded.errors[red] == f"{red}: the face pipeline failed on it: odd"

    report = evaluate_lfw(root, pipeline)
    assert (report.images, report.failed, report.no_face, report.unreadable) == (5, 1, 1, 0)
    assert report.failed_pairs == 2  # bob 1-2 (same) and ann 2-bob 2 (different)
    # Both pairs with the failed image count as wrong, whichever their truth; the other two are right.
    assert report.accuracy == 0.5
    assert report.errors == [f"{red}: the face pipeline failed on it: odd"]


def test_pair_scores_count_a_pair_without_embedding_as_wrong():
    from faceid.eval.lfw import EmbeddedSet
    from faceid.eval.verification import pair_scores

    rows = np.array([[1, 0], [1, 0], [np.nan, np.nan]], dtype=np.float32)
    embedded = EmbeddedSet(["a", "b", "x"], rows, failed=["x"])
    pairs = [(Path("a"), Path("b")), (Path("a"), Path("x")), (Path("x"), Path("b"))]
    scores = pair_scores(pairs, embedded, np.array([True, True, False]))
    assert scores.tolist() == [1.0, -2.0, 2.0]


def test_faceid_eval_shows_the_counts_and_exits_non_zero_on_a_failure(tmp_path):
    root = tiny_lfw(tmp_path / "lfw")
    result = cli("eval", "lfw", "--data", root, "--no-cache", "--quiet", models=failing_models)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["failed"], report["failed_pairs"], report["no_face"], report["unreadable"]) == (1, 2, 1, 0)
    red = root / "lfw-deepfunneled" / "bob" / "bob_0002.jpg"
    assert f"faceid: error: {red}: the face pipeline failed on it: odd" in result.stderr
    assert "0 images unreadable and 1 failed" in result.stderr


def test_faceid_eval_exits_zero_without_failures(tmp_path):
    root = tiny_lfw(tmp_path / "lfw")
    result = fake_cli("eval", "lfw", "--data", root, "--no-cache", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["failed"], report["failed_pairs"], report["no_face"], report["errors"]) == (0, 0, 1, [])


def test_openset_leaves_failed_images_out_and_counts_them(tmp_path):
    from faceid.eval.lfw import EmbeddedSet
    from faceid.eval.openset import OpenSetProtocol
    from faceid.eval.openset import without_missing as _without_missing

    protocol = OpenSetProtocol([("a", "a1"), ("b", "b1")], [("a", "a2"), ("b", "b2")], ["c1", "d1"])
    embedded = EmbeddedSet(["a1", "a2", "b1", "b2", "c1", "d1"], np.zeros((6, 2)), failed=["b1", "d1"])
    kept, removed = _without_missing(protocol, embedded)
    assert kept == OpenSetProtocol([("a", "a1")], [("a", "a2"), ("b", "b2")], ["c1"])  # b's probe stays: a miss
    assert removed == 2


def test_calibrate_says_which_photos_failed(tmp_path, gallery):
    from faceid.calibrate import calibrate

    for name, colour in (("green", GREEN), ("blue", BLUE)):
        save_png(tmp_path / "enrolled" / name / "a.png", tile_image([colour]))
        save_png(tmp_path / "probes" / name / "b.png", tile_image([colour]))
    save_png(tmp_path / "probes" / "blue" / "c.png", tile_image([RED]))
    save_png(tmp_path / "strangers" / "s.png", tile_image([(90, 90, 90)]))
    save_png(tmp_path / "strangers" / "t.png", tile_image([RED, (90, 90, 90)]))
    pipeline = Pipeline(detector=FailingDetector(PipelineError("odd")), embedder=FakeEmbedder())
    report = calibrate(gallery, tmp_path / "enrolled", tmp_path / "probes", tmp_path / "strangers", pipeline)
    assert report.missed_probes == 1 and report.probes == 2 and report.strangers == 1
    failed = [w for w in report.warnings if "the face pipeline failed on it" in w]
    assert failed == [
        f"{tmp_path / 'probes' / 'blue' / 'c.png'}: the face pipeline failed on it: odd",
        f"{tmp_path / 'strangers' / 't.png'}: the face pipeline failed on it: odd",
    ]
