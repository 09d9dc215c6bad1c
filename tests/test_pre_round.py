"""Galleries made before issue 17 (by the code at 9e114a1) open and work with this code.

The galleries in ``tests/fixtures/pre-round/`` were made by ``make_fixtures.py`` there, run at
9e114a1: three people (one renamed, one removed), a setting, API keys (one revoked), kept unknown
faces in two groups, one named and then corrected. Each test works on a copy (opening may upgrade
a gallery in place) and checks what the old code wrote down in ``expected.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_milvus

from faceid.apikeys import ApiKeys
from faceid.embedding_key import EmbeddingKey
from faceid.gallery import NewFace, open_gallery

FIXTURES = Path(__file__).parent / "fixtures" / "pre-round"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
KINDS = ["local", pytest.param("lite", marks=needs_milvus)]


def _vector(seed: int, dimension: int) -> np.ndarray:  # make_fixtures.person_vector
    v = np.random.default_rng(seed).normal(size=dimension)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(params=KINDS)
def old(request, tmp_path: Path):
    """An open copy of a gallery made at 9e114a1, and what that code recorded of it."""
    kind = request.param
    if kind == "local":
        shutil.copytree(FIXTURES / "local", tmp_path / "local")
        spec = str(tmp_path / "local")
    else:
        shutil.copytree(FIXTURES / "lite.db", tmp_path / "lite.db")
        spec = f"milvus-lite:{tmp_path / 'lite.db'}"
    with open_gallery(spec, create=False) as g:
        yield g, EXPECTED[kind]


def test_old_gallery_reads_as_it_was_written(old) -> None:
    g, expected = old
    assert g.check() == []
    assert [[p.name, p.faces] for p in g.people()] == expected["people"]
    assert g.face_count == expected["faces"]
    assert g.embedding_key == EmbeddingKey.for_model("sface")
    assert g.get_setting("threshold") == 0.4
    assert [e.action for e in g.audit_log()] == expected["audit_actions"]
    assert "Cy" not in g and "bob" not in g and "Bob Smith" in g
    assert sorted(sorted(f.id for f in gr.faces) for gr in g.unknown.groups()) == expected["groups"]
    assert g.unknown.count() == expected["unknown_count"]


def test_old_gallery_identifies_by_embedding(old) -> None:
    g, _ = old
    d = g.dimension
    scores, ids = g.search(np.stack([_vector(1, d), _vector(2, d), _vector(6, d)]), k=1)
    owners = g.face_owners(ids[:, 0])
    assert owners.get(int(ids[0, 0])) == "Ada" and owners.get(int(ids[1, 0])) == "Bob Smith"
    assert scores[0, 0] > 0.9 and scores[1, 0] > 0.9
    assert int(ids[2, 0]) not in owners or scores[2, 0] < 0.5  # the kept loner is never matched


def test_old_gallery_keys_still_open_the_server(old) -> None:
    g, expected = old
    keys = ApiKeys(g)
    assert [[k.name, k.scope] for k in keys.list()] == expected["keys"]
    found = keys.check(expected["tokens"]["reader"])
    assert found is not None and found.scope == "read-only"
    assert keys.check(expected["tokens"]["admin-key"]).name == "admin-key"
    assert keys.check("fid_not-a-token") is None


def test_old_gallery_takes_changes(old) -> None:
    g, expected = old
    key = EmbeddingKey.for_model("sface")
    d = key.dimension
    added = g.add_faces("Ada", [NewFace(_vector(7, d), "e" * 64, (0, 0, 90, 90), 0.99)], embedding_key=key)
    assert g.person("Ada").faces == 3 and added[0] > max(expected["kept_ids"])  # ids are never given twice
    kept = g.unknown.keep([NewFace(_vector(8, d), "f" * 64, (0, 0, 90, 90), 0.99)], embedding_key=key, group=False)
    assert kept.added == 1
    (group,) = g.unknown.groups()
    named = g.unknown.name(group.id, "Eve")
    assert named.new_person and sorted(named.faces) == expected["groups"][0]
    g.rename("Eve", "Eve Adams")
    assert g.remove("Bob Smith") == 2
    assert g.check() == []
    assert [p.name for p in g.people()] == ["Ada", "Dee", "Eve Adams"]
    assert [e.action for e in g.audit_log()][-5:] == ["enroll", "keep", "name", "rename", "remove"]
