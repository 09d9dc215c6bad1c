"""The API keys of a folder gallery (:mod:`faceid.apikeys`), beside their Milvus twin
:mod:`faceid.gallery.milvus_keys`; both are :class:`~faceid.gallery.backend.KeyStore`.

The keys live in ``gallery.db``'s ``api_keys`` table (made with the first key), under the same
lock and crash guarantees as the rest of the gallery: creating and revoking a key is one write
transaction with its audit entry (names and scopes only, never a token or a hash).
"""

from __future__ import annotations

from collections.abc import Callable

from faceid.gallery import audit
from faceid.gallery.store import Store, guarded

__all__ = ["TABLE", "SqliteKeyStore"]

#: the table of keys (names unique regardless of ASCII case)
TABLE = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "name TEXT PRIMARY KEY COLLATE NOCASE, hash TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, "
    "created_at TEXT NOT NULL, last_used TEXT)"
)


class SqliteKeyStore:
    """Rows of ``(name, hash, scope, created_at, last_used)`` in ``gallery.db``."""

    def __init__(self, store: Store, actor: Callable[[], str | None]) -> None:
        self.store = store
        self._actor = actor  # who makes the changes, for the audit entries

    @guarded
    def entries(self) -> list[tuple[str, str, str, str, str | None]]:
        db = self.store.db
        with self.store.snapshot():
            # looked up in the file, not SQLite's cached schema: a table another process made since is seen
            if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'api_keys'").fetchone()[0] == 0:
                return []
            query = "SELECT name, hash, scope, created_at, last_used FROM api_keys ORDER BY name COLLATE NOCASE"
            return [tuple(r) for r in db.execute(query).fetchall()]

    @guarded
    def add(self, name: str, digest: str, scope: str, created_at: str) -> bool:
        with self.store.write(versioned=False) as db:
            db.execute(TABLE)
            if db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                return False
            db.execute(
                "INSERT INTO api_keys (name, hash, scope, created_at) VALUES (?, ?, ?, ?)",
                (name, digest, scope, created_at),
            )
            audit.record(db, "key-create", None, actor=self._actor(), key=name, scope=scope)
        return True

    @guarded
    def remove(self, name: str) -> bool:
        with self.store.write(versioned=False) as db:
            db.execute(TABLE)
            if db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 0:
                return False
            audit.record(db, "key-revoke", None, actor=self._actor(), key=name)
        return True

    @guarded
    def touch(self, name: str, when: str) -> None:
        with self.store.write(versioned=False) as db:
            db.execute(TABLE)
            db.execute("UPDATE api_keys SET last_used = ? WHERE name = ?", (when, name))
