"""Run the pipeline over many image files: decode ahead in threads, detect and embed in batches,
reuse cached results, and keep going past files that cannot be read."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from faceid import _check
from faceid.cache import EmbeddingCache
from faceid.detect import Detection
from faceid.errors import ImageError, PipelineError
from faceid.images import IMAGE_SUFFIXES, LoadedImage, read_image
from faceid.pipeline import Face, Pipeline

__all__ = ["Processed", "describe_failure", "image_failures", "iter_image_files", "load_source", "process", "run_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processed:
    """One input's outcome: the decoded image and its faces, or an error message.

    ``image is None`` with an ``error``: the file could not be read. An ``image`` with an
    ``error``: the face pipeline failed on it (see :attr:`failed`). No error and no faces: the
    pipeline ran and found no face.
    """

    source: str
    image: LoadedImage | None
    faces: list[Face] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        """The image was read, but the face pipeline failed on it."""
        return self.image is not None and self.error is not None


def iter_image_files(
    inputs: Iterable[str | os.PathLike], *, recursive: bool = True, suffixes: Collection[str] = IMAGE_SUFFIXES
) -> Iterator[str]:
    """Expand files and folders into image file paths (names ending in one of ``suffixes``), in sorted order.

    Folders are walked depth first without recursion (any depth) and without following symbolic
    links to folders, so a link loop cannot hang it; a folder that cannot be listed is logged and
    skipped. Only names with an image ending are taken from folders; a file named directly is
    always taken, so that a bad one is reported rather than skipped.
    """
    for item in inputs:
        path = Path(item)
        try:
            is_dir = path.is_dir()
        except (OSError, ValueError):  # a name too long, say: reading it will report why
            is_dir = False
        if is_dir:
            yield from _walk(str(path), recursive, suffixes)
        else:
            yield str(path)


def _walk(top: str, recursive: bool, suffixes: Collection[str] = IMAGE_SUFFIXES) -> Iterator[str]:
    """Image files under ``top``: a folder's files (sorted), then each subfolder's (sorted), like ``os.walk``."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                    continue
                if entry.is_symlink() and entry.is_dir():  # a link to a folder: not followed
                    continue
            except OSError:  # a link loop or a vanished entry: reading it reports why
                pass
            if Path(entry.name).suffix.lower() in suffixes and not entry.name.startswith("."):
                yield entry.path
        if recursive:
            stack.extend(reversed(subfolders))


def _detector_settings(pipeline: Pipeline) -> dict:
    return {"detector": getattr(pipeline.detector, "settings", repr(pipeline.detector))}


def _settings(pipeline: Pipeline) -> dict:
    return {"pipeline": pipeline.key.to_json(), **_detector_settings(pipeline)}


def process(
    sources: Sequence[str | os.PathLike],
    pipeline: Pipeline,
    *,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    on_done: Callable[[Processed], None] | None = None,
    overlap: bool = True,
) -> Iterator[Processed]:
    """Yield a :class:`Processed` for every source, in order.

    The work runs in three stages: decoding (two threads, up to two batches ahead), detection of
    a batch, and embedding of its faces. With ``overlap`` (the default) batch k+1 is detected in
    a thread of its own while batch k is embedded in the calling thread, so that both of a
    2-core machine's cores work (TensorFlow, OpenCV and onnxruntime release the GIL while they run); at
    most one detected batch waits. The batches, hence what MTCNN sees together and every box
    and embedding, are the same either way; ``overlap=False`` runs detection and embedding one
    after the other (the equality tests compare the two).

    A file that cannot be read, or that the pipeline fails on, gets an ``error`` (one line naming
    it and the reason) and the run goes on; a bug in the pipeline propagates (see :func:`image_failures`).
    """
    batch_size = _check.integer("process", "batch_size", batch_size, low=1)
    overlap = _check.boolean("process", "overlap", overlap)
    key = EmbeddingCache.key_of(_settings(pipeline)) if cache is not None else ""
    detector_key = EmbeddingCache.key_of(_detector_settings(pipeline)) if cache is not None else ""
    names = [os.fspath(s) for s in sources]
    prepared = False
    detector_lock = threading.Lock()  # MTCNN runs in one thread at a time (see _embed_stage's fallback)

    def prepare() -> None:
        """Tell the pipeline a run is coming (it may start loading its networks); with a cache, only
        once an image is not in it, so that a run served from the cache never loads TensorFlow."""
        nonlocal prepared
        if not prepared:
            prepared = True
            pipeline.expect(len(names))

    if cache is None:
        prepare()
    batches = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    if not batches:
        return
    stage = _Stages(pipeline, cache, key, detector_key, prepare, detector_lock)
    decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="faceid-decode")
    detector = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceid-detect") if overlap else None
    try:
        loads: dict[int, list[Future[Processed]]] = {}

        def load(b: int) -> None:
            if b < len(batches) and b not in loads:
                loads[b] = [decoders.submit(load_source, n) for n in batches[b]]

        load(0)
        load(1)
        ahead: Future[_Detected] | None = None
        if detector is not None:
            ahead = detector.submit(stage.detect_loading, loads.pop(0))
        for b in range(len(batches)):
            if detector is not None and ahead is not None:
                detected = ahead.result()
                load(b + 2)
                if b + 1 < len(batches):
                    ahead = detector.submit(stage.detect_loading, loads.pop(b + 1))
            else:
                futures = loads.pop(b)
                load(b + 1)
                detected = stage.detect_loading(futures)
            for item in stage.embed(detected):
                if on_done is not None:
                    on_done(item)
                yield item
    finally:
        if detector is not None:
            detector.shutdown(wait=True, cancel_futures=True)
        decoders.shutdown(wait=True, cancel_futures=True)


def load_source(name: str) -> Processed:
    """One image file decoded, or its :class:`~faceid.errors.ImageError` as the ``error``."""
    try:
        return Processed(name, read_image(name))
    except ImageError as exc:
        return Processed(name, None, error=str(exc))


def run_batch(loaded: list[Processed], pipeline: Pipeline) -> list[Processed]:
    """One decoded batch (from :func:`load_source`) through detection and embedding in this thread,
    as :func:`process` runs each batch, without a cache (for callers that make their own batches:
    :mod:`faceid.distributed`'s Ray workers)."""
    stage = _Stages(pipeline, None, "", "", lambda: None, threading.Lock())
    return stage.embed(stage.detect(loaded))


@dataclass(frozen=True)
class _Detected:
    """A batch between detection and embedding: ``out`` holds the final outcome of the unreadable
    and cached images; ``todo`` the (position, image) pairs still to embed, with ``detections`` for
    each, or ``None`` when detection failed on the batch (then they run one by one)."""

    out: list[Processed]
    todo: list[tuple[int, LoadedImage]]
    detections: list[list[Detection]] | None


@dataclass(frozen=True)
class _Stages:
    """Detection and embedding of one batch, as two steps that may run in different threads."""

    pipeline: Pipeline
    cache: EmbeddingCache | None
    key: str
    detector_key: str
    prepare: Callable[[], None]
    detector_lock: threading.Lock

    def detect_loading(self, futures: list[Future[Processed]]) -> _Detected:
        """:meth:`detect` of a batch still being decoded."""
        return self.detect([f.result() for f in futures])

    def detect(self, loaded: list[Processed]) -> _Detected:
        out: list[Processed] = list(loaded)  # unreadable ones stay as they are
        todo: list[tuple[int, LoadedImage]] = []
        for i, item in enumerate(loaded):
            if item.image is None:
                continue
            cached = self.cache.get(item.image.sha256, self.key) if self.cache is not None else None
            if cached is not None:
                out[i] = Processed(item.source, item.image, cached)
            else:
                todo.append((i, item.image))
        if not todo:
            return _Detected(out, todo, [])
        self.prepare()
        try:
            detections = self._detections([image for _, image in todo])
        except image_failures() as exc:  # which image? run them one by one, so that only it is reported
            _log_batch_failure(len(todo), exc)
            return _Detected(out, todo, None)
        return _Detected(out, todo, detections)

    def _detections(self, images: list[LoadedImage]) -> list[list[Detection]]:
        """Detections of each image, reusing cached ones where the cache has them."""
        cache = self.cache
        known = [cache.get_detections(im.sha256, self.detector_key) if cache is not None else None for im in images]
        missing = [i for i, found in enumerate(known) if found is None]
        if missing:
            with self.detector_lock:
                fresh = self.pipeline.detect_many([images[i].pixels for i in missing])
            for i, found in zip(missing, fresh):
                known[i] = found
            if cache is not None:
                cache.put_detections([(images[i].sha256, known[i] or []) for i in missing], self.detector_key)
        return [found or [] for found in known]

    def embed(self, detected: _Detected) -> list[Processed]:
        out, todo = list(detected.out), detected.todo
        if not todo:
            return out
        found: list[list[Face] | str] | None = None
        if detected.detections is not None:
            try:
                found = list(self.pipeline.embed_many([image.pixels for _, image in todo], detected.detections))
            except image_failures() as exc:
                _log_batch_failure(len(todo), exc)
        if found is None:
            with self.detector_lock:  # pipeline.faces detects too: not beside the detection thread
                found = [_faces_or_error(self.pipeline, image, out[i].source) for i, image in todo]
        fresh = []
        for (i, image), faces in zip(todo, found):
            if isinstance(faces, str):
                out[i] = Processed(out[i].source, image, error=faces)
            else:
                out[i] = Processed(out[i].source, image, faces)
                fresh.append((image.sha256, faces))
        if self.cache is not None and fresh:
            self.cache.put_many(fresh, self.key)
        return out


def _log_batch_failure(images: int, exc: BaseException) -> None:
    log.warning("a batch of %d images failed (%s: %s); running them one by one", images, type(exc).__name__, exc)


def image_failures() -> tuple[type[BaseException], ...]:
    """What the pipeline raises because of one image: faceid's :class:`PipelineError`, running out
    of memory, and the numerical libraries' errors about their input (OpenCV's, TensorFlow's op
    errors), for those already loaded.

    Anything else is a bug (a TypeError, an AttributeError, a KeyError...): it propagates and stops
    the run with its traceback. A bug would give every image the same failure, and reporting it
    image by image would make a broken faceid look like a folder of bad photos.
    """
    kinds: list[type[BaseException]] = [PipelineError, MemoryError]
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and isinstance(getattr(cv2, "error", None), type):
        kinds.append(cv2.error)
    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if tf_errors is not None:
        kinds.append(tf_errors.OpError)
    return tuple(kinds)


def _faces_or_error(pipeline: Pipeline, image: LoadedImage, source: str) -> list[Face] | str:
    """The faces of one image, or one line saying why the pipeline failed on it (logged with its traceback)."""
    try:
        return pipeline.faces(image.pixels)
    except image_failures() as exc:
        log.error("the face pipeline failed on %s", source, exc_info=True)
        return describe_failure(exc, source)


def describe_failure(exc: BaseException, source: str) -> str:
    """The one line that reports the face pipeline's failure on one image (one of
    :func:`image_failures`): ``"<source>: the face pipeline failed on it: <reason>"``, the reason
    prefixed with the exception's class unless it is faceid's own :class:`PipelineError`. The CLI,
    the server and the Ray runner word it alike through this."""
    reason = " ".join(str(exc).split())[:300]
    if not isinstance(exc, PipelineError):
        reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return f"{source}: the face pipeline failed on it: {reason}"
