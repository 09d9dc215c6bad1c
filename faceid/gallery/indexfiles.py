"""Index files: the FAISS index cache on disk, one file per write generation, and its validation.

A file is named after the database's write generation whose faces it holds
(``index-<generation>.faiss``). The gallery keeps one, the newest: an index loaded from it is
brought up to date with the faces added and removed since (:mod:`faceid.gallery.changes`), and
used only if it then holds exactly the database's face ids and vectors (:func:`parse`,
:func:`compare`). Files are written to a temp file and renamed into place; older files and temp
files a killed process left behind are overwritten and deleted (:meth:`IndexFiles.sweep`). When
faces are removed, their vectors and codes are overwritten in the file in place
(:meth:`IndexFiles.erase`), so no file keeps them and the file stays usable. Reads and writes
take an advisory lock on the gallery folder (shared to read, exclusive to write or delete), so
no process reads a file while another overwrites it; waiting for another process's lock lasts
at most ``timeout`` seconds, then the ``busy`` error.

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

__all__ = ["IndexFiles", "compare", "compare_arrays", "parse"]

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

    def newest(self) -> int | None:
        """The generation of the newest index file not newer than the database, or ``None`` if there is none."""
        current = self._generation()
        found = [g for _, g in self.listing() if g is not None and g <= current]
        return max(found) if found else None

    def sweep(self) -> None:
        """Overwrite and delete every index file but the newest, and leftover temp files.

        Hold the exclusive :meth:`lock`: no process is then writing a temp file.
        """
        keep = self.newest()
        swept = False
        for path, generation in self.listing():
            if generation is None or generation != keep:
                shred(path)
                swept = True
        if swept:
            fsync_dir(self.folder)

    def sweep_if_needed(self) -> None:
        """:meth:`sweep` under the lock if there is anything to sweep; a read-only gallery is left as it is."""
        keep = self.newest()
        if any(g is None or g != keep for _, g in self.listing()):
            try:
                with self.lock(exclusive=True):
                    self.sweep()
            except OSError as exc:  # a read-only gallery still reads
                log.info("could not delete old index files in %s: %s", self.folder, exc)

    def holds(self, generation: int, ids: np.ndarray) -> bool:
        """Whether the index file of ``generation`` may still hold any of the faces ``ids`` (read without the lock).

        Only the ids at the end of the file are read: its other parts may change under a process
        erasing faces in it, its ids only from a face's id to :data:`faceid.index.ERASED`.
        """
        from faceid import index as search_index

        if not len(ids):
            return False
        try:
            return bool(np.isin(search_index.file_ids(self.file(generation)), ids).any())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return True  # not readable as an index: erase() deals with it

    def erase(self, generation: int, ids: np.ndarray) -> None:
        """Overwrite the vectors and codes of the faces ``ids`` in the index file of ``generation``, in place.

        A file that cannot be changed in place (not laid out as expected) is overwritten and
        deleted instead. Hold the exclusive :meth:`lock`.
        """
        from faceid import index as search_index

        path = self.file(generation)
        if not len(ids) or not path.exists():
            return
        try:
            erased = search_index.erase(path, ids)
            log.info("erased %s from %s", n_faces(erased), path.name)
        except ValueError as exc:
            log.info("%s: %s; deleting it instead of erasing faces in it", path, exc)
            shred(path)
            fsync_dir(self.folder)


def build(ids: np.ndarray, vectors: np.ndarray, dimension: int, current: Any = None) -> Any:
    """The search index for these faces: exact or approximate by their number (:mod:`faceid.index`).

    ``current``: the kind in use (an :class:`~faceid.index.IndexSpec`), kept while it still fits.
    """
    from faceid import index as search_index

    dimension = max(1, dimension)
    return search_index.build(ids, vectors, dimension, search_index.choose(len(ids), dimension, current))


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


def parse(data: bytes, dimension: int, most: int) -> tuple[Any, str | None]:
    """``(index, None)`` if ``data`` is a gallery index of ``dimension``, at most ``most`` faces; else ``(None, why)``.

    ``(None, None)`` for an empty index of another dimension (written before the first face).

    The size is checked before anything is decoded, so a damaged header cannot make FAISS
    allocate without bound: exactly the exact index's size for the faces its header counts, or
    at most the approximate one's (its product-quantiser codebooks, and per face a code besides
    the vector and id).
    """
    import struct

    import faiss

    from faceid import index as search_index

    empty, per_face = _index_size(dimension)
    n = int(struct.unpack_from("<q", data, 8)[0]) if len(data) >= 16 else -1
    if n > most:
        return None, f"holds other faces than the database ({n} in the index, at most {most} expected)"
    expected = empty + per_face * max(n, 0)
    # An approximate index is larger: codebooks, and a code per face besides the vector and id.
    # Only a gallery big enough to hold one may have one.
    approximate = n >= search_index.EXACT_LIMIT // 2
    approximate_max = empty + 65536 + (per_face + dimension) * (n + 32)
    if n < 0 or (len(data) != expected and not (approximate and expected < len(data) <= approximate_max)):
        what = "truncated" if len(data) < expected else "too long"
        faces = f"{n_faces(n)} in its header" if n >= 0 else "no header"
        return None, f"{what} or not an index ({len(data)} bytes; {expected} expected for {faces})"
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, MemoryError) as exc:
        return None, f"unreadable ({str(exc).splitlines()[0][:120]})"
    try:
        search_index.spec_of(index)
    except ValueError:
        return None, "not an index of this gallery's kind"
    if index.d != dimension:
        if index.ntotal == 0:  # written while the gallery had no faces, so no dimension: not damage
            return None, None
        return None, "not an index of this gallery's kind"
    return index, None


def compare(index: Any, ids: np.ndarray, vectors: np.ndarray) -> str | None:
    """What differs between ``index`` and the database's ``ids`` ``(N,)`` (ascending) and ``vectors`` ``(N, D)``.

    ``None`` if nothing does. An index built from the rows holds them in that order and is compared
    as it is, without copying it; one changed in place is compared through its ids' order.
    """
    from faceid import index as search_index

    held, stored = search_index.view(index)
    return compare_arrays(held, stored, ids, vectors)


def compare_arrays(held: np.ndarray, stored: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> str | None:
    """:func:`compare` of what an index holds, ``held`` ids ``(n,)`` and ``stored`` vectors ``(n, D)`` in its order."""
    other = f"holds other faces than the database ({len(held)} in the index, {len(ids)} in the database)"
    if len(held) != len(ids):
        return other
    expected = vectors
    if not np.array_equal(held, ids):
        order = np.argsort(held, kind="stable")
        if not np.array_equal(held[order], ids):
            return other
        expected = np.empty_like(vectors)
        expected[order] = vectors  # the database's vectors in the index's order
    step = 1 << 16
    differ = sum(
        int(np.count_nonzero((stored[i : i + step] != expected[i : i + step]).any(axis=1)))
        for i in range(0, len(ids), step)
    )
    if differ:
        return (
            f"{differ} of its {len(ids)} vectors differ from the database's (the database was edited "
            "outside faceid, or the index damaged)"
        )
    return None
