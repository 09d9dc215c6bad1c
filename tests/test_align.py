"""Alignment: the 5-point similarity transform and the 112x112 ArcFace crop, on known landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from faceid.align import (
    ARCFACE_TEMPLATE_112,
    crop_arcface,
    crop_faces,
    landmarks_from_box,
    similarity_transform,
)
from faceid.detect import Detection


def _moved(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return scale * points @ rotation.T + np.asarray(shift)


def test_transform_recovers_a_known_similarity():
    """Landmarks made by rotating, scaling and shifting the template map back onto it exactly."""
    landmarks = _moved(ARCFACE_TEMPLATE_112, 25.0, 2.3, (140.0, 60.0))
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    back = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back, ARCFACE_TEMPLATE_112, atol=1e-9)
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    assert scale == pytest.approx(1 / 2.3)


def test_transform_of_the_template_itself_is_the_identity():
    matrix = similarity_transform(ARCFACE_TEMPLATE_112, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_transform_is_least_squares_with_noisy_landmarks():
    rng = np.random.default_rng(0)
    landmarks = _moved(ARCFACE_TEMPLATE_112, -10.0, 1.5, (30.0, 40.0)) + rng.normal(0, 1.0, (5, 2))
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    back = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(back - ARCFACE_TEMPLATE_112).max() < 2.0  # within the noise, scaled by 1/1.5


def test_arcface_crop_puts_each_landmark_on_the_template():
    """Dots of five colours drawn at rotated, scaled landmarks land on the template's pixels."""
    landmarks = _moved(ARCFACE_TEMPLATE_112, 20.0, 2.0, (150.0, 90.0))
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(landmarks, colours):
        image[int(round(y)) - 3 : int(round(y)) + 4, int(round(x)) - 3 : int(round(x)) + 4] = colour
    crop = crop_arcface(image, landmarks, size=112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for (tx, ty), colour in zip(ARCFACE_TEMPLATE_112, colours):
        pixel = crop[int(round(ty)), int(round(tx))]
        assert np.abs(pixel.astype(int) - colour).max() < 40, (tx, ty, pixel, colour)


def test_arcface_crop_is_black_outside_the_photo():
    image = np.full((60, 60, 3), 200, dtype=np.uint8)
    landmarks = ARCFACE_TEMPLATE_112 * 0.3 - 10  # crop pixel (x, y) shows photo pixel (0.3x - 10, 0.3y - 10)
    crop = crop_arcface(image, landmarks, size=112)
    assert crop[0, 0].tolist() == [0, 0, 0]
    assert crop[100, 100].tolist() == [200, 200, 200]


def test_crop_faces_arcface_and_a_box_without_landmarks():
    image = np.random.default_rng(1).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    landmarks = _moved(ARCFACE_TEMPLATE_112, 0.0, 1.0, (70.0, 60.0))
    with_points = Detection((80, 70, 100, 120), 0.99, tuple(map(tuple, landmarks.tolist())))
    fallback = Detection((79, 65, 91, 123), 0.0, ((0.0, 0.0),) * 5)
    crops = crop_faces(image, [with_points, fallback], method="arcface-112", size=112)
    assert crops.shape == (2, 112, 112, 3)
    np.testing.assert_array_equal(crops[0], image[60:172, 70:182])  # a pure shift: the pixels themselves
    guessed = landmarks_from_box(fallback.box)
    x, y, w, h = fallback.box
    assert (guessed[:, 0] > x).all() and (guessed[:, 0] < x + w).all()
    assert guessed[0, 0] < guessed[1, 0] and guessed[2, 1] < guessed[3, 1]  # eyes left-right, nose above mouth
    assert crops[1].std() > 10  # a real crop of the box, not a degenerate transform


def test_unknown_crop_method():
    with pytest.raises(ValueError, match="arcface-112"):
        crop_faces(np.zeros((10, 10, 3), np.uint8), [], method="nope")
