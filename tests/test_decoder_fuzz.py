"""Hostile image bytes on the decoder (hypothesis): every byte string is either a photo of the size it
says, or one :class:`~faceid.errors.ImageError` naming it; never another exception, never a
decode past the pixel limit. A few hundred strings in the default suite; ``FACEID_STRESS=1``
(``make stress``) generates FACEID_STRESS_IMAGES of them (100,000 by default)."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceid.errors import ImageError

STRESS = bool(os.environ.get("FACEID_STRESS"))
EXAMPLES = int(os.environ.get("FACEID_STRESS_IMAGES", "100000")) if STRESS else 300
MAX_PIXELS = 2_000_000  # small, so a string that declares more must be refused, not decoded
COUNT = {"strings": 0, "decoded": 0, "refused": 0}


def _encoded(fmt: str, width: int, height: int, mode: str, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    if fmt == "JPEG" and mode == "RGBA":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(image.convert("RGB")).save(buffer, quality=50)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"]
try:
    import pillow_heif  # noqa: F401

    FORMATS.append("HEIF")
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

_CORPUS: list[bytes] = []


def corpus() -> list[bytes]:
    """Real encodings to damage, made once (encoding each example anew was most of the time):
    every format, mode and a spread of sizes, 1x1 included."""
    if not _CORPUS:
        sizes = [(1, 1), (1, 37), (37, 1), (2, 3), (16, 16), (48, 31), (31, 48)]
        for i, fmt in enumerate(FORMATS):
            for j, mode in enumerate(["L", "RGB", "RGBA"]):
                for k, (w, h) in enumerate(sizes):
                    _CORPUS.append(_encoded(fmt, w, h, mode, seed=100 * i + 10 * j + k))
    return _CORPUS


valid = st.integers(0, 10**6).map(lambda i: corpus()[i % len(corpus())])


@st.composite
def mutated(draw) -> bytes:
    """A real encoded image, then damaged: bytes flipped, cut short, spliced, or its declared size
    made enormous (a decompression bomb's header)."""
    data = bytearray(draw(valid))
    how = draw(st.sampled_from(["flip", "truncate", "splice", "bomb", "repeat"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=64))
    elif how == "bomb":
        side = draw(st.sampled_from([0, 1, 65535, 2**31 - 1, 2**32 - 1]))
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            data[16:24] = struct.pack(">II", side, side)
        elif data[:2] == b"\xff\xd8":
            at = data.find(b"\xff\xc0")
            if at > 0:
                data[at + 5 : at + 9] = struct.pack(">HH", side & 0xFFFF, side & 0xFFFF)
        elif data[:2] == b"BM":
            data[18:26] = struct.pack("<ii", side & 0x7FFFFFFF, side & 0x7FFFFFFF)
        elif data[:3] == b"GIF":
            data[6:10] = struct.pack("<HH", side & 0xFFFF, side & 0xFFFF)
    else:
        data = data * draw(st.integers(2, 4))
    return bytes(data)


strings = st.one_of(st.binary(max_size=256), valid, mutated(), mutated())


@pytest.mark.slow
@pytest.mark.timeout(0 if STRESS else 900)  # a stress run takes as long as its count needs
@given(data=strings, working=st.sampled_from([None, 16, 3200]))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not STRESS,
)
def test_any_bytes_decode_or_are_one_image_error(data, working):
    from faceid.images import read_image, working_pixels

    COUNT["strings"] += 1
    if STRESS and COUNT["strings"] % 10_000 == 0:
        print(f"\ndecoder fuzz so far: {COUNT}", flush=True)  # noqa: T201
    try:
        image = read_image(data, max_pixels=MAX_PIXELS, name="fuzz.bin", working_side=working)
    except ImageError as exc:
        COUNT["refused"] += 1
        message = str(exc)
        assert message.startswith("fuzz.bin: ") and "\n" not in message.strip(), message
        return
    COUNT["decoded"] += 1
    pixels = image.pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.flags.c_contiguous
    assert 0 < pixels.shape[0] * pixels.shape[1] <= MAX_PIXELS
    if working is not None:
        assert working_pixels(data, working) >= 0


def test_the_count_is_said():
    """Runs after the fuzz (file order): the number of strings tried, for ``make stress``'s log."""
    if COUNT["strings"]:
        print(f"\ndecoder fuzz: {COUNT}")  # noqa: T201


def test_a_tiff_whose_strip_offsets_are_text_is_one_image_error():
    """Found by the decoder fuzz after 69,569 strings: Pillow then fails with a TypeError."""
    from PIL import Image

    from faceid.images import read_image

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 273:  # StripOffsets, as ASCII text
            data[entry + 2 : entry + 12] = struct.pack("<HI", 2, 4) + b"abc\0"
    with pytest.raises(ImageError) as refused:
        read_image(bytes(data), name="t.tif")
    assert str(refused.value).startswith("t.tif: cannot decode")
