"""What the Milvus gallery's modules share: expressions built only from numbers and hex digits,
and making a collection (:mod:`faceid.gallery.milvus`, :mod:`faceid.gallery.milvus_unknown`)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from faceid.errors import FaceIDError

__all__ = ["_create", "_guarded", "_image_key", "_ints", "_name_key", "_strs"]

_F = TypeVar("_F", bound=Callable[..., Any])

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _name_key(name: str) -> str:
    """What makes two names the same person (ASCII case ignored, as the local gallery's ``NOCASE``),
    hashed: only hex digits ever go into a Milvus expression, whatever a name holds."""
    return hashlib.sha256(name.translate(_ASCII_LOWER).encode("utf-8", "surrogatepass")).hexdigest()


def _image_key(sha256: str) -> str:
    return hashlib.sha256(sha256.encode("utf-8", "surrogatepass")).hexdigest()


def _ints(values: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def _strs(values: Iterable[str]) -> str:
    """A list of hex strings for an expression (callers pass only :func:`_name_key` / :func:`_image_key` output)."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _create(client: Any, name: str, schema: Any, index: Any) -> None:
    """Create a collection with its index and load it. The index is asked for without waiting:
    pymilvus's wait polls every half second, which made opening a new gallery take 2 s."""
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, index, sync=False)
    client.load_collection(name)


def _guarded(method: _F) -> _F:
    """Turn pymilvus's errors into :class:`GalleryError`, one line naming the gallery. For methods of
    the gallery and of objects that reach it as ``self._g`` (its unknown faces)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FaceIDError:
            raise
        except Exception as exc:
            translated = getattr(self, "_g", self)._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper  # type: ignore[return-value]
