"""What the Milvus gallery's modules share: expressions built only from numbers and hex digits,
making a collection, a face's row (:mod:`faceid.gallery.milvus_rows` and the modules over it)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from faceid.errors import FaceIDError, GalleryError
from faceid.gallery import records
from faceid.gallery.records import NewFace, utc_now

if TYPE_CHECKING:
    from faceid.gallery.chips import FaceChip

__all__ = [
    "CHIP_FIELDS",
    "TEXT",
    "chip_of",
    "create_collection",
    "face_row",
    "guarded",
    "image_key",
    "ints",
    "name_key",
    "strs",
]

log = logging.getLogger(__name__)

TEXT = 65535  # the longest VARCHAR Milvus stores

#: a face's chip (base64 PNG) in up to this many VARCHAR fields of its row, removed with it; a chip
#: larger than they hold is not kept (``faceid gallery migrate`` then needs the face's photo)
CHIP_FIELDS = tuple(f"chip_{i}" for i in range(4))

_F = TypeVar("_F", bound=Callable[..., Any])


def name_key(name: str) -> str:
    """What makes two names the same person (:func:`faceid.gallery.records.name_key`), hashed: only hex
    digits ever go into a Milvus expression, whatever a name holds."""
    return hashlib.sha256(records.name_key(name).encode("utf-8", "surrogatepass")).hexdigest()


def image_key(sha256: str) -> str:
    return hashlib.sha256(sha256.encode("utf-8", "surrogatepass")).hexdigest()


def ints(values: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def strs(values: Iterable[str]) -> str:
    """A list of hex strings for an expression (callers pass only :func:`name_key` / :func:`image_key` output)."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def create_collection(client: Any, name: str, schema: Any, index: Any, *, wait: bool = True) -> None:
    """Create a collection with its index and load it. The index is asked for without waiting:
    pymilvus's wait polls every half second, which made opening a new gallery take 2 s. With
    ``wait=False`` the load is only started (see :func:`wait_loaded`): a server takes about 3 s to
    load each new collection, so a new gallery's three load side by side."""
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, index, sync=False)
    client.load_collection(name, _async=not wait)


def wait_loaded(client: Any, names: Iterable[str], timeout: float, where: str) -> None:
    """Wait until the server has loaded every collection of ``names``, up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(names)
    while left:
        states = {n: getattr(client.get_load_state(n).get("state"), "name", "") for n in left}
        for n in (n for n, state in states.items() if state == "NotLoad"):  # made before, never loaded
            client.load_collection(n, _async=True)
        left = [n for n, state in states.items() if state != "Loaded"]
        if left and time.monotonic() >= deadline:
            raise GalleryError(f"{where}: Milvus had not loaded {', '.join(left)} after {timeout:g} s")
        if left:
            time.sleep(0.1)


def guarded(method: _F) -> _F:
    """Turn pymilvus's errors into :class:`GalleryError`, one line naming the gallery. For methods of
    :class:`~faceid.gallery.milvus_rows.MilvusRows` and of objects that reach it as ``self.rows``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FaceIDError:
            raise
        except Exception as exc:
            translated = getattr(self, "rows", self).translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper  # type: ignore[return-value]


def face_row(face_id: int, person_id: int, face: NewFace, vector: np.ndarray, model: str) -> dict[str, Any]:
    """The row of the faces collection for a new face (``person_id`` 0: a kept unknown face, in no group)."""
    info = {
        "image_path": face.image_path,
        "image_sha256": face.image_sha256,
        "box": [int(v) for v in face.box],
        "confidence": float(face.confidence),
        "model": model,
        "created_at": utc_now(),
    }
    thumbnail = base64.b64encode(face.thumbnail).decode("ascii") if face.thumbnail else ""
    if len(thumbnail) > TEXT:
        log.info("face %d: its thumbnail is over %d bytes; not kept", face_id, TEXT)
        thumbnail = ""
    parts = [""] * len(CHIP_FIELDS)
    if face.chip is not None:
        chip = base64.b64encode(face.chip.png).decode("ascii")
        if len(chip) > TEXT * len(CHIP_FIELDS):
            log.info("face %d: its chip is over %d bytes; not kept", face_id, TEXT * len(CHIP_FIELDS) * 3 // 4)
        else:
            parts = [chip[i * TEXT : (i + 1) * TEXT] for i in range(len(CHIP_FIELDS))]
            info["chip"] = face.chip.geometry()
    return {
        "id": int(face_id),
        "person_id": int(person_id),
        "group_id": 0,
        "embedding": vector.tolist(),
        "image_key": image_key(face.image_sha256),
        "info": json.dumps(info),
        "thumbnail": thumbnail,
        **dict(zip(CHIP_FIELDS, parts)),
    }


def chip_of(row: dict[str, Any]) -> FaceChip | None:
    """The chip a face row holds (``info`` and the chip fields), or ``None``."""
    from faceid.gallery.chips import FaceChip

    geometry = json.loads(row["info"]).get("chip")
    if geometry is None:
        return None
    png = base64.b64decode("".join(str(row[f]) for f in CHIP_FIELDS))
    return FaceChip.from_row(png, geometry)
