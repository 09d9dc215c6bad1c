"""Embeddings from ONNX models (SFace, ArcFace), from verified local files.

The same contract as :class:`faceid.embed.Embedder`: ``(N, S, S, 3)`` uint8 RGB crops in,
``(N, D)`` L2-normalised float32 rows out, so the inner product of two rows is their cosine
similarity.

Two libraries run ONNX files, and a model's spec names the one it runs on (``spec.runtime``):

- ``"opencv-dnn"``: OpenCV's DNN module (opencv-python-headless, already faceid's image library).
  SFace runs here: on its float32 file OpenCV takes 13-14 ms of CPU per face against
  onnxruntime's 20-22 ms, and the embeddings agree within 5e-7 (``faceid bench --only embedding``
  prints both engines side by side; ``tests/test_onnx_models.py`` checks the agreement).
- ``"onnxruntime"``: ArcFace runs here (OpenCV gives the same embeddings, within 4e-7, for about
  the same CPU: 13.3 against 15.9 ms per face at batch 1, 12.4 against 12.3 at batch 8), and
  any model can be run here with ``runtime=``.

Either library is imported when a model is first run, not when faceid is imported.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import numpy as np

from faceid.errors import ModelError
from faceid.models import get_spec, locate

__all__ = ["ONNX_RUNTIMES", "OnnxEmbedder", "default_threads", "preprocess"]

ONNX_RUNTIMES = ("opencv-dnn", "onnxruntime")

log = logging.getLogger(__name__)


def default_threads() -> int:
    """onnxruntime threads per session: ``$FACEID_THREADS``, else the machine's cores, at most 4.

    OpenCV's DNN threads are process-wide (``cv2.setNumThreads``); faceid leaves them at OpenCV's
    default, one per core.

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
    """Batches of face crops in, unit-length embedding rows out, for a model stored as an ONNX file.

    Args:
        model: a name from :data:`faceid.models.MODELS` whose runtime is one of :data:`ONNX_RUNTIMES`.
        batch_size: crops per forward pass.
        mirror: also embed each crop's horizontal mirror and use the normalised sum.
        threads: onnxruntime intra-op threads [default: :func:`default_threads`].
        runtime: run the file on this library instead of the spec's (one of :data:`ONNX_RUNTIMES`).
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 32,
        mirror: bool = False,
        threads: int | None = None,
        runtime: str | None = None,
        **_: object,
    ) -> None:
        self.spec = get_spec(model)
        if self.spec.runtime not in ONNX_RUNTIMES:
            raise ModelError(f"model {model} runs on {self.spec.runtime}, not on an ONNX runtime")
        self.runtime = runtime if runtime is not None else self.spec.runtime
        if self.runtime not in ONNX_RUNTIMES:
            raise ModelError(f"runtime {self.runtime!r}: expected one of {', '.join(ONNX_RUNTIMES)}")
        self.batch_size = int(batch_size)
        self.mirror = bool(mirror)
        self.threads = int(threads) if threads is not None else default_threads()
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._preload: threading.Thread | None = None

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def _load(self) -> Callable[[np.ndarray], np.ndarray]:
        """The forward pass on the verified file: a shared onnxruntime session, or OpenCV nets."""
        if self._forward is None:
            path = locate(self.spec.name)  # verifies the SHA-256 (once per file version)
            stat = path.stat()
            if self.runtime == "onnxruntime":
                key = (str(path), stat.st_size, stat.st_mtime_ns, self.threads)
                with _LOCK:
                    if key not in _SESSIONS:
                        _SESSIONS[key] = _session(self.spec, path, self.threads)
                session, inputs, outputs = _SESSIONS[key], self.spec.input_name, [self.spec.output_name]
                self._forward = lambda x: session.run(outputs, {inputs: x})[0]
            else:
                self._forward = _OpenCvForward(self.spec, path, (str(path), stat.st_size, stat.st_mtime_ns))
        return self._forward

    def expect(self, faces: int) -> None:
        """Told that faces are coming: load the network in a background thread now, while the first
        photos are decoded and detected (OpenCV and onnxruntime release the GIL while they parse
        it); :meth:`embed` waits for it. A failure there is raised by :meth:`embed`, which loads again."""
        if self._forward is not None or self._preload is not None:
            return

        def load() -> None:
            try:
                self._load()
            except Exception as exc:  # reported by embed(), which loads again in its own thread
                log.debug("loading %s in the background failed: %s", self.spec.name, exc)

        self._preload = threading.Thread(target=load, name="faceid-embedder-load", daemon=True)
        self._preload.start()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``(N, S, S, 3)`` uint8 crops as ``(N, D)`` float32 unit rows."""
        crops = np.asarray(crops)
        size = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise ValueError(f"expected crops of shape (N, {size}, {size}, 3), got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._preload is not None:
            self._preload.join()
            self._preload = None
        forward = self._load()
        rows = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            out = forward(preprocess(chunk, self.spec))
            if self.mirror:
                out = out + forward(preprocess(chunk[:, :, ::-1, :], self.spec))
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

# OpenCV nets keep per-call state, so each thread gets its own net of each verified file.
_NETS = threading.local()


class _OpenCvForward:
    """``spec``'s network on OpenCV's DNN module: one net per (file version, thread), loaded on the
    thread's first call, so the server's batch workers can embed at the same time. The net loaded
    on construction (perhaps in a loading thread, :meth:`OnnxEmbedder.expect`) goes to the first
    thread that calls."""

    def __init__(self, spec, path, key: tuple) -> None:
        self.spec, self.path, self.key = spec, path, key
        held = self.key in _NETS.__dict__.get("nets", {})  # this thread has one from another embedder
        self._spare = None if held else self._read()  # a file OpenCV cannot parse fails here, on the first embed
        self._spare_lock = threading.Lock()

    def _read(self):
        import cv2

        try:
            net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as exc:
            raise ModelError(f"{self.path}: OpenCV's DNN module cannot load it ({_cv2_reason(exc)})") from None
        log.info("loaded %s with OpenCV %s's DNN module", self.spec.name, cv2.__version__)
        return net

    def _load_net(self):
        nets = _NETS.__dict__.setdefault("nets", {})
        if self.key not in nets:
            with self._spare_lock:
                spare, self._spare = self._spare, None
            nets[self.key] = spare if spare is not None else self._read()
        return nets[self.key]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import cv2

        net = self._load_net()
        try:
            net.setInput(x, self.spec.input_name)
            return net.forward(self.spec.output_name).copy()  # the net may reuse its output buffer
        except cv2.error as exc:
            reason = _cv2_reason(exc)
            raise ModelError(f"{self.path}: OpenCV's DNN module failed on a batch of {len(x)} ({reason})") from None


def _cv2_reason(exc: Exception) -> str:
    """The last line of an OpenCV error (its first lines are the C++ file and function)."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


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
