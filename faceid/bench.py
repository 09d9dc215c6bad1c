"""``faceid bench``: speed figures, measured side by side in one run, one JSON-able dict per figure.

Every figure carries the machine's load average when it was taken (``load``): on a shared
machine a comparison is only fair inside one run, so comparisons are reported as ratios of
figures measured next to each other.

Figures (``part`` names select them):

- ``machine``: CPU, cores, versions.
- ``embedding``: FaceNet faces/s at batch 1, 8, 32, 64, for the graph file that ``faceid models
  pull`` writes, the Keras ``tf.function`` and the graph frozen at start-up, as GFLOP/s (FLOPs
  counted from the model's convolutions and dense layer) and as a share of numpy's float32
  matrix-multiply rate, the two measured alternately (best of each),
  and as CPU time per face (all of TensorFlow's threads);
  then every installed ONNX model (SFace, ArcFace) at the same batches on both ONNX runtimes
  side by side: OpenCV's DNN module, and onnxruntime with 1 thread and with the default thread
  count (:func:`faceid.embed_onnx.default_threads`), as wall time and as CPU time per face (the
  process's CPU seconds: on a busy machine the steadier of the two), and how far each runtime's
  embeddings of the same crops are from onnxruntime's (largest absolute difference).
- ``detection``: MTCNN milliseconds per image at 250x250, 640x480 and 1920x1080, one image per
  call, and 250x250 photos 16 per call.
- ``identify``: warm latency of :func:`faceid.identify.identify` on a one-face 640x480 JPEG, with
  its parts (decode, detect, embed, search), and with the frozen graph.
- ``cli``: the command line end to end on a folder (the first ``images`` LFW photos in sorted
  path order, and the Big Bang photos), cold start included: ``faceid identify`` against
  face_recognition's command line (dlib HOG + ResNet, ``--cpus 2``) with the same seven known
  people (enrolled once by ``faceid enroll --folders``), alternately over two rounds, and the
  ratio of photos per second; wall and CPU (user + system) seconds of each run.
- ``coldstart``: ``faceid identify ONE_PHOTO`` in a new process, to its first line of output and
  to its exit, best of three, wall and CPU seconds; and ``faceid --help``.
- ``gallery``: enrolment (index build) time, memory per face, search latency (one query alone,
  and per query in a batch of 1,000) for the exact and the approximate index at each size, on
  clustered synthetic embeddings (identities with five noisy faces each, same-person cosine
  about 0.7), with recall@1 of the approximate index against the exact one for queries of
  enrolled people ("known") and of strangers ("unknown"); and the whole gallery (SQLite and
  index file: enrolment, first search, search, then in place: enrolling a person and searching,
  removing one, a new process's first search, a full rebuild) at the smallest and largest size.
- ``cluster``: grouping unknown faces (:func:`faceid.cluster.group_faces`) at each size, on the
  same synthetic identities (five faces each, with photo ids: three faces per photo, so the
  cannot-link rule is exercised): seconds for the neighbour graph and the agglomeration, peak
  memory, the graph's recall of the neighbours similar enough to group with (cosine >= the
  grouping floor) against exact search on a sample (found in the face's own list, and from
  either end of the edge, which is what grouping uses), BCubed scores against the true
  identities; then attaching 1,000 new faces (half of them of grouped identities, half strangers)
  to the grouped set with :func:`faceid.cluster.attach`.
- ``unknown``: the review loop in a real gallery (:mod:`faceid.gallery.unknown`) at each size:
  keeping that many synthetic unknown faces (transactions of 1,000), the first grouping (and its
  peak memory), keeping and attaching 1,000 more twice, naming the biggest group and the first
  search after it, a regroup (up to :data:`REGROUP_UP_TO` faces: above, it is the first grouping's
  work again).
- ``serve``: ``faceid serve`` under load on loopback (:mod:`faceid.server.loadtest`).
- ``big-photos``: ``faceid serve`` answering 8 concurrent 35-megapixel photos from one key: the
  answers, and the memory of its processes idle, at peak and 60 s later (:mod:`faceid.server.bigphotos`).
- ``milvus``: the gallery's index in milvus-lite (the ``milvus`` extra), index kinds and search
  parameters, recall@1 against exact and latency, at the sizes up to 100,000 (:mod:`faceid.bench_milvus`).
- ``ray``: photos/s of the first ``images`` LFW photos in this process and on a local Ray cluster
  with 1 and 2 worker actors: wall and CPU per photo (:mod:`faceid.bench_ray`; needs ``faceid[ray]``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PARTS", "default_data", "run"]

log = logging.getLogger(__name__)

PARTS = (
    "machine",
    "embedding",
    "detection",
    "identify",
    "cli",
    "coldstart",
    "gallery",
    "cluster",
    "unknown",
    "serve",
    "big-photos",
    "milvus",
    "ray",
)
SAMPLES = Path(__file__).resolve().parent / "samples"
DIMENSION = 128


def default_data() -> Path | None:
    """``$FACEID_DATA``, else ``../shared/data`` from the current folder, if it exists."""
    env = os.environ.get("FACEID_DATA")
    path = Path(env) if env else Path("..") / "shared" / "data"
    return path if path.is_dir() else None


def _load() -> list[float]:
    try:
        return [round(float(v), 2) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _figure(name: str, **values: Any) -> dict:
    return {"figure": name, **values, "load": _load()}


def _best(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls, in seconds."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing), after handing freed
    heap memory back to the system (glibc), so that a growth measures new allocations."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(
    parts: Sequence[str] = PARTS,
    *,
    data: str | os.PathLike | None = None,
    images: int = 500,
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    tiny: bool = False,
    workdir: str | os.PathLike | None = None,
    models: Sequence[str | None] = (None,),
) -> Iterator[dict]:
    """Measure the chosen ``parts`` (see the module docstring) and yield one dict per figure.

    Args:
        data: the evaluation data folder (holding ``lfw/`` and ``bigbang/``); ``None`` uses only
            the sample photos shipped with faceid.
        images: how many LFW photos the command-line comparison reads.
        sizes: gallery sizes for the index figures.
        tiny: a quick run that checks every part works (a few photos, one repetition); its
            numbers mean little.
        workdir: where temporary galleries and photo folders go (a new temporary folder by default).
        models: the embedding models that ``identify`` and ``cli`` measure (``None``: the default
            model); with several, ``cli`` runs them alternately in each round, beside face_recognition.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown benchmark parts {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    data_path = Path(data) if data is not None else None
    repeats = 1 if tiny else 3
    with tempfile.TemporaryDirectory(prefix="faceid-bench-", dir=workdir) as tmp:
        work = Path(tmp)
        if "machine" in parts:
            yield _machine()
        if "embedding" in parts:
            yield from _embedding(batches=(1, 8) if tiny else (1, 8, 32, 64), repeats=repeats, quick=tiny)
        if "detection" in parts:
            yield from _detection(data_path, repeats=repeats)
        if "identify" in parts:
            for model in models:
                yield from _identify(work, repeats=1 if tiny else 7, quick=tiny, model=model)
        if "cli" in parts:
            yield from _cli(work, data_path, images=images, compare=not tiny, models=models)
        if "coldstart" in parts:
            yield from _coldstart(work, data_path, repeats=repeats)
        if "gallery" in parts:
            yield from _gallery(work, sizes, queries=100 if tiny else 1000, alone=20 if tiny else 200)
        if "cluster" in parts:
            yield from _cluster(sizes, new=100 if tiny else 1000)
        if "unknown" in parts:
            yield from _unknown(work, sizes, new=100 if tiny else 1000)
        if "serve" in parts:  # faceid serve under load: faceid/server/loadtest.py
            from faceid.server import require_server_packages
            from faceid.server.loadtest import serve_figures

            require_server_packages()
            photo = _one_face_640x480(work / "serve-one-face-640x480.jpg")
            yield from serve_figures(work, photo, _sample_gallery, tiny=tiny)
        if "big-photos" in parts:
            from faceid.server.bigphotos import big_photo_figures

            yield from big_photo_figures(work, SAMPLES / "photos" / "astronaut.jpg", tiny=tiny)
        if "milvus" in parts:
            from faceid.bench_milvus import milvus_figures

            yield from milvus_figures(
                sizes,
                queries=100 if tiny else 1000,
                alone=20 if tiny else 200,
                synthetic_faces=synthetic_faces,
                noisy=_noisy,
                figure=_figure,
                work=work,
            )
        if "ray" in parts:  # the same photos with and without Ray: faceid/bench_ray.py
            from faceid.bench_ray import ray_figures

            photos = _lfw_files(data_path, images) or [SAMPLES / "photos" / "astronaut.jpg"] * images
            yield from ray_figures(photos, _figure, workers=(2,) if tiny else (1, 2))


# -- machine ---------------------------------------------------------------------------------------


def _machine() -> dict:
    import faiss

    cpu = platform.processor()
    flags: list[str] = []
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        flags = sorted(f for f in line.split() if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"))
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for name, dists in (
        ("tensorflow", ("tensorflow-cpu", "tensorflow")),
        ("keras", ("keras",)),
        ("mtcnn", ("mtcnn",)),
        ("dlib", ("dlib-bin", "dlib")),
        ("face_recognition", ("face-recognition",)),
    ):
        for dist in dists:
            try:
                versions[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return _figure("machine", cpu=cpu, cores=os.cpu_count(), flags=flags, versions=versions)


# -- embedding ------------------------------------------------------------------------------------


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """numpy float32 ``n x n`` matrix-multiply rate in GFLOP/s, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    return 2 * n**3 / _best(lambda: a @ b, repeats) / 1e9


def _embedding(batches: Sequence[int], repeats: int, quick: bool) -> Iterator[dict]:
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
    yield _figure(
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
            yield _figure(
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
            yield _figure("embedding_model", model=spec.name, skipped=f"not installed: run `{spec.pull_command}`")
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
            yield _figure(
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
                yield _figure(
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


# -- detection ------------------------------------------------------------------------------------


def _photo(width: int, height: int, source: Path) -> np.ndarray:
    import cv2

    from faceid.images import load_image

    return np.ascontiguousarray(cv2.resize(load_image(source), (width, height), interpolation=cv2.INTER_AREA))


def _lfw_files(data: Path | None, count: int) -> list[Path]:
    root = data / "lfw" / "lfw-deepfunneled" if data is not None else None
    if root is None or not root.is_dir():
        return []
    from faceid.batch import iter_image_files

    out = []
    for path in iter_image_files([root]):
        out.append(Path(path))
        if len(out) >= count:
            break
    return out


def _detection(data: Path | None, repeats: int) -> Iterator[dict]:
    from faceid.detect import Detector
    from faceid.images import load_image

    detector = Detector()
    pair = SAMPLES / "photos" / "obama_and_biden.jpg"
    lfw = _lfw_files(data, 16)
    small = load_image(lfw[0]) if lfw else _photo(250, 250, SAMPLES / "photos" / "astronaut.jpg")
    for label, image in (
        ("250x250", small),
        ("640x480", _photo(640, 480, pair)),
        ("1920x1080", _photo(1920, 1080, pair)),
    ):
        found = detector.detect(image)
        seconds = _best(partial(detector.detect, image), repeats)
        yield _figure("detection", size=label, per_call=1, ms_per_image=round(seconds * 1000, 1), faces=len(found))
    batch = [load_image(p) for p in lfw] if len(lfw) >= 2 else [small] * 16
    detector.detect_many(batch)
    seconds = _best(lambda: detector.detect_many(batch), repeats)
    yield _figure("detection", size="250x250", per_call=len(batch), ms_per_image=round(seconds * 1000 / len(batch), 1))


# -- identify, warm -------------------------------------------------------------------------------


def _one_face_640x480(path: Path) -> Path:
    """The astronaut sample (one face) centred on a 640x480 grey canvas, as a JPEG."""
    import cv2
    from PIL import Image

    from faceid.images import load_image

    canvas = np.full((480, 640, 3), 128, dtype=np.uint8)
    face = cv2.resize(load_image(SAMPLES / "photos" / "astronaut.jpg"), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas[:, 80:560] = face
    Image.fromarray(canvas).save(path, quality=92)
    return path


def _sample_gallery(path: Path, pipeline=None):
    from faceid.enroll import enroll_folders
    from faceid.gallery import Gallery

    gallery = Gallery(path)
    results = enroll_folders(gallery, SAMPLES / "people", pipeline)
    if not all(r.ok for r in results):
        raise RuntimeError("benchmark gallery: " + "; ".join(r.message for r in results if not r.ok))
    return gallery


def _identify(work: Path, repeats: int, quick: bool, model: str | None = None) -> Iterator[dict]:
    from faceid import models
    from faceid.embed import Embedder
    from faceid.identify import candidates_for, identify
    from faceid.images import read_image
    from faceid.pipeline import Pipeline

    pipeline = Pipeline(model)
    photo = _one_face_640x480(work / "one-face-640x480.jpg")
    with _sample_gallery(work / f"identify-gallery-{pipeline.spec.name}", pipeline) as gallery:

        def once():
            return list(identify([photo], gallery, pipeline))

        for _ in range(2):
            (result,) = once()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            once()
            times.append(time.perf_counter() - start)
        # the parts, one by one
        decode = _best(lambda: read_image(photo), repeats)
        pixels = read_image(photo).pixels
        detections = pipeline.detector.detect(pixels)
        detect = _best(lambda: pipeline.detector.detect(pixels), repeats)
        embed = _best(lambda: pipeline.embed(pixels, detections), repeats)
        vectors = pipeline.embed(pixels, detections)
        search = _best(lambda: candidates_for(gallery, vectors), repeats)
        keras_times = []
        embedder = pipeline.embedder
        if not quick and isinstance(embedder, Embedder):  # the Keras network, as without the graph file
            embedder.graph_file = False
            once()
            for _ in range(repeats):
                start = time.perf_counter()
                once()
                keras_times.append(time.perf_counter() - start)
            embedder.graph_file = True
    yield _figure(
        "identify_warm",
        model=pipeline.spec.name,
        image="640x480, one face",
        faces=len(result.faces),
        ms_median=round(statistics.median(times) * 1000, 1),
        ms_best=round(min(times) * 1000, 1),
        parts_ms={
            "decode": round(decode * 1000, 1),
            "detect": round(detect * 1000, 1),
            "embed": round(embed * 1000, 1),
            "search": round(search * 1000, 2),
        },
        graph_file=models.locate_graph() is not None,
        ms_median_keras=round(statistics.median(keras_times) * 1000, 1) if keras_times else None,
    )


# -- the command line, end to end -----------------------------------------------------------------


def _script(name: str) -> Path | None:
    """A console script installed beside this Python, else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    seconds, _, done = _timed_cpu(command, **kwargs)
    return seconds, done


def _timed_cpu(command: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system, with its threads and children) and the result."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, _children_cpu() - cpu, done


def _first_line(command: list[str]) -> tuple[float, float, float, str]:
    """Seconds to the command's first line on stdout, to its exit, its CPU seconds, and that line."""
    cpu = _children_cpu()
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        first = time.perf_counter() - start
        _, err = proc.communicate()
    total = time.perf_counter() - start
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(command[:2])} failed: {err.strip()[-500:]}")
    return first, total, _children_cpu() - cpu, line


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target.resolve())
    except OSError:
        shutil.copyfile(target, link)


def _cli_inputs(work: Path, data: Path | None, images: int) -> tuple[Path, Path, Path, int, str]:
    """A flat folder of photos, the known people as per-person folders (faceid) and as one folder
    of ``<name>.jpg`` (face_recognition), the photo count and a description."""
    photos, known_faceid, known_fr = work / "photos", work / "known-faceid", work / "known-fr"
    photos.mkdir()
    lfw = _lfw_files(data, images)
    bigbang = data / "bigbang" if data is not None and (data / "bigbang").is_dir() else None
    count = 0
    for i, path in enumerate(lfw):
        _link(path, photos / f"lfw{i:05d}_{path.name}")
        count += 1
    if bigbang is not None:
        for path in sorted([*bigbang.glob("faces/*"), *bigbang.glob("group/*")]):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                _link(path, photos / f"bigbang_{path.parent.name}_{path.name}")
                count += 1
        people = sorted(p for p in (bigbang / "faces").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        people = sorted((SAMPLES / "people").glob("*/*.jpg"))
    if count == 0:
        for path in sorted((SAMPLES / "photos").glob("*.jpg")):
            _link(path, photos / path.name)
            count += 1
    for path in people:
        name = path.stem if bigbang is not None else path.parent.name
        _link(path, known_faceid / name / path.name)
        _link(path, known_fr / f"{name}{path.suffix.lower()}")
    what = f"first {len(lfw)} LFW photos (sorted paths)" if lfw else "sample photos"
    if bigbang is not None:
        what += " and the Big Bang photos"
    return photos, known_faceid, known_fr, count, what


def _face_recognition_ready() -> str | None:
    """``None`` if face_recognition's command line can run here, else why not."""
    import importlib.util

    for module in ("face_recognition", "face_recognition_models", "dlib"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (make bench-setup)"
    import face_recognition_models

    if not Path(face_recognition_models.face_recognition_model_location()).is_file():
        return "face_recognition_models has no model files"
    if _script("face_recognition") is None:
        return "the face_recognition command is not installed (make bench-setup)"
    return None


def _cli(
    work: Path, data: Path | None, images: int, compare: bool, rounds: int = 2, models: Sequence[str | None] = (None,)
) -> Iterator[dict]:
    """The command lines end to end. With ``compare``, faceid identify (each of ``models`` on its
    own gallery of the same people) and face_recognition run ``rounds`` times, alternately, and
    each keeps its best: on a shared machine all then get its quieter moments."""
    from faceid.models import DEFAULT_MODEL

    photos, known_faceid, known_fr, count, what = _cli_inputs(work, data, images)
    faceid = _script("faceid")
    base = [str(faceid)] if faceid is not None else [sys.executable, "-m", "faceid"]
    names = [m or DEFAULT_MODEL for m in models]
    galleries = {name: work / f"cli-gallery-{name}" for name in names}
    enroll_s: dict[str, float] = {}
    for name, gallery in galleries.items():
        if compare:
            enroll_s[name], enrolled = _timed(
                [*base, "enroll", "--folders", str(known_faceid), "-g", str(gallery), "--model", name, "--json", "-q"]
            )
            if enrolled.returncode != 0:
                raise RuntimeError(f"faceid enroll failed: {enrolled.stderr.strip()[-500:]}")
        else:  # the quick run enrols in this process, saving one start-up of the models
            from faceid.enroll import enroll_folders
            from faceid.gallery import Gallery
            from faceid.pipeline import Pipeline

            start = time.perf_counter()
            with Gallery(gallery) as g:
                enroll_folders(g, known_faceid, Pipeline(name))
            enroll_s[name] = time.perf_counter() - start
    why = _face_recognition_ready() if compare else "not compared in the quick run"
    script = _script("face_recognition")
    mine: dict[str, list[float]] = {name: [] for name in names}
    mine_cpu: dict[str, list[float]] = {name: [] for name in names}
    lines: dict[str, list[dict]] = {}
    theirs: list[float] = []
    by_photo: dict[str, list[str]] = {}
    for _ in range(rounds if compare else 1):
        for name, gallery in galleries.items():
            seconds, cpu, found = _timed_cpu([*base, "identify", str(photos), "-g", str(gallery), "--json", "-q"])
            lines[name] = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
            if found.returncode != 0 or len(lines[name]) != count:
                raise RuntimeError(f"faceid identify failed on {count} photos: {found.stderr.strip()[-500:]}")
            mine[name].append(seconds)
            mine_cpu[name].append(cpu)
        if why is None and script is not None:
            # (no CPU figure: its worker processes are not waited for, so their time is not counted)
            seconds, done = _timed([str(script), "--cpus", "2", str(known_fr), str(photos)])
            if done.returncode != 0:
                why = f"face_recognition failed: {done.stderr.strip()[-300:]}"
                continue
            theirs.append(seconds)
            by_photo = {}
            for row in (line.split(",") for line in done.stdout.splitlines() if "," in line):
                by_photo.setdefault(row[0], []).append(row[1])
    for name in names:
        identify_s = min(mine[name])
        yield _figure(
            "cli_faceid",
            model=name,
            command="faceid identify PHOTOS --json -q "
            f"(gallery enrolled by faceid enroll --folders KNOWN --model {name})",
            input=what,
            known_people=len(list(known_faceid.iterdir())),
            photos=count,
            enroll_s=round(enroll_s[name], 2),
            identify_s=round(identify_s, 2),
            identify_s_each_round=[round(v, 2) for v in mine[name]],
            cpu_s_each_round=[round(v, 2) for v in mine_cpu[name]],
            photos_per_s=round(count / identify_s, 2),
            photos_per_s_with_enroll=round(count / (enroll_s[name] + identify_s), 2),
            photos_without_face=sum(1 for r in lines[name] if not r["faces"]),
            faces=sum(len(r["faces"]) for r in lines[name]),
        )
    if not compare:  # the quick run: checks that the command line works, measures no more
        return
    if why is not None or not theirs:
        yield _figure("cli_face_recognition", skipped=why or "face_recognition is not installed")
        return
    fr_s = min(theirs)
    yield _figure(
        "cli_face_recognition",
        command="face_recognition --cpus 2 KNOWN PHOTOS",
        photos=count,
        seconds=round(fr_s, 2),
        seconds_each_round=[round(v, 2) for v in theirs],
        photos_per_s=round(count / fr_s, 2),
        photos_answered=len(by_photo),
        photos_without_face=sum(1 for names in by_photo.values() if names == ["no_persons_found"]),
    )
    for name in names:
        identify_s = min(mine[name])
        yield _figure(
            "cli_ratio",
            model=name,
            faceid_identify_over_face_recognition=round(fr_s / identify_s, 2),
            with_faceid_enroll_over_face_recognition=round(fr_s / (enroll_s[name] + identify_s), 2),
            note="photos/s of faceid identify (cold start included, gallery already enrolled) over "
            "face_recognition's (which reads its known people on every run); with_faceid_enroll adds "
            "the one-off faceid enroll, a second cold start, to faceid's time",
        )


def _coldstart(work: Path, data: Path | None, repeats: int) -> Iterator[dict]:
    """``faceid identify ONE_PHOTO`` in a new process, as a user types it: best of ``repeats``."""
    faceid = _script("faceid")
    base = [str(faceid)] if faceid is not None else [sys.executable, "-m", "faceid"]
    gallery = work / "coldstart-gallery"
    enrolled = subprocess.run(
        [*base, "enroll", "--folders", str(SAMPLES / "people"), "-g", str(gallery), "-q"],
        capture_output=True,
        text=True,
    )
    if enrolled.returncode != 0:
        raise RuntimeError(f"faceid enroll failed: {enrolled.stderr.strip()[-500:]}")
    lfw = _lfw_files(data, 1)
    photo = lfw[0] if lfw else SAMPLES / "photos" / "astronaut.jpg"
    runs = [_first_line([*base, "identify", str(photo), "-g", str(gallery)]) for _ in range(max(1, repeats))]
    help_s, _ = _timed([*base, "--help"])
    from faceid import models

    yield _figure(
        "cold_start",
        command=f"faceid identify {photo.name} -g GALLERY (3 people)",
        first_line_s=round(min(r[0] for r in runs), 2),
        exit_s=round(min(r[1] for r in runs), 2),
        cpu_s=round(min(r[2] for r in runs), 2),
        first_line_s_each=[round(r[0], 2) for r in runs],
        cpu_s_each=[round(r[2], 2) for r in runs],
        graph_file=models.locate_graph() is not None,
        help_s=round(help_s, 2),
    )


# -- gallery ----------------------------------------------------------------------------------------


def synthetic_faces(people: int, per: int = 5, *, noise: float = 0.65, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (people, 128), faces (people * per, 128))``: unit float32 rows, ``per`` noisy faces each.

    Two faces of one identity have cosine about ``1 / (1 + noise**2)`` (0.7 at the default), as
    two FaceNet embeddings of one person typically do; different identities are random.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, DIMENSION), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces = np.empty((people * per, DIMENSION), dtype=np.float32)
    step = 100_000
    for start in range(0, len(faces), step):
        rows = np.arange(start, min(len(faces), start + step)) // per
        block = centres[rows] + (noise / np.sqrt(DIMENSION)) * rng.standard_normal(
            (len(rows), DIMENSION), dtype=np.float32
        )
        faces[start : start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return centres, faces


def _noisy(centres: np.ndarray, rng: np.random.Generator, noise: float = 0.65) -> np.ndarray:
    rows = centres + (noise / np.sqrt(DIMENSION)) * rng.standard_normal(centres.shape, dtype=np.float32)
    return np.ascontiguousarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def _gallery(work: Path, sizes: Sequence[int], queries: int, alone: int) -> Iterator[dict]:
    import faiss

    from faceid import index as gi

    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = synthetic_faces(people, per)
        ids = np.arange(1, len(faces) + 1, dtype=np.int64)
        rng = np.random.default_rng(1)
        known = _noisy(centres[rng.integers(0, people, queries)], rng)
        strangers = _noisy(synthetic_faces(queries, 1, seed=2)[0], rng)
        exact_results = {}
        for kind in (gi.EXACT, gi.APPROXIMATE):
            spec = gi.IndexSpec(gi.EXACT) if kind == gi.EXACT else gi.choose(max(n, gi.EXACT_LIMIT), DIMENSION)
            before = _rss()
            start = time.perf_counter()
            index = gi.build(ids, faces, DIMENSION, spec)
            build_s = time.perf_counter() - start
            grown = _rss() - before
            size = faiss.serialize_index(index).nbytes
            singles = []
            for q in known[:alone]:
                t = time.perf_counter()
                gi.search(index, q[None], 10)
                singles.append(time.perf_counter() - t)
            start = time.perf_counter()
            k_scores, k_ids = gi.search(index, known, 10)
            batch_s = time.perf_counter() - start
            u_scores, u_ids = gi.search(index, strangers, 10)
            figure = {
                "faces": len(faces),
                "index": kind,
                "spec": spec.to_json(),
                "enrol_s": round(build_s, 2),
                "bytes_per_face_file": round(size / len(faces), 1),
                "bytes_per_face_memory": round(grown / len(faces), 1),
                "search_alone_ms_median": round(statistics.median(singles) * 1000, 3),
                "search_alone_ms_p95": round(float(np.percentile(singles, 95)) * 1000, 3),
                "search_batch_ms_per_query": round(batch_s / len(known) * 1000, 4),
                "batch": len(known),
            }
            if kind == gi.EXACT:
                exact_results = {"known": (k_scores, k_ids), "unknown": (u_scores, u_ids)}
            else:
                for label, (scores, found) in (("known", (k_scores, k_ids)), ("unknown", (u_scores, u_ids))):
                    want_scores, want_ids = exact_results[label]
                    figure[f"recall_at_1_{label}"] = round(float(np.mean(found[:, 0] == want_ids[:, 0])), 4)
                    figure[f"top1_similarity_gap_{label}_max"] = round(
                        float(np.max(want_scores[:, 0] - scores[:, 0])), 4
                    )
            del index
            yield _figure("gallery_index", data="clustered synthetic, 5 faces per identity", **figure)
        del faces
    yield from _gallery_sqlite(work, min(sizes), per_transaction=5)
    if max(sizes) > min(sizes):
        yield from _gallery_sqlite(work, max(sizes), per_transaction=1000)


def _gallery_sqlite(work: Path, n: int, per_transaction: int) -> Iterator[dict]:
    """The whole gallery (SQLite + index file): enrolment in transactions of ``per_transaction``
    faces (one person each), the first search (reading the embeddings, building the index and
    writing its file), searches with the 64 candidates ``identify`` asks for; then, the index in
    place: enrolling one person of five faces and searching (the time to the first result),
    removing one person (the oldest, and two just enrolled) until the removal is in effect
    (committed, out of the index and scrubbed from its files), then apart the rewrite of
    gallery.db (VACUUM) that secure deletion needs and ``faceid serve`` runs in the background;
    a new process's first search (loading the index file, which is now some changes behind, and
    bringing it up to date); and a full rebuild."""
    import shutil

    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import Gallery, NewFace

    key = EmbeddingKey.for_model()
    assert key.dimension == DIMENSION
    per = 5
    centres, faces = synthetic_faces(max(1, n // per), per, seed=3)
    path = work / f"sqlite-gallery-{n}"
    rng = np.random.default_rng(4)
    queries = _noisy(centres[rng.integers(0, len(centres), 200)], rng)
    newcomers = synthetic_faces(5, per, seed=5)[1]
    with Gallery(path) as gallery:
        start = time.perf_counter()
        for first in range(0, len(faces), per_transaction):
            rows = faces[first : first + per_transaction]
            gallery.add_faces(
                f"person {first}",
                [NewFace(v, f"{first + j:064d}", (0, 0, 100, 100), 0.99) for j, v in enumerate(rows)],
                embedding_key=key,
            )
        enrol_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.search(queries[:1], 64)
        first_s = time.perf_counter() - start
        alone = []
        for q in queries[:50]:
            start = time.perf_counter()
            gallery.search(q[None], 64)
            alone.append(time.perf_counter() - start)
        start = time.perf_counter()
        gallery.search(queries, 64)
        batch_s = time.perf_counter() - start
        kind = gallery.index_spec.kind
        enrol_search = []
        for i in range(5):
            rows = newcomers[i * per : (i + 1) * per]
            start = time.perf_counter()
            gallery.add_faces(
                f"newcomer {i}",
                [NewFace(v, f"n{i}{j:062d}", (0, 0, 100, 100), 0.99) for j, v in enumerate(rows)],
                embedding_key=key,
            )
            _, found = gallery.search(rows[:1], 64)
            enrol_search.append(time.perf_counter() - start)
            assert gallery.face_owners(found[:, :1]).get(int(found[0, 0])) == f"newcomer {i}"
        remove_s, compact_s = [], []
        for name in ("person 0", "newcomer 0", "newcomer 1"):
            start = time.perf_counter()
            gallery.remove(name, compact=False)  # in effect: committed, out of the index and its files
            remove_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            gallery.compact()  # then gallery.db's rewrite (VACUUM), as faceid serve runs it in the background
            compact_s.append(time.perf_counter() - start)
        gallery.search(queries[:1], 64)
    with Gallery(path) as gallery:
        start = time.perf_counter()
        gallery.search(queries[:1], 64)
        reopen_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.rebuild_index()
        rebuild_s = time.perf_counter() - start
    sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    db = sizes.get("gallery.db", 0)
    index_file = sum(v for k, v in sizes.items() if k.startswith("index-"))
    shutil.rmtree(path, ignore_errors=True)
    yield _figure(
        "gallery_sqlite",
        faces=len(faces),
        faces_per_transaction=per_transaction,
        enrol_s=round(enrol_s, 2),
        faces_per_s=round(len(faces) / enrol_s, 1),
        first_search_s=round(first_s, 3),
        search_alone_ms_median_k64=round(statistics.median(alone) * 1000, 3),
        search_batch_ms_per_query_k64=round(batch_s / len(queries) * 1000, 4),
        enrol_5_and_search_ms=[round(t * 1000, 1) for t in enrol_search],
        remove_person_s=round(remove_s[0], 3),
        remove_person_s_oldest_new_new=[round(t, 3) for t in remove_s],
        then_rewrite_s=[round(t, 3) for t in compact_s],
        new_process_first_search_s=round(reopen_s, 3),
        full_rebuild_s=round(rebuild_s, 2),
        index=kind,
        db_bytes_per_face=round(db / len(faces), 1),
        index_file_bytes_per_face=round(index_file / len(faces), 1),
    )


# -- cluster ----------------------------------------------------------------------------------------


def _peak_reset() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """Peak resident memory of this process since the last :func:`_peak_reset`, in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cluster(sizes: Sequence[int], new: int) -> Iterator[dict]:
    from faceid.cluster import GroupCentroids, GroupingParams, attach, cluster_scores, group_faces, knn_graph

    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = synthetic_faces(people, per, seed=5)
        truth = np.arange(len(faces)) // per
        rng = np.random.default_rng(6)
        photos = rng.permutation(len(faces)) // 3  # three faces per photo, of random identities
        base = _rss()
        _peak_reset()
        start = time.perf_counter()
        graph = knn_graph(faces, 32)
        graph_s = time.perf_counter() - start
        # recall of the neighbours that matter: those similar enough to be grouped with; the
        # grouping uses an edge found from either end, so both counts are given
        sample = rng.choice(len(faces), min(len(faces), 500), replace=False)
        floor = GroupingParams().floor
        strong = [np.setdiff1d(np.flatnonzero(row >= floor), [i]) for row, i in zip(faces[sample] @ faces.T, sample)]
        one, either = [], []
        for i, s in zip(sample, strong):
            if len(s):
                mine = np.isin(s, graph.ids[i])
                one.append(float(np.mean(mine)))
                either.append(float(np.mean(mine | np.any(graph.ids[s] == i, axis=1))))
        recall = float(np.mean(one)) if one else 1.0
        recall_either = float(np.mean(either)) if either else 1.0
        start = time.perf_counter()
        grouping = group_faces(faces, photos=photos, neighbours=graph)
        group_s = time.perf_counter() - start
        peak = _peak()
        del graph
        scores = cluster_scores(truth, grouping.labels)
        yield _figure(
            "cluster_group",
            data="clustered synthetic, 5 faces per identity, 3 faces per photo",
            faces=len(faces),
            graph_s=round(graph_s, 1),
            graph_exact=bool(grouping.exact_graph),
            graph_recall_strong=round(recall, 4),
            graph_recall_strong_either_end=round(recall_either, 4),
            agglomerate_s=round(group_s, 1),
            total_s=round(graph_s + group_s, 1),
            peak_rss_gib=round(peak / 2**30, 2) if peak else None,
            rss_before_gib=round(base / 2**30, 2),
            groups=grouping.groups,
            ungrouped=grouping.ungrouped,
            bcubed_precision=round(scores.bcubed_precision, 4),
            bcubed_recall=round(scores.bcubed_recall, 4),
            threads=_threads(),
        )
        start = time.perf_counter()
        centroids = GroupCentroids.from_labels(faces, grouping.labels, photos)
        centroids_s = time.perf_counter() - start
        half = new // 2
        who = rng.integers(0, people, half)
        arrivals = np.concatenate([_noisy(centres[who], rng), _noisy(synthetic_faces(new - half, 1, seed=7)[0], rng)])
        start = time.perf_counter()
        placed = attach(arrivals, centroids, photos=np.arange(len(arrivals)) + photos.max() + 1)
        attach_s = time.perf_counter() - start
        # wrong: a known identity's face joined a group holding none of that identity's faces
        grouped = grouping.labels >= 0
        span = max(1, grouping.groups)
        pairs = np.unique(truth[grouped] * span + grouping.labels[grouped])
        joined = placed.groups[:half]
        wrong_known = int(np.sum((joined >= 0) & ~np.isin(who * span + joined, pairs)))
        yield _figure(
            "cluster_attach",
            faces=len(faces),
            new_faces=len(arrivals),
            attach_s=round(attach_s, 2),
            centroids_s=round(centroids_s, 2),
            known_attached=int(np.sum(joined >= 0)),
            known_attached_elsewhere=wrong_known,
            strangers_attached=int(np.sum(placed.groups[half:] >= 0)),
            threads=_threads(),
        )
        del faces, grouping, centroids


#: The ``unknown`` part regroups every face (the same work as its first grouping) only up to this size.
REGROUP_UP_TO = 200_000


def _unknown(work: Path, sizes: Sequence[int], new: int) -> Iterator[dict]:
    import shutil

    from faceid.cluster import cluster_scores
    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import Gallery, NewFace

    key = EmbeddingKey.for_model()
    assert key.dimension == DIMENSION
    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = synthetic_faces(people, per, seed=8)
        rng = np.random.default_rng(9)
        who = rng.integers(0, people, new)
        arrivals = _noisy(centres[who], rng)
        more = _noisy(centres[rng.integers(0, people, new)], rng)

        def new_faces(vectors: np.ndarray, first: int) -> list[NewFace]:
            return [
                NewFace(
                    v, f"{first + i:064x}", (0, 0, 80, 80), 0.99, f"/photos/{first + i}.jpg", thumbnail=b"\xff" * 4000
                )
                for i, v in enumerate(vectors)
            ]

        folder = work / f"unknown-{n}"
        with Gallery(folder) as g:
            start = time.perf_counter()
            for first in range(0, len(faces), 1000):
                g.unknown.keep(new_faces(faces[first : first + 1000], first), embedding_key=key, group=False)
            keep_s = time.perf_counter() - start
            _peak_reset()
            start = time.perf_counter()
            first_grouping = g.unknown.update_groups()
            group_s = time.perf_counter() - start
            group_peak = _peak()
            labels = np.full(len(faces), -1, np.int64)
            for number, grp in enumerate(g.unknown.groups()):
                labels[[f.id - 1 for f in grp.faces]] = number
            scores = cluster_scores(np.arange(len(faces)) // per, labels)
            attach_s = []
            attached = []
            for round_, part in enumerate((arrivals, more)):  # two rounds: the second also reads cached sums
                before = g.unknown.count() - len(g.unknown.ungrouped())
                start = time.perf_counter()
                kept = g.unknown.keep(new_faces(part, len(faces) + round_ * new), embedding_key=key)
                attach_s.append(time.perf_counter() - start)
                attached.append(g.unknown.count() - len(g.unknown.ungrouped()) - before)
            biggest = g.unknown.groups()[0]
            start = time.perf_counter()
            g.unknown.name(biggest.id, "someone")
            named_s = time.perf_counter() - start
            g.search(arrivals[:1], 10)
            named_search_s = time.perf_counter() - start
            regroup_s = None
            if n <= REGROUP_UP_TO:  # the same work as the first grouping (every face read and grouped)
                start = time.perf_counter()
                g.unknown.regroup()
                regroup_s = round(time.perf_counter() - start, 2)
        shutil.rmtree(folder)
        yield _figure(
            "unknown_loop",
            data="clustered synthetic, 5 faces per identity, one face per photo",
            faces=len(faces),
            keep_s=round(keep_s, 2),
            first_grouping_s=round(group_s, 2),
            first_grouping_peak_rss_gib=round(group_peak / 2**30, 2) if group_peak else None,
            groups=first_grouping.new_groups,
            ungrouped=first_grouping.ungrouped,
            bcubed_precision=round(scores.bcubed_precision, 4),
            bcubed_recall=round(scores.bcubed_recall, 4),
            keep_and_attach_new_s=round(attach_s[0], 2),
            new_faces=new,
            attached=attached[0],
            keep_and_attach_again_s=round(attach_s[1], 2),
            again_new_faces=kept.added,
            again_attached=attached[1],
            name_biggest_group_s=round(named_s, 3),
            name_and_first_search_s=round(named_search_s, 3),
            regroup_s=regroup_s,
            threads=_threads(),
        )
        del faces


def _threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())
