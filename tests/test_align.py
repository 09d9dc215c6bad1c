"""Alignment: the similarity transform recovers a known transform, and the crops it makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceid.align import (
    ARCFACE_TEMPLATE_112,
    TEMPLATE_160,
    crop_arcface,
    crop_faces,
    crop_similarity,
    landmarks_from_box,
    similarity_transform,
)
from faceid.detect import Detection

#: Five landmarks of a face, roughly (eyes, nose, mouth corners), in pixels.
POINTS = np.array([[30.0, 40.0], [70.0, 42.0], [50.0, 60.0], [35.0, 80.0], [66.0, 81.0]])


def transform(points: np.ndarray, scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return scale * points @ rotation.T + np.array(shift)


@pytest.mark.parametrize(
    "scale, degrees, shift",
    [(1.0, 0.0, (0.0, 0.0)), (1.7, 23.0, (12.0, -5.0)), (0.4, -90.0, (-30.0, 7.5)), (3.0, 179.0, (100.0, 200.0))],
)
def test_a_known_transform_is_recovered(scale, degrees, shift):
    target = transform(POINTS, scale, degrees, shift)
    a = math.radians(degrees)
    want = np.array(
        [
            [scale * math.cos(a), -scale * math.sin(a), shift[0]],
            [scale * math.sin(a), scale * math.cos(a), shift[1]],
        ]
    )
    got = similarity_transform(POINTS, target)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(np.c_[POINTS, np.ones(5)] @ got.T, target, atol=1e-9)


def test_noisy_points_give_the_least_squares_similarity():
    """Oracle: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty), so
    ``lstsq`` finds the best similarity directly."""
    rng = np.random.default_rng(0)
    target = transform(POINTS, 1.3, 10.0, (4.0, 2.0)) + rng.normal(0, 0.5, POINTS.shape)
    x, y = POINTS[:, 0], POINTS[:, 1]
    one, zero = np.ones(5), np.zeros(5)
    design = np.r_[np.c_[x, -y, one, zero], np.c_[y, x, zero, one]]
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, np.r_[target[:, 0], target[:, 1]], rcond=None)
    np.testing.assert_allclose(similarity_transform(POINTS, target), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_a_mirrored_face_is_not_reflected():
    """Landmarks mirrored left-right: the best similarity is still a rotation (no reflection)."""
    mirrored = POINTS * [-1, 1]
    got = similarity_transform(POINTS, mirrored)
    assert np.linalg.det(got[:, :2]) > 0


def test_all_landmarks_on_one_point_is_finite():
    got = similarity_transform(np.full((5, 2), 7.0), TEMPLATE_160 * 160)
    assert np.isfinite(got).all()


def test_crop_similarity_puts_the_landmarks_on_the_template():
    """A dot drawn at each landmark lands at the template's position in the crop."""
    image = np.zeros((200, 240, 3), np.uint8)
    points = transform(TEMPLATE_160 * 60, 1.0, 15.0, (80.0, 50.0))
    for x, y in points.round().astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = crop_similarity(image, points, size=160)
    for tx, ty in TEMPLATE_160 * 160:
        patch = crop[int(ty) - 4 : int(ty) + 5, int(tx) - 4 : int(tx) + 5]
        assert patch.max() > 100, (tx, ty)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8


# -- the 112x112 ArcFace crop (SFace, ArcFace) -----------------------------------------------


def _moved(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return scale * points @ rotation.T + np.asarray(shift)


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
