"""The real models on real photos: the origin scenario and the acceptance checks of the core issue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceid.enroll import enroll, enroll_folders
from faceid.identify import KNOWN, UNKNOWN, identify
from faceid.images import load_image

pytestmark = pytest.mark.model

SAMPLES = Path(__file__).resolve().parent.parent / "faceid" / "samples"


def test_demo_names_the_samples_and_calls_the_stranger_unknown(tmp_path, real_pipeline):
    from faceid.demo import run_demo

    results = {Path(r.image).name: r for r in run_demo(tmp_path / "out", pipeline=real_pipeline)}
    pair = results["obama_and_biden.jpg"]
    assert [(f.name, f.status) for f in pair.faces] == [("barack_obama", KNOWN), ("joe_biden", KNOWN)]
    stranger = results["astronaut.jpg"]
    assert [f.status for f in stranger.faces] == [UNKNOWN]
    assert Path(pair.annotated).is_file() and Path(stranger.annotated).is_file()


@pytest.mark.shared
def test_big_bang_one_photo_each_names_all_seven(data, any_gallery, real_pipeline):
    """On each backend: a local gallery and milvus-lite."""
    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    for name, photo in truth["gallery"].items():
        (result,) = enroll(any_gallery, name, [data / "bigbang" / photo], real_pipeline)
        assert result.ok, result.message
    (found,) = identify([data / "bigbang" / "group" / "cast.jpg"], any_gallery, real_pipeline)
    assert len(found.faces) == 7
    left_to_right = [f.name for f in sorted(found.faces, key=lambda f: f.detection.box[0])]
    assert left_to_right == truth["probes"]["group/cast.jpg"]
    assert all(f.status == KNOWN for f in found.faces)


@pytest.mark.shared
def test_face_recognition_examples_known_and_unknown(data, gallery, real_pipeline):
    root = data / "face_recognition_examples" / "examples" / "knn_examples"
    results = enroll_folders(gallery, root / "train", real_pipeline)
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    found = {Path(r.image).name: r for r in identify(sorted((root / "test").iterdir()), gallery, real_pipeline)}

    def names(image):
        return [f.name for f in found[image].faces]  # left to right

    assert names("alex_lacamoire1.jpg") == ["alex_lacamoire"]
    assert names("johnsnow_test1.jpg") == ["kit_harington"]
    assert names("obama1.jpg") == ["obama"]
    assert names("kit_with_rose.jpg") == ["rose_leslie", "kit_harington"]
    pair = found["obama_and_biden.jpg"].faces
    assert [f.name for f in pair[:2]] == ["biden", "obama"]
    child = [f for f in pair[2:]]
    assert child and all(f.status == UNKNOWN for f in child), [(f.name, f.similarity) for f in pair]


NON_FACES = [
    "skimage_data/coffee.png",
    "skimage_data/rocket.jpg",
    "skimage_data/hubble_deep_field.jpg",
    "skimage_data/brick.png",
    "skimage_data/grass.png",
    "skimage_data/gravel.png",
    "skimage_data/moon.png",
    "skimage_data/color.png",
    "skimage_data/logo.png",
    "skimage_data/page.png",
    "skimage_data/text.png",
    "skimage_data/retina.jpg",
    "skimage_data/horse.png",
    "skimage_data/motorcycle_left.png",
]


@pytest.mark.shared
def test_no_face_on_non_face_images(data, real_pipeline):
    images = [load_image(data / "awkward" / name) for name in NON_FACES]
    found = real_pipeline.detect_many(images)
    assert {n: len(f) for n, f in zip(NON_FACES, found) if f} == {}


@pytest.mark.shared
def test_every_awkward_file_works_or_fails_with_one_line(data, tmp_path, real_pipeline):
    from faceid.batch import iter_image_files, process

    sources = list(iter_image_files([data / "awkward"]))
    outcomes = list(process(sources, real_pipeline))
    assert len(outcomes) == len(sources)
    failed = {Path(o.source).name: o.error for o in outcomes if o.error}
    assert set(failed) == {"truncated_jpeg.jpg"}
    assert all(
        "\n" not in e and Path(o).name in e
        for o, e in [(s, failed[Path(s).name]) for s in sources if Path(s).name in failed]
    )
    faces = {Path(o.source).name: len(o.faces) for o in outcomes if not o.error}
    for name in ("hopper.jpg", "hopper_gray.jpg", "hopper_16bit.pgm", "hopper_orientation_6.jpg", "astronaut.png"):
        assert faces[name] == 1, name


def test_mtcnn_pyramid_trap_is_not_a_crash(real_pipeline):
    """mtcnn raises ValueError for min_face_size=40 on small photos and for tiny images: faceid
    answers "no face" where no face of that size fits, and runs the photo that is big enough."""
    import numpy as np

    from faceid.detect import Detection, Detector

    rng = np.random.default_rng(0)
    detector = Detector(min_face_size=40)
    for shape in [(30, 30, 3), (1, 1, 3), (4, 4, 3), (12, 500, 3), (500, 13, 3), (39, 39, 3)]:
        assert detector.detect(rng.integers(0, 255, shape, dtype=np.uint8)) == [], shape
    found = detector.detect(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8))
    assert isinstance(found, list) and all(isinstance(d, Detection) for d in found)
    (face,) = detector.detect(load_image(SAMPLES / "people" / "grace_hopper" / "hopper.jpg"))
    assert face.box[2] >= 40  # the same detector does find a face where there is one


def test_large_photo_is_detected_downscaled_and_boxes_map_back(real_pipeline):
    import numpy as np
    from PIL import Image

    small = load_image(SAMPLES / "photos" / "obama_and_biden.jpg")
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 4, small.shape[0] * 4)))
    (a,), (b,) = [real_pipeline.detect_many([x])[0][:1] for x in (small, big)]
    assert max(big.shape) > real_pipeline.detector.max_side
    for u, v in zip(a.box, b.box):
        assert abs(u * 4 - v) <= 12


def test_frozen_graph_embeds_as_the_keras_model(real_pipeline):
    """The frozen graph (converted at run time, or the graph file `faceid models pull` writes)
    computes the same embeddings as the Keras model it is made from."""
    import numpy as np

    from faceid import models
    from faceid.align import crop_faces
    from faceid.embed import Embedder

    images = [load_image(p) for p in sorted((SAMPLES / "people").glob("*/*.jpg"))]
    crops = np.concatenate([crop_faces(im, real_pipeline.detector.detect(im)) for im in images])
    plain = Embedder(graph_file=False).embed(crops)
    frozen = Embedder(frozen=True, graph_file=False).embed(crops)
    assert plain.shape == (3, 128)
    np.testing.assert_allclose(frozen, plain, atol=1e-5)
    if models.locate_graph() is None:
        pytest.skip("no graph file: run `faceid models pull` to write it")
    from_file = Embedder().embed(crops)
    np.testing.assert_allclose(from_file, plain, atol=1e-5)


@pytest.mark.slow
def test_graph_file_is_the_pinned_one(tmp_path, real_pipeline):  # real_pipeline: a network already built here
    """`faceid models pull` makes the graph file from the weights; its SHA-256 is pinned in the
    registry, so it must come out byte for byte the same (with the pinned TensorFlow)."""
    import tensorflow as tf

    from faceid import models

    spec = models.get_spec(models.FACENET)
    if tf.__version__ != spec.graph_tensorflow:
        pytest.skip(f"the graph is pinned for TensorFlow {spec.graph_tensorflow}, this is {tf.__version__}")
    (tmp_path / spec.filename).symlink_to(models.locate())
    path = models.write_graph(spec.name, tmp_path)
    if path is None:
        # The same TensorFlow with other packages under it (protobuf, numpy) can serialise other
        # bytes: such a graph is refused, never used unverified (FaceNet is then built from the
        # verified weights at each start).
        assert not (tmp_path / spec.graph_filename).exists()
        pytest.skip("this environment's packages make a graph other than the pinned one: refused, as it must be")
    assert models.sha256_file(path) == spec.graph_sha256


@pytest.mark.shared
def test_detections_match_stock_mtcnn(data, real_pipeline):
    """faceid runs MTCNN's networks as tf.functions over an OpenCV pyramid: the same faces as stock mtcnn."""
    import numpy as np
    from mtcnn import MTCNN

    from faceid.detect import Detector

    stock = Detector()
    stock._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
    paths = [*sorted((data / "bigbang").glob("*/*.jp*g")), *sorted((SAMPLES / "photos").glob("*.jpg"))]
    images = [load_image(p) for p in paths]
    for ours, theirs in zip(real_pipeline.detect_many(images), stock.detect_many(images)):
        assert [d.box for d in ours] == [d.box for d in theirs]
        for a, b in zip(ours, theirs):
            assert abs(a.confidence - b.confidence) < 1e-4
            np.testing.assert_allclose(a.landmark_array(), b.landmark_array(), atol=0.05)
