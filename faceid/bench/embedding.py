"""``faceid bench --only embedding``: faces/s of every installed embedding model at several
batch sizes, and of each runtime.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from faceid.bench import _common as common


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """numpy float32 ``n x n`` matrix-multiply rate in GFLOP/s, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    return 2 * n**3 / common.best(lambda: a @ b, repeats) / 1e9


def figures(batches: Sequence[int], repeats: int, quick: bool) -> Iterator[dict]:
    yield from _embedding_facenet(batches, repeats, quick)
    yield from _embedding_onnx(batches, repeats, quick)


def _embedding_facenet(batches: Sequence[int], repeats: int, quick: bool) -> Iterator[dict]:
    from faceid import models
    from faceid.embed import Embedder, model_flops

    crops = np.random.default_rng(0).integers(0, 256, (max(batches), 160, 160, 3), dtype=np.uint8)
    graph_file = models.locate_graph() is not None
    variants = [("graph file (default)" if graph_file else "keras tf.function (default)", Embedder())]
    if not quick:
        if graph_file:
            variants.append(("keras tf.function (without the graph file)", Embedder(graph_file=False)))
        variants.append(("frozen at start-up (without the graph file)", Embedder(frozen=True, graph_file=False)))
    first = {}
    for label, embedder in variants:
        start = time.perf_counter()
        embedder.embed(crops[:1])
        first[label] = round(time.perf_counter() - start, 2)
    spec = variants[0][1].spec
    flops = model_flops(spec)
    yield common.figure(
        "embedding_model",
        model=spec.name,
        runtime=spec.runtime,
        gflop_per_face=round(flops / 1e9, 3),
        load_and_first_call_s=first,
    )
    for label, embedder in variants:
        for batch in batches:
            embedder.batch_size = batch
            count = batch if batch > 1 else 8  # one face at a time, 8 times
            # Alternate the two measurements and keep the best of each: on a shared machine both
            # then see its least loaded moments, and their ratio is fair.
            matmuls: list[float] = []
            measure_matmul = functools.partial(_append_matmul, matmuls)
            seconds, cpu = _best_embed_time(embedder, crops[:count], repeats, between=measure_matmul)
            matmul = max(matmuls)
            rate = count / seconds
            yield common.figure(
                "embedding",
                model=spec.name,
                graph=label,
                batch=batch,
                faces_per_s=round(rate, 1),
                ms_per_face=round(1000 / rate, 2),
                cpu_ms_per_face=round(1000 * cpu / count, 2),
                gflops=round(rate * flops / 1e9, 1),
                matmul_gflops=round(matmul, 1),
                share_of_matmul=round(rate * flops / 1e9 / matmul, 3),
            )


def _append_matmul(out: list[float]) -> None:
    out.append(matmul_gflops(repeats=2))


def _best_embed_time(
    embedder, crops: np.ndarray, repeats: int, *, between: Callable[[], object] | None = None
) -> tuple[float, float]:
    """Best wall and CPU seconds of ``embedder.embed(crops)`` over ``repeats + 2`` calls after a
    warm-up call; ``between`` runs before each timed call (a measurement to alternate with)."""
    embedder.embed(crops)
    seconds, cpu = float("inf"), float("inf")
    for _ in range(repeats + 2):
        if between is not None:
            between()
        wall, used = time.perf_counter(), time.process_time()
        embedder.embed(crops)
        seconds = min(seconds, time.perf_counter() - wall)
        cpu = min(cpu, time.process_time() - used)
    return seconds, cpu


def _embedding_onnx(batches: Sequence[int], repeats: int, quick: bool) -> Iterator[dict]:
    """Every ONNX model that is installed here on both ONNX runtimes side by side: OpenCV's DNN
    module, and onnxruntime at 1 thread and at the default thread count."""
    from faceid.embed_onnx import ONNX_RUNTIMES, OnnxEmbedder, default_threads
    from faceid.errors import ModelNotFoundError
    from faceid.models import MODELS, locate

    for spec in MODELS.values():
        if spec.runtime not in ONNX_RUNTIMES:
            continue
        try:
            locate(spec.name)
        except ModelNotFoundError:
            yield common.figure("embedding_model", model=spec.name, skipped=f"not installed: run `{spec.pull_command}`")
            continue
        size = spec.input_size
        crops = np.random.default_rng(0).integers(0, 256, (max(batches), size, size, 3), dtype=np.uint8)
        variants = [("opencv-dnn", None)] + [("onnxruntime", t) for t in sorted({1, default_threads()})]
        reference = OnnxEmbedder(spec.name, runtime="onnxruntime").embed(crops)
        for runtime, threads in variants:
            embedder = OnnxEmbedder(spec.name, threads=threads, runtime=runtime)
            start = time.perf_counter()
            embedder.embed(crops[:1])
            load_s = time.perf_counter() - start
            yield common.figure(
                "embedding_model",
                model=spec.name,
                runtime=runtime,
                default_runtime=runtime == spec.runtime,
                threads=threads,
                load_and_first_call_s=round(load_s, 2),
                max_difference_from_onnxruntime=float(np.abs(embedder.embed(crops) - reference).max()),
            )
            for batch in batches:
                embedder.batch_size = batch
                count = batch if batch > 1 else 8
                seconds, cpu = _best_embed_time(embedder, crops[:count], repeats)
                rate = count / seconds
                yield common.figure(
                    "embedding",
                    model=spec.name,
                    runtime=runtime,
                    default_runtime=runtime == spec.runtime,
                    threads=threads,
                    batch=batch,
                    faces_per_s=round(rate, 1),
                    ms_per_face=round(1000 / rate, 2),
                    cpu_ms_per_face=round(1000 * cpu / count, 2),
                )
