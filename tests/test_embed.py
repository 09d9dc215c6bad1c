"""FaceNet's input scaling (``standardise``) against a plain per-crop oracle."""

from __future__ import annotations

import numpy as np
import pytest

from faceid.embed import standardise


def prewhiten(crop: np.ndarray) -> np.ndarray:
    """FaceNet's ``prewhiten`` for one crop, in float64: (x - mean) / max(std, 1 / sqrt(size))."""
    x = crop.astype(np.float64)
    return (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))


def test_per_image_matches_the_oracle_crop_by_crop():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    crops[1] //= 8  # a dark, low-contrast crop
    crops[2] = 77  # one colour: std 0, the floor applies
    got = standardise(crops, "per_image")
    assert got.dtype == np.float32 and got.shape == crops.shape
    for crop, row in zip(crops, got):
        np.testing.assert_allclose(row, prewhiten(crop), atol=1e-5)
    assert np.all(got[2] == 0)
    for i in (0, 1, 3):
        assert abs(float(got[i].mean())) < 1e-5 and abs(float(got[i].std()) - 1) < 1e-4


def test_per_image_by_hand():
    crop = np.zeros((1, 2, 2, 3), np.uint8)
    crop[0, 0] = 200  # half 0, half 200: mean 100, std 100
    np.testing.assert_allclose(standardise(crop, "per_image")[0, :, :, 0], [[1, 1], [-1, -1]], atol=1e-6)


def test_each_crop_is_scaled_on_its_own():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (2, 1, 8, 8, 3), dtype=np.uint8)
    together = standardise(np.concatenate([a, b]), "per_image")
    np.testing.assert_array_equal(together[:1], standardise(a, "per_image"))
    np.testing.assert_array_equal(together[1:], standardise(b, "per_image"))


def test_fixed():
    crops = np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(standardise(crops, "fixed").reshape(-1), [-1.0, -0.6, 1.0], atol=1e-7)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown standardisation 'nope'"):
        standardise(np.zeros((1, 2, 2, 3), np.uint8), "nope")
