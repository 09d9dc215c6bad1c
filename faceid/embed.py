"""FaceNet embeddings (keras-facenet's InceptionResNetV1) from verified local weights.

Rows are L2-normalised float32, so the inner product of two rows is their cosine similarity:
faceid's one similarity score, in [-1, 1], higher is closer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceid import _check, models
from faceid.models import FACENET, get_spec, load_weights

__all__ = ["Embedder", "graph_bytes", "model_flops", "standardise"]

log = logging.getLogger(__name__)


def standardise(crops: np.ndarray, method: str) -> np.ndarray:
    """FaceNet's input scaling of ``(N, S, S, 3)`` uint8 crops, as float32.

    ``"per_image"``: (x - mean) / max(std, 1/sqrt(x.size)) for each crop; ``"fixed"``: (x - 127.5) / 127.5.
    """
    x = crops.astype(np.float32)
    if method == "fixed":
        return (x - 127.5) / 127.5
    if method != "per_image":
        raise ValueError(f"unknown standardisation {method!r}")
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    floor = np.float32(1.0 / np.sqrt(np.prod(x.shape[1:])))
    return (x - mean) / np.maximum(std, floor)


class Embedder:
    """Batches of face crops in, unit-length embedding rows out.

    Args:
        model: a name from :data:`faceid.models.MODELS`.
        batch_size: crops per forward pass.
        mirror: also embed each crop's horizontal mirror and use the normalised sum.
        frozen: without a graph file, convert the Keras network to a frozen graph at start-up:
            faster per face, slower to start (:func:`_freeze`).
        graph_file: run the optimised frozen graph that ``faceid models pull`` writes beside the
            weights (verified by its SHA-256), when it is there: the fastest per face and the
            fastest to start. ``False`` builds the Keras network from the weights (what the
            graph file is made from; ``faceid bench`` compares the two).
    """

    def __init__(
        self,
        model: str = FACENET,
        *,
        batch_size: int = 32,
        mirror: bool = False,
        frozen: bool = False,
        graph_file: bool = True,
    ) -> None:
        self.spec = get_spec(model)
        self.batch_size = _check.integer("Embedder", "batch_size", batch_size, low=1)
        self.mirror = _check.boolean("Embedder", "mirror", mirror)
        self.frozen = _check.boolean("Embedder", "frozen", frozen)
        self.graph_file = _check.boolean("Embedder", "graph_file", graph_file)
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._forward_key: tuple | None = None
        self._preload: threading.Thread | None = None

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def expect(self, faces: int) -> None:
        """Told that about ``faces`` faces are coming: load the network in a background thread
        now, while the first photos are decoded and detected, and run it as a frozen graph if
        that pays (see :func:`_freeze`)."""
        if faces >= FREEZE_MIN_FACES:
            self.frozen = True
        self.preload()

    def preload(self) -> None:
        """Start loading the network in a background thread (TensorFlow's import stays in this
        one); :meth:`embed` waits for it. A failure there is raised by :meth:`embed`, which loads again."""
        if self._forward is not None:
            return
        if self._preload is not None and self._preload.is_alive():
            return
        from faceid._tf import quiet_tensorflow

        quiet_tensorflow()

        def load() -> None:
            try:
                self._load()
            except Exception as exc:  # reported by embed(), which loads again in its own thread
                log.debug("loading %s in the background failed: %s", self.spec.name, exc)

        self._preload = threading.Thread(target=load, name="faceid-embedder-load", daemon=True)
        self._preload.start()

    def _key(self) -> tuple:
        graph = models.locate_graph(self.spec.name) if self.graph_file else None
        if graph is not None:
            return (self.spec.name, "graph-file", str(graph))
        return (self.spec.name, "frozen" if self.frozen else "keras", None)

    def _load(self) -> Callable[[np.ndarray], np.ndarray]:
        key = self._key()
        if self._forward is None or self._forward_key != key:
            with _LOCK:
                if key not in _FORWARD:
                    _FORWARD[key] = _make_forward(self.spec, key)
            self._forward, self._forward_key = _FORWARD[key], key
        return self._forward

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``(N, S, S, 3)`` uint8 crops as ``(N, D)`` float32 unit rows."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops of shape (N, {self.input_size}, {self.input_size}, 3), got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._preload is not None:
            self._preload.join()
            self._preload = None
        forward = self._load()
        rows = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            x = standardise(chunk, self.spec.standardisation)
            out = forward(x)
            if self.mirror:
                out = out + forward(np.ascontiguousarray(x[:, :, ::-1, :]))
            rows.append(out)
        return _normalise(np.concatenate(rows).astype(np.float32))


# One network per (model, kind) per process, shared by every Embedder: loading costs seconds.
_FORWARD: dict = {}
_NETWORK: dict = {}
_LOCK = threading.Lock()
#: Runs expecting at least this many faces use the frozen graph (see :func:`_freeze`).
FREEZE_MIN_FACES = 2000
#: Tensor names of the input batch and the embeddings in a graph file (:func:`graph_bytes`).
GRAPH_INPUT, GRAPH_OUTPUT = "batch:0", "Identity:0"


def _make_forward(spec, key: tuple) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a ``(N, S, S, 3)`` float32 batch to its ``(N, D)`` float32 embeddings."""
    _, kind, graph = key
    if kind == "graph-file":
        return _load_graph_file(Path(graph))
    forward = _build(spec)
    if kind == "frozen":
        forward = _freeze(forward)
    return lambda batch: forward(batch).numpy()


def _build(spec, weights: dict[str, np.ndarray] | None = None):
    """Build keras-facenet's InceptionResNetV1, load the verified weights by layer name, and
    return a ``tf.function`` from a ``(N, S, S, 3)`` float32 batch to its ``(N, D)`` embeddings.
    The network is built once per process (:data:`_NETWORK`)."""
    if spec.name in _NETWORK and weights is None:
        return _NETWORK[spec.name][1]
    if weights is None:
        weights = load_weights(spec.name)  # verifies the SHA-256 first
    from faceid._tf import quiet_tensorflow

    quiet_tensorflow("keras_facenet.inception_resnet_v1")
    import tensorflow as tf
    from keras_facenet.inception_resnet_v1 import InceptionResNetV1

    size = spec.input_size
    network = InceptionResNetV1(input_shape=(size, size, 3), classes=spec.dimension)
    loaded = 0
    for layer in network.layers:
        if not layer.weights:
            continue
        try:
            layer.set_weights([weights[f"{layer.name}/{w.name}"] for w in layer.weights])
        except KeyError as exc:
            from faceid.errors import ModelError

            raise ModelError(f"model {spec.name}: weight {exc.args[0]} missing from the weight file") from None
        loaded += 1
    log.info("loaded %d weight layers of %s", loaded, spec.name)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
    def forward(batch):
        return network(batch, training=False)

    _NETWORK[spec.name] = (network, forward)
    return forward


def _freeze(forward):
    """``forward`` as a graph whose weights are constants rather than variables.

    The same arithmetic (embeddings agree within 3e-7), but TensorFlow can then pre-pack the
    weights for oneDNN once instead of on every call: measured here about 25% more faces per
    second at batch 8 to 64, for 3-5 s more start-up (converting the graph and optimising it), so
    it pays back after roughly 1,500 faces; :meth:`Embedder.expect` turns it on for long runs.
    The graph file (:func:`graph_bytes`) is this graph, converted and optimised once, at
    ``faceid models pull``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    graph = convert_variables_to_constants_v2(forward.get_concrete_function())

    def run(batch):
        return graph(tf.convert_to_tensor(batch, tf.float32))[0]

    return run


def graph_bytes(spec, weights: dict[str, np.ndarray]) -> bytes:
    """The model as an optimised frozen TensorFlow graph: a ``GraphDef`` protocol buffer (data,
    never code), the same bytes on every run of one TensorFlow version.

    The Keras network built from ``weights`` is converted to constants (:func:`_freeze`) and
    optimised by TensorFlow's graph optimiser (Grappler) as it would be on its first run: batch
    normalisation folded into the convolutions, convolution, bias and ReLU fused. Loading the
    result (:func:`_load_graph_file`) skips Keras, the graph conversion and the optimiser: about
    0.7 s of CPU instead of 4 s. Its input is :data:`GRAPH_INPUT`, its output :data:`GRAPH_OUTPUT`.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.grappler import cluster, tf_optimizer

    frozen = convert_variables_to_constants_v2(_build(spec, weights).get_concrete_function())
    names = ([t.name for t in frozen.inputs], [t.name for t in frozen.outputs])
    if names != ([GRAPH_INPUT], [GRAPH_OUTPUT]):
        raise RuntimeError(f"unexpected graph inputs and outputs {names}")
    graph_def = frozen.graph.as_graph_def()
    cpu = "/job:localhost/replica:0/task:0/device:CPU:0"
    for node in graph_def.node:  # placed, so that the optimiser fuses for the CPU
        node.device = cpu
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        meta = tf.compat.v1.train.export_meta_graph(graph=graph)
    meta.collection_def["train_op"].node_list.value.append(GRAPH_OUTPUT.split(":")[0])
    optimised = tf_optimizer.OptimizeGraph(tf.compat.v1.ConfigProto(), meta, cluster=cluster.Cluster())
    for node in optimised.node:
        node.device = ""
    return optimised.SerializeToString(deterministic=True)


def _load_graph_file(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Run a graph file written by :func:`graph_bytes` (already verified) in a TensorFlow session."""
    from faceid._tf import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    try:
        x, y = graph.get_tensor_by_name(GRAPH_INPUT), graph.get_tensor_by_name(GRAPH_OUTPUT)
    except KeyError as exc:
        from faceid.errors import ModelError

        raise ModelError(f"{path}: not a faceid graph file ({exc}); delete it and run `faceid models pull`") from None
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True  # optimised when it was written
    session = tf.compat.v1.Session(graph=graph, config=config)
    log.info("loaded the frozen graph %s", path)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(y, {x: batch})

    return run


def model_flops(spec) -> int:
    """Floating-point operations per face (2 per multiply-add) of the convolutions and dense
    layers of the model's network, counted from its layer shapes (loads the model if needed)."""
    _build(spec)
    network = _NETWORK[spec.name][0]
    macs = 0
    for layer in network.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = [int(v) for v in kernel.shape]
        out = layer.output.shape
        if len(shape) == 4:  # Conv2D: (kh, kw, in, out) at every output position
            macs += int(np.prod(shape)) * int(out[1]) * int(out[2])
        elif len(shape) == 2:  # Dense
            macs += int(np.prod(shape))
    return 2 * macs


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)
