"""Tight face crops (a face filling the photo, as cut from a video frame): found by a second,
padded detection (faceid.tight), and enrolled with or without --largest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES, cli, save_png

from faceid.detect import Detection
from faceid.tight import PADDED_SIDE, detect_padded, pad_for_detection


class FindsOnlyWithRoom:
    """Finds one face, the middle half of the image, only when the image has a black border."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def detect_many(self, images):
        out = []
        for image in images:
            self.seen.append(image.shape)
            h, w = image.shape[:2]
            if image[0].max() > 0:  # no border: nothing found
                out.append([])
                continue
            box = (w // 4, h // 4, w // 2, h // 2)
            marks = tuple((float(w // 4 + w * f), float(h // 2)) for f in (0.1, 0.4, 0.25, 0.15, 0.35))
            out.append([Detection(box, 0.97, marks)])
        return out


def test_padded_detection_maps_boxes_back_to_the_image():
    face = np.full((400, 300, 3), 120, np.uint8)
    detector = FindsOnlyWithRoom()
    [found] = detect_padded(detector, [face])
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert abs(x) <= 2 and abs(y) <= 2 and abs(w - 300) <= 3 and abs(h - 400) <= 3
    assert detector.seen[1][0] <= PADDED_SIDE and detector.seen[1][1] <= PADDED_SIDE
    assert all(0 <= px <= 300 for px, _ in found[0].landmarks)


def test_an_image_with_a_face_is_detected_once():
    detector = FindsOnlyWithRoom()
    bordered, *_ = pad_for_detection(np.full((40, 40, 3), 90, np.uint8))
    assert len(detect_padded(detector, [bordered])[0]) == 1 and len(detector.seen) == 1


def _tight_crop(tmp_path, name: str) -> str:
    from faceid.detect import Detector
    from faceid.images import load_image

    photo = next((SAMPLES / "people" / name).iterdir())
    pixels = load_image(photo)
    x, y, w, h = Detector().detect(pixels)[0].box
    crop = pixels[y + h // 10 : y + h - h // 10, x + w // 10 : x + w - w // 10]  # inside the face box
    assert Detector().detect(crop) == []  # what MTCNN alone makes of it
    return str(save_png(tmp_path / f"{name}-tight.png", crop))


@pytest.mark.model
@pytest.mark.parametrize("largest", [False, True])
def test_tight_crops_enrol_and_are_identified(tmp_path, largest):
    crop = _tight_crop(tmp_path, "grace_hopper")
    gallery = tmp_path / "g"
    result = cli("enroll", "grace", crop, "--gallery", gallery, *(["--largest"] if largest else []))
    assert result.exit_code == 0 and result.stdout.startswith("added"), result.output
    result = cli("identify", SAMPLES / "people" / "grace_hopper", "--gallery", gallery, "--json")
    assert result.exit_code == 0, result.output
    assert [f["name"] for f in json.loads(result.stdout)["faces"]] == ["grace"]
