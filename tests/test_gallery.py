"""The gallery: SQLite truth, FAISS cache, names, model records, deletion and the audit log."""

from __future__ import annotations

import os
import sqlite3
import stat

import numpy as np
import pytest
from conftest import KEY, unit_vectors
from hypothesis import given, settings
from hypothesis import strategies as st

from faceid.embedding_key import EmbeddingKey
from faceid.errors import GalleryCorruptError, InvalidNameError, ModelMismatchError, PersonNotFoundError
from faceid.gallery import Gallery, NewFace, normalise_name, open_gallery


def faces(vectors, tag="x"):
    return [
        NewFace(v, f"{tag}{i:060d}"[-64:], (1, 2, 3, 4), 0.99, f"/photos/{tag}{i}.jpg") for i, v in enumerate(vectors)
    ]


def test_add_search_matches_brute_force_oracle(any_gallery):
    rng = np.random.default_rng(0)
    stored = {}
    for p in range(20):
        vectors = unit_vectors(rng, 3)
        ids = any_gallery.add_faces(f"person {p}", faces(vectors, f"p{p}-"), embedding_key=KEY)
        stored.update(zip(ids, vectors))
    queries = unit_vectors(rng, 50)
    scores, ids = any_gallery.search(queries, k=5)
    all_ids = np.array(sorted(stored))
    matrix = np.stack([stored[i] for i in all_ids])
    expected = queries @ matrix.T
    for q in range(len(queries)):
        order = np.argsort(-expected[q])[:5]
        np.testing.assert_array_equal(ids[q], all_ids[order])
        np.testing.assert_allclose(scores[q], expected[q, order], atol=1e-5)


def test_search_pads_with_minus_one(any_gallery):
    rng = np.random.default_rng(1)
    any_gallery.add_faces("a", faces(unit_vectors(rng, 2)), embedding_key=KEY)
    scores, ids = any_gallery.search(unit_vectors(rng, 1), k=4)
    assert list(ids[0, 2:]) == [-1, -1] and np.all(np.isneginf(scores[0, 2:]))


def test_empty_gallery_search(any_gallery):
    scores, ids = any_gallery.search(np.zeros((2, 128), np.float32), k=3)
    assert ids.shape == (2, 3) and np.all(ids == -1)


def test_persists_across_reopen_and_index_cache_is_tied_to_generation(gallery_dir):
    rng = np.random.default_rng(2)
    vectors = unit_vectors(rng, 4)
    with Gallery(gallery_dir) as g:
        g.add_faces("ann", faces(vectors[:2]), embedding_key=KEY)
        g.search(vectors[:1], 1)  # builds the index
    files = sorted(p.name for p in gallery_dir.glob("index-*.faiss"))
    assert len(files) == 1
    with Gallery(gallery_dir) as g:
        assert [p.name for p in g.people()] == ["ann"]
        g.add_faces("bob", faces(vectors[2:], "b"), embedding_key=KEY)
        _, ids = g.search(vectors[2:3], 1)
        assert g.face_owners(ids)[int(ids[0, 0])] == "bob"
    assert sorted(p.name for p in gallery_dir.glob("index-*.faiss")) != files  # stale cache replaced


def test_rename_keeps_faces_and_remove_forgets(any_gallery):
    rng = np.random.default_rng(3)
    v = unit_vectors(rng, 3)
    any_gallery.add_faces("penny", faces(v[:2]), embedding_key=KEY)
    any_gallery.add_faces("amy", faces(v[2:], "a"), embedding_key=KEY)
    any_gallery.rename("penny", "Penny H.")
    assert {p.name: p.faces for p in any_gallery.people()} == {"Penny H.": 2, "amy": 1}
    _, ids = any_gallery.search(v[:1], 1)
    assert any_gallery.face_owners(ids)[int(ids[0, 0])] == "Penny H."
    assert any_gallery.remove("Penny H.") == 2
    _, ids = any_gallery.search(v[:2], 3)
    assert set(any_gallery.face_owners(ids).values()) == {"amy"}
    with pytest.raises(PersonNotFoundError):
        any_gallery.remove("Penny H.")


def test_rename_to_taken_name_is_refused(any_gallery):
    rng = np.random.default_rng(4)
    any_gallery.add_faces("a", faces(unit_vectors(rng, 1)), embedding_key=KEY)
    any_gallery.add_faces("b", faces(unit_vectors(rng, 1), "b"), embedding_key=KEY)
    with pytest.raises(InvalidNameError, match="already enrolled"):
        any_gallery.rename("a", "B")  # names are unique regardless of case
    assert sorted(p.name for p in any_gallery.people()) == ["a", "b"]


def test_other_model_is_refused_and_nothing_is_written(any_gallery):
    rng = np.random.default_rng(5)
    any_gallery.add_faces("a", faces(unit_vectors(rng, 1)), embedding_key=KEY)
    other = EmbeddingKey.for_model(align="similarity")
    with pytest.raises(ModelMismatchError, match="align"):
        any_gallery.add_faces("b", faces(unit_vectors(rng, 1), "b"), embedding_key=other)
    assert [p.name for p in any_gallery.people()] == ["a"]


def test_bad_embeddings_are_refused(any_gallery):
    with pytest.raises(ValueError, match="L2"):
        any_gallery.add_faces("a", [NewFace(np.ones(128, np.float32), "0" * 64, (0, 0, 1, 1), 1.0)], embedding_key=KEY)
    with pytest.raises(ValueError, match="shape"):
        any_gallery.add_faces(
            "a", [NewFace(np.ones(4, np.float32) / 2, "0" * 64, (0, 0, 1, 1), 1.0)], embedding_key=KEY
        )
    assert any_gallery.people() == []


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "line\nbreak", "x" * 201, "tab\there"])
def test_bad_names(any_gallery, bad):
    with pytest.raises(InvalidNameError):
        any_gallery.add_faces(bad, faces(unit_vectors(np.random.default_rng(6), 1)), embedding_key=KEY)


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")), min_size=1, max_size=60
    ).filter(lambda s: s.strip())
)
def test_free_text_names_round_trip(tmp_path_factory, name):
    """Spaces, accents, quotes, SQL, path separators and '..' are just names."""
    path = tmp_path_factory.mktemp("g")
    with Gallery(path) as g:
        g.add_faces(name, faces(unit_vectors(np.random.default_rng(7), 1)), embedding_key=KEY)
        assert [p.name for p in g.people()] == [normalise_name(name)]
        assert normalise_name(name) in g
    assert sorted(os.listdir(path)) in (["gallery.db"], ["gallery.db", "gallery.db-journal"])


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE people;--", "../../etc/passwd", "Zoë Ω 李", "a/b\\c", "%_*"])
def test_hostile_names_are_stored_verbatim(any_gallery, name):
    any_gallery.add_faces(name, faces(unit_vectors(np.random.default_rng(8), 1)), embedding_key=KEY)
    any_gallery.add_faces("other", faces(unit_vectors(np.random.default_rng(9), 1), "o"), embedding_key=KEY)
    assert sorted(p.name for p in any_gallery.people()) == sorted([name, "other"])
    any_gallery.remove(name)
    assert [p.name for p in any_gallery.people()] == ["other"]


def test_files_are_owner_only(gallery_dir):
    with Gallery(gallery_dir) as g:
        g.add_faces("a", faces(unit_vectors(np.random.default_rng(10), 1)), embedding_key=KEY)
        g.search(unit_vectors(np.random.default_rng(11), 1), 1)
    assert stat.S_IMODE(gallery_dir.stat().st_mode) == 0o700
    for f in gallery_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_removed_embeddings_are_not_left_in_any_file(gallery_dir):
    rng = np.random.default_rng(12)
    secret = unit_vectors(rng, 1)
    with Gallery(gallery_dir) as g:
        g.add_faces("keep", faces(unit_vectors(rng, 3), "k"), embedding_key=KEY)
        g.add_faces("gone", faces(secret, "g"), embedding_key=KEY)
        g.search(secret, 2)
        g.close()
    blob = secret[0].tobytes()
    assert any(blob in f.read_bytes() for f in gallery_dir.iterdir())  # it was there
    with Gallery(gallery_dir) as g:
        g.remove("gone")
    for f in gallery_dir.iterdir():
        assert blob not in f.read_bytes(), f"removed embedding still in {f.name}"
        assert blob[:16] not in f.read_bytes(), f"part of the removed embedding still in {f.name}"


def test_audit_log_records_changes_without_embeddings(gallery):
    rng = np.random.default_rng(13)
    v = unit_vectors(rng, 1)
    gallery.add_faces("a", faces(v), embedding_key=KEY)
    gallery.rename("a", "b")
    gallery.remove("b")
    log = gallery.audit_log()
    assert [(e.action, e.person) for e in log] == [("enroll", "a"), ("rename", "b"), ("remove", "b")]
    assert all(e.user and e.at for e in log)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        gallery.backend.db.execute("DELETE FROM audit")
    raw = (gallery.path / "gallery.db").read_bytes()
    assert v[0].tobytes() not in raw


def test_garbage_database_is_reported(gallery_dir):
    gallery_dir.mkdir()
    (gallery_dir / "gallery.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryCorruptError, match="not a readable SQLite database"):
        Gallery(gallery_dir)


def test_check_finds_a_foreign_index_and_rebuild_repairs_it(tmp_path):
    rng = np.random.default_rng(14)
    with Gallery(tmp_path / "one") as a, Gallery(tmp_path / "two") as b:
        a.add_faces("x", faces(unit_vectors(rng, 2)), embedding_key=KEY)
        b.add_faces("y", faces(unit_vectors(rng, 3), "y"), embedding_key=KEY)
        a.search(unit_vectors(rng, 1), 1)
        b.search(unit_vectors(rng, 1), 1)
        generation = a.generation
    foreign = next((tmp_path / "two").glob("index-*.faiss"))
    target = tmp_path / "one" / f"index-{generation}.faiss"
    target.write_bytes(foreign.read_bytes())
    with Gallery(tmp_path / "one") as a:
        problems = a.check()
        assert problems and "rebuild-index" in problems[0]
        scores, ids = a.search(unit_vectors(rng, 1), 5)  # never silently uses it: rebuilt from SQLite
        assert (ids >= 0).sum() == 2
        assert a.rebuild_index() == 2
        assert a.check() == []


def test_ids_of_removed_faces_and_people_are_never_given_again(gallery_spec):
    """Face ids name faces in the audit log and to users: SQLite would reuse the largest one."""
    rng = np.random.default_rng(15)
    with open_gallery(gallery_spec) as g:
        first = g.add_faces("ann", faces(unit_vectors(rng, 3), "a"), embedding_key=KEY)
        ann = g.person("ann").id
        g.remove("ann")
        second = g.add_faces("bob", faces(unit_vectors(rng, 2), "b"), embedding_key=KEY)
        assert set(second).isdisjoint(first) and min(second) > max(first)
        assert g.person("bob").id != ann
    with open_gallery(gallery_spec) as g:  # the counter is in the database, not the process
        g.remove("bob")
        third = g.add_faces("cy", faces(unit_vectors(rng, 1), "c"), embedding_key=KEY)
        assert min(third) > max(second)
        assert g.check() == []
