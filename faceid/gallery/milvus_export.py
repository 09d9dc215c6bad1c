"""A Milvus gallery written out as a new local gallery folder (for ``faceid gallery migrate --to DIR``).

Everything the local gallery holds comes across with the same ids: people, faces (kept unknown
faces and their groups too) with their embeddings, thumbnails and chips, what the user said about
faces, settings, the id counters, API keys (their hashes) and the audit log. Orphans of an
interrupted removal are left out (no reader sees them). The Milvus gallery has no snapshot across
collections, so nothing may write to it meanwhile: :meth:`MilvusBackend.copy_to
<faceid.gallery.milvus.MilvusBackend.copy_to>` compares its generation before and after.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid.gallery import chips, thumbnails
from faceid.gallery.keys import TABLE as KEYS_TABLE
from faceid.gallery.milvus_common import CHIP_FIELDS, chip_of, guarded
from faceid.gallery.sqlite import SqliteBackend

if TYPE_CHECKING:
    from faceid.gallery.backend import GalleryBackend
    from faceid.gallery.milvus_rows import MilvusRows

__all__ = ["export_to_folder"]


def _unescape(key: str) -> str:
    """The meta key as given (:func:`faceid.gallery.milvus_rows.meta_key` hex-escapes all but ``[A-Za-z0-9:_-]``)."""
    return re.sub(r"%([0-9a-f]+)\.", lambda m: chr(int(m.group(1), 16)), key)


class _Exporter:
    def __init__(self, backend: GalleryBackend, rows: MilvusRows) -> None:
        self.backend = backend
        self.rows = rows

    @guarded
    def write(self, folder: Path) -> None:
        b, rows = self.backend, self.rows
        people = {int(r["id"]): r for r in rows.scan("people", ["id", "name", "created_at"])}
        faces = [
            r
            for r in rows.scan("faces", ["id", "person_id", "group_id", "embedding", "info", "thumbnail", *CHIP_FIELDS])
            if int(r["person_id"]) == 0 or int(r["person_id"]) in people
        ]
        face_ids = {int(r["id"]) for r in faces}
        rules = [rule for rule in b.exclusions() if rule[0] in face_ids]
        entries = b.audit_entries()
        meta = rows.metas("setting:")
        keys = b.keys.entries()
        key = b.meta("embedding_key")
        local = SqliteBackend(folder, create=True, timeout=b.timeout)
        try:
            with local.store.write() as db:
                for pid, r in sorted(people.items()):
                    db.execute(
                        "INSERT INTO people (id, name, created_at) VALUES (?, ?, ?)", (pid, r["name"], r["created_at"])
                    )
                for r in faces:
                    info = json.loads(r["info"])
                    face_id = int(r["id"])
                    db.execute(
                        "INSERT INTO faces (id, person_id, embedding, image_path, image_sha256, box, confidence, "
                        "model, created_at, group_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    chip = chip_of(r)
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
                for name, value in meta:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_unescape(name), value))
                for what in ("faces", "people"):
                    db.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"last_id:{what}", str(rows.last_id(what)))
                    )
                if key is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_key', ?)", (key,))
                if keys:
                    db.execute(KEYS_TABLE)
                    db.executemany(
                        "INSERT INTO api_keys (name, hash, scope, created_at, last_used) VALUES (?, ?, ?, ?, ?)", keys
                    )
        finally:
            local.close()


def export_to_folder(backend: GalleryBackend, rows: MilvusRows, folder: Path) -> None:
    """Write the Milvus gallery of ``backend`` (its ``rows``) as a new local gallery in the new ``folder``."""
    _Exporter(backend, rows).write(folder)
