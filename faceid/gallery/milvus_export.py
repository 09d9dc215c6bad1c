"""A Milvus gallery written out as a new local gallery folder (for ``faceid gallery migrate --to DIR``).

Everything the local gallery holds comes across with the same ids: people, faces (kept unknown
faces and their groups too) with their embeddings, thumbnails and chips, what the user said about
faces, settings, the id counters, API keys (their hashes) and the audit log. Orphans of an
interrupted removal are left out (no reader sees them). The Milvus gallery has no snapshot across
collections, so nothing may write to it meanwhile: :func:`faceid.migrate.migrate_gallery` compares
its generation before and after.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid.gallery.milvus_common import _CHIP_FIELDS, _chip_of, _guarded

if TYPE_CHECKING:
    from faceid.gallery.milvus import MilvusGallery

_COUNTERS = {"faces": "faces", "people": "people"}


def _unescape(key: str) -> str:
    """The meta key as given (:func:`faceid.gallery.milvus._meta_key` hex-escapes all but ``[A-Za-z0-9:_-]``)."""
    return re.sub(r"%([0-9a-f]+)\.", lambda m: chr(int(m.group(1), 16)), key)


class _Exporter:
    def __init__(self, gallery: MilvusGallery) -> None:
        self._g = gallery

    @_guarded
    def write(self, folder: Path) -> None:
        from faceid.apikeys import _TABLE as KEYS_TABLE
        from faceid.gallery import Gallery, chips, thumbnails
        from faceid.gallery.milvus_keys import MilvusKeyStore

        g = self._g
        people = {int(r["id"]): r for r in g._scan("people", ["id", "name", "created_at"])}
        faces = [
            r
            for r in g._scan("faces", ["id", "person_id", "group_id", "embedding", "info", "thumbnail", *_CHIP_FIELDS])
            if int(r["person_id"]) == 0 or int(r["person_id"]) in people
        ]
        face_ids = {int(r["id"]) for r in faces}
        rules = [rule for rule in g.unknown._exclusions() if rule[0] in face_ids]
        entries = g.audit_log()
        meta = g._query("meta", 'key like "setting:%"', ["key", "value"])
        keys = MilvusKeyStore(g).rows()
        key = g.embedding_key
        with Gallery(folder) as local, local._store.write() as db:
            for pid, r in sorted(people.items()):
                db.execute(
                    "INSERT INTO people (id, name, created_at) VALUES (?, ?, ?)", (pid, r["name"], r["created_at"])
                )
            for r in faces:
                info = json.loads(r["info"])
                face_id = int(r["id"])
                db.execute(
                    "INSERT INTO faces (id, person_id, embedding, image_path, image_sha256, box, confidence, model, "
                    "created_at, group_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        face_id,
                        int(r["person_id"]) or None,
                        np.asarray(r["embedding"], dtype=np.float32).tobytes(),
                        info["image_path"],
                        info["image_sha256"],
                        json.dumps(info["box"]),
                        float(info["confidence"]),
                        info["model"],
                        info["created_at"],
                        int(r["group_id"]) or None,
                    ),
                )
                if r["thumbnail"]:
                    thumbnails.store(db, face_id, base64.b64decode(r["thumbnail"]))
                chip = _chip_of(r)
                if chip is not None:
                    chips.store(db, face_id, chip)
            for face, other, person in rules:
                if (other and other not in face_ids) or (person and person not in people):
                    continue
                db.execute(
                    "INSERT OR IGNORE INTO face_exclusions (face_id, other_id, person_id) VALUES (?, ?, ?)",
                    (face, other or None, person or None),
                )
            for e in entries:
                db.execute(
                    "INSERT INTO audit (id, at, user, action, person, detail) VALUES (?, ?, ?, ?, ?, ?)",
                    (e.id, e.at, e.user, e.action, e.person, json.dumps(e.detail, sort_keys=True)),
                )
            for r in meta:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_unescape(str(r["key"])), str(r["value"])))
            for what in ("faces", "people"):
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"last_id:{what}", str(g._last_id(what))))
            if key is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_key', ?)", (key.dumps(),))
            if keys:
                db.execute(KEYS_TABLE)
                db.executemany(
                    "INSERT INTO api_keys (name, hash, scope, created_at, last_used) VALUES (?, ?, ?, ?, ?)", keys
                )


def export_to_folder(gallery: MilvusGallery, folder: Path) -> None:
    """Write ``gallery`` as a new local gallery in ``folder`` (which must not exist)."""
    _Exporter(gallery).write(folder)
