"""A big gallery's first searches in a new process: answered from the index file memory-mapped
while it loads in the background, exactly as the database says, and never trusted unchecked."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KEY
from test_index import enrol, oracle, unit

from faceid import index as gi
from faceid.gallery import Gallery, firstsearch, searchindex

D = KEY.dimension


@pytest.fixture
def big(monkeypatch):
    """Every index file counts as big, the approximate index starts at 400 faces, and the file is
    not rewritten per change (as in a large gallery), so a new process applies the changes since."""
    monkeypatch.setattr(firstsearch, "PROVISIONAL_FACES", 1)
    monkeypatch.setattr(gi, "EXACT_LIMIT", 400)
    monkeypatch.setattr(gi, "TRAIN_SAMPLE", 2000)
    monkeypatch.setattr(searchindex, "REBASE_SHARE", 100.0)


@pytest.mark.parametrize("n", [300, 600])
def test_mapped_file_holds_what_the_index_holds(big, tmp_path, n):
    import faiss

    rng = np.random.default_rng(n)
    ids = rng.permutation(np.arange(n, dtype=np.int64) * 3 + 1)
    vectors = unit(rng.standard_normal((n, D)))
    index = gi.build(ids, vectors, D)
    path = tmp_path / "index-1.faiss"
    path.write_bytes(faiss.serialize_index(index).tobytes())
    held, stored = gi.mapped(path)
    want_ids, want_vectors = gi.view(index)
    np.testing.assert_array_equal(held, want_ids)
    np.testing.assert_array_equal(stored, want_vectors)
    path.write_bytes(b"IxMp" + bytes(300))
    with pytest.raises(ValueError):
        gi.mapped(path)


def test_search_equals_the_oracle_with_rows_skipped_and_added(monkeypatch):
    monkeypatch.setattr(firstsearch, "SCORES", 6 * 4096)  # the 6 queries below are scored 4,096 rows at a time
    rng = np.random.default_rng(3)
    ids = np.arange(1, 40_001, 2, dtype=np.int64)
    vectors = unit(rng.standard_normal((len(ids), 8)))
    skip = np.sort(rng.choice(len(ids), 500, replace=False))
    extra_ids = np.array([400_002, 400_004], np.int64)
    extra = unit(rng.standard_normal((2, 8)))
    queries = np.concatenate([vectors[:3], extra[:1], unit(rng.standard_normal((2, 8)))])
    scores, found = firstsearch.search(ids, vectors, skip, extra_ids, extra, queries, 7)
    keep = np.ones(len(ids), bool)
    keep[skip] = False
    want_scores, want_ids = oracle(
        np.concatenate([ids[keep], extra_ids]), np.concatenate([vectors[keep], extra]), queries, 7
    )
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    few_scores, few = firstsearch.search(ids[:2], vectors[:2], np.array([0]), extra_ids[:0], extra[:0], queries[:1], 4)
    assert few[0].tolist() == [ids[1], -1, -1, -1] and np.isneginf(few_scores[0, 1:]).all()


def gallery_with_a_file_behind(gallery_dir, rng):
    """600 faces (an approximate index) in the file, then 2 people enrolled and one removed."""
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 120, 5, "p")
        g.search(unit(rng.standard_normal((1, D))), 1)  # writes the index file
        enrol(g, rng, 2, 5, "q")
        removed = [f.id for f in g.faces("p 7")]
        g.remove("p 7")
    return removed


def test_a_new_process_answers_from_the_file_exactly_as_the_database_says(big, gallery_dir):
    rng = np.random.default_rng(11)
    removed = gallery_with_a_file_behind(gallery_dir, rng)
    with Gallery(gallery_dir) as g:
        ids, _, vectors = g.embeddings()
        queries = vectors[rng.choice(len(ids), 20, replace=False)]
        queries[0] = vectors[-1]  # a face enrolled after the file was written
        scores, found = g.search(queries, 5)
        assert g._b.search_index._early == 1  # answered before the index was loaded
        want_scores, want_ids = oracle(ids, vectors, queries, 5)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        assert not set(removed) & set(found.reshape(-1).tolist())
        g._b.search_index._loader.result()
        scores, found = g.search(queries, 5)  # from the loaded, checked index
        assert g._b.search_index._early == 1
        np.testing.assert_array_equal(found[:, 0], want_ids[:, 0])
        assert g.index_spec.kind == gi.APPROXIMATE and g.problems == [] and g.check() == []


def damage(path, face_id, vector):
    """Write ``vector`` for ``face_id`` in the index file ``path``, in place."""
    held, stored = gi.mapped(path)
    old = stored[int(np.flatnonzero(held == face_id)[0])].tobytes()
    data = path.read_bytes()
    assert data.count(old) == 1
    with open(path, "r+b") as handle:
        handle.seek(data.index(old))
        handle.write(np.asarray(vector, np.float32).tobytes())


def test_a_face_the_damaged_file_reports_wrongly_is_caught_before_the_answer(big, gallery_dir):
    rng = np.random.default_rng(12)
    gallery_with_a_file_behind(gallery_dir, rng)
    (path,) = gallery_dir.glob("index-*.faiss")
    with Gallery(gallery_dir) as g:
        ids, _, vectors = g.embeddings()
    damage(path, int(ids[3]), vectors[40])  # face 3 now looks like face 40 in the file
    with Gallery(gallery_dir) as g:
        scores, found = g.search(vectors[40:41], 5)
        assert g._b.search_index._early == 0  # the answer from the file was dropped
        want_scores, want_ids = oracle(ids, vectors, vectors[40:41], 5)
        np.testing.assert_array_equal(found[0, :1], want_ids[0, :1])
        assert any("differ from the database" in p for p in g.problems)


def test_a_face_the_damaged_file_misses_is_reported_once_the_check_is_done(big, gallery_dir):
    rng = np.random.default_rng(13)
    gallery_with_a_file_behind(gallery_dir, rng)
    (path,) = gallery_dir.glob("index-*.faiss")
    with Gallery(gallery_dir) as g:
        ids, _, vectors = g.embeddings()
    damage(path, int(ids[3]), -vectors[3])  # face 3 now scores -1 against itself in the file
    with Gallery(gallery_dir) as g:
        _, found = g.search(vectors[3:4], 5)
        assert found[0, 0] != ids[3]  # the limit, said in faceid.gallery.firstsearch
        g._b.search_index._loader.result()  # the check is done
        _, found = g.search(vectors[3:4], 5)  # built from the database
        assert found[0, 0] == ids[3]
        assert any("may have missed enrolled faces" in p for p in g.problems)
        assert any("differ from the database" in p for p in g.problems)


def test_a_small_gallery_answers_a_new_process_first_search_without_faiss(gallery_dir):
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(14)
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 3, 2, "p")
        g.search(unit(rng.standard_normal((1, D))), 1)  # writes the index file
        enrol(g, rng, 1, 2, "q")
        g.search(unit(rng.standard_normal((1, D))), 1)  # and brings it up to date
        ids, _, vectors = g.embeddings()
    want_scores, want_ids = oracle(ids, vectors, vectors[-1:], 3)
    script = (
        "import json, sys, numpy as np\n"
        "from faceid.gallery import Gallery\n"
        f"g = Gallery({str(gallery_dir)!r})\n"
        f"q = np.frombuffer(bytes.fromhex({vectors[-1].tobytes().hex()!r}), np.float32)[None]\n"
        "first = g.search(q, 3)\n"
        "faiss_first = 'faiss' in sys.modules\n"
        "second = g.search(q, 3)\n"
        "print(json.dumps([faiss_first, first[1][0].tolist(), first[0][0].tolist(), 'faiss' in sys.modules,"
        " second[1][0].tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    faiss_first, first_ids, first_scores, faiss_second, second_ids = json.loads(out)
    assert not faiss_first and first_ids == want_ids[0].tolist()  # answered from the file, FAISS not imported
    np.testing.assert_allclose(first_scores, want_scores[0], atol=1e-5)
    assert faiss_second and second_ids == want_ids[0].tolist()  # the second search loaded the index
