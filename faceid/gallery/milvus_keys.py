"""The API keys of a Milvus gallery (:mod:`faceid.apikeys` on :class:`~faceid.gallery.milvus.MilvusGallery`).

Each key is one row of the gallery's ``meta`` collection, ``apikey:<name key>``, holding its name,
the SHA-256 of its token (never the token), its scope and when it was made; creating one is one
write, revoking one is one delete, in effect for the next request. When a key was last used is a
row of its own (``apikey-used:<name key>``), so that recording a use can never bring back a key
revoked meanwhile by another process (it would only leave a stray time, which nothing reads).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from faceid.gallery.milvus_common import _guarded, _name_key
from faceid.gallery.records import utc_now

if TYPE_CHECKING:
    from faceid.gallery.milvus import MilvusGallery

_KEY, _USED = "apikey:", "apikey-used:"


class MilvusKeyStore:
    """Rows of ``(name, hash, scope, created_at, last_used)``, as :class:`faceid.apikeys.ApiKeys` reads them."""

    def __init__(self, gallery: MilvusGallery) -> None:
        self._g = gallery

    def _all(self, prefix: str) -> list[dict[str, Any]]:
        return self._g._query("meta", f'key like "{prefix}%"', ["key", "value"])

    @_guarded
    def rows(self) -> list[tuple[str, str, str, str, str | None]]:
        """Every key, by name (ASCII case ignored)."""
        used = {str(r["key"])[len(_USED) :]: str(r["value"]) for r in self._all(_USED)}
        rows = []
        for r in self._all(_KEY):
            value = json.loads(r["value"])
            key = str(r["key"])[len(_KEY) :]
            rows.append((value["name"], value["hash"], value["scope"], value["created_at"], used.get(key)))
        return sorted(rows, key=lambda row: row[0].lower())

    @_guarded
    def exists(self, name: str) -> bool:
        return self._g._meta(_KEY + _name_key(name)) is not None

    @_guarded
    def add(self, name: str, digest: str, scope: str, created_at: str) -> None:
        """Store a new key (the caller checked the name is free) and audit it."""
        key = _name_key(name)
        self._g._record("key-create", None, key=name, scope=scope)
        self._g._set_meta(_USED + key, None)  # a time a revoked key of that name left behind
        value = {"name": name, "hash": digest, "scope": scope, "created_at": created_at}
        self._g._set_meta(_KEY + key, json.dumps(value, sort_keys=True))

    @_guarded
    def remove(self, name: str) -> bool:
        """Delete a key; ``False`` if there was none of that name."""
        key = _name_key(name)
        if self._g._meta(_KEY + key) is None:
            return False
        self._g._record("key-revoke", None, key=name)
        self._g._set_meta(_KEY + key, None)
        self._g._set_meta(_USED + key, None)
        return True

    @_guarded
    def touch(self, name: str) -> None:
        self._g._set_meta(_USED + _name_key(name), utc_now())
