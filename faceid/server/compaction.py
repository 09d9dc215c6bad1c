"""The rewrite of ``gallery.db`` after a removal, in a background thread, so that the request returns.

A removal through the API is committed, taken out of the search index and scrubbed from the index
files before it answers (:meth:`Gallery.remove` with ``compact=False``); the rewrite that clears
stale copies of the removed rows from unused database pages (``VACUUM``, 10-19 s at a million
faces) runs here, on its own connection to the gallery. Until it finishes the gallery records it as
due (:attr:`Gallery.compaction_pending`), so a server killed in between leaves it to the next open
of the gallery, by any process.
"""

from __future__ import annotations

import logging
import os
import threading

from faceid.errors import FaceIDError
from faceid.gallery import open_gallery

__all__ = ["Compactor"]

log = logging.getLogger(__name__)


class Compactor:
    """One background thread that rewrites the gallery's database whenever :meth:`request` asks.

    Requests that arrive during a rewrite are covered by one more rewrite after it (the rows they
    removed may have moved while it ran); requests that pile up while it waits are served at once.
    """

    def __init__(self, gallery_path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = gallery_path
        self.timeout = timeout
        self.rewrites = 0
        self._requested = 0
        self._done = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="faceid-compactor", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a rewrite (after a removal); returns at once."""
        with self._cond:
            self._requested += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every rewrite asked for so far has run; ``False`` if ``timeout`` came first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= self._requested, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Let a rewrite in progress finish (up to ``timeout``) and end the thread. A rewrite still
        due is left to the next open of the gallery."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the rewrite of %s after a removal did not finish; the next open finishes it", self.path)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._requested > self._done)
                if self._stopping:
                    return
                target = self._requested
            self._rewrite()
            with self._cond:
                self._done = target
                self._cond.notify_all()

    def _rewrite(self) -> None:
        try:
            with open_gallery(self.path, create=False, timeout=self.timeout) as gallery:
                if gallery.compact(wait=True):
                    self.rewrites += 1
                else:
                    log.warning(
                        "%s: other processes kept the gallery busy; its rewrite after a removal is left "
                        "for the next removal or the next open",
                        self.path,
                    )
        except FaceIDError as exc:
            log.error("%s: the rewrite after a removal failed: %s", self.path, exc)
        except Exception:  # a bug: logged, and the thread goes on serving requests
            log.exception("%s: the rewrite after a removal failed", self.path)
