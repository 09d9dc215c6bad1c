"""API keys for ``faceid serve``, stored in the gallery they open.

A key is a random token shown once when it is made (``faceid keys create``). The gallery keeps
only its SHA-256: a 256-bit random token cannot be guessed from its hash, so a slow password
hash would add nothing. Each key has a name, a scope (``admin`` may change the gallery,
``read-only`` may only identify and list) and its created and last-used times. Revoking deletes
the row, so it takes effect at the next request. Creating and revoking keys are audited (names
and scopes only, never a token or a hash). The gallery's key store keeps them: a folder's in
``gallery.db`` (:mod:`faceid.gallery.keys`), a Milvus gallery's in its ``meta`` collection
(:mod:`faceid.gallery.milvus_keys`), with the same behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faceid.errors import KeyExistsError, KeyNotFoundError, OptionError
from faceid.gallery.records import normalise_name, utc_now

if TYPE_CHECKING:
    from faceid.gallery import Gallery

__all__ = ["ADMIN", "READ_ONLY", "SCOPES", "ApiKey", "KeyExistsError", "KeyNotFoundError", "ApiKeys"]

ADMIN, READ_ONLY = "admin", "read-only"
SCOPES = (ADMIN, READ_ONLY)
TOKEN_PREFIX = "fid_"


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
    """The keys of one gallery, kept by its key store (:attr:`Gallery.keys <faceid.gallery.Gallery.keys>`:
    :mod:`faceid.gallery.keys` in a folder's ``gallery.db``, :mod:`faceid.gallery.milvus_keys` in a
    Milvus gallery's ``meta`` collection), under the gallery's own locks and crash guarantees."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self._store = gallery.keys

    def create(self, name: str, scope: str = ADMIN) -> tuple[ApiKey, str]:
        """Make a key; return it and its token (shown once: only its hash is kept)."""
        name = normalise_name(name)
        if scope not in SCOPES:
            raise OptionError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(name, scope, utc_now(), None)
        if not self._store.add(name, _digest(token), scope, key.created_at):
            raise KeyExistsError(f"a key named {name!r} exists already; revoke it first or choose another name")
        return key, token

    def list(self) -> list[ApiKey]:
        return [ApiKey(n, s, c, u) for n, _, s, c, u in self._store.entries()]

    def count(self) -> int:
        return len(self._store.entries())

    def revoke(self, name: str) -> None:
        name = normalise_name(name)
        if not self._store.remove(name):
            raise KeyNotFoundError(f"no key named {name!r} in {self.gallery.path}")

    def check(self, token: str) -> ApiKey | None:
        """The key whose token this is, or ``None``."""
        if not token or len(token) > 200:
            return None
        digest = _digest(token)
        found = None
        # compare every stored hash in constant time (a lookup would not be steerable either: it is by hash)
        for name, stored, scope, created_at, last_used in self._store.entries():
            if hmac.compare_digest(stored, digest):
                found = ApiKey(name, scope, created_at, last_used)
        return found

    def touch(self, name: str) -> None:
        """Record that a key was used now (bookkeeping: no new generation, not audited)."""
        self._store.touch(name, utc_now())
