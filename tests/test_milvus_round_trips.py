"""A Milvus gallery's round trips: each operation on a batch of faces costs the same number of calls
to Milvus whatever the batch's size (one insert or upsert per batch, one query per batch of ids),
and no more than it costs today.

The client of the open gallery (``gallery.backend.rows.client``) is wrapped to count every call.
On a server a round trip costs about 0.2 s, so a count that grows with the faces, or a ceiling
that rises, is a regression; lower a ceiling when an operation gets cheaper. To run this on a
Milvus server too, add its address maker to :data:`ADDRESSES`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs_milvus, needs_milvus_server, server_gallery
from test_gallery_contract import KEY, face, near, unit

from faceid.gallery import open_gallery

#: Milvus galleries to count on: a new gallery's address made from a temporary folder (milvus-lite, and
#: the session's Milvus server: conftest.milvus_server)
ADDRESSES = [
    pytest.param(lambda folder: f"milvus-lite:{folder / 'gallery.db'}", id="milvus-lite"),
    pytest.param(server_gallery, id="milvus-server", marks=needs_milvus_server),
]

#: the most calls to Milvus each operation may make, whatever the number of faces it handles (at 9e114a1,
#: with 60 faces: add_faces 15, add_faces of known photos 63 (a query per face), keep 13, move 25, remove 20;
#: at afd2a0c: add_faces 14, keep 10, remove 17). Since then the id counters, the generation and the other
#: ``meta`` values a process wrote are kept in memory (milvus_rows.MilvusRows.meta), and a removal flushes
#: its collections in one request; an enrolment and a keep write an intent first and clear it last, so that
#: a kill between their writes is completed or rolled back at the next open (faceid.gallery.intents): one
#: call more for an enrolment, two for a keep.
CEILINGS = {
    "add_faces": 10,
    "add_faces, photos known": 2,
    "keep": 8,
    "update_groups": 6,  # the faces a keep has just written are rewritten from memory (MilvusRows.by_ids)
    "name": 8,
    "move to unknown": 16,
    "move back": 7,
    "merge": 14,
    "faces": 3,
    "people": 2,
    "search": 2,
    "face_owners, just searched": 0,  # answered from the search's own rows (identify: two round trips a photo)
    "face_owners": 2,
    "remove": 14,
}

#: what a server costs more: after each delete by expression one AllocTimestamp (a round trip without a
#: wait: Milvus 2.3.5 answers such a delete with no timestamp, see faceid.gallery.milvus_session; the
#: clearing of an intent is such a delete), and a removal records its pending compactions in meta
ON_A_SERVER = {"add_faces": 1, "keep": 1, "move back": 1, "merge": 3, "remove": 6}


class Counting:
    """A stand-in for a ``MilvusClient`` that counts the calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call


def round_trips(address: str, n: int) -> dict[str, int]:
    """Calls to Milvus of each operation, on batches of ``n`` faces."""
    counted: dict[str, int] = {}
    with open_gallery(address) as g:
        g.add_faces("Someone", [face(unit(999), "seed")], embedding_key=KEY)  # the collections exist
        assert g.face_count == 1  # and the faces are loaded (their load runs on while an enrolment goes on)
        client = Counting(g.backend.rows.client)
        g.backend.rows.client = client

        def count(label: str, operation: Callable[[], Any]) -> Any:
            client.calls.clear()
            out = operation()
            counted[label] = sum(client.calls.values())
            return out

        ada = [face(unit(i), f"a{i}") for i in range(n)]
        count("add_faces", lambda: g.add_faces("Ada", ada, embedding_key=KEY))
        again = count(
            "add_faces, photos known", lambda: g.add_faces("Ada", ada, embedding_key=KEY, skip_known_images=True)
        )
        assert again == [None] * n
        strangers = [face(near(unit(5000), i), f"k{i}") for i in range(n)]
        kept = count("keep", lambda: g.unknown.keep(strangers, embedding_key=KEY, group=False))
        assert kept.added == n
        count("update_groups", g.unknown.update_groups)
        (group,) = g.unknown.groups()
        assert group.size == n
        count("name", lambda: g.unknown.name(group.id, "Kay"))
        ids = [f.id for f in g.faces("Kay")]
        assert count("move to unknown", lambda: g.unknown.move(ids, None)) == ids
        assert count("move back", lambda: g.unknown.move(ids, "Kay")) == ids
        assert count("merge", lambda: g.unknown.merge("Kay", "Ada")) == n
        assert len(count("faces", lambda: g.faces("Ada"))) == 2 * n
        count("people", g.people)
        assert len(count("face_owners", lambda: g.face_owners(np.array(ids)))) == n
        _, hits = count("search", lambda: g.search(np.stack([unit(i) for i in range(n)]), k=5))
        # what identify asks next: the owners of the faces the search has just returned
        owners = count("face_owners, just searched", lambda: g.face_owners(hits))
        assert set(owners.values()) <= {"Ada", "Someone"} and len(owners) == len(
            {int(i) for i in hits.ravel() if i >= 0}
        )
        assert count("remove", lambda: g.remove("Ada")) == 2 * n
        assert "Ada" not in g.face_owners(hits).values()  # after a write the search's answer is not used: Ada is gone
        assert g.check() == []
    return counted


@needs_milvus
@pytest.mark.parametrize("address", ADDRESSES)
def test_round_trips_do_not_grow_with_the_faces_nor_rise(address, tmp_path: Path) -> None:
    few = round_trips(address(tmp_path / "few"), 3)
    many = round_trips(address(tmp_path / "many"), 40)
    assert few == many, {op: (few[op], many[op]) for op in few if few[op] != many[op]}
    extra = ON_A_SERVER if address(tmp_path).startswith("milvus://") else {}
    ceilings = {op: CEILINGS[op] + extra.get(op, 0) for op in CEILINGS}
    over = {op: (calls, ceilings[op]) for op, calls in many.items() if calls > ceilings[op]}
    assert not over, over
    assert set(many) == set(CEILINGS)


@needs_milvus
@pytest.mark.parametrize("address", ADDRESSES)
def test_rows_written_are_read_from_memory_until_a_delete(address, tmp_path: Path) -> None:
    """A face row this process wrote is read back without a round trip (a read of it on a server waits
    for the next time tick); once faces are deleted, a removed face is not answered from memory."""
    with open_gallery(address(tmp_path)) as g:
        g.add_faces("Ada", [face(unit(i), f"a{i}") for i in range(3)], embedding_key=KEY)
        ids = [f.id for f in g.faces("Ada")]
        rows = g.backend.rows
        client = Counting(rows.client)
        rows.client = client
        assert [int(r["id"]) for r in rows.by_ids("faces", ids, ["id", "person_id"])] == ids
        assert client.calls["query"] == 0
        gone = g.remove_face(ids[0])
        assert gone == "Ada"
        assert sorted(int(r["id"]) for r in rows.by_ids("faces", ids, ["id"])) == ids[1:]
        assert client.calls["query"] >= 1
        assert [f.id for f in g.faces("Ada")] == ids[1:]
