"""Micro-batching: identify and enrol jobs that arrive together are detected and embedded together.

Each of ``workers`` threads (the server runs two: see
:attr:`faceid.server.settings.Settings.batch_workers`) runs batches over the one shared pipeline
(TensorFlow's functions, OpenCV nets per thread, onnxruntime sessions are safe to call from
several threads). A worker takes the first waiting job and everything queued behind it; if
more requests are on their way (``coming``: requests received and still being read or decoded),
it waits for them up to ``wait`` seconds, never past ``max_batch`` images; then it runs detection
and embedding for all of them in one call (:meth:`Pipeline.faces_many`). A request that is alone is never kept waiting.
A batch that fails is retried job by job, so one bad image fails only its own request; the job
that fails gets the exception itself (see :func:`faceid.server.uploads.image_faces`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Batcher", "BatcherStopped"]

log = logging.getLogger(__name__)


class BatcherStopped(RuntimeError):
    """The batcher was stopped before the job ran."""


@dataclass
class _Job:
    images: Sequence[np.ndarray]
    future: Future = field(default_factory=Future)


class Batcher:
    """Run ``pipeline.faces_many`` on the images of many jobs at once, in ``workers`` threads.

    Attributes:
        batches, images: how many batches have run and how many images they held (for tests and figures).
    """

    def __init__(
        self,
        pipeline,
        *,
        wait: float = 0.005,
        max_batch: int = 16,
        coming: Callable[[], int] | None = None,
        workers: int = 1,
    ) -> None:
        self.pipeline = pipeline
        self.coming = coming if coming is not None else (lambda: 1)
        self.wait = float(wait)
        self.max_batch = max(1, int(max_batch))
        self.batches = 0
        self.images = 0
        self._counts = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"faceid-batcher-{i + 1}", daemon=True)
            for i in range(max(1, int(workers)))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, images: Sequence[np.ndarray]) -> Future:
        """A future of ``list[list[Face]]``: the faces of each image."""
        job = _Job(list(images))
        if self._stopped:
            job.future.set_exception(BatcherStopped("the server is stopping"))
            return job.future
        self._queue.put(job)
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then end the worker."""
        self._stopped = True
        self._queue.put(None)  # each worker passes it on to the next
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                self._queue.put(None)  # for the other workers
                return
            jobs = [first]
            count = len(first.images)
            deadline = time.monotonic() + self.wait
            while count < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    if left > 0 and self._queue.empty() and self.coming() > 0:
                        job = self._queue.get(timeout=left)  # company is on its way: wait for it
                    else:
                        job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                if count + len(job.images) > self.max_batch:
                    carry = job  # starts the next batch
                    break
                jobs.append(job)
                count += len(job.images)
            self._run_batch(jobs)

    def _run_batch(self, jobs: list[_Job]) -> None:
        images = [image for job in jobs for image in job.images]
        try:
            found = self.pipeline.faces_many(images) if images else []
        except Exception as exc:
            if len(jobs) == 1:  # the job's own failure (or a bug): its request reports it
                jobs[0].future.set_exception(exc)
                return
            for job in jobs:  # one job's bad image must not fail the others
                self._run_batch([job])
            return
        with self._counts:
            self.batches += 1
            self.images += len(images)
        start = 0
        for job in jobs:
            job.future.set_result(found[start : start + len(job.images)])
            start += len(job.images)
