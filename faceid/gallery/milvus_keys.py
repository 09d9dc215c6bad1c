"""The API keys of a Milvus gallery (:mod:`faceid.apikeys`), beside their local twin
:mod:`faceid.gallery.keys`; both are :class:`~faceid.gallery.backend.KeyStore`.

Each key is one row of the gallery's ``meta`` collection, ``apikey:<name key>``, holding its name,
the SHA-256 of its token (never the token), its scope and when it was made; creating one is one
write, revoking one is one delete, in effect for the next request. When a key was last used is a
row of its own (``apikey-used:<name key>``), so that recording a use can never bring back a key
revoked meanwhile by another process (it would only leave a stray time, which nothing reads).
"""

from __future__ import annotations

import json

from faceid.gallery.milvus_common import guarded, name_key
from faceid.gallery.milvus_rows import MilvusRows
from faceid.gallery.records import name_key as fold

__all__ = ["MilvusKeyStore"]

_KEY, _USED = "apikey:", "apikey-used:"


class MilvusKeyStore:
    """Rows of ``(name, hash, scope, created_at, last_used)``, as :class:`faceid.apikeys.ApiKeys` reads them."""

    def __init__(self, rows: MilvusRows) -> None:
        self.rows = rows

    @guarded
    def entries(self) -> list[tuple[str, str, str, str, str | None]]:
        used = {key[len(_USED) :]: value for key, value in self.rows.metas(_USED)}
        rows = []
        for key, raw in self.rows.metas(_KEY):
            value = json.loads(raw)
            rows.append((value["name"], value["hash"], value["scope"], value["created_at"], used.get(key[len(_KEY) :])))
        return sorted(rows, key=lambda row: fold(row[0]))

    @guarded
    def add(self, name: str, digest: str, scope: str, created_at: str) -> bool:
        key = name_key(name)
        if self.rows.meta(_KEY + key) is not None:
            return False
        self.rows.record("key-create", None, key=name, scope=scope)
        self.rows.set_meta(_USED + key, None)  # a time a revoked key of that name left behind
        value = {"name": name, "hash": digest, "scope": scope, "created_at": created_at}
        self.rows.set_meta(_KEY + key, json.dumps(value, sort_keys=True))
        return True

    @guarded
    def remove(self, name: str) -> bool:
        key = name_key(name)
        if self.rows.meta(_KEY + key) is None:
            return False
        self.rows.record("key-revoke", None, key=name)
        self.rows.set_meta(_KEY + key, None)
        self.rows.set_meta(_USED + key, None)
        return True

    @guarded
    def touch(self, name: str, when: str) -> None:
        self.rows.set_meta(_USED + name_key(name), when)
