"""The search index: nearest enrolled faces by cosine similarity, a cache of the truth store.

:class:`SearchIndex` keeps one FAISS index (exact or approximate by size, :mod:`faceid.index`) in
memory for the store's current write generation, and keeps it current in place: when the
generation moves on (a change by this process or another), it adds the faces added since and
removes the faces removed since (:class:`Changes`), in time proportional to the change. It is
built from the store's rows only when there is no usable index file, when the kind of index
changes (exact below :data:`faceid.index.EXACT_LIMIT` faces, approximate from there down to half
of it), or on repair (``faceid gallery rebuild-index``).

On disk the gallery keeps one index file, of some generation ``B``: a process loads it and
brings it up to date with the changes since ``B`` read from the store; the result must then hold
exactly the store's face ids and vectors, or the file is reported as damaged and left in place
for ``faceid gallery rebuild-index`` (searches use an index built from the rows). A new file is
written when the changes since ``B`` reach :data:`REBASE_SHARE` of the gallery, so writing
(about half a gigabyte at a million faces) is rare and loading stays quick. When faces are
removed, their vectors and codes are overwritten in that file in place (:meth:`SearchIndex.removed`,
and again on every open in case a process was killed before), so no index file keeps them.

A big gallery's first searches in a new process do not wait for the file to load: they are
answered exactly from the file memory-mapped, each reported face checked against the database,
while it loads and is checked in a background thread (:mod:`faceid.gallery.firstsearch`).

This is the seam between the truth store and the search index: it sees the store only through
``changes``, a callable returning one consistent snapshot of what changed (:class:`Changes`),
and for the background load ``apart`` (the same, on a connection of its own) and ``lookup``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceid._files import fsync_dir
from faceid.errors import ModelMismatchError
from faceid.gallery import firstsearch
from faceid.gallery.deletion import shred
from faceid.gallery.indexfiles import IndexFiles, build, compare, compare_arrays, parse

__all__ = ["REBASE_SHARE", "Changes", "SearchIndex"]

log = logging.getLogger(__name__)

#: A new index file is written when the faces added and removed since the file on disk reach
#: this share of the gallery (and at least one). Below it a process that loads the file applies
#: those changes from the database. Measured at a million faces (load 15 on 2 cores): a new
#: process's first search took 24 s with the file 10,000 changes behind and 27.6 s with it
#: current (the changes are lost in the noise of reading every embedding back to check the
#: file), while writing the 536 MB file took 8.6 s. The file's removed faces are overwritten at
#: once, whatever the share.
REBASE_SHARE = 0.01

_NO_ID = -1
_ALL = 2**62  # an id above every face id: asks for the removals only


@dataclass(frozen=True)
class Changes:
    """What the store holds now and what changed since a generation, read in one snapshot.

    Only enrolled faces (with a person) are in the index: a kept unknown face enters it when it
    is named, with the id it had, and leaves it when moved back to unknown. Both go to the log of
    removed faces, so a consumer removes every face of ``removed_ids`` and then adds every face of
    ``added_ids``, which holds those of them that are enrolled now.

    Attributes:
        generation: the store's current generation.
        dimension: its embeddings' dimension (1 while it has none).
        added_ids: ``(n,)`` int64, ascending: the enrolled faces whose ids are above the one asked
            for, and the enrolled faces of ``removed_ids`` (named since).
        added_vectors: ``(n, D)`` float32: their embeddings.
        removed_ids: ``(m,)`` int64: the faces removed from the index (deleted, moved to unknown,
            or named) after the generation asked for; ``None`` when the store's log of removals
            does not reach back to it.
        count: how many enrolled faces the store holds (a cheap check of an index updated in place).
    """

    generation: int
    dimension: int
    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray | None
    count: int


class SearchIndex:
    """The in-memory index of the store's faces, kept at its write generation.

    Args:
        files: where index files are read and written.
        changes: ``changes(since, after)`` returns :class:`Changes`: the faces with ids above
            ``after`` and those removed after generation ``since`` (``None``: none asked for).
        generation: returns the store's current generation.
        report: records damage found (once per message); see :attr:`faceid.gallery.Gallery.problems`.
        apart: as ``changes``, read on a connection of its own (callable from another thread), or
            ``None``: then a new process's first search waits for the index to load.
        lookup: ``lookup(ids)`` returns ``(ids (m,), embeddings (m, D))`` of those of ``ids`` that
            are enrolled (the check of a search answered before the index is loaded).
    """

    def __init__(
        self,
        files: IndexFiles,
        *,
        changes: Callable[[int | None, int], Changes],
        generation: Callable[[], int],
        report: Callable[[str], None],
        apart: Callable[[int | None, int], Changes] | None = None,
        lookup: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self._files = files
        self._changes = changes
        self._generation_now = generation
        self._report = report
        self._lock = threading.Lock()
        self._index: Any = None  # a faiss index, or None until first searched
        self._generation: int | None = None
        self._last_id = _NO_ID  # the largest face id the index has held: later faces have larger ones
        self._base: int | None = None  # generation of the index file the index was loaded from or saved as
        self._since_base = 0  # faces added and removed since that file
        self._damaged: set[int] = set()  # generations whose index file was found damaged
        self._apart = apart
        self._lookup = lookup
        self._loader: firstsearch.Loader | None = None  # loading the index file in the background
        self._early = 0  # searches answered from the file before it was checked

    # -- the seam ---------------------------------------------------------------------------------

    def current(self) -> Any:
        """The index of the store's current generation (updated, loaded or built if needed)."""
        with self._lock:
            if self._index is None and self._loader is not None:
                self._take_loaded()
            if self._index is None or self._generation != self._generation_now():
                hint = self._spec()
                if not self._update():
                    self._load_or_build(hint)
            return self._index

    def removed(self, face_ids: np.ndarray) -> None:
        """After a removal committed (or faces moved to unknown): overwrite the faces in the index file, and
        update the index in memory."""
        with self._lock:
            self._erase(np.asarray(face_ids, dtype=np.int64))
            if self._index is not None and not self._update():
                self._load_or_build(self._spec())

    def rebuild(self) -> int:
        """Build the index from the store, ignoring any file, and write it; return how many faces it holds."""
        with self._lock:
            self._damaged.clear()
            now = self._changes(None, _NO_ID)
            self._install(build(now.added_ids, now.added_vectors, now.dimension, self._spec()), now, base=None)
            return int(self._index.ntotal)

    def save_if_pending(self) -> None:
        """Write the index file if the index in memory is current and no file holds it yet (on close)."""
        if self._index is not None and self._base is None and self._generation == self._generation_now():
            self._save()

    def tidy(self) -> None:
        """On open: finish what killed processes left (removed faces not yet overwritten in the file, old files)."""
        self._files.sweep_if_needed()
        base = self._files.newest()
        if base is not None:
            removed = self._changes(base, _ALL).removed_ids
            if removed is None or self._files.holds(base, removed):
                try:
                    with self._files.lock(exclusive=True):
                        self._erase_locked(base, removed)
                except OSError as exc:  # a read-only gallery still reads
                    log.info("could not overwrite removed faces in %s: %s", self._files.file(base), exc)

    def problems(self) -> list[str]:
        """What is wrong with the stored index file (for ``check``), each with how to repair it."""
        base = self._files.newest()
        if base is None:
            return []
        path = self._files.file(base)
        try:
            data = self._files.read(base)
        except OSError as exc:
            return [f"{path}: cannot read ({exc.strerror or exc}); run `faceid gallery rebuild-index`"]
        if data is None:
            return []
        now = self._changes(base, _NO_ID)
        if now.removed_ids is None:  # too old to bring up to date: replaced on the next search, not damage
            return []
        _, problem, _ = self._from_file(data, now)
        if problem is None:
            return []
        return [
            f"{path}: {problem}; if the database is right, run `faceid gallery rebuild-index`, "
            "else restore gallery.db from a backup (`faceid gallery restore BACKUP`)"
        ]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, face_ids)``, both ``(n, k)``, for ``(n, D)`` float32 unit ``queries``; see Gallery.search."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self._index is None and self._apart is not None and self._lookup is not None:
            answer = self._first(queries, k)
            if answer is not None:
                return answer
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

    # -- before the index is loaded ---------------------------------------------------------------

    def _first(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Search a big index file memory-mapped while it loads in the background; ``None``: wait for it."""
        from faceid import index as gi

        assert self._apart is not None and self._lookup is not None
        with self._lock:
            if self._index is not None or (self._loader is not None and self._loader.done()):
                return None
            base = self._files.newest()
            if base is None or base in self._damaged:
                return None
            try:
                with self._files.lock(exclusive=False):  # as any read of index files (erasing writes in place)
                    held, vectors = gi.mapped(self._files.file(base))
                    if len(held) < firstsearch.PROVISIONAL_FACES:
                        return None if self._early else self._first_small(held, vectors, queries, k)
            except (OSError, ValueError):
                return None
            now = self._changes(base, int(held.max()))
            if now.removed_ids is None or vectors.shape[1] != now.dimension or queries.shape[1] != now.dimension:
                return None
            skip = np.flatnonzero(np.isin(held, np.append(now.removed_ids, gi.ERASED)))
            if len(held) - len(skip) + len(now.added_ids) != now.count:
                return None  # the file and the database disagree: the checked load says how
            scores, found = firstsearch.search(held, vectors, skip, now.added_ids, now.added_vectors, queries, k)
            if self._loader is None:  # started once the first answer is found: it has the cores to itself
                self._loader = firstsearch.Loader(lambda: self._load_apart(base))
        if not firstsearch.check(queries, scores, found, self._lookup):
            log.info("a search of the index file before it was checked found faces that differ from the database")
            return None
        self._early += 1
        return scores, found

    def _first_small(
        self, held: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A small file's first search: checked whole against the database, as a load checks it, and
        answered from the database's embeddings, without FAISS; ``None`` if the file is behind or
        differs (then it is loaded, brought up to date or reported, and written again, as always)."""
        now = self._changes(None, _NO_ID)  # every enrolled face; a damaged row raises as a load does
        if queries.shape[1] != now.dimension or compare_arrays(held, vectors, now.added_ids, now.added_vectors):
            return None
        self._early += 1
        return firstsearch.search(
            now.added_ids, now.added_vectors, np.zeros(0, np.int64), held[:0], vectors[:0], queries, k
        )

    def _load_apart(self, base: int) -> tuple[Any, Changes, int, int] | str | None:
        """In the background: the index file of ``base`` loaded and checked, ``(index, changes, applied, base)``;
        else what is wrong with it, or ``None``."""
        from faceid import index as gi

        assert self._apart is not None
        data = self._files.read(base)
        if data is None:
            return None
        now = self._apart(base, _NO_ID)
        if now.removed_ids is None:
            return None
        index, problem, applied = self._from_file(data, now)
        if index is None:
            return problem
        if gi.choose(int(index.ntotal), int(index.d), gi.spec_of(index)) != gi.spec_of(index):
            return None  # the kind changes: built again in the foreground
        return index, now, applied, base

    def _take_loaded(self) -> None:
        """Install the index the background load made (waiting for it); hold the lock."""
        loader, self._loader = self._loader, None
        loaded = loader.result() if loader is not None else None
        if isinstance(loaded, tuple):
            index, now, applied, base = loaded
            self._install(index, now, base=base, since=applied)
        elif isinstance(loaded, str) and self._early:
            # the foreground load reports the damage; say what it means for the answers already given
            self._report(
                f"{self._files.folder}: {self._early} search(es) answered while the index file was being checked "
                f"used it, and it then proved damaged ({loaded}): they may have missed enrolled faces; repeat them"
            )

    # -- keeping the index current ----------------------------------------------------------------

    def _spec(self) -> Any:
        from faceid.index import spec_of

        return spec_of(self._index) if self._index is not None else None

    def _update(self) -> bool:
        """Bring the index in memory to the store's generation in place; ``False`` if it must be loaded or built."""
        from faceid import index as gi

        index, self._index = self._index, None  # a failure half-way leaves no half-updated index
        if index is None or self._generation is None:
            return False
        now = self._changes(self._generation, self._last_id)
        if now.removed_ids is None or int(index.d) != now.dimension:  # or the first embeddings came: built anew
            return False
        spec = gi.spec_of(index)
        removed = gi.remove(index, now.removed_ids)
        gi.add(index, now.added_ids, now.added_vectors)
        if index.ntotal != now.count:  # faces removed or added another way (an older faceid, by hand)
            log.info("the index updated in place does not match the database; loading it again")
            return False
        if gi.choose(int(index.ntotal), int(index.d), spec) != spec:
            return False  # the kind changes: built again from the rows
        self._index, self._generation = index, now.generation
        if len(now.added_ids):
            self._last_id = max(self._last_id, int(now.added_ids[-1]))
        self._since_base += removed + len(now.added_ids)
        if self._base is None or self._since_base >= max(1.0, REBASE_SHARE * index.ntotal):
            self._save()
        return True

    def _load_or_build(self, hint: Any) -> None:
        """Load the newest index file and bring it up to date, or build the index from the rows."""
        from faceid import index as gi

        base = self._files.newest()
        data = None
        if base is not None:
            path = self._files.file(base)
            try:
                data = self._files.read(base)
            except OSError as exc:
                self._report(f"{path}: cannot read ({exc.strerror or exc}); searches use the database")
        now = self._changes(base if data is not None else None, _NO_ID)
        index, applied = None, 0
        if data is not None and base is not None and now.removed_ids is not None:
            index, problem, applied = self._from_file(data, now)
            if problem is not None:
                self._damaged.add(base)
                self._report(
                    f"{self._files.file(base)}: {problem}; it was not used (searches use an index built from "
                    "the database). Run `faceid gallery check`; `faceid gallery rebuild-index` rebuilds it "
                    "from the database"
                )
        if index is not None:
            spec = gi.spec_of(index)
            if gi.choose(int(index.ntotal), int(index.d), spec) == spec:
                self._install(index, now, base=base, since=applied)
                return
            hint = spec
        self._install(build(now.added_ids, now.added_vectors, now.dimension, hint), now, base=None)

    def _from_file(self, data: bytes, now: Changes) -> tuple[Any, str | None, int]:
        """``(index, None, changes applied)``: the index in ``data`` brought up to ``now``; else ``(None, why, 0)``."""
        from faceid import index as gi

        removed = now.removed_ids if now.removed_ids is not None else np.zeros(0, np.int64)
        index, problem = parse(data, now.dimension, now.count + len(removed))
        if index is None:  # damaged, or (no problem) an empty index from before the first face
            return None, problem, 0
        applied = gi.remove(index, np.append(removed, gi.ERASED))
        held = gi.ids(index)
        top = int(held.max()) if len(held) else _NO_ID
        old = int(np.searchsorted(now.added_ids, top, side="right"))
        # the faces the file must hold: those up to its largest id, but for faces that left or
        # (named kept unknown faces) joined the index since: the log lists both, taken out above
        back = np.isin(now.added_ids[:old], removed)
        problem = compare(index, now.added_ids[:old][~back], now.added_vectors[:old][~back])
        if problem is not None:
            return None, problem, 0
        gi.add(index, now.added_ids[:old][back], now.added_vectors[:old][back])
        gi.add(index, now.added_ids[old:], now.added_vectors[old:])
        return index, None, applied + int(back.sum()) + len(now.added_ids) - old

    def _install(self, index: Any, now: Changes, *, base: int | None, since: int = 0) -> None:
        from faceid import index as gi

        gi.reserve(index, max(1024, int(index.ntotal) // 64))  # enrolments then add without copying it
        self._index, self._generation = index, now.generation
        self._last_id = int(now.added_ids[-1]) if len(now.added_ids) else _NO_ID
        self._base, self._since_base = base, max(0, since)
        if base is None or self._since_base >= max(1.0, REBASE_SHARE * index.ntotal):
            self._save()

    # -- files ------------------------------------------------------------------------------------

    def _save(self) -> None:
        """Write the index of the current generation (atomically) and sweep away older files."""
        import faiss

        if self._index is None or self._generation is None:
            return
        if self._generation in self._damaged:  # the damaged file stays for the repair: nothing to write
            with self._files.lock(exclusive=True):
                self._files.sweep()
            return
        data = faiss.serialize_index(self._index).tobytes()
        with self._files.lock(exclusive=True):
            current = self._generation_now()
            if self._generation == current and current not in self._damaged:
                self._files.write(current, data)
                self._base, self._since_base = current, 0
            self._files.sweep()

    def _erase(self, face_ids: np.ndarray) -> None:
        base = self._files.newest()
        if base is not None and self._files.holds(base, face_ids):
            with self._files.lock(exclusive=True):
                self._erase_locked(base, face_ids)

    def _erase_locked(self, base: int, face_ids: np.ndarray | None) -> None:
        """Overwrite ``face_ids`` in the file of ``base``; delete the file if they are unknown (``None``)."""
        if face_ids is None:  # the log of removals does not reach back to the file: it may hold anyone
            shred(self._files.file(base))
            fsync_dir(self._files.folder)
        else:
            self._files.erase(base, face_ids)
