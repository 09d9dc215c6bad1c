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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from faceid.errors import ImageError, ImageTooLargeError, UnsupportedImageError

__all__ = ["IMAGE_SUFFIXES", "MAX_FILE_BYTES", "MAX_PIXELS", "LoadedImage", "load_image", "read_image"]

log = logging.getLogger(__name__)

#: Largest image faceid decodes, in pixels (about a 120-megapixel photo).
MAX_PIXELS = 120_000_000
#: Largest file faceid reads, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: File name endings treated as images when a folder is walked.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
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
    """

    pixels: np.ndarray
    sha256: str
    name: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return ``source`` as an ``(H, W, 3)`` uint8 RGB array; see :func:`read_image`."""
    return read_image(source, max_pixels=max_pixels).pixels


def read_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS, name: str | None = None) -> LoadedImage:
    """Decode ``source`` into a :class:`LoadedImage`.

    ``name`` names bytes in messages (an uploaded file's name) instead of ``"<bytes>"``.

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
    pixels = _decode(data, name, max_pixels)
    return LoadedImage(pixels, hashlib.sha256(data).hexdigest(), name)


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


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: empty file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Pillow only warns below twice its own limit; faceid refuses at its own.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = _pil_to_rgb(image, name, max_pixels)
            truncated = [w for w in caught if "truncated" in str(w.message).lower()]
            if truncated:  # some decoders (TIFF) warn and hand back a partly read image
                raise ImageError(f"{name}: cannot decode ({truncated[0].message})")
            return pixels
        except ImageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            if isinstance(exc, UnidentifiedImageError):
                raise UnsupportedImageError(f"{name}: not an image, or a format Pillow cannot read") from None
            raise ImageTooLargeError(
                f"{name}: declares more pixels than faceid decodes (decompression bomb?)"
            ) from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            raise ImageError(f"{name}: cannot decode ({exc})") from None


def _pil_to_rgb(image: Image.Image, name: str, max_pixels: int) -> np.ndarray:  # noqa: F821
    from PIL import Image, ImageOps

    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image is {width}x{height} = {width * height} pixels, more than the {max_pixels} faceid decodes"
        )
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
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


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
