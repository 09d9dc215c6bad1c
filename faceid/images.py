"""Load any image a user may hand us as an ``(H, W, 3)`` uint8 RGB array, as it is displayed.

Paths, bytes, PIL images and numpy arrays are accepted. EXIF orientation is applied, so pixel
coordinates everywhere in faceid are those of the image as a viewer shows it. Grayscale, 16-bit,
1-bit, palette, CMYK and images with alpha (composited over white) are converted; truncated
files, non-images (:class:`~faceid.errors.UnsupportedImageError`) and decompression bombs
(:class:`~faceid.errors.ImageTooLargeError`) raise an :class:`~faceid.errors.ImageError` naming the
file and the reason, before anything large is decoded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from faceid.errors import ImageError, ImageTooLargeError, UnsupportedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "LoadedImage",
    "load_image",
    "read_image",
    "working_pixels",
]

log = logging.getLogger(__name__)

#: Largest image faceid decodes, in pixels (about a 120-megapixel photo).
MAX_PIXELS = 120_000_000
#: Largest file faceid reads, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: File name endings treated as images when a folder is walked.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
        ".heic",
        ".heif",
    }
)

if TYPE_CHECKING:
    from PIL import Image

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, "Image.Image"]


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for detection.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB, C-contiguous, EXIF orientation applied.
        sha256: hex SHA-256 of the encoded bytes (of the raw pixels for arrays).
        name: where it came from, for messages (a path, or ``"<bytes>"``/``"<array>"``).
        full_size: ``(width, height)`` of the image as displayed at full size, when ``pixels`` was
            decoded smaller (see ``working_side`` of :func:`read_image`); ``None`` when it is full size.
    """

    pixels: np.ndarray
    sha256: str
    name: str
    full_size: tuple[int, int] | None = None

    @property
    def scale(self) -> tuple[float, float]:
        """Full-size pixels per decoded pixel, ``(x, y)``: ``(1.0, 1.0)`` unless decoded smaller."""
        if self.full_size is None:
            return (1.0, 1.0)
        return (self.full_size[0] / self.width, self.full_size[1] / self.height)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return ``source`` as an ``(H, W, 3)`` uint8 RGB array; see :func:`read_image`."""
    return read_image(source, max_pixels=max_pixels).pixels


def read_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
    working_side: int | None = None,
    limit_hint: str = "",
) -> LoadedImage:
    """Decode ``source`` into a :class:`LoadedImage`.

    ``name`` names bytes in messages (an uploaded file's name) instead of ``"<bytes>"``.

    With ``working_side``, a larger photo (path or bytes) is decoded smaller, its longer side at
    least ``working_side`` and less than twice it: a JPEG by its own reduced decoding (1/2, 1/4 or
    1/8, so the full-size pixels never exist in memory), another format by Pillow's ``reduce``
    after decoding. ``max_pixels`` then limits what is decoded, not what the file declares (a JPEG
    may declare up to 64 times as many). ``limit_hint`` is added to the message of a refusal for
    size (which setting raises the limit).

    Raises:
        ImageError: the file is missing, unreadable, not an image, truncated, empty, or larger
            than ``max_pixels``. The message starts with the file's name.
    """
    from PIL import Image

    if isinstance(source, np.ndarray):
        pixels = _array_to_rgb(source, "<array>")
        return LoadedImage(pixels, hashlib.sha256(pixels.tobytes()).hexdigest(), "<array>")
    if isinstance(source, Image.Image):
        pixels = _pil_to_rgb(source, "<PIL image>", max_pixels)
        return LoadedImage(pixels, hashlib.sha256(pixels.tobytes()).hexdigest(), "<PIL image>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "<bytes>"
    else:
        name = os.fspath(source)
        data = _read_file(Path(name))
    pixels, full = _decode(data, name, max_pixels, working_side, limit_hint)
    full_size = None if full == (pixels.shape[1], pixels.shape[0]) else full
    return LoadedImage(pixels, hashlib.sha256(data).hexdigest(), name, full_size)


def working_pixels(data: bytes, working_side: int) -> int:
    """How many pixels :func:`read_image` decodes ``data`` to with ``working_side``, from its
    header alone (0 when the header cannot be read: decoding will say why)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open(data)
            width, height = image.size
            if image.format == "JPEG":
                width, height = _draft_size(width, height, working_side)
            elif max(width, height) >= 2 * working_side:
                factor = max(width, height) // working_side
                width, height = -(-width // factor), -(-height // factor)
            return int(width) * int(height)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return 0


def _open(data: bytes):
    """A lazily decoded PIL image of ``data``. A JPEG is opened by its plugin directly: Pillow's
    own limit on declared pixels is for a full decode, and faceid checks what it decodes itself."""
    from PIL import Image, JpegImagePlugin

    if data[:3] == b"\xff\xd8\xff":
        try:
            return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
        except (OSError, SyntaxError):
            pass  # not a JPEG after all: let Image.open say what it is
    return Image.open(io.BytesIO(data))


def _draft_size(width: int, height: int, working_side: int) -> tuple[int, int]:
    """The size Pillow's JPEG draft decodes to (a scale of 1, 1/2, 1/4 or 1/8, the longer side
    kept at least ``working_side``); see ``JpegImageFile.draft``."""
    want = _draft_request(width, height, working_side)
    if want is None:
        return width, height
    scale = min(width // want[0], height // want[1])
    for s in (8, 4, 2, 1):
        if scale >= s:
            return -(-width // s), -(-height // s)
    return width, height


def _draft_request(width: int, height: int, working_side: int) -> tuple[int, int] | None:
    longest = max(width, height)
    if longest < 2 * working_side:
        return None
    f = working_side / longest
    return max(1, int(width * f)), max(1, int(height * f))


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError(f"{path}: not a regular file")
        if size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{path}: file is {size} bytes, more than the {MAX_FILE_BYTES} faceid reads")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _decode(
    data: bytes, name: str, max_pixels: int, working_side: int | None = None, hint: str = ""
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(pixels, full size as displayed)``."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: empty file")
    _register_heif()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Pillow only warns below twice its own limit; faceid refuses at its own.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data) as image:
                full = image.size
                if working_side and image.format == "JPEG":
                    declared = full[0] * full[1]
                    if declared > 64 * max_pixels:
                        raise ImageTooLargeError(_too_large(name, full, 64 * max_pixels, hint, declared=True))
                    want = _draft_request(full[0], full[1], working_side)
                    if want is not None:
                        image.draft(None, want)
                orientation = image.getexif().get(0x0112, 1)
                pixels = _pil_to_rgb(image, name, max_pixels, working_side, hint)
            truncated = [w for w in caught if "truncated" in str(w.message).lower()]
            if truncated:  # some decoders (TIFF) warn and hand back a partly read image
                raise ImageError(f"{name}: cannot decode ({truncated[0].message})")
            if orientation in (5, 6, 7, 8):  # shown turned a quarter: width and height swap
                full = (full[1], full[0])
            return pixels, full
        except ImageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            if isinstance(exc, UnidentifiedImageError):
                raise UnsupportedImageError(f"{name}: not an image, or a format Pillow cannot read") from None
            limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
            reason = f"image declares more pixels than the {limit} faceid decodes (a decompression bomb?)"
            reason += f" ({hint})" if hint else ""
            raise ImageTooLargeError(f"{name}: {reason}") from None
        except (
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
            MemoryError,
            RuntimeError,
            TypeError,
            IndexError,
            KeyError,
            ArithmeticError,
            struct.error,
        ) as exc:
            # what Pillow's plugins and libheif raise on damaged files, found by the decoder fuzz
            # (RuntimeError: libheif's refusal of an oversized HEIF; TypeError: a TIFF whose strip
            # offsets are text)
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__  # a decoder's words, on one line
            raise ImageError(f"{name}: cannot decode ({reason})") from None


def _too_large(name: str, size: tuple[int, int], limit: int, hint: str, declared: bool = False) -> str:
    width, height = size
    what = "declares" if declared else "is"
    return f"{name}: image {what} {width}x{height} = {width * height} pixels, more than the {limit} faceid decodes" + (
        f" ({hint})" if hint else ""
    )


def _pil_to_rgb(
    image: Image.Image,  # noqa: F821
    name: str,
    max_pixels: int,
    working_side: int | None = None,
    hint: str = "",
) -> np.ndarray:
    from PIL import Image, ImageOps

    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large(name, (width, height), max_pixels, hint))
    image.load()  # decode now: a truncated file fails here, not half-read later
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(np.asarray(image), mode)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if working_side and max(image.size) >= 2 * working_side:  # not reduced while decoding
        image = image.reduce(max(image.size) // working_side)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _register_heif() -> None:
    """HEIC/HEIF (a phone's default) through pillow-heif's Pillow plugin, when it is installed."""
    global _HEIF
    if _HEIF is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _HEIF = True
        except ImportError:
            _HEIF = False
            log.debug("pillow-heif is not installed: HEIC/HEIF photos cannot be read")


_HEIF: bool | None = None


def _high_depth_to_rgb(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer and float grayscale to 8 bits by the range of their type."""
    values = array.astype(np.float64)
    if mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    elif mode.startswith("I;16") or (values.size and values.max() > 255):
        top = 65535.0
    else:
        top = 255.0
    gray = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{name}: image is empty ({array.shape[1]}x{array.shape[0]})")
    if array.dtype != np.uint8:
        if array.dtype == np.uint16:
            array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating) and array.size and np.nanmax(array) <= 1.0:
            array = np.clip(np.nan_to_num(array) * 255.0, 0, 255).round().astype(np.uint8)
        else:
            array = np.clip(np.nan_to_num(array.astype(np.float64)), 0, 255).round().astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = (array[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array)
