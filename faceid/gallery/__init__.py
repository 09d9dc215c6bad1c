"""The gallery: enrolled people and their face embeddings.

:class:`Gallery` (:mod:`~faceid.gallery.gallery`) holds every rule once and reaches its store only
through the :class:`~faceid.gallery.backend.GalleryBackend` contract; :func:`open_gallery` (or
``Gallery(spec)``) opens a gallery from where it lives (``--gallery``: :mod:`~faceid.gallery.location`):

- a folder: :class:`~faceid.gallery.sqlite.SqliteBackend`. SQLite (``gallery.db``) is the source of
  truth; the FAISS index is a cache of its embeddings, kept at the database's write generation by
  changing it in place, and checked against it when loaded from its file. Every change is one
  SQLite transaction, so a process killed at any moment leaves the gallery as it was before or
  after the change; removed people leave nothing behind in the gallery's files but their name in
  the audit log;
- ``milvus://HOST:PORT/NAME`` or ``milvus-lite:PATH.db``: :class:`~faceid.gallery.milvus.MilvusBackend`
  (the ``milvus`` extra), with the same behaviour (``tests/test_gallery_contract.py`` runs on both).

The parts, one job each:

- :mod:`~faceid.gallery.backend`: the contract, and :mod:`~faceid.gallery.gallery`: the rules above it;
- :mod:`~faceid.gallery.unknown`: kept unknown faces, groups, naming, corrections (``gallery.unknown``);
- :mod:`~faceid.gallery.records`: the dataclasses handed in and out, and the rules for names;
- :mod:`~faceid.gallery.audit`: the append-only audit log and its replay;
- a folder's store: :mod:`~faceid.gallery.sqlite` (the backend), :mod:`~faceid.gallery.store` (the
  database, its schema and transactions), :mod:`~faceid.gallery.people` (rows of people and faces),
  :mod:`~faceid.gallery.deletion` (secure deletion), :mod:`~faceid.gallery.indexfiles` and
  :mod:`~faceid.gallery.searchindex` (the index cache), :mod:`~faceid.gallery.changes` (the log of
  removed faces), :mod:`~faceid.gallery.thumbnails`, :mod:`~faceid.gallery.chips`,
  :mod:`~faceid.gallery.sqlite_grouping`, :mod:`~faceid.gallery.keys` (API keys);
- Milvus's: :mod:`~faceid.gallery.milvus`, :mod:`~faceid.gallery.milvus_unknown`,
  :mod:`~faceid.gallery.milvus_keys`, :mod:`~faceid.gallery.milvus_export`.

Scores are cosine similarities of unit vectors (inner products), higher is closer.
"""

from __future__ import annotations

import os

from faceid.gallery.audit import AuditEntry
from faceid.gallery.chips import FaceChip
from faceid.gallery.gallery import Gallery
from faceid.gallery.records import (
    MAX_NAME_LENGTH,
    FaceRecord,
    NewFace,
    Person,
    default_gallery_dir,
    normalise_name,
)
from faceid.gallery.store import DB_NAME, SCHEMA_VERSION

__all__ = [
    "DB_NAME",
    "MAX_NAME_LENGTH",
    "SCHEMA_VERSION",
    "AnyGallery",
    "AuditEntry",
    "FaceChip",
    "FaceRecord",
    "Gallery",
    "NewFace",
    "Person",
    "default_gallery_dir",
    "normalise_name",
    "open_gallery",
]


def open_gallery(spec: str | os.PathLike[str] | None = None, *, create: bool = True, timeout: float = 30.0) -> Gallery:
    """Open the gallery ``spec`` names: a folder, ``milvus://HOST:PORT/NAME`` or ``milvus-lite:PATH.db``.

    ``None``: ``$FACEID_GALLERY``, else ``./gallery``. Every kind has the same public behaviour;
    a Milvus gallery needs the ``milvus`` extra (a one-line :class:`GalleryError` says so).
    """
    return Gallery(spec, create=create, timeout=timeout)


#: what enrol, identify and calibrate take: one class, whatever the backend (kept for callers)
AnyGallery = Gallery
