"""Alignment: the similarity transform recovers a known transform, and the crops it makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceid.align import TEMPLATE_160, crop_similarity, similarity_transform

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
