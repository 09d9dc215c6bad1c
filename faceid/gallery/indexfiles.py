"""Index files: the FAISS index cache on disk, one file per write generation, and its validation.

A file is named after the database's write generation (``index-<generation>.faiss``), so a stale
file is never used, and a file is used only if it holds exactly the database's face ids and
vectors (:func:`parse`). Files are written to a temp file and renamed into place; files of other
generations and temp files a killed process left behind are overwritten and deleted
(:meth:`IndexFiles.sweep`). Reads and writes take an advisory lock on the gallery folder (shared
to read, exclusive to write or delete), so no process reads a file while another overwrites it;
waiting for another process's lock lasts at most ``timeout`` seconds, then the ``busy`` error.

Nothing here touches SQLite: the current generation is asked of a callable.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceid._files import atomic_write_bytes, fsync_dir
from faceid.gallery.deletion import shred
from faceid.gallery.records import n_faces

__all__ = ["IndexFiles", "parse"]

log = logging.getLogger(__name__)

_INDEX_NAME = re.compile(r"index-(\d+)\.faiss")


class IndexFiles:
    """The index files in a gallery ``folder``.

    Args:
        folder: the gallery folder.
        generation: returns the database's current write generation.
        timeout: seconds to wait for another process's lock.
        busy: makes the error raised when that wait runs out.
    """

    def __init__(
        self, folder: Path, *, generation: Callable[[], int], timeout: float, busy: Callable[[], Exception]
    ) -> None:
        self.folder = folder
        self._generation = generation
        self._timeout = timeout
        self._busy = busy

    def file(self, generation: int) -> Path:
        return self.folder / f"index-{generation}.faiss"

    @contextmanager
    def lock(self, *, exclusive: bool) -> Iterator[None]:
        """An advisory lock on the gallery folder: shared to read index files, exclusive to write or delete them."""
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows): index files are still replaced atomically
            yield
            return
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
            deadline = time.monotonic() + self._timeout
            while True:
                try:
                    fcntl.flock(fd, operation)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._busy() from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # releases the lock

    def read(self, generation: int) -> bytes | None:
        """The bytes of the index file of ``generation``, or ``None`` if there is none; ``OSError`` if unreadable."""
        try:
            with self.lock(exclusive=False):
                return self.file(generation).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, generation: int, data: bytes) -> None:
        """Write the index file of ``generation`` atomically; hold the exclusive :meth:`lock`."""
        atomic_write_bytes(self.file(generation), data, mode=0o600)

    def listing(self) -> list[tuple[Path, int | None]]:
        """Index files and index temp files in the folder, with their generation (``None`` for temp files)."""
        found: list[tuple[Path, int | None]] = []
        for path in self.folder.glob("*index-*.faiss*"):
            match = _INDEX_NAME.fullmatch(path.name)
            if match:
                found.append((path, int(match.group(1))))
            elif path.name.startswith(".index-") and path.name.endswith(".tmp"):
                found.append((path, None))
        return found

    def sweep(self) -> None:
        """Overwrite and delete index files of other generations and leftover temp files.

        Hold the exclusive :meth:`lock`: no process is then writing a temp file, and a writer that
        committed a newer generation cannot have written its file yet.
        """
        current = self._generation()
        swept = False
        for path, generation in self.listing():
            if generation != current:
                shred(path)
                swept = True
        if swept:
            fsync_dir(self.folder)

    def sweep_if_needed(self) -> None:
        """:meth:`sweep` under the lock if there is anything to sweep; a read-only gallery is left as it is."""
        generation = self._generation()
        if any(g != generation for _, g in self.listing()):
            try:
                with self.lock(exclusive=True):
                    self.sweep()
            except OSError as exc:  # a read-only gallery still reads
                log.info("could not delete old index files in %s: %s", self.folder, exc)

    def problems(self, generation: int, ids: np.ndarray, vectors: np.ndarray, dimension: int) -> list[str]:
        """What is wrong with the index file of ``generation`` (none if it is absent), each with how to repair it."""
        path = self.file(generation)
        try:
            data = self.read(generation)
        except OSError as exc:
            return [f"{path}: cannot read ({exc.strerror or exc}); run `faceid gallery rebuild-index`"]
        if data is None:
            return []
        _, problem = parse(data, ids, vectors, dimension)
        if problem is None:
            return []
        return [
            f"{path}: {problem}; if the database is right, run `faceid gallery rebuild-index`, "
            "else restore gallery.db from a backup"
        ]


def build(ids: np.ndarray, vectors: np.ndarray, dimension: int) -> Any:
    """The search index for these faces: exact or approximate by their number (:mod:`faceid.index`)."""
    from faceid import index as search_index

    return search_index.build(ids, vectors, max(1, dimension))


@functools.lru_cache(maxsize=8)
def _index_size(dimension: int) -> tuple[int, int]:
    """Bytes of a serialised exact index of ``dimension``: ``(empty, per face)``."""
    import faiss

    empty = len(
        faiss.serialize_index(_flat_index(np.zeros(0, np.int64), np.zeros((0, dimension), np.float32), dimension))
    )
    one = len(
        faiss.serialize_index(_flat_index(np.zeros(1, np.int64), np.zeros((1, dimension), np.float32), dimension))
    )
    return empty, one - empty


def _flat_index(ids: np.ndarray, vectors: np.ndarray, dimension: int) -> Any:
    from faceid import index as search_index

    return search_index.build(ids, vectors, dimension, search_index.IndexSpec(search_index.EXACT))


def parse(data: bytes, ids: np.ndarray, vectors: np.ndarray, dimension: int) -> tuple[Any, str | None]:
    """``(index, None)`` if ``data`` is an index holding exactly ``ids`` with ``vectors``, else ``(None, problem)``.

    The size is checked before anything is decoded, so a damaged header cannot make FAISS
    allocate without bound: exactly the exact index's size, or at most the approximate one's
    (its product-quantiser codebooks, and per face a code besides the vector and id).
    """
    import faiss

    from faceid import index as search_index

    empty, per_face = _index_size(dimension)
    expected = empty + per_face * len(ids)
    # An approximate index is larger: codebooks, and a code per face besides the vector and id.
    # Only a gallery big enough to hold one may have one.
    approximate = len(ids) >= search_index.EXACT_LIMIT // 2
    approximate_max = empty + 65536 + (per_face + dimension) * (len(ids) + 32)
    if len(data) != expected and not (approximate and expected < len(data) <= approximate_max):
        rows, rest = divmod(len(data) - empty, per_face)
        if len(data) >= empty and rest == 0:
            return None, f"holds other faces than the database ({rows} in the index, {len(ids)} in the database)"
        what = "truncated" if len(data) < expected else "too long"
        return None, f"{what} or not an index ({len(data)} bytes; {expected} expected for {n_faces(len(ids))})"
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, MemoryError) as exc:
        return None, f"unreadable ({str(exc).splitlines()[0][:120]})"
    try:
        search_index.spec_of(index)
    except ValueError:
        return None, "not an index of this gallery's kind"
    if index.d != dimension:
        return None, "not an index of this gallery's kind"
    held, stored = search_index.contents(index)
    if index.ntotal != len(ids) or not np.array_equal(held, ids):
        return None, f"holds other faces than the database ({index.ntotal} in the index, {len(ids)} in the database)"
    if len(ids):
        differ = int(np.count_nonzero((stored != vectors).any(axis=1)))
        if differ:
            return None, (
                f"{differ} of its {len(ids)} vectors differ from the database's (the database was edited "
                "outside faceid, or the index damaged)"
            )
    return index, None
