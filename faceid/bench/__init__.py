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
- ``detectors``: MTCNN and YuNet side by side: faces found and false faces on the evaluation
  photos, the smallest face, CPU and wall time per 640x480 photo, and how the two detectors'
  landmarks change the same faces' embeddings (:mod:`faceid.bench.detectors`). ``identify``,
  ``cli``, ``coldstart`` and ``serve`` measure each detector given with ``--detector mtcnn,yunet``.
- ``gallery``: enrolment (index build) time, memory per face, search latency (one query alone,
  and per query in a batch of 1,000) for the exact and the approximate index at each size, on
  clustered synthetic embeddings (identities with five noisy faces each, same-person cosine
  about 0.7), with recall@1 of the approximate index against the exact one for queries of
  enrolled people ("known") and of strangers ("unknown"); and the whole gallery (SQLite and
  index file: enrolment, first search, search, then in place: enrolling a person and searching,
  removing one, a new process's opening, first search (``new_process_first_search_s``: from the
  index file memory-mapped from 50,000 faces, files in the page cache) and the wait until its
  index is loaded and checked, a full rebuild) at the smallest and largest size.
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
  search after it, a regroup (up to :data:`~faceid.bench.unknown.REGROUP_UP_TO` faces: above, it is the first grouping's
  work again).
- ``serve``: ``faceid serve`` under load on loopback (:mod:`faceid.bench.serve`).
- ``big-photos``: ``faceid serve`` answering 8 concurrent 35-megapixel photos from one key: the
  answers, and the memory of its processes idle, at peak and 60 s later (:mod:`faceid.bench.big_photos`).
- ``milvus``: the gallery's index in milvus-lite (the ``milvus`` extra), index kinds and search
  parameters, recall@1 against exact and latency, at the sizes up to 100,000 (:mod:`faceid.bench.milvus`).
  First milvus-lite and a fresh Milvus server side by side (enrol, identify, remove, check, identify
  --remember; in this process and as fresh ``faceid`` processes), as ratios, with issue 21's goals
  (:mod:`faceid.bench.milvus_server`; skipped, saying why, without ``.venv-milvus``).
- ``ray``: photos/s of the first ``images`` LFW photos in this process and on a local Ray cluster
  with 1 and 2 worker actors: wall and CPU per photo (:mod:`faceid.bench.ray`; needs ``faceid[ray]``).

One module per part (``faceid/bench/<part>.py``, each with its ``figures``; ``serve_figures``,
``milvus_figures``, ``ray_figures`` for the last three); what they share is in
:mod:`faceid.bench._common`. No product module imports this package.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from faceid.bench import _common as common
from faceid.bench import cli, cluster, coldstart, detection, embedding, gallery, identify, machine, unknown
from faceid.bench import detectors as detectors_part
from faceid.bench._common import SAMPLES, figure, noisy, synthetic_faces

__all__ = ["PARTS", "SAMPLES", "default_data", "figure", "noisy", "run", "synthetic_faces"]

PARTS = (
    "machine",
    "embedding",
    "detection",
    "identify",
    "cli",
    "coldstart",
    "detectors",
    "gallery",
    "cluster",
    "unknown",
    "serve",
    "big-photos",
    "milvus",
    "ray",
    "video",
)


def default_data() -> Path | None:
    """``$FACEID_DATA``, else ``../shared/data`` from the current folder, if it exists."""
    env = os.environ.get("FACEID_DATA")
    path = Path(env) if env else Path("..") / "shared" / "data"
    return path if path.is_dir() else None


def run(
    parts: Sequence[str] = PARTS,
    *,
    data: str | os.PathLike | None = None,
    images: int = 500,
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    tiny: bool = False,
    workdir: str | os.PathLike | None = None,
    models: Sequence[str | None] = (None,),
    detectors: Sequence[str | None] = (None,),
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
        detectors: the face detectors that ``identify``, ``cli``, ``coldstart`` and ``serve`` measure, each with
            each model (``None``: the default, MTCNN); ``detectors`` compares them all.
    """
    strange = [p for p in parts if p not in PARTS]
    if strange:
        raise ValueError(f"unknown benchmark parts {', '.join(strange)}; choose from {', '.join(PARTS)}")
    data_path = Path(data) if data is not None else None
    repeats = 1 if tiny else 3
    with tempfile.TemporaryDirectory(prefix="faceid-bench-", dir=workdir) as tmp:
        work = Path(tmp)
        if "machine" in parts:
            yield machine.figures()
        if "embedding" in parts:
            yield from embedding.figures(batches=(1, 8) if tiny else (1, 8, 32, 64), repeats=repeats, quick=tiny)
        if "detection" in parts:
            yield from detection.figures(data_path, repeats=repeats)
        if "identify" in parts:
            for model in models:
                for detector in detectors:
                    yield from identify.figures(work, 1 if tiny else 7, tiny, model=model, detector=detector)
        if "cli" in parts:
            yield from cli.figures(work, data_path, images, not tiny, models=models, detectors=detectors)
        if "coldstart" in parts:
            for detector in detectors:
                yield from coldstart.figures(work, data_path, repeats=repeats, detector=detector)
        if "detectors" in parts:
            yield from detectors_part.figures(data_path, tiny=tiny)
        if "gallery" in parts:
            yield from gallery.figures(work, sizes, queries=100 if tiny else 1000, alone=20 if tiny else 200)
        if "cluster" in parts:
            yield from cluster.figures(sizes, new=100 if tiny else 1000)
        if "unknown" in parts:
            yield from unknown.figures(work, sizes, new=100 if tiny else 1000)
        if "serve" in parts:  # faceid serve under load: faceid/bench/serve.py
            from faceid.bench.serve import serve_figures
            from faceid.server import require_server_packages

            require_server_packages()
            photo = common.one_face_640x480(work / "serve-one-face-640x480.jpg")
            for detector in detectors:
                yield from serve_figures(work, photo, common.sample_gallery, tiny=tiny, detector=detector)
        if "big-photos" in parts:
            from faceid.bench import big_photos
            from faceid.server import require_server_packages

            require_server_packages()
            yield from big_photos.figures(work, SAMPLES / "photos" / "astronaut.jpg", tiny=tiny)
        if "milvus" in parts:
            from faceid.bench.milvus import milvus_figures
            from faceid.bench.milvus_server import server_figures

            yield from server_figures(work, data_path, tiny=tiny, figure=common.figure)
            yield from milvus_figures(
                sizes,
                queries=100 if tiny else 1000,
                alone=20 if tiny else 200,
                synthetic_faces=common.synthetic_faces,
                noisy=common.noisy,
                figure=common.figure,
                work=work,
            )
        if "video" in parts:  # real-time factor, sampling rates, watch's memory: faceid/bench/video.py
            from faceid.bench.video import figures as video_figures
            from faceid.pipeline import Pipeline

            video_pipelines = [("mtcnn", Pipeline), ("yunet", lambda: Pipeline(detector="yunet"))]
            yield from video_figures(work, data_path, tiny=tiny, pipelines=video_pipelines)
        if "ray" in parts:  # the same photos with and without Ray: faceid/bench/ray.py
            from faceid.bench.ray import ray_figures

            photos = common.lfw_files(data_path, images) or [common.SAMPLES / "photos" / "astronaut.jpg"] * images
            yield from ray_figures(photos, common.figure, workers=(2,) if tiny else (1, 2))
