"""``faceid bench --only identify``: warm latency of one identify call, and its parts.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from faceid.bench import _common as common


def figures(
    work: Path, repeats: int, quick: bool, model: str | None = None, detector: str | None = None
) -> Iterator[dict]:
    from faceid import models
    from faceid.embed import Embedder
    from faceid.identify import candidates_for, identify
    from faceid.images import read_image
    from faceid.pipeline import Pipeline

    pipeline = Pipeline(model, detector=detector)
    photo = common.one_face_640x480(work / "one-face-640x480.jpg")
    folder = work / f"identify-gallery-{pipeline.spec.name}-{pipeline.detector_name}"
    with common.sample_gallery(folder, pipeline) as gallery:

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
        decode = common.best(lambda: read_image(photo), repeats)
        pixels = read_image(photo).pixels
        detections = pipeline.detector.detect(pixels)
        detect = common.best(lambda: pipeline.detector.detect(pixels), repeats)
        embed = common.best(lambda: pipeline.embed(pixels, detections), repeats)
        vectors = pipeline.embed(pixels, detections)
        search = common.best(lambda: candidates_for(gallery, vectors), repeats)
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
    yield common.figure(
        "identify_warm",
        model=pipeline.spec.name,
        detector=pipeline.detector_name,
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
