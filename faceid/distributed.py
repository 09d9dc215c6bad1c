"""Bulk runs on a Ray cluster: decoding, detection and embedding spread over worker actors with Ray Data.

:class:`RayRunner` does what :func:`faceid.batch.process` does, on a cluster: each worker actor
makes its own pipeline once (models loaded once per actor) and runs :func:`faceid.batch`'s own
batch code on its share of the photos, so a photo gives the same faces, the same error message,
the same fallback to one-by-one when a batch fails, as without Ray. The results come back to the
driver in input order as :class:`~faceid.batch.Processed`, and everything after that (gallery
search, the decision, annotated images, writes to the gallery) runs in the driver: one writer.

Failures:

- a photo that cannot be read, or that the pipeline fails on, is an ``error`` in its result, as
  without Ray: reported once, not retried;
- a worker that dies (killed, out of memory, its machine lost) is restarted by Ray and its
  unfinished batch runs again elsewhere, up to :data:`TASK_RETRIES` times (``max_restarts=-1``,
  ``max_task_retries``); a batch that kills every worker it is given (a photo that crashes the
  decoder) is then given up: each of its photos is reported as an error, and the run goes on. A
  result is taken once per photo, in order; a repeated photo stops the run;
- a bug (an exception the batch code does not treat as the image's fault) is not retried: it
  stops the run with the worker's traceback, as without Ray.

Photos are read by the workers, by path: on a cluster of several machines every path must be
readable on every node (shared storage). Ray ships the pipeline maker and the actor class to
the workers with cloudpickle (Ray's own transport between processes of one cluster); the results
come back as plain columns (numbers, text, bytes), never pickled objects.

Ray is imported here only, and only when a run starts (``pip install 'faceid[ray]'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid import _check
from faceid.detect import Detection
from faceid.errors import FaceIDError, RayUnavailableError
from faceid.images import LoadedImage

if TYPE_CHECKING:
    from faceid.batch import Processed
    from faceid.cache import EmbeddingCache
    from faceid.embedding_key import EmbeddingKey
    from faceid.pipeline import Face, Pipeline

__all__ = ["RayRunner", "RayUnavailableError", "import_ray", "ray_cluster"]

log = logging.getLogger(__name__)

#: How many times a batch is run again after its worker died in it: a worker lost to a machine
#: failure gets another; a photo that kills whichever worker reads it (a decoder crash) stops the run.
TASK_RETRIES = 3

#: Object store of a local cluster started by faceid, in bytes: enough for a few batches of
#: decoded photos in flight, without Ray's default of 30% of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def import_ray() -> Any:
    """``ray`` and ``ray.data``, or :class:`RayUnavailableError` with the command that installs them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailableError("--ray needs the ray extra: pip install 'faceid[ray]'") from None
    return ray


@contextmanager
def ray_cluster(address: str | None = None, *, cpus: int | None = None) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address``, or start a local one; yields the ``ray`` module.

    A local cluster gets ``cpus`` CPUs (default: this machine's), a small object store and no
    dashboard, runs this process's code (its ``sys.path``) and is shut down on the way out. If Ray
    is already initialised in this process, that cluster is used and left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = not log.isEnabledFor(logging.INFO)
    if quiet:  # Ray Data's "Starting execution ..." lines, and Ray's C++ notices, only with --verbose
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    level = logging.ERROR if quiet else logging.INFO
    if cpus is not None:
        cpus = _check.integer("ray_cluster", "cpus", cpus, low=1)
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        _check_reachable(address)
        options: dict[str, Any] = {"address": address}
    else:
        cpus = cpus or os.cpu_count() or 1
        log.info("starting a local Ray cluster with %d CPUs", cpus)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        options = {
            "address": "local",
            "num_cpus": cpus,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
            "include_dashboard": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
        }
    from faceid._tf import stderr_silenced

    # Ray's C++ start-up line ("Set ray log level ...") ignores the level it reports; errors still raise.
    where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
    for attempt in (1, 2):
        try:
            with stderr_silenced() if quiet else contextlib.nullcontext():
                ray.init(logging_level=level, log_to_driver=not quiet, **options)
            break
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise FaceIDError(f"cannot start or join {where}: {' '.join(str(exc).split())[:300]}") from None
        except Exception as exc:  # Ray raises a bare Exception when its raylet is slow to register
            ray.shutdown()
            if address or attempt == 2 or "timed out during startup" not in str(exc):
                raise FaceIDError(f"cannot start or join {where}: {' '.join(str(exc).split())[:300]}") from None
            # a local node's first start on a busy machine can miss Ray's fixed 30 s: once more
            log.warning("the local Ray cluster timed out during startup; starting it once more")
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody answers on within ``timeout`` seconds:
    Ray itself would keep retrying for minutes. ``auto`` and other forms go to Ray as they are."""
    import socket

    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise FaceIDError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


class RayRunner:
    """A drop-in for :func:`faceid.batch.process` that runs on a Ray cluster.

    Args:
        maker: makes each worker's pipeline from an embedding key (``Pipeline.from_key``, or the
            fake-model maker of the tests); it and what it makes must be importable on the workers.
        workers: worker actors, one CPU each [default: the cluster's CPUs].
        batch_size: photos per batch handed to one actor [default: the caller's, 16 for
            :func:`~faceid.identify.identify` and :func:`~faceid.enroll.enroll`, as without Ray:
            MTCNN finds a face a pixel or two apart in a batch of other photos than alone, so the
            same batches give the same boxes].
        keep_pixels: send each decoded photo back to the driver (annotated images and enrolment
            thumbnails need it). Without it the driver gets a read-only all-zero stand-in of the
            right size, and only the faces cross the network.

    Call it like :func:`~faceid.batch.process`: ``runner(sources, pipeline, on_done=...)``; the
    driver's ``pipeline`` only gives the embedding key (its models are never loaded here). Ray must
    be initialised (see :func:`ray_cluster`). It sets this process's Ray Data context for its runs:
    order preserved, no progress bars, errored blocks allowed (reported as lost photos).
    """

    def __init__(
        self,
        maker: Callable[[EmbeddingKey | None], Pipeline],
        *,
        workers: int | None = None,
        batch_size: int | None = None,
        keep_pixels: bool = True,
    ) -> None:
        self.maker = maker
        self.workers = None if workers is None else _check.integer("RayRunner", "workers", workers, low=1)
        self.batch_size = None if batch_size is None else _check.integer("RayRunner", "batch_size", batch_size, low=1)
        self.keep_pixels = _check.boolean("RayRunner", "keep_pixels", keep_pixels)
        #: CPU seconds the workers spent on the photos of the last run (models loaded before, not counted)
        self.cpu_seconds = 0.0

    def __call__(
        self,
        sources: Sequence[str | os.PathLike],
        pipeline: Pipeline,
        *,
        batch_size: int = 16,
        cache: EmbeddingCache | None = None,
        on_done: Callable[[Processed], None] | None = None,
    ) -> Iterator[Processed]:
        """Yield a :class:`~faceid.batch.Processed` for every source, in order.

        ``batch_size`` is the runner's own if it has one; ``cache`` is not used (the workers use none).
        """
        names = [os.fspath(s) for s in sources]
        if not names:
            return
        ray = import_ray()
        if not ray.is_initialized():
            raise FaceIDError("RayRunner: Ray is not initialised (run inside faceid.distributed.ray_cluster())")
        from ray.data import DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = True  # results in input order, batches still run in parallel
        context.enable_progress_bars = False
        # A batch whose worker died TASK_RETRIES + 1 times is left out, and its photos reported as
        # lost (below), so that the run goes on; a bug in the batch code comes back as a "bug" row.
        context.max_errored_blocks = -1
        size = self.batch_size or _check.integer("RayRunner", "batch_size", batch_size, low=1)
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # One row per batch of photos, so that a worker runs exactly the batches process() would:
        # Ray Data's own batching would cut batches across its blocks, and MTCNN can place a box a
        # few pixels apart when a photo is detected among other photos.
        batches = [{"first": i, "sources": json.dumps(names[i : i + size])} for i in range(0, len(names), size)]
        blocks = len(batches)
        dataset = ray.data.from_items(batches, override_num_blocks=blocks)
        results = dataset.map_batches(
            _Worker,
            fn_constructor_kwargs={
                "maker": self.maker,
                "key": pipeline.key,
                "expect": len(names),
                "keep_pixels": self.keep_pixels,
            },
            batch_size=1,
            batch_format="numpy",
            # one batch at a time per worker: a worker that dies takes one batch with it, and
            # only that batch spends one of its retries
            compute=ray.data.ActorPoolStrategy(size=min(workers, blocks), max_tasks_in_flight_per_actor=1),
            num_cpus=1,
            max_restarts=-1,
            max_task_retries=TASK_RETRIES,
        )
        log.info("%d photos in %d batches over %d Ray workers", len(names), blocks, min(workers, blocks))
        self.cpu_seconds = 0.0
        expected = 0
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for row in range(len(batch["index"])):
                if batch["bug"][row]:  # the batch code raised: a bug, not the photos' fault
                    raise RuntimeError(f"faceid's batch code failed on a Ray worker:\n{batch['bug'][row]}")
                index = int(batch["index"][row])
                if index < expected:  # repeated: never pass it on as if all were well
                    raise FaceIDError(f"Ray run: photo {index} ({batch['source'][row]}) came back twice")
                for lost in range(expected, index):  # its batch lost its worker every time it was tried
                    yield self._lost(names[lost], on_done)
                item = _decode(batch, row)
                self.cpu_seconds += float(batch["cpu_s"][row])
                expected = index + 1
                if on_done is not None:
                    on_done(item)
                yield item
        for lost in range(expected, len(names)):
            yield self._lost(names[lost], on_done)

    @staticmethod
    def _lost(source: str, on_done: Callable[[Processed], None] | None) -> Processed:
        from faceid.batch import Processed

        item = Processed(
            source,
            None,
            error=f"{source}: its batch lost its Ray worker {TASK_RETRIES + 1} times (a photo in it may crash "
            "the decoder or use up the memory); not tried again",
        )
        log.error("%s", item.error)
        if on_done is not None:
            on_done(item)
        return item


class _Worker:
    """One Ray actor: makes its pipeline once, then runs faceid's batch code on each batch of paths."""

    def __init__(
        self,
        maker: Callable[[EmbeddingKey | None], Pipeline],
        key: EmbeddingKey | None,
        expect: int,
        keep_pixels: bool,
    ) -> None:
        self.pipeline = maker(key)
        self.pipeline.expect(expect)
        warm_up(self.pipeline)
        self.keep_pixels = keep_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from faceid.batch import Processed, load_source, run_batch

        cpu = time.process_time()
        first = int(batch["first"][0])
        sources = json.loads(str(batch["sources"][0]))
        try:
            loaded = [load_source(source) for source in sources]
            done = run_batch(loaded, self.pipeline)
        except Exception:  # a bug: its traceback goes back to the driver, which stops the run with it
            import traceback

            out = _encode(np.array([first]), [Processed(sources[0], None)], False)
            out["bug"] = np.array([traceback.format_exc()], dtype=object)
            out["cpu_s"] = np.zeros(1)
            return out
        out = _encode(np.arange(first, first + len(done)), done, self.keep_pixels)
        out["bug"] = np.array([""] * len(done), dtype=object)
        out["cpu_s"] = np.full(len(done), (time.process_time() - cpu) / max(1, len(done)))
        return out


def warm_up(pipeline: Pipeline) -> None:
    """Load the pipeline's networks now (they load on first use): a detection on a blank image and
    one embedding of a blank crop."""
    size = pipeline.spec.input_size
    pipeline.detect_many([np.zeros((size, size, 3), dtype=np.uint8)])
    pipeline.embedder.embed(np.zeros((1, size, size, 3), dtype=np.uint8))


def _encode(indices: np.ndarray, done: list[Processed], keep_pixels: bool) -> dict[str, np.ndarray]:
    """Columns for Ray Data: numbers, text and bytes only."""
    names = ("source", "error", "read", "sha256", "shape", "pixels", "faces", "vectors")
    cols: dict[str, list] = {k: [] for k in names}
    for item in done:
        image = item.image
        cols["source"].append(item.source)
        cols["error"].append(item.error or "")
        cols["read"].append(image is not None)
        cols["sha256"].append(image.sha256 if image is not None else "")
        cols["shape"].append(json.dumps(list(image.pixels.shape)) if image is not None else "")
        cols["pixels"].append(image.pixels.tobytes() if image is not None and keep_pixels else b"")
        cols["faces"].append(json.dumps([_detection_json(f.detection) for f in item.faces], default=_plain))
        vectors = [np.asarray(f.embedding, dtype=np.float32) for f in item.faces]
        cols["vectors"].append(np.concatenate(vectors).tobytes() if vectors else b"")
    out = {k: np.array(v, dtype=object) for k, v in cols.items()}
    out["read"] = np.array(cols["read"], dtype=bool)
    out["index"] = np.asarray(indices, dtype=np.int64)
    return out


def _detection_json(detection: Detection) -> dict:
    return {f.name: getattr(detection, f.name) for f in dataclasses.fields(detection)}


def _plain(value: Any) -> Any:
    """numpy scalars (a detector may hand them out) as the Python numbers JSON can hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _tuples(value: Any) -> Any:
    """JSON's lists back to the tuples a :class:`Detection` holds."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _decode(batch: dict[str, np.ndarray], row: int) -> Processed:
    from faceid.batch import Processed
    from faceid.pipeline import Face

    source = str(batch["source"][row])
    error = str(batch["error"][row]) or None
    if not bool(batch["read"][row]):
        return Processed(source, None, error=error)
    shape = tuple(json.loads(str(batch["shape"][row])))
    raw = bytes(batch["pixels"][row])
    if raw:
        pixels = np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()
    else:  # not sent: a read-only stand-in of the right size, no memory behind it
        pixels = np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), shape)
    image = LoadedImage(pixels, str(batch["sha256"][row]), source)
    detections = [Detection(**{k: _tuples(v) for k, v in d.items()}) for d in json.loads(str(batch["faces"][row]))]
    faces: list[Face] = []
    if detections:
        vectors = np.frombuffer(bytes(batch["vectors"][row]), dtype=np.float32).reshape(len(detections), -1)
        faces = [Face(d, vectors[i].copy()) for i, d in enumerate(detections)]
    return Processed(source, image, faces, error=error)
