"""Where a gallery lives, from the text a user gives (``--gallery`` or ``FACEID_GALLERY``).

Three forms, told apart by their prefix:

- ``milvus://HOST:PORT/NAME``: a Milvus server or cluster; the gallery's collections are named
  ``NAME_meta``, ``NAME_people``, ``NAME_faces``, ``NAME_audit`` (and ``NAME_exclusions``) in its default database
  (so several galleries share one Milvus). A token for a server with authentication is read
  from ``FACEID_MILVUS_TOKEN`` (never from the address, so it does not show in logs).
- ``milvus-lite:PATH.db``: the same collections kept by milvus-lite, embedded in this process,
  in the folder ``PATH.db``;
- anything else: a folder holding ``gallery.db`` (:class:`faceid.gallery.Gallery`).

:func:`parse_location` only reads the text; nothing here imports pymilvus or touches a file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from faceid.errors import GalleryError

__all__ = ["LITE_PREFIX", "SERVER_PREFIX", "MilvusLocation", "gallery_location", "parse_location"]

SERVER_PREFIX = "milvus://"
LITE_PREFIX = "milvus-lite:"
#: the collection prefix of a milvus-lite gallery (one gallery per ``.db`` folder)
LITE_NAME = "faceid"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class MilvusLocation:
    """A gallery kept in Milvus.

    Attributes:
        spec: the text it was parsed from (``milvus://...`` or ``milvus-lite:...``), for messages.
        uri: what ``pymilvus.MilvusClient`` connects to: ``http://HOST:PORT``, or the ``.db`` path.
        name: the prefix of the gallery's collection names.
        lite: milvus-lite embedded in this process (``uri`` is a local folder).
    """

    spec: str
    uri: str
    name: str
    lite: bool

    def __str__(self) -> str:
        return self.spec


def parse_location(spec: str | os.PathLike[str]) -> Path | MilvusLocation:
    """The gallery folder, or the Milvus location, that ``spec`` names.

    Raises:
        GalleryError: a ``milvus://`` or ``milvus-lite:`` address that is malformed, saying what a good one is.
    """
    text = os.fspath(spec)
    if text.startswith(LITE_PREFIX):
        path = text[len(LITE_PREFIX) :]
        if not path.endswith(".db") or path in (".db", "") or path.endswith("/.db"):
            raise GalleryError(f"{text}: a milvus-lite gallery is a path ending in .db, e.g. milvus-lite:faces.db")
        absolute = os.path.abspath(os.path.expanduser(path))
        return MilvusLocation(LITE_PREFIX + path, absolute, LITE_NAME, lite=True)
    if text.startswith(SERVER_PREFIX):
        rest = text[len(SERVER_PREFIX) :]
        where, _, name = rest.partition("/")
        match = _HOST_PORT.fullmatch(where)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise GalleryError(f"{text}: expected milvus://HOST:PORT/NAME, e.g. milvus://localhost:19530/faces")
        if not _NAME.fullmatch(name):
            raise GalleryError(
                f"{text}: the gallery NAME after HOST:PORT/ must be a letter or _ then letters, digits or _ "
                "(it prefixes the gallery's Milvus collections)"
            )
        return MilvusLocation(text, f"http://{match['host']}:{int(match['port'])}", name, lite=False)
    if text.startswith("milvus:/"):  # what a Path makes of milvus://
        raise GalleryError(f"{text}: expected milvus://HOST:PORT/NAME or milvus-lite:PATH.db")
    return Path(text)


def gallery_location(spec: str | os.PathLike[str] | None = None) -> Path | MilvusLocation:
    """``spec``, else ``$FACEID_GALLERY``, else ``./gallery``, parsed by :func:`parse_location`."""
    if spec is None:
        spec = os.environ.get("FACEID_GALLERY") or "gallery"
    return parse_location(spec)
