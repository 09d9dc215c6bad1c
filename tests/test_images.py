"""Image loading: every awkward format converts correctly or fails with one clear line."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceid.errors import ImageError
from faceid.images import load_image, read_image

SAMPLES = Path(__file__).resolve().parent.parent / "faceid" / "samples"


def _encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_committed_sample_loads_as_rgb_uint8():
    image = read_image(SAMPLES / "people" / "grace_hopper" / "hopper.jpg")
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (128, 128, 3)
    assert image.pixels.flags.c_contiguous
    assert len(image.sha256) == 64


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: empty file"):
        load_image(tmp_path / "empty.jpg")


def test_text_file_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        load_image(tmp_path / "notes.png")


def test_truncated_jpeg_is_refused_not_half_read(tmp_path):
    data = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot decode .*truncated"):
        load_image(tmp_path / "cut.jpg")


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge image (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [20_000, 60_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    assert path.stat().st_size < 200
    with pytest.raises(ImageError, match="bomb.png: .*(pixels|bomb)"):
        load_image(path)


def test_own_pixel_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_encode(np.zeros((100, 100, 3), np.uint8), "PNG"))
    with pytest.raises(ImageError, match="10000 pixels, more than the 5000"):
        load_image(path, max_pixels=5000)


def test_sixteen_bit_grayscale_is_rescaled_not_saturated():
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    pixels = load_image(buffer.getvalue())
    assert pixels.shape == (16, 16, 3)
    np.testing.assert_array_equal(pixels[:, :, 0], np.arange(256).reshape(16, 16))


def test_rgba_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    pixels = load_image(_encode(rgba, "PNG"))
    assert tuple(pixels[0, 0]) == (200, 0, 0)
    assert tuple(pixels[3, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=100)
    shown = load_image(buffer.getvalue())
    assert shown.shape == (40, 20, 3)
    assert shown[:18].mean() > 200 and shown[22:].mean() < 50  # white half now on top


@pytest.mark.parametrize(
    "array",
    [
        np.full((5, 6), 7, np.uint8),
        np.full((5, 6, 1), 7, np.uint8),
        np.full((5, 6, 3), 7, np.uint8),
        np.full((5, 6), 7 * 257, np.uint16),
        np.full((5, 6, 3), 7 / 255, np.float32),
    ],
)
def test_arrays_become_rgb_uint8(array):
    pixels = load_image(array)
    assert pixels.shape == (5, 6, 3) and pixels.dtype == np.uint8
    assert np.all(pixels == 7)


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (5, 5, 2), (2, 2, 2, 3)])
def test_bad_arrays(shape):
    with pytest.raises(ImageError):
        load_image(np.zeros(shape, np.uint8))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data):
    try:
        pixels = load_image(data)
    except ImageError as exc:
        assert str(exc).startswith("<bytes>: ")
    else:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3


_VALID = {
    fmt: _encode(np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8), fmt)
    for fmt in ("JPEG", "PNG", "TIFF", "GIF", "WEBP", "BMP")
}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(_VALID)),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
    st.booleans(),
)
def test_corrupted_and_truncated_images_fail_cleanly(fmt, position, value, truncate):
    data = bytearray(_VALID[fmt])
    position %= len(data)
    if truncate:
        data = data[:position]
    else:
        data[position] = value
    try:
        pixels = load_image(bytes(data))
    except ImageError as exc:
        assert str(exc).startswith("<bytes>: ") and "\n" not in str(exc)
    else:
        assert pixels.dtype == np.uint8 and pixels.shape[2] == 3 and pixels.size > 0


# -- the awkward set in ../shared/data -----------------------------------------------------------------

AWKWARD_OK = [
    "pillow_tests/hopper.jpg",
    "pillow_tests/hopper.png",
    "pillow_tests/hopper.bmp",
    "pillow_tests/hopper.gif",
    "pillow_tests/hopper.tif",
    "pillow_tests/hopper.webp",
    "pillow_tests/hopper_gray.jpg",
    "pillow_tests/hopper_16bit.pgm",
    "pillow_tests/hopper_1bit.pbm",
    "pillow_tests/uncompressed_la.png",
    "pillow_tests/pil_sample_cmyk.jpg",
    "pillow_tests/tiff_tiled_cmyk_jpeg.tif",
    "pillow_tests/pil123rgba.png",
    "pillow_tests/tiny.png",
    "pillow_tests/tRNS_null_1x1.png",
    "pillow_tests/orientation_rectangle.jpg",
    "skimage_data/no_time_for_that_tiny.gif",
    "skimage_data/camera.png",
    "skimage_data/horse.png",
]


@pytest.mark.shared
@pytest.mark.parametrize("name", AWKWARD_OK)
def test_awkward_images_load(data, name):
    pixels = load_image(data / "awkward" / name)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3


@pytest.mark.shared
@pytest.mark.parametrize("orientation", range(2, 9))
def test_awkward_exif_orientations_match_upright(data, orientation):
    upright = load_image(data / "awkward/pillow_tests/hopper.jpg").astype(np.float64)
    turned = load_image(data / f"awkward/pillow_tests/hopper_orientation_{orientation}.jpg").astype(np.float64)
    assert turned.shape == upright.shape
    assert ((turned - upright) ** 2).mean() < 200  # raw pixels differ by 7,000-10,000


@pytest.mark.shared
def test_awkward_16bit_matches_8bit_gray(data):
    wide = load_image(data / "awkward/pillow_tests/hopper_16bit.pgm").astype(float)
    gray = load_image(data / "awkward/pillow_tests/hopper_gray.jpg").astype(float)
    assert abs(wide.mean() - gray.mean()) < 5 and wide.std() > 20


@pytest.mark.shared
def test_awkward_cmyk_matches_rgb_version(data):
    cmyk = load_image(data / "awkward/pillow_tests/pil_sample_cmyk.jpg").astype(float)
    rgb = load_image(data / "awkward/pillow_tests/pil_sample_rgb.jpg").astype(float)
    assert np.abs(cmyk - rgb).mean() < 12


@pytest.mark.shared
def test_awkward_truncated_jpeg_is_reported(data):
    with pytest.raises(ImageError, match="truncated_jpeg.jpg: cannot decode .*truncated"):
        load_image(data / "awkward/pillow_tests/truncated_jpeg.jpg")
