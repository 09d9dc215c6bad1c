"""FaceNet embeddings (keras-facenet's InceptionResNetV1) from verified local weights.

Rows are L2-normalised float32, so the inner product of two rows is their cosine similarity:
faceid's one similarity score, in [-1, 1], higher is closer.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from faceid import _check
from faceid.models import DEFAULT_MODEL, get_spec, load_weights

__all__ = ["Embedder", "model_flops", "standardise"]

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
        frozen: run the network as a frozen graph: faster per face, slower to start (:func:`_freeze`).
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, *, batch_size: int = 32, mirror: bool = False, frozen: bool = False
    ) -> None:
        self.spec = get_spec(model)
        self.batch_size = _check.integer("Embedder", "batch_size", batch_size, low=1)
        self.mirror = _check.boolean("Embedder", "mirror", mirror)
        self.frozen = _check.boolean("Embedder", "frozen", frozen)
        self._forward = None
        self._forward_frozen: bool | None = None

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def expect(self, faces: int) -> None:
        """Told that about ``faces`` faces are coming: run as a frozen graph if that pays (see :func:`_freeze`)."""
        if faces >= FREEZE_MIN_FACES:
            self.frozen = True

    def _load(self):
        if self._forward is None or self._forward_frozen != self.frozen:
            key = (self.spec.name, self.frozen)
            with _LOCK:
                if (self.spec.name, False) not in _FORWARD:
                    _FORWARD[(self.spec.name, False)] = _build(self.spec)
                if key not in _FORWARD:
                    _FORWARD[key] = _freeze(_FORWARD[(self.spec.name, False)])
            self._forward, self._forward_frozen = _FORWARD[key], self.frozen
        return self._forward

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``(N, S, S, 3)`` uint8 crops as ``(N, D)`` float32 unit rows."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops of shape (N, {self.input_size}, {self.input_size}, 3), got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        forward = self._load()
        rows = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            x = standardise(chunk, self.spec.standardisation)
            out = forward(x).numpy()
            if self.mirror:
                out = out + forward(np.ascontiguousarray(x[:, :, ::-1, :])).numpy()
            rows.append(out)
        return _normalise(np.concatenate(rows).astype(np.float32))


# One network per (model, frozen) per process, shared by every Embedder: loading costs seconds.
_FORWARD: dict = {}
_NETWORK: dict = {}
_LOCK = threading.Lock()
#: Runs expecting at least this many faces use the frozen graph (see :func:`_freeze`).
FREEZE_MIN_FACES = 2000


def _build(spec):
    """Build keras-facenet's InceptionResNetV1, load the verified weights by layer name, and
    return a ``tf.function`` from a ``(N, S, S, 3)`` float32 batch to its ``(N, D)`` embeddings."""
    weights = load_weights(spec.name)  # verifies the SHA-256 first
    from faceid._tf import quiet_tensorflow

    quiet_tensorflow()
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
    _NETWORK[spec.name] = network

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
    def forward(batch):
        return network(batch, training=False)

    return forward


def _freeze(forward):
    """``forward`` as a graph whose weights are constants rather than variables.

    The same arithmetic (embeddings agree within 3e-7), but TensorFlow can then pre-pack the
    weights for oneDNN once instead of on every call: measured here about 25% more faces per
    second at batch 8 to 64, for 3-5 s more start-up (converting the graph and optimising it), so
    it pays back after roughly 1,500 faces; :meth:`Embedder.expect` turns it on for long runs.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    graph = convert_variables_to_constants_v2(forward.get_concrete_function())

    def run(batch):
        return graph(tf.convert_to_tensor(batch, tf.float32))[0]

    return run


def model_flops(spec) -> int:
    """Floating-point operations per face (2 per multiply-add) of the convolutions and dense
    layers of the model's network, counted from its layer shapes (loads the model if needed)."""
    Embedder(spec.name)._load()
    network = _NETWORK[spec.name]
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
