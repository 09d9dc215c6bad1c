"""``faceid bench --only detectors``: MTCNN and YuNet side by side in one run.

Per detector, on the evaluation photos (``../shared/data``): faces found on the Big Bang group
photo and references and on face_recognition's examples, false faces on the awkward photos that
hold no human face, the smallest face found, the time per 640x480 photo; and per embedding model,
how far apart the two detectors' landmarks put the same faces' embeddings
(:mod:`faceid.eval.detectors`). The expected counts come from each folder's index
(``bigbang/ground_truth.json``, ``face_recognition_examples/INDEX.md``, ``awkward/INDEX.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceid.bench._common import figure

__all__ = ["AWKWARD_FACELESS", "EXAMPLE_FACES", "DetectorFigures", "detector_figures", "figures", "smallest_face"]

log = logging.getLogger(__name__)

#: awkward/ photos that hold no human face (awkward/INDEX.md): every face found there is a false one.
AWKWARD_FACELESS = tuple(
    f"skimage_data/{name}"
    for name in (
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "hubble_deep_field.jpg",
        "motorcycle_left.png",
        "brick.png",
        "grass.png",
        "gravel.png",
        "coins.png",
        "moon.png",
        "horse.png",
        "color.png",
        "logo.png",
        "page.png",
        "text.png",
        "retina.jpg",
    )
) + (
    "pillow_tests/uncompressed_la.png",
    "pillow_tests/pil_sample_cmyk.jpg",
    "pillow_tests/pil_sample_rgb.jpg",
    "pillow_tests/tiff_tiled_cmyk_jpeg.tif",
    "pillow_tests/pil123rgba.png",
    "pillow_tests/flower.jpg",
    "pillow_tests/flower2.jpg",
    "caffe_examples/cat.jpg",
    "caffe_examples/cat_gray.jpg",
)

#: face_recognition_examples/ photos and their faces (INDEX.md); the partial faces are left out.
EXAMPLE_FACES = {
    "examples/knn_examples/test/alex_lacamoire1.jpg": 1,
    "examples/knn_examples/test/johnsnow_test1.jpg": 1,
    "examples/knn_examples/test/obama1.jpg": 1,
    "examples/knn_examples/test/kit_with_rose.jpg": 2,
    "examples/knn_examples/test/obama_and_biden.jpg": 3,
    "examples/two_people.jpg": 2,
    "examples/obama-240p.jpg": 1,
    "examples/obama-480p.jpg": 1,
    "examples/obama-720p.jpg": 1,
    "examples/obama-1080p.jpg": 1,
    "examples/obama_small.jpg": 1,
    "examples/alex-lacamoire.png": 1,
    "examples/lin-manuel-miranda.png": 1,
    "tests/test_images/obama.jpg": 1,
    "tests/test_images/obama2.jpg": 1,
    "tests/test_images/obama3.jpg": 1,
    "tests/test_images/biden.jpg": 1,
    "tests/test_images/32bit.png": 1,
}


@dataclass(frozen=True)
class DetectorFigures:
    """One detector's figures on ``../shared/data``.

    Attributes:
        detector: ``"mtcnn"`` or ``"yunet"``.
        bigbang_group, bigbang_group_expected: faces found on ``bigbang/group/cast.jpg``, and its cast.
        bigbang_references: reference photos (one face each) in which a face was found, of 7.
        examples_found, examples_expected: faces found on :data:`EXAMPLE_FACES` (each photo's count
            capped at its expected count), and the faces there.
        examples_extra: faces found beyond a photo's expected count (false or partial faces).
        awkward_false, awkward_false_files: faces found on :data:`AWKWARD_FACELESS`, and where.
        smallest_face_px: the smallest face side (px) found in a 640x480 photo of one face shrunk
            step by step (see :func:`smallest_face`).
        ms_per_640x480: median wall time of one 640x480 photo's detection, warm.
        cpu_ms_per_640x480: median CPU time of the same (all threads of the process; on a busy
            machine a steadier figure than the wall time).
    """

    detector: str
    bigbang_group: int
    bigbang_group_expected: int
    bigbang_references: int
    examples_found: int
    examples_expected: int
    examples_extra: int
    awkward_false: int
    awkward_false_files: tuple[str, ...]
    smallest_face_px: int | None
    ms_per_640x480: float
    cpu_ms_per_640x480: float


def detector_figures(data: Path, detector_name: str, *, repeats: int = 20, smallest: bool = True) -> DetectorFigures:
    """Run ``detector_name`` over the photos of ``data`` (``../shared/data``); ``smallest=False``
    leaves the smallest face out (``None``: it is the slow figure, a dozen enlarged photos)."""
    import json

    from faceid.detectors import make_detector
    from faceid.images import load_image
    from faceid.tight import detect_padded

    detector = make_detector(detector_name)

    def find(image: np.ndarray) -> list:
        """As a pipeline finds faces: a photo with none is tried again padded (faceid.tight)."""
        return detect_padded(detector, [image])[0]

    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    group = find(load_image(data / "bigbang" / "group" / "cast.jpg"))
    references = sum(bool(find(load_image(data / "bigbang" / p))) for p in truth["gallery"].values())
    found = extra = 0
    for name, expected in EXAMPLE_FACES.items():
        count = len(find(load_image(data / "face_recognition_examples" / name)))
        found += min(count, expected)
        extra += max(0, count - expected)
    false_files = []
    false = 0
    for name in AWKWARD_FACELESS:
        faces = find(load_image(data / "awkward" / name))
        if faces:
            false += len(faces)
            false_files.append(name)
    portrait = load_image(data / "face_recognition_examples" / "examples" / "obama-480p.jpg")
    frame = _fit_640x480(portrait)
    detector.detect(frame)
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        detector.detect(frame)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return DetectorFigures(
        detector=detector_name,
        bigbang_group=len(group),
        bigbang_group_expected=len(truth["probes"]["group/cast.jpg"]),
        bigbang_references=references,
        examples_found=found,
        examples_expected=sum(EXAMPLE_FACES.values()),
        examples_extra=extra,
        awkward_false=false,
        awkward_false_files=tuple(false_files),
        smallest_face_px=smallest_face(detector, frame) if smallest else None,
        ms_per_640x480=round(float(np.median(times)) * 1000, 2),
        cpu_ms_per_640x480=round(float(np.median(cpu)) * 1000, 2),
    )


def figures(data: Path | None, *, tiny: bool, detectors: Sequence[str] = ("mtcnn", "yunet")) -> Iterator[dict]:
    """The part's figures, one dict each; ``data`` is ``../shared/data``."""
    from faceid.errors import ModelNotFoundError
    from faceid.models import DEFAULT_MODEL, FACENET, locate

    try:
        locate("yunet")
    except ModelNotFoundError as exc:
        yield figure("detectors", skipped=str(exc))
        return
    if data is None or not (data / "bigbang").is_dir():
        yield figure("detectors", skipped="../shared/data is not here (set FACEID_DATA)")
        return
    for name in detectors:
        found = detector_figures(data, name, repeats=1 if tiny else 20, smallest=not tiny)
        yield figure("detector_found", **asdict(found))
    photos = sorted((data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[::26][: 5 if tiny else 500]
    if not photos:
        return
    for model in (DEFAULT_MODEL,) if tiny else (DEFAULT_MODEL, FACENET):
        try:
            locate(model)
        except ModelNotFoundError as exc:
            yield figure("detector_agreement", model=model, skipped=str(exc))
            continue
        from faceid.eval.detectors import detector_agreement

        agreement = detector_agreement(photos, model, (detectors[0], detectors[-1]))
        yield figure(
            "detector_agreement",
            photos=f"LFW, every 26th photo of the sorted paths, the first {len(photos)}",
            **asdict(agreement),
        )


def smallest_face(detector, frame: np.ndarray) -> int | None:
    """The smallest face side (px) ``detector`` still finds when the one-face ``frame`` is shrunk
    by steps of 10% and pasted at the centre of a grey 640x480 canvas (``None`` if not even at full size).

    The face side is the box side found at full size times the scale. The detector is asked for
    faces down to 4 px (``min_face_size=4``; 20 px by default), and so enlarges the photo as its
    own rule says (MTCNN up to 5x, YuNet up to 3.75x, both at most to a 1600 px side).
    """
    import cv2

    from faceid.detectors import detector_name, make_detector

    probe = make_detector(detector_name(detector), min_face_size=4)
    full = probe.detect(frame)
    if not full:
        return None
    side = max(full[0].box[2], full[0].box[3])
    smallest = None
    scale = 1.0
    while side * scale >= 4:
        height, width = frame.shape[:2]
        small = cv2.resize(
            frame, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        canvas = np.full((480, 640, 3), 128, dtype=np.uint8)
        y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
        canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
        if not probe.detect(canvas):
            break
        smallest = round(side * scale)
        scale *= 0.9
    return smallest


def _fit_640x480(image: np.ndarray) -> np.ndarray:
    """``image`` scaled and padded (grey) to exactly 640x480."""
    import cv2

    height, width = image.shape[:2]
    scale = min(640 / width, 480 / height)
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 128, dtype=np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas
