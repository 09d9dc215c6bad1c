"""FaceNet embeddings (keras-facenet's InceptionResNetV1) from verified local weights.

Rows are L2-normalised float32, so the inner product of two rows is their cosine similarity:
faceid's one similarity score, in [-1, 1], higher is closer.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from faceid.models import DEFAULT_MODEL, get_spec, load_weights

__all__ = ["Embedder", "standardise"]

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
    floor = 1.0 / np.sqrt(np.prod(x.shape[1:]))
    return (x - mean) / np.maximum(std, floor)


class Embedder:
    """Batches of face crops in, unit-length embedding rows out.

    Args:
        model: a name from :data:`faceid.models.MODELS`.
        batch_size: crops per forward pass.
        mirror: also embed each crop's horizontal mirror and use the normalised sum.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 32, mirror: bool = False) -> None:
        self.spec = get_spec(model)
        self.batch_size = int(batch_size)
        self.mirror = bool(mirror)
        self._forward = None

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def _load(self):
        if self._forward is None:
            with _LOCK:
                if self.spec.name not in _FORWARD:
                    _FORWARD[self.spec.name] = _build(self.spec)
            self._forward = _FORWARD[self.spec.name]
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


# One network per model per process, shared by every Embedder: loading costs seconds.
_FORWARD: dict = {}
_LOCK = threading.Lock()


def _build(spec):
    """Build keras-facenet's InceptionResNetV1 and load the verified weights by layer name."""
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

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
    def forward(batch):
        return network(batch, training=False)

    return forward


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)
