"""The gallery contract, run on every backend.

Everything a caller of :func:`faceid.gallery.open_gallery` may rely on, whatever holds the gallery:
people and faces, names, removals, settings, the audit log, search (against a numpy oracle), kept
unknown faces and their groups, API keys. Each test runs once per entry of :data:`BACKENDS`.

To run the contract on another backend (a real Milvus server, say), append a :class:`Backend`
to :data:`BACKENDS` whose ``address`` makes a new, empty gallery's address inside a temporary
folder, with the marks that skip it where it cannot run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs_milvus, needs_milvus_server, server_gallery

from faceid.apikeys import READ_ONLY, ApiKeys, KeyExistsError, KeyNotFoundError
from faceid.embedding_key import EmbeddingKey
from faceid.errors import (
    FaceNotFoundError,
    GroupNotFoundError,
    InvalidNameError,
    ModelMismatchError,
    NameTakenError,
    OptionError,
    PersonNotFoundError,
)
from faceid.gallery import NewFace, open_gallery

KEY = EmbeddingKey.for_model("sface")
D = KEY.dimension


@dataclass(frozen=True)
class Backend:
    """A kind of gallery: its ``name`` (the test id), how to make a new gallery's address in a
    temporary folder, and the pytest marks that skip it where it cannot run."""

    name: str
    address: Callable[[Path], str]
    marks: tuple[Any, ...] = field(default=())


#: every backend the contract runs on
BACKENDS: list[Backend] = [
    Backend("local", lambda folder: str(folder / "gallery")),
    Backend("milvus-lite", lambda folder: f"milvus-lite:{folder / 'gallery.db'}", (needs_milvus,)),
    # a real Milvus server (milvus==2.3.5 standalone, started once per session: conftest.milvus_server)
    Backend("milvus-server", server_gallery, tuple(needs_milvus_server)),
]


@pytest.fixture(params=[pytest.param(b, id=b.name, marks=b.marks) for b in BACKENDS])
def address(request, tmp_path: Path) -> str:
    return request.param.address(tmp_path)


@pytest.fixture
def g(address: str):
    with open_gallery(address) as gallery:
        yield gallery


# -- synthetic faces -----------------------------------------------------------------------------------


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=D)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(centre: np.ndarray, seed: int) -> np.ndarray:
    v = centre + np.random.default_rng(seed).normal(size=D) * 0.25 / np.sqrt(D)
    return (v / np.linalg.norm(v)).astype(np.float32)


def face(vector: np.ndarray, photo: str, box=(0, 0, 90, 90), confidence: float = 0.99, **extra: Any) -> NewFace:
    return NewFace(vector, hashlib.sha256(photo.encode()).hexdigest(), box, confidence, f"/photos/{photo}.jpg", **extra)


def sha(photo: str) -> str:
    return hashlib.sha256(photo.encode()).hexdigest()


# -- the surface ----------------------------------------------------------------------------------------

GALLERY_API = {
    "add_faces", "audit_log", "check", "check_embedding_key", "close", "compact", "compaction_pending",
    "dimension", "embedding_key", "embeddings", "face", "face_chip", "face_count", "face_owners",
    "face_sources", "face_thumbnail", "faces", "find_image", "generation", "get_setting", "index_spec",
    "people", "person", "rebuild_index", "remove", "remove_face", "rename", "search", "set_setting",
    "unknown", "problems", "actor", "path",
}  # fmt: skip
UNKNOWN_API = {"count", "forget", "group", "groups", "keep", "merge", "move", "name", "regroup", "ungrouped"}
UNKNOWN_API |= {"update_groups"}


def test_every_backend_offers_the_whole_contract(g) -> None:
    assert not GALLERY_API - set(dir(g))
    assert not UNKNOWN_API - set(dir(g.unknown))
    assert len(g) == 0 and g.face_count == 0 and g.people() == [] and g.embedding_key is None
    assert g.dimension is None and g.audit_log() == [] and g.check() == []
    assert "anyone" not in g and 3 not in g


# -- people and faces -----------------------------------------------------------------------------------


def test_enrol_then_read_every_way(g) -> None:
    start = g.generation
    ids = g.add_faces("Ada", [face(unit(1), "a1"), face(unit(2), "a2", thumbnail=b"\xff\xd8jpeg")], embedding_key=KEY)
    assert len(ids) == 2 and ids[0] < ids[1]
    assert g.generation > start
    assert g.embedding_key == KEY and g.dimension == D
    assert len(g) == 1 and g.face_count == 2 and "Ada" in g
    (ada,) = g.people()
    assert (ada.name, ada.faces) == ("Ada", 2) and g.person("Ada") == ada
    records = g.faces("Ada")
    assert [r.id for r in records] == ids and g.faces() == records
    assert records[0].image_path == "/photos/a1.jpg" and records[0].image_sha256 == sha("a1")
    assert records[0].box == (0, 0, 90, 90) and records[0].confidence == pytest.approx(0.99)
    assert g.face(ids[1]) == records[1]
    assert g.face_thumbnail(ids[1]) == b"\xff\xd8jpeg" and g.face_thumbnail(ids[0]) is None
    assert g.face_chip(ids[0]) is None
    assert g.find_image(sha("a2")) == ["Ada"] and g.find_image(sha("nowhere")) == []
    assert g.face_owners(np.array([ids[0], ids[1], 999, -1])) == {ids[0]: "Ada", ids[1]: "Ada"}
    face_ids, person_ids, vectors = g.embeddings()
    assert face_ids.tolist() == ids and len(set(person_ids.tolist())) == 1
    np.testing.assert_allclose(vectors, np.stack([unit(1), unit(2)]), atol=1e-6)
    assert [(r.id, r.person) for r in g.face_sources()] == [(ids[0], "Ada"), (ids[1], "Ada")]
    with pytest.raises(PersonNotFoundError):
        g.person("Bob")
    with pytest.raises(PersonNotFoundError):
        g.faces("Bob")
    with pytest.raises(FaceNotFoundError):
        g.face(999)
    assert g.check() == []


def test_enrolling_known_photos_again_is_skipped_when_asked(g) -> None:
    first = g.add_faces("Ada", [face(unit(1), "a1")], embedding_key=KEY)
    generation = g.generation
    assert g.add_faces("Ada", [face(unit(1), "a1")], embedding_key=KEY, skip_known_images=True) == [None]
    assert g.generation == generation and g.face_count == 1
    again = g.add_faces("Ada", [face(unit(1), "a1"), face(unit(2), "a2")], embedding_key=KEY, skip_known_images=True)
    assert again[0] is None and again[1] is not None and again[1] > first[0]
    assert g.add_faces("Ada", [], embedding_key=KEY) == []


def test_one_model_per_gallery(g) -> None:
    g.add_faces("Ada", [face(unit(1), "a1")], embedding_key=KEY)
    other = EmbeddingKey.for_model("sface", mirror=not KEY.mirror)
    g.check_embedding_key(KEY)
    with pytest.raises(ModelMismatchError, match="refusing to mix"):
        g.check_embedding_key(other)
    generation = g.generation
    with pytest.raises(ModelMismatchError):
        g.add_faces("Bob", [face(unit(2), "b1")], embedding_key=other)
    with pytest.raises(ModelMismatchError):
        g.unknown.keep([face(unit(3), "s1")], embedding_key=other)
    assert g.generation == generation and "Bob" not in g and g.unknown.count() == 0
    with pytest.raises(TypeError):
        g.check_embedding_key("sface")  # type: ignore[arg-type]


# -- names ------------------------------------------------------------------------------------------------


def test_names_ignore_ascii_case_and_are_stored_as_given(g) -> None:
    g.add_faces("  Ada Lovelace ", [face(unit(1), "a1")], embedding_key=KEY)
    g.add_faces("ADA LOVELACE", [face(unit(2), "a2")], embedding_key=KEY)
    g.add_faces("bob", [face(unit(3), "b1")], embedding_key=KEY)
    g.add_faces("Carl", [face(unit(4), "c1")], embedding_key=KEY)
    assert [(p.name, p.faces) for p in g.people()] == [("Ada Lovelace", 2), ("bob", 1), ("Carl", 1)]
    assert "ada lovelace" in g and g.person("ADA lovelace").name == "Ada Lovelace"
    with pytest.raises(InvalidNameError):
        g.add_faces("", [face(unit(5), "e1")], embedding_key=KEY)
    with pytest.raises(InvalidNameError):
        g.add_faces("a\nb", [face(unit(5), "e1")], embedding_key=KEY)


def test_rename(g) -> None:
    g.add_faces("Ada", [face(unit(1), "a1")], embedding_key=KEY)
    g.add_faces("Bob", [face(unit(2), "b1")], embedding_key=KEY)
    g.rename("Ada", "Ada King")
    assert "Ada" not in g and g.person("Ada King").faces == 1
    g.rename("ada king", "ADA KING")  # a change of case only: the same person
    assert [p.name for p in g.people()] == ["ADA KING", "Bob"]
    with pytest.raises(NameTakenError, match="already enrolled"):
        g.rename("ADA KING", "bob")
    with pytest.raises(PersonNotFoundError):
        g.rename("Nobody", "Somebody")
    entry = g.audit_log()[-1]
    assert (entry.action, entry.person, entry.detail["old"]) == ("rename", "ADA KING", "ada king")


# -- removals -----------------------------------------------------------------------------------------------


def test_remove_person_and_single_faces(g) -> None:
    ada = g.add_faces("Ada", [face(unit(1), "a1"), face(unit(2), "a2")], embedding_key=KEY)
    g.add_faces("Bob", [face(unit(3), "b1")], embedding_key=KEY)
    assert g.remove_face(ada[0]) == "Ada"
    assert g.person("Ada").faces == 1
    with pytest.raises(FaceNotFoundError):
        g.remove_face(ada[0])
    assert g.remove("ada") == 1
    assert "Ada" not in g and g.face_count == 1 and g.find_image(sha("a2")) == []
    with pytest.raises(PersonNotFoundError):
        g.remove("Ada")
    assert g.compact() and not g.compaction_pending
    again = g.add_faces("Ada", [face(unit(1), "a1")], embedding_key=KEY)
    assert again[0] > max(ada)  # ids are never given twice
    assert [e.action for e in g.audit_log()] == ["enroll", "enroll", "remove-face", "remove", "enroll"]
    assert g.check() == []


# -- settings and the audit log -----------------------------------------------------------------------------


def test_settings_and_who_made_each_change(g) -> None:
    assert g.get_setting("threshold") is None
    g.actor = "key:robot"
    g.set_setting("threshold", 0.42)
    g.set_setting("weird name: é/?", {"a": [1, 2]})
    assert g.get_setting("threshold") == 0.42 and g.get_setting("weird name: é/?") == {"a": [1, 2]}
    g.set_setting("threshold", None)
    assert g.get_setting("threshold") is None
    entries = g.audit_log()
    assert [e.action for e in entries] == ["setting"] * 3 and {e.user for e in entries} == {"key:robot"}
    assert entries[0].detail == {"name": "threshold", "value": 0.42}
    assert [e.id for e in entries] == sorted(e.id for e in entries)


# -- search ------------------------------------------------------------------------------------------------


def test_search_matches_a_numpy_oracle_and_never_returns_kept_faces(g) -> None:
    vectors = {name: [unit(10 * i + j) for j in range(3)] for i, name in enumerate(["Ada", "Bob", "Cy", "Di"])}
    for name, vs in vectors.items():
        g.add_faces(name, [face(v, f"{name}{j}") for j, v in enumerate(vs)], embedding_key=KEY)
    g.unknown.keep([face(unit(99), "stranger")], embedding_key=KEY, group=False)
    ids, _, stored = g.embeddings()
    queries = np.stack([near(vectors["Bob"][1], 1), unit(99), unit(500)])
    scores, found = g.search(queries, k=5)
    assert scores.shape == found.shape == (3, 5)
    oracle = queries @ stored.T
    for q in range(3):
        best = np.argsort(-oracle[q], kind="stable")[:5]
        assert found[q].tolist() == ids[best].tolist()
        np.testing.assert_allclose(scores[q], oracle[q][best], atol=1e-5)
    assert g.face_owners(found[0, :1]) == {int(found[0, 0]): "Bob"}
    kept = g.unknown.ungrouped()[0].id
    assert kept not in found and kept not in g.face_owners(np.array([kept]))
    scores, found = g.search(queries[:1], k=20)
    assert (found[0, 12:] == -1).all() and (found[0, :12] >= 0).all()
    with pytest.raises(ModelMismatchError):
        g.search(np.ones((1, D + 1), np.float32) / np.sqrt(D + 1), k=1)
    assert g.rebuild_index() == 12 and g.index_spec is not None


def test_search_of_an_empty_gallery(g) -> None:
    scores, found = g.search(np.stack([unit(1)]), k=3)
    assert found.tolist() == [[-1, -1, -1]] and scores.shape == (1, 3)


# -- kept unknown faces ----------------------------------------------------------------------------------------


@pytest.fixture
def strangers(g):
    """Two tight clusters of kept strangers (five faces each) and a loner, grouped."""
    a, b = unit(40), unit(50)
    faces = [face(near(a, i), f"sa{i}") for i in range(5)] + [face(near(b, i), f"sb{i}") for i in range(5)]
    faces.append(face(unit(60), "loner"))
    kept = g.unknown.keep(faces, embedding_key=KEY)
    return kept


def test_keep_filters_duplicates_and_groups(g, strangers) -> None:
    assert strangers.added == 11 and strangers.filtered == 0 and strangers.duplicates == 0
    ids = list(strangers.ids)
    groups = sorted(sorted(f.id for f in gr.faces) for gr in g.unknown.groups())
    assert groups == [ids[:5], ids[5:10]]
    assert [f.id for f in g.unknown.ungrouped()] == [ids[10]] and g.unknown.count() == 11
    assert g.face_count == 0 and len(g) == 0  # kept faces are nobody's
    first = g.unknown.groups()[0]
    assert g.unknown.group(first.id) == first
    with pytest.raises(GroupNotFoundError):
        g.unknown.group(12345)
    again = g.unknown.keep(
        [
            face(near(unit(40), 0), "sa0"),
            face(unit(70), "tiny", box=(0, 0, 10, 10)),
            face(unit(71), "unsure", confidence=0.5),
        ],
        embedding_key=KEY,
    )
    assert again.ids == (ids[0], None, None) and (again.added, again.filtered, again.duplicates) == (0, 2, 1)
    assert g.check() == []


def test_name_a_group_then_search_finds_them(g, strangers) -> None:
    group = min(g.unknown.groups(), key=lambda gr: min(f.id for f in gr.faces))
    named = g.unknown.name(group.id, "Dee")
    assert named.person == "Dee" and named.new_person and sorted(named.faces) == sorted(f.id for f in group.faces)
    assert g.person("Dee").faces == 5 and g.unknown.count() == 6
    _, found = g.search(np.stack([near(unit(40), 77)]), k=1)
    assert g.face_owners(found[:, 0]) == {int(found[0, 0]): "Dee"}
    with pytest.raises(GroupNotFoundError):
        g.unknown.name(group.id, "Dee")
    assert g.audit_log()[-1].action == "name"


def test_naming_into_a_person_keeps_out_faces_of_their_photos_and_faces_moved_out(g, strangers) -> None:
    ids = list(strangers.ids)
    g.add_faces("Eve", [face(unit(80), "sb1")], embedding_key=KEY)  # Eve has a face in photo sb1
    group_b = next(gr for gr in g.unknown.groups() if ids[5] in {f.id for f in gr.faces})
    named = g.unknown.name(group_b.id, "eve")
    assert named.person == "eve" and not named.new_person and named.kept_out == (ids[6],)
    assert g.person("Eve").faces == 5
    assert g.unknown.move([ids[5]], None) == [ids[5]]  # not Eve after all: never named as her again
    group_a = next(iter(g.unknown.groups()))
    assert g.unknown.move([ids[5]], "Eve") == [ids[5]]  # said explicitly: the bar is lifted
    assert g.unknown.move([ids[5]], "Eve") == []
    g.unknown.move([ids[5]], None)
    regrouped = g.unknown.regroup()
    assert regrouped.new_groups >= 1 and group_a.id not in {gr.id for gr in g.unknown.groups()}
    for gr in g.unknown.groups():
        if ids[5] in {f.id for f in gr.faces}:
            assert ids[5] in g.unknown.name(gr.id, "Eve").kept_out
    with pytest.raises(FaceNotFoundError):
        g.unknown.move([999_999], None)
    assert g.check() == []


def test_move_and_merge_people(g) -> None:
    ada = g.add_faces("Ada", [face(unit(1), "a1"), face(unit(2), "a2")], embedding_key=KEY)
    g.add_faces("Bob", [face(unit(3), "b1")], embedding_key=KEY)
    assert g.unknown.move([ada[1]], "Bob") == [ada[1]]
    assert g.person("Bob").faces == 2 and g.person("Ada").faces == 1
    assert g.unknown.move([ada[0]], "New One") == [ada[0]]
    assert "New One" in g
    assert g.unknown.merge("Bob", "new one") == 2
    assert "Bob" not in g and g.person("New One").faces == 3
    with pytest.raises(InvalidNameError):
        g.unknown.merge("New One", "NEW ONE")
    with pytest.raises(PersonNotFoundError):
        g.unknown.merge("Bob", "New One")
    assert [e.action for e in g.audit_log()][-3:] == ["move", "move", "merge"]
    assert g.check() == []


def test_forget_kept_faces(g, strangers) -> None:
    ids = list(strangers.ids)
    assert g.unknown.forget(face_ids=[ids[0], ids[1], 999]) == 2
    assert g.unknown.count() == 9
    assert g.unknown.forget(older_than=timedelta(days=1)) == 0
    assert g.unknown.forget() == 9 and g.unknown.count() == 0 and g.unknown.groups() == []
    assert g.unknown.forget() == 0
    assert g.check() == []


# -- API keys ----------------------------------------------------------------------------------------------


def test_api_keys(g) -> None:
    keys = ApiKeys(g)
    assert keys.list() == [] and keys.count() == 0
    admin, token = keys.create("Admin")
    reader, read_token = keys.create("reader", READ_ONLY)
    assert token.startswith("fid_") and token != read_token
    assert [(k.name, k.scope) for k in keys.list()] == [("Admin", "admin"), ("reader", "read-only")]
    with pytest.raises(KeyExistsError):
        keys.create("ADMIN")
    assert keys.check(token) == admin and keys.check(read_token) == reader and keys.check("fid_x") is None
    keys.touch("reader")
    assert next(k for k in keys.list() if k.name == "reader").last_used is not None
    keys.revoke("admin")
    assert keys.check(token) is None and keys.count() == 1
    with pytest.raises(KeyNotFoundError):
        keys.revoke("admin")
    with pytest.raises(OptionError):
        keys.create("x", "root")
    assert [e.action for e in g.audit_log()] == ["key-create", "key-create", "key-revoke"]
    assert all(token not in str(e.detail) for e in g.audit_log())


# -- moving to another model: a copy in a folder --------------------------------------------------------------


def test_copy_to_a_folder_keeps_everything_and_takes_new_embeddings(g, strangers, tmp_path: Path) -> None:
    from faceid.gallery import Gallery

    g.add_faces("Ada", [face(unit(1), "a1"), face(unit(2), "a2")], embedding_key=KEY)
    g.set_setting("threshold", 0.5)
    _, token = ApiKeys(g).create("robot")
    with g.exclusive() as generation:
        assert generation == g.generation
    copied = g.copy_to(tmp_path / "copy")
    assert copied == g.generation
    with pytest.raises(FileExistsError):
        g.copy_to(tmp_path / "copy")
    with Gallery(tmp_path / "copy", create=False) as c:
        assert c.folder == tmp_path / "copy" and c.people() == g.people() and c.faces() == g.faces()
        assert c.audit_log() == g.audit_log() and c.get_setting("threshold") == 0.5
        assert [f.id for f in c.face_sources()] == [f.id for f in g.face_sources()]
        assert c.unknown.groups() == g.unknown.groups() and ApiKeys(c).check(token) is not None
        assert c.check() == []
        ids, _, vectors = c.embeddings()
        every = {f.id: unit(1000 + f.id) for f in c.face_sources()}
        other = EmbeddingKey.for_model("sface", mirror=not KEY.mirror)
        c.replace_embeddings(other, every, reason="test")
        assert c.embedding_key == other and c.get_setting("threshold") is None
        _, found = c.search(np.stack([unit(1000 + int(ids[0]))]), k=1)
        assert int(found[0, 0]) == int(ids[0]) and c.audit_log()[-1].action == "migrate" and c.check() == []
