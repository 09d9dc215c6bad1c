"""Embeddings from ONNX models (SFace, ArcFace) through onnxruntime, from verified local files.

The same contract as :class:`faceid.embed.Embedder`: ``(N, S, S, 3)`` uint8 RGB crops in,
``(N, D)`` L2-normalised float32 rows out, so the inner product of two rows is their cosine
similarity. onnxruntime is imported when a model is first run, not when faceid is imported.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from faceid.errors import ModelError
from faceid.models import get_spec, locate

__all__ = ["OnnxEmbedder", "default_threads", "preprocess"]

log = logging.getLogger(__name__)


def default_threads() -> int:
    """onnxruntime threads per session: ``$FACEID_THREADS``, else the machine's cores, at most 4.

    onnxruntime's own default spins one thread per core; these networks are small (under 1
    GFLOP per face), so more than a few threads only adds synchronisation.
    """
    env = os.environ.get("FACEID_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("FACEID_THREADS=%r is not a number; using the default", env)
    return max(1, min(4, os.cpu_count() or 1))


def preprocess(crops: np.ndarray, spec) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 RGB crops as the float32 batch ``spec`` takes (colour order, scaling, layout)."""
    x = crops.astype(np.float32)
    if spec.colour == "BGR":
        x = x[..., ::-1]
    elif spec.colour != "RGB":
        raise ValueError(f"model {spec.name}: unknown colour order {spec.colour!r}")
    if spec.standardisation == "fixed":
        x = (x - 127.5) / 127.5
    elif spec.standardisation != "none":
        raise ValueError(f"model {spec.name}: standardisation {spec.standardisation!r} is not one ONNX models use")
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


class OnnxEmbedder:
    """Batches of face crops in, unit-length embedding rows out, for a model whose runtime is onnxruntime.

    Args:
        model: a name from :data:`faceid.models.MODELS` with ``runtime="onnxruntime"``.
        batch_size: crops per forward pass.
        mirror: also embed each crop's horizontal mirror and use the normalised sum.
        threads: onnxruntime intra-op threads [default: :func:`default_threads`].
    """

    def __init__(
        self, model: str, *, batch_size: int = 32, mirror: bool = False, threads: int | None = None, **_: object
    ) -> None:
        self.spec = get_spec(model)
        if self.spec.runtime != "onnxruntime":
            raise ModelError(f"model {model} runs on {self.spec.runtime}, not onnxruntime")
        self.batch_size = int(batch_size)
        self.mirror = bool(mirror)
        self.threads = int(threads) if threads is not None else default_threads()
        self._session = None

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def _load(self):
        if self._session is None:
            path = locate(self.spec.name)  # verifies the SHA-256 (once per file version)
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns, self.threads)
            with _LOCK:
                if key not in _SESSIONS:
                    _SESSIONS[key] = _session(self.spec, path, self.threads)
            self._session = _SESSIONS[key]
        return self._session

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``(N, S, S, 3)`` uint8 crops as ``(N, D)`` float32 unit rows."""
        crops = np.asarray(crops)
        size = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise ValueError(f"expected crops of shape (N, {size}, {size}, 3), got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._load()
        inputs, outputs = self.spec.input_name, [self.spec.output_name]
        rows = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            out = session.run(outputs, {inputs: preprocess(chunk, self.spec)})[0]
            if self.mirror:
                out = out + session.run(outputs, {inputs: preprocess(chunk[:, :, ::-1, :], self.spec)})[0]
            rows.append(np.asarray(out, dtype=np.float32).reshape(len(chunk), -1))
        vectors = np.concatenate(rows)
        if vectors.shape[1] != self.dimension:
            raise ModelError(
                f"model {self.spec.name}: gave {vectors.shape[1]}-d rows, the registry says {self.dimension}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


# One session per (verified file, threads) per process, shared by every OnnxEmbedder.
_SESSIONS: dict = {}
_LOCK = threading.Lock()


def _session(spec, path, threads: int):
    """An onnxruntime session on the verified file: sequential execution, ``threads`` intra-op
    threads that do not spin while waiting, every graph optimisation, warnings off (a file's fixed
    batch-1 output annotation would otherwise warn on every batch).

    Spinning is onnxruntime's default; measured here on SFace with 2 threads it costs 40 ms of CPU
    per face at batch 1 against 24 ms without, for no gain in wall time on a busy machine.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad graph
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None
    names = [i.name for i in session.get_inputs()]
    if names != [spec.input_name]:
        raise ModelError(f"{path}: expected one input {spec.input_name!r}, the file has {names}")
    log.info("loaded %s with onnxruntime %s, %d threads", spec.name, ort.__version__, threads)
    return session
