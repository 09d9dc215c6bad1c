"""API keys for ``faceid serve``, stored in the gallery they open.

A key is a random token shown once when it is made (``faceid keys create``). The gallery keeps
only its SHA-256: a 256-bit random token cannot be guessed from its hash, so a slow password
hash would add nothing. Each key has a name, a scope (``admin`` may change the gallery,
``read-only`` may only identify and list) and its created and last-used times. Revoking deletes
the row, so it takes effect at the next request. Creating and revoking keys are audited (names
and scopes only, never a token or a hash). A Milvus gallery keeps its keys in its ``meta``
collection (:mod:`faceid.gallery.milvus_keys`), with the same behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from faceid.errors import KeyExistsError, KeyNotFoundError, OptionError
from faceid.gallery import Gallery, audit, normalise_name
from faceid.gallery.records import utc_now

__all__ = ["ADMIN", "READ_ONLY", "SCOPES", "ApiKey", "KeyExistsError", "KeyNotFoundError", "ApiKeys"]

ADMIN, READ_ONLY = "admin", "read-only"
SCOPES = (ADMIN, READ_ONLY)
TOKEN_PREFIX = "fid_"

_TABLE = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "name TEXT PRIMARY KEY COLLATE NOCASE, hash TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, "
    "created_at TEXT NOT NULL, last_used TEXT)"
)


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its token or hash."""

    name: str
    scope: str
    created_at: str
    last_used: str | None

    def to_json(self) -> dict:
        return {"name": self.name, "scope": self.scope, "created_at": self.created_at, "last_used": self.last_used}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    """The keys of one gallery, in its ``api_keys`` table (made with the first key); on a Milvus
    gallery, in its ``meta`` collection (:class:`~faceid.gallery.milvus_keys.MilvusKeyStore`).

    Uses the gallery's connection, its write transactions and its audit log: the keys live in
    the same SQLite file, under the same lock and crash guarantees.
    """

    def __init__(self, gallery: Any) -> None:
        self.gallery = gallery
        self._milvus: Any = None
        if not isinstance(gallery, Gallery):
            from faceid.gallery.milvus_keys import MilvusKeyStore

            self._milvus = MilvusKeyStore(gallery)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's busy and corruption errors as the gallery's own (see :mod:`faceid.gallery`)."""
        try:
            yield
        except sqlite3.Error as exc:
            translated = self.gallery._store.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def _rows(self, query: str, args: tuple = ()) -> list[tuple]:
        """Rows of a query on the keys; none while no key was ever made (the table is looked up in the
        file, not SQLite's cached schema, so a table another process made since is seen)."""
        db = self.gallery._db
        with self._guard(), self.gallery._store.snapshot():
            if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'api_keys'").fetchone()[0] == 0:
                return []
            return db.execute(query, args).fetchall()

    def create(self, name: str, scope: str = ADMIN) -> tuple[ApiKey, str]:
        """Make a key; return it and its token (shown once: only its hash is kept)."""
        name = normalise_name(name)
        if scope not in SCOPES:
            raise OptionError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(name, scope, utc_now(), None)
        g = self.gallery
        if self._milvus is not None:
            if self._milvus.exists(name):
                raise KeyExistsError(f"a key named {name!r} exists already; revoke it first or choose another name")
            self._milvus.add(name, _digest(token), scope, key.created_at)
            return key, token
        with self._guard(), g._store.write(versioned=False):
            g._db.execute(_TABLE)
            if g._db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise KeyExistsError(f"a key named {name!r} exists already; revoke it first or choose another name")
            g._db.execute(
                "INSERT INTO api_keys (name, hash, scope, created_at) VALUES (?, ?, ?, ?)",
                (name, _digest(token), scope, key.created_at),
            )
            audit.record(g._db, "key-create", None, actor=g.actor, key=name, scope=scope)
        return key, token

    def list(self) -> list[ApiKey]:
        if self._milvus is not None:
            return [ApiKey(n, s, c, u) for n, _, s, c, u in self._milvus.rows()]
        rows = self._rows("SELECT name, scope, created_at, last_used FROM api_keys ORDER BY name COLLATE NOCASE")
        return [ApiKey(*row) for row in rows]

    def count(self) -> int:
        if self._milvus is not None:
            return len(self._milvus.rows())
        rows = self._rows("SELECT COUNT(*) FROM api_keys")
        return int(rows[0][0]) if rows else 0

    def revoke(self, name: str) -> None:
        name = normalise_name(name)
        g = self.gallery
        if self._milvus is not None:
            if not self._milvus.remove(name):
                raise KeyNotFoundError(f"no key named {name!r} in {g.path}")
            return
        with self._guard(), g._store.write(versioned=False):
            g._db.execute(_TABLE)
            if g._db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 0:
                raise KeyNotFoundError(f"no key named {name!r} in {g.path}")
            audit.record(g._db, "key-revoke", None, actor=g.actor, key=name)

    def check(self, token: str) -> ApiKey | None:
        """The key whose token this is, or ``None``."""
        if not token or len(token) > 200:
            return None
        digest = _digest(token)
        if self._milvus is not None:
            rows: list[tuple] = [(n, s, c, u, h) for n, h, s, c, u in self._milvus.rows()]
        else:
            rows = self._rows("SELECT name, scope, created_at, last_used, hash FROM api_keys WHERE hash = ?", (digest,))
        # The lookup is by hash (an attacker cannot steer it); compare in constant time all the same.
        for row in rows:
            if hmac.compare_digest(row[4], digest):
                return ApiKey(row[0], row[1], row[2], row[3])
        return None

    def touch(self, name: str) -> None:
        """Record that a key was used now (bookkeeping: no new generation, not audited)."""
        g = self.gallery
        if self._milvus is not None:
            self._milvus.touch(name)
            return
        with self._guard(), g._store.write(versioned=False):
            g._db.execute("UPDATE api_keys SET last_used = ? WHERE name = ?", (utc_now(), name))
