"""The search index: nearest enrolled faces by cosine similarity, a cache of the truth store.

:class:`SearchIndex` keeps one FAISS index (exact or approximate by size, :mod:`faceid.index`) in
memory for the store's current write generation. When the generation moves on it loads the
matching index file (:mod:`faceid.gallery.indexfiles`), or builds the index from the store's
rows and writes the file. A file that exists but does not match the rows is damage: it is
reported and left in place for ``faceid gallery rebuild-index``, and searches use an index built
from the rows instead.

This is the seam between the truth store and the search index: it sees the store only through
``contents``, a callable returning one consistent snapshot of its faces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from faceid.errors import ModelMismatchError
from faceid.gallery.indexfiles import IndexFiles, build, parse

__all__ = ["Contents", "SearchIndex"]

#: ``(generation, face_ids (N,) int64, embeddings (N, D) float32, D)``, read in one snapshot.
Contents = tuple[int, np.ndarray, np.ndarray, int]


class SearchIndex:
    """The in-memory index of the store's faces, tied to its write generation.

    Args:
        files: where index files are read and written.
        contents: returns the store's faces (:data:`Contents`), read in one snapshot.
        generation: returns the store's current generation.
        report: records damage found (once per message); see :attr:`faceid.gallery.Gallery.problems`.
    """

    def __init__(
        self,
        files: IndexFiles,
        *,
        contents: Callable[[], Contents],
        generation: Callable[[], int],
        report: Callable[[str], None],
    ) -> None:
        self._files = files
        self._contents = contents
        self._generation_now = generation
        self._report = report
        self._lock = threading.Lock()
        self._index: Any = None  # a faiss index, or None until first searched
        self._generation: int | None = None
        self._saved = False  # the index in memory is the one in its file
        self._damaged: set[int] = set()  # generations whose index file was found damaged

    def current(self) -> Any:
        """The index of the store's current generation (loaded or built if needed)."""
        with self._lock:
            generation = self._generation_now()
            if self._index is None or self._generation != generation:
                self._load_or_build()
            return self._index

    def refresh(self) -> None:
        """Load or build the index of the current generation now (after a change)."""
        with self._lock:
            self._load_or_build()

    def rebuild(self) -> int:
        """Build the index from the store, ignoring any file, and write it; return how many faces it holds."""
        with self._lock:
            self._damaged.clear()
            generation, ids, vectors, dimension = self._contents()
            self._index, self._generation = build(ids, vectors, dimension), generation
            self._saved = False
            self._save()
            return int(self._index.ntotal)

    def save_if_pending(self) -> None:
        """Write the index file if the index in memory is current and not yet written (on close)."""
        if self._index is not None and not self._saved and self._generation == self._generation_now():
            self._save()

    def tidy(self) -> None:
        """Delete what killed processes left: index files of other generations, temp files (on open)."""
        self._files.sweep_if_needed()

    def problems(self, generation: int, ids: np.ndarray, vectors: np.ndarray, dimension: int) -> list[str]:
        """What is wrong with the stored index of ``generation`` for these faces (for ``check``)."""
        return self._files.problems(generation, ids, vectors, dimension)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, face_ids)``, both ``(n, k)``, for ``(n, D)`` float32 unit ``queries``; see Gallery.search."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        index = self.current()
        n = len(queries)
        if index is None or index.ntotal == 0:
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        if queries.shape[1] != index.d:
            raise ModelMismatchError(f"queries have {queries.shape[1]} dimensions, the gallery {index.d}")
        from faceid.index import search

        scores, ids = search(index, queries, k)
        scores[ids < 0] = -np.inf
        return scores, ids

    def spec(self) -> Any:
        """The kind of index in use (:class:`faceid.index.IndexSpec`)."""
        from faceid.index import spec_of

        return spec_of(self.current())

    def _load_or_build(self) -> None:
        generation, ids, vectors, dimension = self._contents()
        index = self._read(generation, ids, vectors, dimension)
        self._saved = index is not None
        if index is None:
            index = build(ids, vectors, dimension)
        self._index, self._generation = index, generation
        if not self._saved:
            self._save()

    def _read(self, generation: int, ids: np.ndarray, vectors: np.ndarray, dimension: int) -> Any:
        """The index file of ``generation`` if it holds exactly ``ids`` and ``vectors``; else ``None``.

        A file that exists but does not match is reported and left in place.
        """
        path = self._files.file(generation)
        try:
            data = self._files.read(generation)
        except OSError as exc:
            self._report(f"{path}: cannot read ({exc.strerror or exc}); searches use the database")
            return None
        if data is None:
            return None
        index, problem = parse(data, ids, vectors, dimension)
        if problem is not None:
            self._damaged.add(generation)
            self._report(
                f"{path}: {problem}; it was not used (searches use an index built from the database). "
                "Run `faceid gallery check`; `faceid gallery rebuild-index` rebuilds it from the database"
            )
        return index

    def _save(self) -> None:
        """Write the index of the current generation (atomically) and sweep away older files."""
        import faiss

        if self._index is None or self._generation is None:
            return
        data = faiss.serialize_index(self._index).tobytes()
        with self._files.lock(exclusive=True):
            current = self._generation_now()
            if self._generation == current and current not in self._damaged:
                self._files.write(current, data)
                self._saved = True
            self._files.sweep()
