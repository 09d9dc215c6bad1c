"""``faceid bench --only ray``: photos per second with and without Ray, on the same photos.

The same LFW photos (the first ``images`` in sorted path order, or the sample photos repeated
without the data folder) go through the whole per-photo work (decode, MTCNN, FaceNet, no cache):

- ``ray_local``: :func:`faceid.batch.process` in this process, as ``faceid identify`` runs it;
- ``ray_cluster``: :class:`faceid.distributed.RayRunner` on a local Ray cluster with 1 and with
  2 worker actors (one CPU each), results in input order back in this process.

The local run is timed with its models already loaded (their loading is a figure of its own);
a Ray run end to end, its actors' start and model loading included, as ``faceid identify --ray``
pays them (Ray's cluster start-up is a figure of its own). Both give CPU seconds per photo (this
process's for the local run; the workers' for Ray, models loaded before, not counted): photos per
CPU-second is the figure that sizes a cluster, and it holds on a busy machine, where wall time
does not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["ray_figures"]


def _timed_run(run: Callable[[Callable[[Any], None]], Iterator[Any]], count: int) -> dict:
    """Wall seconds to the first result and to the last, and photos/s end to end."""
    stamps: list[float] = []
    start = time.perf_counter()
    results = list(run(lambda _item: stamps.append(time.perf_counter())))
    total = time.perf_counter() - start
    if not (len(results) == count == len(stamps)):
        raise RuntimeError(f"bench ray: {len(results)} results for {count} photos")
    return {
        "photos": count,
        "failed": sum(r.error is not None for r in results),
        "faces": sum(len(r.faces) for r in results),
        "seconds": round(total, 2),
        "first_result_s": round(stamps[0] - start, 2) if stamps else None,
        "photos_per_s": round(count / total, 2),
    }


def _per_cpu(photos: int, cpu: float) -> dict:
    return {
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_photo": round(1000 * cpu / photos, 1),
        "photos_per_cpu_s": round(photos / cpu, 2) if cpu > 0 else None,
    }


def ray_figures(
    sources: Sequence[str | os.PathLike], figure: Callable[..., dict], *, workers: Sequence[int] = (1, 2)
) -> Iterator[dict]:
    """One figure for the local run, one for Ray's start-up and one per worker count (see the module
    docstring); ``figure(name, **values)`` makes each (``faceid.bench`` adds the load average)."""
    from faceid.batch import process
    from faceid.distributed import RayRunner, ray_cluster, warm_up
    from faceid.pipeline import Pipeline

    names = [os.fspath(s) for s in sources]
    cores = os.cpu_count() or 1
    pipeline = Pipeline()
    start = time.perf_counter()
    pipeline.expect(len(names))
    warm_up(pipeline)
    load = time.perf_counter() - start
    cpu = time.process_time()
    local = _timed_run(lambda tick: process(names, pipeline, on_done=tick), len(names))
    local.update(_per_cpu(len(names), time.process_time() - cpu))
    yield figure("ray_local", cores=cores, models_load_s=round(load, 2), **local)
    start = time.perf_counter()
    with ray_cluster(cpus=max(workers)) as ray:
        yield figure("ray_start", seconds=round(time.perf_counter() - start, 2), version=ray.__version__)
        for n in workers:
            runner = RayRunner(Pipeline.from_key, workers=n)

            def on_ray(tick: Callable[[Any], None], runner: RayRunner = runner) -> Iterator[Any]:
                return runner(names, pipeline, on_done=tick)

            cpu = time.process_time()
            figures = _timed_run(on_ray, len(names))
            driver = time.process_time() - cpu
            figures.update(_per_cpu(len(names), runner.cpu_seconds))
            ratio = figures["photos_per_s"] / local["photos_per_s"]
            yield figure(
                "ray_cluster",
                workers=n,
                cores=cores,
                **figures,
                driver_cpu_s=round(driver, 2),
                photos_per_s_vs_local=round(ratio, 3),
            )
