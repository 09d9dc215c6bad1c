"""YuNet on small photos: they are enlarged to ``min_side`` before detection (landmark precision;
docs/detectors.md, "YuNet's landmarks"), and what is found is given in the photo's own pixels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from faceid.errors import OptionError


def _installed() -> bool:
    from faceid.errors import ModelNotFoundError
    from faceid.models import locate

    try:
        locate("yunet")
    except ModelNotFoundError:
        return False
    return True


needs_yunet = pytest.mark.skipif(not _installed(), reason="YuNet is not installed: run `faceid models pull yunet`")


def _load(name: str) -> np.ndarray:
    from faceid.images import load_image

    return load_image(SAMPLES / "photos" / name)


def test_min_side_is_checked_and_in_the_settings_the_cache_keys_on():
    from faceid.detect_yunet import MIN_SIDE, YuNetDetector

    assert YuNetDetector().settings["min_side"] == MIN_SIDE == 640
    assert YuNetDetector(min_side=1).settings != YuNetDetector().settings
    for bad in (0, -5, 2.5, "640", True):
        with pytest.raises(OptionError, match="min_side"):
            YuNetDetector(min_side=bad)


def _seen_sizes(detector, image) -> tuple[list, list]:
    sizes = []
    run = detector._run

    def spy(bgr):
        sizes.append(bgr.shape[:2])
        return run(bgr)

    detector._run = spy
    return detector.detect(image), sizes


@pytest.mark.model
@needs_yunet
def test_a_small_photo_is_enlarged_to_640_and_its_face_mapped_back():
    from faceid.detect_yunet import YuNetDetector

    image = _load("astronaut.jpg")  # 320x320
    found, sizes = _seen_sizes(YuNetDetector(), image)
    assert sizes == [(640, 640)]
    own, own_sizes = _seen_sizes(YuNetDetector(min_side=1), image)
    assert own_sizes == [(320, 320)]
    assert len(found) == len(own) == 1
    a, b = found[0], own[0]
    x, y, w, h = a.box
    assert min(x, y) >= 0 and max(x + w, y + h) <= 320
    eyes = abs(b.landmarks[1][0] - b.landmarks[0][0])
    # the same face in the photo's own pixels: the points move by a few pixels, not more
    assert 0 < np.abs(a.landmark_array() - b.landmark_array()).max() < 0.15 * eyes


@pytest.mark.model
@needs_yunet
def test_a_photo_at_least_640_wide_is_detected_at_its_own_size():
    from faceid.detect_yunet import YuNetDetector

    image = _load("obama_and_biden.jpg")  # 800x470
    found, sizes = _seen_sizes(YuNetDetector(), image)
    assert sizes == [image.shape[:2]] and len(found) == 2
