"""Cache of detections and embeddings, keyed by image content hash and everything that changes them.

An evaluation or a re-run over the same photos reads faces from here instead of running the
networks again. The cache is SQLite holding only JSON and raw float32 bytes: one row per
(image SHA-256, pipeline key). A row that does not decode to what was stored (malformed JSON,
an embedding blob of the wrong length, embeddings that are not finite unit vectors) is a miss,
logged once, and the faces are computed again and replace it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from faceid.detect import Detection
from faceid.pipeline import Face

__all__ = ["EmbeddingCache", "default_cache_path"]

log = logging.getLogger(__name__)


def default_cache_path() -> Path:
    """``$FACEID_CACHE``, else ``$XDG_CACHE_HOME/faceid/embeddings.db``."""
    env = os.environ.get("FACEID_CACHE")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "faceid" / "embeddings.db"


class EmbeddingCache:
    """Faces found in an image by one pipeline configuration.

    Args:
        path: the SQLite file (created owner-only if missing).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        # one statement or transaction at a time: faceid.batch.process reads in its detection
        # thread while the calling thread writes embeddings, on this one connection
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS faces (image_sha256 TEXT NOT NULL, key TEXT NOT NULL, "
            "detections TEXT NOT NULL, "
            "embeddings BLOB NOT NULL, PRIMARY KEY (image_sha256, key))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS detections (image_sha256 TEXT NOT NULL, key TEXT NOT NULL, "
            "detections TEXT NOT NULL, PRIMARY KEY (image_sha256, key))"
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key_of(settings: dict) -> str:
        """A short stable hash of a settings dict."""
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, image_sha256: str, key: str) -> list[Face] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT detections, embeddings FROM faces WHERE image_sha256 = ? AND key = ?", (image_sha256, key)
            ).fetchone()
        if row is None:
            self.misses += 1
            return None
        try:
            detections = _detections_from_json(json.loads(row[0]))
            vectors = _embeddings_from_blob(row[1], len(detections))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: corrupt cache row for image %s (%s); computing it again", self.path, image_sha256, exc)
            self.misses += 1
            return None
        self.hits += 1
        return [Face(d, vectors[i].copy()) for i, d in enumerate(detections)]

    def put_many(self, items: list[tuple[str, list[Face]]], key: str) -> None:
        rows = []
        for sha, faces in items:
            detections = _detections_to_json([f.detection for f in faces])
            blob = np.stack([f.embedding for f in faces]).astype(np.float32).tobytes() if faces else b""
            rows.append((sha, key, detections, blob))
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO faces VALUES (?, ?, ?, ?)", rows)

    def get_detections(self, image_sha256: str, key: str) -> list[Detection] | None:
        """Detections alone, shared by pipelines that differ only after detection (crop, mirror)."""
        with self._lock:
            row = self._db.execute(
                "SELECT detections FROM detections WHERE image_sha256 = ? AND key = ?", (image_sha256, key)
            ).fetchone()
        if row is None:
            return None
        try:
            return _detections_from_json(json.loads(row[0]))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: corrupt detections for image %s (%s); detecting again", self.path, image_sha256, exc)
            return None

    def put_detections(self, items: list[tuple[str, list[Detection]]], key: str) -> None:
        rows = [(sha, key, _detections_to_json(found)) for sha, found in items]
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO detections VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _detections_to_json(detections: list[Detection]) -> str:
    return json.dumps(
        [
            {"box": list(d.box), "confidence": d.confidence, "landmarks": [list(p) for p in d.landmarks]}
            for d in detections
        ]
    )


def _detections_from_json(found: list[dict]) -> list[Detection]:
    """Detections from their JSON; ``ValueError``, ``TypeError`` or ``KeyError`` if it is not a list of them."""
    if not isinstance(found, list):
        raise ValueError("detections are not a list")
    out = []
    for d in found:
        box = tuple(int(v) for v in d["box"])
        landmarks = tuple((float(x), float(y)) for x, y in d["landmarks"])
        if len(box) != 4 or len(landmarks) != 5:
            raise ValueError("a detection needs a 4-number box and 5 landmarks")
        out.append(Detection(box, float(d["confidence"]), landmarks))
    return out


def _embeddings_from_blob(blob: bytes, faces: int) -> np.ndarray:
    """``(faces, D)`` float32 unit rows from their raw bytes; ``ValueError`` if they are not that."""
    if not faces:
        if blob:
            raise ValueError(f"{len(blob)} bytes of embeddings for no face")
        return np.zeros((0, 0), np.float32)
    if not isinstance(blob, bytes) or not blob or len(blob) % (4 * faces):
        raise ValueError(f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes for {faces} faces")
    vectors = np.frombuffer(blob, dtype=np.float32).reshape(faces, -1)
    norms = np.linalg.norm(vectors, axis=1)
    if not np.isfinite(vectors).all() or not np.allclose(norms, 1.0, atol=1e-3):
        raise ValueError("embeddings are not finite unit vectors")
    return vectors
