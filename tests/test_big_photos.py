"""Big photos: decoded at the working size (never at full size), and a real server answering
8 concurrent 35-megapixel photos from one key within a bounded memory that it gives back."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "faceid" / "samples" / "photos" / "astronaut.jpg"


def jpeg_of(width: int, height: int, orientation: int | None = None) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), (10, 200, 30))
    image.paste((200, 10, 10), (0, 0, width // 4, height // 4))  # a red top-left corner
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=80, exif=exif.tobytes())
    return buffer.getvalue()


def test_a_panorama_is_taken_at_its_working_size_and_never_decoded_whole():
    import tracemalloc

    from faceid.images import read_image, working_pixels

    data = jpeg_of(12000, 9000)  # 108 MP: more than the 40 MP the server decodes
    tracemalloc.start()
    image = read_image(data, max_pixels=40_000_000, working_side=3200, name="pano.jpg")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert image.full_size == (12000, 9000)
    assert (image.width, image.height) == (6000, 4500)  # JPEG's 1/2 decoding: longer side >= 3200
    assert image.scale == (2.0, 2.0)
    assert working_pixels(data, 3200) == 6000 * 4500
    assert peak < 6000 * 4500 * 3 * 3  # a full-size RGB array alone would be 324 MB
    assert tuple(image.pixels[10, 10]) > (150, 0, 0) and image.pixels[10, 10, 1] < 60  # red corner kept


def test_a_turned_photo_reports_its_full_size_as_shown():
    from faceid.images import read_image

    image = read_image(jpeg_of(8000, 4000, orientation=6), working_side=3200)
    assert image.full_size == (4000, 8000) and (image.width, image.height) == (2000, 4000)


def test_without_a_working_size_nothing_changes():
    from faceid.images import read_image

    image = read_image(jpeg_of(700, 500))
    assert image.full_size is None and image.scale == (1.0, 1.0) and image.pixels.shape == (500, 700, 3)
    small = read_image(jpeg_of(3000, 2000), working_side=3200)
    assert small.full_size is None and small.pixels.shape == (2000, 3000, 3)


def test_too_large_even_at_the_working_size_names_the_limit_and_the_setting():
    from faceid.errors import ImageError
    from faceid.images import read_image
    from faceid.server.uploads import LIMIT_HINT

    with pytest.raises(ImageError) as refused:
        read_image(jpeg_of(6000, 4000), max_pixels=1_000_000, working_side=3200, name="x.jpg", limit_hint=LIMIT_HINT)
    message = str(refused.value)
    assert message.startswith("x.jpg: image is 6000x4000") or message.startswith("x.jpg: image is 3000x2000")
    assert "more than the 1000000 faceid decodes" in message and "--max-megapixels" in message


def test_heic_is_read_like_any_photo(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    from faceid.images import read_image

    pixels = np.zeros((64, 96, 3), np.uint8)
    pixels[:, :48] = (220, 20, 20)
    heif = pillow_heif.from_bytes(mode="RGB", size=(96, 64), data=pixels.tobytes())
    path = tmp_path / "phone.heic"
    heif.save(str(path), quality=90)
    image = read_image(path)
    assert image.pixels.shape == (64, 96, 3)
    assert image.pixels[32, 10, 0] > 150 and image.pixels[32, 80, 0] < 80


def test_boxes_found_at_the_working_size_are_answered_in_full_size_pixels():
    from faceid.detect import Detection
    from faceid.images import LoadedImage
    from faceid.pipeline import Face
    from faceid.server.uploads import upscaled

    image = LoadedImage(np.zeros((4500, 6000, 3), np.uint8), "0" * 64, "pano.jpg", full_size=(12000, 9000))
    marks = ((10.0, 10.0), (20.0, 10.0), (15.0, 15.0), (11.0, 20.0), (19.0, 20.0))
    face = Face(Detection((100, 50, 30, 40), 0.99, marks), np.zeros(4, np.float32))
    [big] = upscaled([face], image)
    assert big.detection.box == (200, 100, 60, 80)
    assert big.detection.landmarks[0] == (20.0, 20.0)
    assert upscaled("x.jpg: the pipeline failed", image) == "x.jpg: the pipeline failed"


@pytest.mark.model
@pytest.mark.slow
def test_eight_35_megapixel_photos_at_once_in_bounded_memory_given_back(tmp_path):
    pytest.importorskip("fastapi")
    if not Path("/proc/self/status").exists():
        pytest.skip("memory is read from Linux's /proc")
    from faceid.bench.big_photos import run_big_photos

    os.environ.setdefault("FACEID_MODELS", str(Path(__file__).resolve().parent.parent / "models"))
    run = run_big_photos(tmp_path, SAMPLE, photos=8, megapixels=35.0, settle_s=60.0, timeout=600)
    figures = run.to_json()
    assert run.statuses == (200,) * 8, figures
    assert run.peak_rss < 2.5 * 2**30, figures
    assert run.settled_rss - run.idle_rss < 300 * 2**20, figures


def test_a_heic_declaring_a_huge_size_is_one_image_error():
    """Found by the decoder fuzz: libheif refuses such a file with a RuntimeError (through
    pillow-heif), which must be the one image error, not an uncaught exception (a 500)."""
    import struct

    pillow_heif = pytest.importorskip("pillow_heif")
    from faceid.errors import ImageError
    from faceid.images import read_image

    pixels = np.zeros((16, 16, 3), np.uint8)
    buffer = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB", size=(16, 16), data=pixels.tobytes()).save(buffer, quality=50)
    data = bytearray(buffer.getvalue())
    at = data.find(b"ispe")
    assert at > 0
    data[at + 8 : at + 16] = struct.pack(">II", 16777280, 64)
    with pytest.raises(ImageError) as refused:
        read_image(bytes(data), name="huge.heic")
    assert str(refused.value).startswith("huge.heic: ") and "\n" not in str(refused.value)
