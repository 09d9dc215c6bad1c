"""YuNet beside MTCNN: the detector, its registry entry, the detector in the embedding key, and no
TensorFlow on YuNet's path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, ROOT, SAMPLES, FakeDetector, FakeEmbedder, unit_vectors

from faceid.detectors import DETECTORS, detector_name, make_detector
from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    EmbeddingKeyError,
    ModelIntegrityError,
    ModelMismatchError,
    ModelNotFoundError,
    OptionError,
)

YUNET_KEY = EmbeddingKey.for_model(detector="yunet")


def _yunet_installed() -> bool:
    from faceid.models import locate

    try:
        locate("yunet")
    except ModelNotFoundError:
        return False
    return True


needs_yunet = pytest.mark.skipif(
    not _yunet_installed(), reason="YuNet is not installed: run `faceid models pull yunet`"
)


def load(path: Path) -> np.ndarray:
    from faceid.images import load_image

    return load_image(path)


# -- options and names, no model --------------------------------------------------------------------


def test_detector_names_make_their_detectors():
    from faceid.detect import Detector
    from faceid.detect_yunet import YuNetDetector

    assert isinstance(make_detector("yunet"), YuNetDetector)
    assert isinstance(make_detector("mtcnn"), Detector)
    assert isinstance(make_detector(), Detector)  # MTCNN stays the default
    assert [detector_name(make_detector(n)) for n in DETECTORS] == list(DETECTORS)
    assert detector_name(FakeDetector()) == "mtcnn"


@pytest.mark.parametrize("name", ["YuNet", "retinaface", "", 3])
def test_unknown_detector_is_refused_naming_the_known_ones(name):
    with pytest.raises(OptionError, match="mtcnn, yunet"):
        make_detector(name)


@pytest.mark.parametrize(
    "options",
    [{"min_face_size": 2}, {"min_confidence": 1.5}, {"max_side": 8}, {"nms_threshold": -0.1}, {"top_k": 0}],
)
def test_yunet_options_are_checked_when_made(options):
    from faceid.detect_yunet import YuNetDetector

    with pytest.raises(OptionError, match="YuNetDetector"):
        YuNetDetector(**options)


def test_missing_yunet_file_names_the_command_that_gets_it(tmp_path, monkeypatch):
    from faceid.detect_yunet import YuNetDetector

    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="faceid models pull yunet"):
        YuNetDetector().detect(np.zeros((64, 64, 3), dtype=np.uint8))


def test_a_yunet_file_with_the_wrong_hash_is_not_loaded(tmp_path, monkeypatch):
    from faceid.detect_yunet import YuNetDetector

    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    (tmp_path / "yunet-2023mar-float32.onnx").write_bytes(b"not a network")
    with pytest.raises(ModelIntegrityError, match="SHA-256 mismatch"):
        YuNetDetector().detect(np.zeros((64, 64, 3), dtype=np.uint8))


# -- the detector in the embedding key ------------------------------------------------------------


def test_an_mtcnn_key_writes_what_it_wrote_before_keys_named_a_detector():
    assert "detector" not in KEY.to_json()
    assert KEY.detector == "mtcnn"
    assert EmbeddingKey.from_json(KEY.dumps()) == KEY


def test_a_yunet_key_round_trips_and_differs_only_in_its_detector():
    assert YUNET_KEY.to_json()["detector"] == "yunet"
    assert EmbeddingKey.from_json(YUNET_KEY.dumps()) == YUNET_KEY
    assert YUNET_KEY != KEY
    assert KEY.differences(YUNET_KEY) == ["detector"]
    assert "YuNet" in YUNET_KEY.describe()


def test_key_refuses_an_unknown_detector_and_a_detector_as_model():
    with pytest.raises(EmbeddingKeyError, match="unknown detector"):
        EmbeddingKey.from_json({**KEY.to_json(), "detector": "haar"})
    with pytest.raises(EmbeddingKeyError, match="not an embedding model"):
        EmbeddingKey.for_model("yunet")


def test_pipeline_follows_the_keys_detector_and_refuses_a_contradicting_one():
    from faceid.detect_yunet import YuNetDetector
    from faceid.pipeline import Pipeline

    pipeline = Pipeline.from_key(YUNET_KEY, embedder=FakeEmbedder())
    assert isinstance(pipeline.detector, YuNetDetector) and pipeline.key == YUNET_KEY
    assert Pipeline("sface", detector="yunet", embedder=FakeEmbedder()).key == YUNET_KEY
    with pytest.raises(OptionError, match="contradicts"):
        Pipeline.from_key(YUNET_KEY, detector="mtcnn", embedder=FakeEmbedder())
    # a test's fake stands in for the key's detector
    assert Pipeline.from_key(YUNET_KEY, detector=FakeDetector(), embedder=FakeEmbedder()).key == YUNET_KEY


def test_a_gallery_refuses_a_contradicting_detector_in_one_line(gallery):
    from faceid.enroll import enrolment_key
    from faceid.gallery import NewFace

    assert enrolment_key(gallery, detector="yunet") == YUNET_KEY  # a new gallery takes it
    gallery.add_faces("ada", [NewFace(unit_vectors(0, 1)[0], "0" * 64, (0, 0, 9, 9), 0.99)], embedding_key=YUNET_KEY)
    assert enrolment_key(gallery) == YUNET_KEY  # then follows it
    assert enrolment_key(gallery, detector="yunet") == YUNET_KEY
    with pytest.raises(ModelMismatchError, match="differs in detector") as caught:
        enrolment_key(gallery, detector="mtcnn")
    assert "\n" not in str(caught.value)


def test_a_gallery_made_before_keys_named_a_detector_means_mtcnn(gallery):
    from faceid.enroll import enrolment_key
    from faceid.gallery import NewFace

    gallery.add_faces("ada", [NewFace(unit_vectors(0, 1)[0], "0" * 64, (0, 0, 9, 9), 0.99)], embedding_key=KEY)
    stored = json.loads(gallery.embedding_key.dumps())
    assert "detector" not in stored and gallery.embedding_key.detector == "mtcnn"
    with pytest.raises(ModelMismatchError, match="differs in detector"):
        enrolment_key(gallery, detector="yunet")


# -- the real YuNet ----------------------------------------------------------------------------------


@pytest.mark.model
@needs_yunet
def test_yunet_finds_the_sample_faces_with_mtcnns_landmark_order():
    from faceid.detect_yunet import YuNetDetector

    detector = YuNetDetector()
    pair = detector.detect(load(SAMPLES / "photos" / "obama_and_biden.jpg"))
    astronaut = detector.detect(load(SAMPLES / "photos" / "astronaut.jpg"))
    assert len(pair) == 2 and len(astronaut) == 1
    for face in pair + astronaut:
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
        assert lx < nx < rx and mlx < mrx  # left and right as seen in the image, as MTCNN's
        assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
        x, y, w, h = face.box
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
        assert 0.8 <= face.confidence <= 1.0
    assert [d.confidence for d in pair] == sorted((d.confidence for d in pair), reverse=True)


@pytest.mark.model
@needs_yunet
def test_yunet_maps_a_downscaled_photo_back_to_its_pixels():
    from faceid.detect_yunet import YuNetDetector

    image = load(SAMPLES / "photos" / "obama_and_biden.jpg")
    full = YuNetDetector().detect(image)
    small = YuNetDetector(max_side=max(image.shape[:2]) // 2).detect(image)
    assert len(small) == len(full) == 2
    for a, b in zip(sorted(full, key=lambda d: d.box), sorted(small, key=lambda d: d.box)):
        eyes = abs(a.landmarks[1][0] - a.landmarks[0][0])
        assert np.abs(a.landmark_array() - b.landmark_array()).max() < 0.15 * eyes


@pytest.mark.model
@needs_yunet
def test_yunet_finds_nothing_in_blank_or_tiny_images():
    from faceid.detect_yunet import YuNetDetector

    detector = YuNetDetector()
    assert detector.detect_many([np.zeros((480, 640, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)]) == [[], []]


@pytest.mark.model
@needs_yunet
def test_yunet_threads_each_have_a_detector_and_agree():
    from faceid.detect_yunet import YuNetDetector

    detector = YuNetDetector()
    image = load(SAMPLES / "photos" / "obama_and_biden.jpg")
    expected = detector.detect(image)
    results: list = [None] * 4
    errors: list = []

    def work(i):
        try:
            results[i] = [detector.detect(image) for _ in range(3)]
        except Exception as exc:  # collected and asserted below, where pytest sees it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(run == expected for runs in results for run in runs)


@pytest.mark.model
@needs_yunet
def test_yunet_with_sface_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from faceid.images import load_image\n"
        "from faceid.pipeline import Pipeline\n"
        "p = Pipeline('sface', detector='yunet')\n"
        f"faces = p.faces(load_image({str(SAMPLES / 'photos' / 'obama_and_biden.jpg')!r}))\n"
        "print(len(faces), sorted(m for m in ('tensorflow', 'keras', 'mtcnn') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "2 []"


@pytest.mark.model
@pytest.mark.shared
@needs_yunet
def test_yunet_finds_every_bigbang_face(data):
    from faceid.detect_yunet import YuNetDetector

    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    detector = YuNetDetector()
    assert len(detector.detect(load(data / "bigbang" / "group" / "cast.jpg"))) == 7
    for name, photo in truth["gallery"].items():
        assert len(detector.detect(load(data / "bigbang" / photo))) == 1, name


@pytest.mark.model
@pytest.mark.shared
@needs_yunet
def test_yunet_finds_no_face_in_the_awkward_photos_without_one(data):
    from faceid.bench.detectors import AWKWARD_FACELESS
    from faceid.detect_yunet import YuNetDetector
    from faceid.pipeline import Pipeline

    detector, pipeline = YuNetDetector(), Pipeline("sface", detector="yunet")
    false = [name for name in AWKWARD_FACELESS if detector.detect(load(data / "awkward" / name))]
    assert false == []
    # nor as a pipeline finds faces, where a photo without one is tried again padded (faceid.tight)
    images = [load(data / "awkward" / name) for name in AWKWARD_FACELESS]
    assert [found for found in pipeline.detect_many(images) if found] == []


@pytest.mark.model
@needs_yunet
def test_migrating_a_gallery_to_yunet_finds_each_face_again_in_its_chip(tmp_path):
    from faceid.enroll import enroll_folders
    from faceid.gallery import Gallery
    from faceid.identify import identify
    from faceid.migrate import migrate_gallery
    from faceid.pipeline import Pipeline

    folder = tmp_path / "gallery"
    with Gallery(folder) as g:
        assert all(r.ok for r in enroll_folders(g, SAMPLES / "people", Pipeline("sface", detector="mtcnn")))
        before = {f.id: g.face_chip(f.id) for f in g.faces()}
    yunet = Pipeline("sface", detector="yunet")
    report = migrate_gallery(folder, yunet)
    assert report.to_json()["faces"] == len(before)
    with Gallery(folder, create=False) as g:
        assert g.embedding_key == YUNET_KEY
        for face_id, old in before.items():
            new = g.face_chip(face_id)
            assert new.png == old.png and new.landmarks != old.landmarks  # the same pixels, YuNet's landmarks
        (result,) = identify([SAMPLES / "photos" / "obama_and_biden.jpg"], g, yunet)
        assert sorted(face.name for face in result.faces) == ["barack_obama", "joe_biden"]


@pytest.mark.model
@needs_yunet
def test_faceid_identify_on_a_yunet_sface_gallery_never_imports_tensorflow(tmp_path):
    from faceid.enroll import enroll_folders
    from faceid.gallery import Gallery
    from faceid.pipeline import Pipeline

    with Gallery(tmp_path / "g") as g:
        assert all(r.ok for r in enroll_folders(g, SAMPLES / "people", Pipeline("sface", detector="yunet")))
    photo = SAMPLES / "photos" / "obama_and_biden.jpg"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outputs = {}
    obama, biden = SAMPLES / "people" / "barack_obama" / "obama.jpg", SAMPLES / "people" / "joe_biden" / "biden.jpg"
    for command in (
        ["identify", str(photo), "-g", str(tmp_path / "g"), "--json"],
        ["verify", str(obama), str(biden), "--detector", "yunet", "--json"],
        ["people", "-g", str(tmp_path / "g")],
        ["--help"],
    ):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "faceid", *command], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
        assert "faceid" in imported and not {"tensorflow", "keras", "mtcnn"} & imported, command
        outputs[command[0]] = done.stdout
    (line,) = [x for x in outputs["identify"].splitlines() if x.startswith("{")]
    assert sorted(face["name"] for face in json.loads(line)["faces"]) == ["barack_obama", "joe_biden"]
    verdict = json.loads(outputs["verify"].strip().splitlines()[-1])  # at YuNet + SFace's own 1:1 threshold
    assert verdict["same"] is False and verdict["threshold"] == pytest.approx(0.3636, abs=1e-4)


def test_thresholds_are_keyed_per_detector():
    from faceid.errors import UncalibratedError
    from faceid.thresholds import threshold_for

    assert threshold_for(YUNET_KEY, 1680) == 0.2492 and threshold_for(KEY, 1680) == 0.2538
    with pytest.raises(UncalibratedError, match="YuNet detector"):
        threshold_for(EmbeddingKey.for_model("facenet-20170512-110547", detector="yunet"), 10)


# -- the command line ----------------------------------------------------------------------------------


def test_cli_detector_is_taken_by_a_new_gallery_followed_after_and_a_contradiction_refused(tmp_path):
    from conftest import fake_cli, save_png, tile_image

    from faceid.gallery import Gallery

    photo = save_png(tmp_path / "ann.png", tile_image([(200, 30, 30)]))
    folder = tmp_path / "g"
    assert fake_cli("enroll", "ann", photo, "-g", folder, "--detector", "yunet").exit_code == 0
    with Gallery(folder, create=False) as g:
        assert g.embedding_key is not None and g.embedding_key.detector == "yunet"
    for follows in (["identify", photo, "-g", folder], ["identify", photo, "-g", folder, "--detector", "yunet"]):
        result = fake_cli(*follows)
        assert result.exit_code == 0 and "ann" in result.output, result.output
    for command in ("identify", "enroll ann"):
        refused = fake_cli(*command.split(), photo, "-g", folder, "--detector", "mtcnn")
        assert refused.exit_code == 1
        (line,) = refused.output.strip().splitlines()
        assert line.startswith("faceid: error:") and "differs in detector" in line
    unknown = fake_cli("identify", photo, "-g", folder, "--detector", "haar")
    assert unknown.exit_code != 0 and "choose one of mtcnn, yunet" in unknown.output


def test_cli_migrate_needs_something_to_move_to(tmp_path):
    from conftest import fake_cli

    result = fake_cli("gallery", "migrate", "-g", tmp_path / "none")
    assert result.exit_code == 2 and "--model, --detector or both" in result.output


def test_models_list_shows_yunet_as_a_detector():
    from conftest import cli

    result = cli("models", "list", "--json")
    (row,) = [json.loads(line) for line in result.output.splitlines() if '"yunet"' in line]
    assert row["kind"] == "detector" and row["runtime"] == "cv2.FaceDetectorYN"


@pytest.mark.model
@pytest.mark.shared
@needs_yunet
def test_bigbang_group_photo_is_named_7_of_7_after_enrolling_the_references_with_yunet(data, tmp_path):
    from faceid.enroll import enroll
    from faceid.gallery import Gallery
    from faceid.identify import identify
    from faceid.pipeline import Pipeline

    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    pipeline = Pipeline("sface", detector="yunet")
    with Gallery(tmp_path / "g") as g:
        for name, photo in truth["gallery"].items():
            assert all(r.ok for r in enroll(g, name, [data / "bigbang" / photo], pipeline))
        (result,) = identify([data / "bigbang" / "group" / "cast.jpg"], g)  # the gallery's detector: YuNet
    by_x = sorted(result.faces, key=lambda f: f.detection.box[0])
    assert [f.name for f in by_x] == truth["probes"]["group/cast.jpg"]
