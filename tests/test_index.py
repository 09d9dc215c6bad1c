"""The gallery's search index: exact and approximate kinds against a numpy brute-force oracle,
the switch between them by size, and deletion that never returns (or keeps) a removed face."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KEY
from hypothesis import example, given, settings
from hypothesis import strategies as st

from faceid import index as gi
from faceid.gallery import Gallery, NewFace

D = KEY.dimension


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def clustered(rng, people, per, noise=0.65):
    """``people`` random identities with ``per`` noisy faces each (same-person cosine about 0.7)."""
    centres = unit(rng.standard_normal((people, D)))
    faces = centres.repeat(per, axis=0) + noise / np.sqrt(D) * rng.standard_normal((people * per, D))
    return centres, unit(faces)


def oracle(ids, vectors, queries, k):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture
def small_limit(monkeypatch):
    """Switch to the approximate index at 400 faces, so that tests exercise it quickly."""
    monkeypatch.setattr(gi, "EXACT_LIMIT", 400)
    monkeypatch.setattr(gi, "TRAIN_SAMPLE", 2000)


def test_choose_switches_by_size_with_hysteresis(small_limit):
    assert gi.choose(399, D).kind == gi.EXACT
    approximate = gi.choose(400, D)
    assert approximate.kind == gi.APPROXIMATE and approximate.pq_m == D // gi.PQ_DSUB
    assert gi.choose(250, D, approximate) == approximate  # shrinking a little keeps it
    assert gi.choose(199, D, approximate).kind == gi.EXACT
    assert gi.choose(8, 8).kind == gi.EXACT and gi.choose(1000, 8).pq_m == 2


def test_exact_index_equals_the_oracle():
    rng = np.random.default_rng(0)
    ids = np.arange(300, dtype=np.int64) * 7 + 3
    _, vectors = clustered(rng, 60, 5)
    index = gi.build(ids, vectors, D)
    assert gi.spec_of(index).kind == gi.EXACT
    queries = unit(rng.standard_normal((40, D)))
    scores, found = gi.search(index, queries, 10)
    want_scores, want_ids = oracle(ids, vectors, queries, 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_approximate_index_finds_the_nearest_face_and_scores_exactly(small_limit):
    rng = np.random.default_rng(1)
    centres, vectors = clustered(rng, 400, 5)
    ids = np.arange(len(vectors), dtype=np.int64) + 1
    index = gi.build(ids, vectors, D)
    assert gi.spec_of(index).kind == gi.APPROXIMATE
    queries = unit(centres[:200] + 0.65 / np.sqrt(D) * rng.standard_normal((200, D)))
    scores, found = gi.search(index, queries, 5)
    want_scores, want_ids = oracle(ids, vectors, queries, 5)
    assert (found[:, 0] == want_ids[:, 0]).mean() >= 0.99
    by_id = dict(zip(ids.tolist(), vectors))
    for q, row_ids, row_scores in zip(queries, found, scores):  # every similarity is the exact one
        np.testing.assert_allclose(row_scores, [q @ by_id[i] for i in row_ids], atol=1e-5)
    assert (gi.search(index, queries[:1], 5)[1] == found[:1]).all()  # one query alone: the same answer


@pytest.mark.parametrize("n", [10, 500])
def test_contents_round_trip(small_limit, n):
    rng = np.random.default_rng(3)
    ids = rng.permutation(np.arange(n, dtype=np.int64) * 2 + 5)
    vectors = unit(rng.standard_normal((n, D)))
    held_ids, held = gi.contents(gi.build(ids, vectors, D))
    order = np.argsort(ids)
    np.testing.assert_array_equal(held_ids, ids[order])
    np.testing.assert_array_equal(held, vectors[order])


# -- through the gallery ----------------------------------------------------------------------------


def enrol(gallery, rng, people, per, tag):
    centres, vectors = clustered(rng, people, per)
    for p in range(people):
        rows = vectors[p * per : (p + 1) * per]
        faces = [NewFace(v, f"{tag}{p:05d}{j:03d}".ljust(64, "0"), (0, 0, 9, 9), 0.99) for j, v in enumerate(rows)]
        gallery.add_faces(f"{tag} {p}", faces, embedding_key=KEY)
    return centres, vectors


def test_gallery_switches_to_approximate_and_removal_is_complete(small_limit, gallery_dir):
    rng = np.random.default_rng(5)
    with Gallery(gallery_dir) as g:
        centres, _ = enrol(g, rng, 100, 5, "p")
        queries = unit(centres + 0.65 / np.sqrt(D) * rng.standard_normal(centres.shape))
        _, ids = g.search(queries, 3)
        assert g.index_spec.kind == gi.APPROXIMATE
        owners = g.face_owners(ids[:, 0])
        assert sum(owners[int(i)] == f"p {p}" for p, i in enumerate(ids[:, 0])) >= 99
        g.rename("p 7", "seven")
        _, ids = g.search(queries[7:8], 1)
        assert g.face_owners(ids)[int(ids[0, 0])] == "seven"
        gone = {f.id for f in g.faces("p 3")}
        secrets = [v.tobytes() for v in g.embeddings()[2][np.isin(g.embeddings()[0], list(gone))]]
        g.remove("p 3")
        _, ids = g.search(queries, 50)
        assert not gone & set(ids.reshape(-1).tolist())
        assert g.index_spec.kind == gi.APPROXIMATE and g.check() == []
    for f in gallery_dir.iterdir():
        data = f.read_bytes()
        assert not any(s[:16] in data for s in secrets), f"a removed embedding is still in {f.name}"


def test_gallery_goes_back_to_exact_when_it_shrinks(small_limit, gallery_dir):
    rng = np.random.default_rng(6)
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 45, 10, "p")
        g.search(unit(rng.standard_normal((1, D))), 1)
        assert g.index_spec.kind == gi.APPROXIMATE
        for p in range(26):
            g.remove(f"p {p}")
        ids, _, vectors = g.embeddings()
        queries = unit(rng.standard_normal((20, D)))
        scores, found = g.search(queries, 5)
        assert g.index_spec.kind == gi.EXACT
        want_scores, want_ids = oracle(ids, vectors, queries, 5)
        np.testing.assert_array_equal(found, want_ids)


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["add", "remove", "rename"]), st.integers(1, 60)), min_size=1, max_size=6),
    st.integers(0, 2**16),
)
@example([("add", 1), ("remove", 1), ("add", 1)], 0)  # the new face once took the removed one's id
def test_gallery_search_agrees_with_the_oracle_after_any_changes(tmp_path_factory, changes, seed):
    """Enrolments, removals and renames, across the switch between kinds (at 200 faces here):
    search finds exactly what a brute-force search of the database finds, and never a removed face."""
    saved = gi.EXACT_LIMIT, gi.TRAIN_SAMPLE
    gi.EXACT_LIMIT, gi.TRAIN_SAMPLE = 200, 1000
    rng = np.random.default_rng(seed)
    removed: set[int] = set()
    try:
        with Gallery(tmp_path_factory.mktemp("g")) as g:
            people = 0
            for action, count in changes:
                names = [p.name for p in g.people()]
                if action == "add":
                    enrol(g, rng, max(1, count // 5), 5, f"p{people}-")
                    people += 1
                elif action == "remove" and names:
                    gone = names[int(rng.integers(len(names)))]
                    removed |= {f.id for f in g.faces(gone)}
                    g.remove(gone)
                elif action == "rename" and names:
                    people += 1
                    g.rename(names[0], f"renamed {people}")
                ids, _, vectors = g.embeddings()
                if not len(ids):
                    continue
                queries = vectors[rng.choice(len(ids), min(10, len(ids)), replace=False)]
                scores, found = g.search(queries, 5)
                want_scores, want_ids = oracle(ids, vectors, queries, min(5, len(ids)))
                returned = set(found.reshape(-1).tolist()) - {-1}  # faces in the database, none removed
                assert returned <= set(ids.tolist()) and not removed & returned
                np.testing.assert_array_equal(found[:, 0], want_ids[:, 0])  # a stored face finds itself
                if g.index_spec.kind == gi.EXACT:
                    np.testing.assert_array_equal(found[:, : want_ids.shape[1]], want_ids)
                by_id = dict(zip(ids.tolist(), vectors))
                for q, row_ids, row_scores in zip(queries, found, scores):
                    for i, score in zip(row_ids, row_scores):
                        if i >= 0:
                            assert abs(score - q @ by_id[int(i)]) < 1e-5
    finally:
        gi.EXACT_LIMIT, gi.TRAIN_SAMPLE = saved


# -- in place -------------------------------------------------------------------------------------


def codes_by_id(index) -> list[tuple[int, bytes]]:
    """``(id, code)`` of each face of an approximate index: its code, read back from the packed table."""
    import faiss

    outer, _, codes = gi._parts(index)
    packer = codes.get_CodePacker()
    table = faiss.rev_swig_ptr(codes.codes.get(), codes.codes.size())
    out = []
    for place, face in enumerate(gi.ids(index).tolist()):
        code = np.zeros(packer.code_size, np.uint8)
        block = table[(place // codes.bbs) * packer.block_size :]
        packer.unpack_1_c(faiss.swig_ptr(block), place % codes.bbs, faiss.swig_ptr(code))
        out.append((face, code.tobytes()))
    return out


def encoded(index, vectors) -> list[bytes]:
    """What the quantiser of an approximate index makes of ``vectors``: the codes a fresh build would hold."""
    _, _, codes = gi._parts(index)
    return [row.tobytes() for row in codes.pq.compute_codes(np.ascontiguousarray(vectors))]


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([gi.EXACT, gi.APPROXIMATE]),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80)), min_size=1, max_size=8),
    st.integers(0, 2**16),
)
def test_in_place_changes_equal_a_fresh_build(kind, changes, seed):
    """Removing and adding in place leaves exactly the faces a fresh build of the same faces holds:
    the same ids, vectors and (approximate) codes, and the brute-force oracle's search results."""
    rng = np.random.default_rng(seed)
    _, vectors = clustered(rng, 60, 5)
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64) * 3
    spec = gi.IndexSpec(gi.EXACT) if kind == gi.EXACT else gi.IndexSpec(gi.APPROXIMATE, D // 4, 4, 8)
    index = gi.build(ids, vectors, D, spec)
    held = dict(zip(ids.tolist(), vectors))
    next_id = int(ids[-1]) + 1
    for removals, additions in changes:
        gone = rng.choice(sorted(held), min(removals, len(held)), replace=False) if held else []
        gone = np.append(gone, [10**9]).astype(np.int64)  # an id not held is ignored
        assert gi.remove(index, gone) == len(gone) - 1
        for face in gone[:-1].tolist():
            del held[face]
        new = unit(rng.standard_normal((additions, D)))
        new_ids = np.arange(next_id, next_id + additions, dtype=np.int64)
        next_id += additions
        gi.add(index, new_ids, new)
        held.update(zip(new_ids.tolist(), new))
        want_ids = np.array(sorted(held), dtype=np.int64)
        want = np.stack([held[i] for i in want_ids]) if held else np.zeros((0, D), np.float32)
        got_ids, got = gi.contents(index)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got, want)
        assert index.ntotal == len(held)
        if kind == gi.APPROXIMATE and held:
            held_codes = dict(codes_by_id(index))
            assert [held_codes[i] for i in want_ids.tolist()] == encoded(index, want)
        if len(held) >= 5:
            queries = want[rng.choice(len(want), 5, replace=False)]
            scores, found = gi.search(index, queries, 5)
            want_scores, want_found = oracle(want_ids, want, queries, 5)
            np.testing.assert_array_equal(found[:, 0], want_found[:, 0])  # a stored face finds itself
            if kind == gi.EXACT:
                np.testing.assert_array_equal(found, want_found)
            np.testing.assert_allclose(
                scores, [[q @ held[int(i)] for i in row] for q, row in zip(queries, found)], atol=1e-5
            )


@pytest.mark.parametrize("kind", [gi.EXACT, gi.APPROXIMATE])
def test_erase_overwrites_removed_faces_in_a_file_and_it_stays_usable(small_limit, tmp_path, kind):
    import faiss

    rng = np.random.default_rng(8)
    _, vectors = clustered(rng, 100, 5)
    ids = np.arange(1, 501, dtype=np.int64)
    index = gi.build(ids, vectors, D, gi.IndexSpec(gi.EXACT) if kind == gi.EXACT else None)
    assert gi.spec_of(index).kind == kind
    path = tmp_path / "index.faiss"
    path.write_bytes(faiss.serialize_index(index).tobytes())
    gone = np.array([1, 2, 250, 499, 500], np.int64)
    size = path.stat().st_size
    assert gi.erase(path, np.append(gone, 7777)) == 5
    assert gi.erase(path, gone) == 0  # already erased: nothing to do
    data = path.read_bytes()
    assert len(data) == size
    for face in gone:
        secret = vectors[face - 1].tobytes()
        assert secret not in data and secret[:16] not in data
    held = gi.file_ids(path)
    assert (held == gi.ERASED).sum() == 5 and not np.isin(gone, held).any()
    back = faiss.deserialize_index(np.frombuffer(data, np.uint8))
    if kind == gi.APPROXIMATE:
        erased = [code for face, code in codes_by_id(back) if face == gi.ERASED]
        assert erased == [bytes(len(erased[0]))] * 5  # the codes are overwritten too
    assert gi.remove(back, [gi.ERASED]) == 5
    gi.remove(index, gone)
    np.testing.assert_array_equal(gi.contents(back)[0], gi.contents(index)[0])
    np.testing.assert_array_equal(gi.contents(back)[1], gi.contents(index)[1])
    path.write_bytes(data[:-3])
    with pytest.raises(ValueError):
        gi.erase(path, ids)


def test_gallery_keeps_the_approximate_index_until_it_shrinks_below_half_the_limit(small_limit, gallery_dir):
    """The promise of docs/speed.md ("How the gallery chooses its index"): switched to approximate at the
    limit, a gallery goes back to exact only below half of it, so it does not flip at the boundary."""
    rng = np.random.default_rng(7)
    query = unit(rng.standard_normal((1, D)))
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 45, 10, "p")  # 450 faces, above the limit of 400
        g.search(query, 1)
        assert g.index_spec.kind == gi.APPROXIMATE
        for p in range(20):  # 250 faces: below the limit, above half of it
            g.remove(f"p {p}")
        g.search(query, 1)
        assert len(g.faces()) == 250 and g.index_spec.kind == gi.APPROXIMATE
    with Gallery(gallery_dir) as g:  # another process, from the index file: the same
        g.search(query, 1)
        assert g.index_spec.kind == gi.APPROXIMATE
        for p in range(20, 26):  # 190 faces: below half
            g.remove(f"p {p}")
        g.search(query, 1)
        assert len(g.faces()) == 190 and g.index_spec.kind == gi.EXACT
        enrol(g, rng, 20, 10, "q")  # 390 faces: below the limit, so exact stays
        g.search(query, 1)
        assert g.index_spec.kind == gi.EXACT


@pytest.fixture
def builds(monkeypatch):
    """Count the indexes the gallery builds from its rows (as opposed to changing one in place)."""
    from faceid.gallery import searchindex

    calls = []
    real = searchindex.build

    def counting(ids, vectors, dimension, current=None):
        calls.append(len(ids))
        return real(ids, vectors, dimension, current)

    monkeypatch.setattr(searchindex, "build", counting)
    return calls


def check_against_oracle(g, rng, removed=()):
    ids, _, vectors = g.embeddings()
    queries = vectors[rng.choice(len(ids), min(20, len(ids)), replace=False)]
    scores, found = g.search(queries, 5)
    want_scores, want_ids = oracle(ids, vectors, queries, 5)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert not set(removed) & set(found.reshape(-1).tolist())


def test_another_process_changes_are_applied_in_place(gallery_dir, builds):
    rng = np.random.default_rng(9)
    with Gallery(gallery_dir) as reader, Gallery(gallery_dir) as writer:
        enrol(writer, rng, 30, 5, "p")
        check_against_oracle(reader, rng)
        assert builds == [150]
        enrol(writer, rng, 3, 5, "q")  # the other "process" enrols and removes
        removed = [f.id for f in writer.faces("p 4")]
        writer.remove("p 4")
        check_against_oracle(reader, rng, removed)
        check_against_oracle(writer, rng, removed)
        assert builds == [150]  # neither built again: both changed their index in place
        assert reader.check() == [] and writer.check() == []


def test_an_older_index_file_is_brought_up_to_date_and_keeps_no_removed_face(gallery_dir, builds, monkeypatch):
    from faceid.gallery import searchindex

    monkeypatch.setattr(searchindex, "REBASE_SHARE", 100.0)  # as in a large gallery: no new file per change
    rng = np.random.default_rng(10)
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 20, 5, "p")
        g.search(unit(rng.standard_normal((1, D))), 1)
        written = g.generation
        enrol(g, rng, 2, 5, "q")
        secrets = [v.tobytes() for v in g.embeddings()[2][:5]]  # p 0's faces, in the file
        removed = [f.id for f in g.faces("p 0")]
        g.remove("p 0")
        check_against_oracle(g, rng, removed)
    assert [p.name for p in gallery_dir.glob("index-*.faiss")] == [f"index-{written}.faiss"]
    for f in gallery_dir.iterdir():
        data = f.read_bytes()
        assert not any(s in data or s[:16] in data for s in secrets), f"a removed embedding is still in {f.name}"
    with Gallery(gallery_dir) as g:
        check_against_oracle(g, rng, removed)
        assert builds == [100] and g.check() == [] and g.problems == []


def test_compare_finds_a_changed_vector_in_an_index_changed_in_place():
    from faceid.gallery.indexfiles import compare

    rng = np.random.default_rng(11)
    _, vectors = clustered(rng, 20, 5)
    ids = np.arange(1, 101, dtype=np.int64)
    index = gi.build(ids, vectors, D)
    assert compare(index, ids, vectors) is None
    gi.remove(index, ids[[0, 10, 50]])  # the last faces move into their places: no longer in id order
    assert not np.array_equal(gi.ids(index), np.sort(gi.ids(index)))
    keep = np.setdiff1d(np.arange(100), [0, 10, 50])
    assert compare(index, ids[keep], vectors[keep]) is None
    edited = vectors[keep].copy()
    edited[-1, 0] += 1e-3
    assert compare(index, ids[keep], edited).startswith("1 of its 97 vectors differ")
    assert "holds other faces" in compare(index, ids[keep[:-1]], vectors[keep[:-1]])
    assert "holds other faces" in compare(index, ids[keep] + 1, vectors[keep])


def test_an_index_older_than_the_log_of_removals_is_rebuilt_and_its_file_deleted(gallery_dir, builds, monkeypatch):
    """The log keeps the last KEEP removed faces: an index, or a file, from before them cannot be
    brought up to date (it may hold anyone removed since), so it is rebuilt, and the file deleted."""
    from faceid.gallery import changes, searchindex

    monkeypatch.setattr(changes, "KEEP", 6)
    monkeypatch.setattr(searchindex, "REBASE_SHARE", 100.0)
    rng = np.random.default_rng(12)
    with Gallery(gallery_dir) as reader, Gallery(gallery_dir) as writer:
        enrol(writer, rng, 10, 3, "p")
        check_against_oracle(reader, rng)  # builds, and writes the file
        (written,) = gallery_dir.glob("index-*.faiss")
        removed = []
        for p in range(4):  # 12 faces removed: the log keeps the last 6
            removed += [f.id for f in writer.faces(f"p {p}")]
            writer.remove(f"p {p}")
        assert len(writer.backend.db.execute("SELECT face_id FROM removed_faces").fetchall()) <= 6
        check_against_oracle(reader, rng, removed)  # too far behind: rebuilt, not updated
        assert builds == [30, 18]
        assert not written.exists()  # replaced by the rebuilt index's file, and overwritten
    with Gallery(gallery_dir) as g:
        check_against_oracle(g, rng, removed)
        assert g.check() == [] and builds == [30, 18]  # the new file was used


def test_opening_deletes_an_index_file_older_than_the_log_of_removals(gallery_dir, monkeypatch):
    from faceid.gallery import changes, searchindex

    monkeypatch.setattr(changes, "KEEP", 6)
    monkeypatch.setattr(searchindex, "REBASE_SHARE", 100.0)
    rng = np.random.default_rng(13)
    with Gallery(gallery_dir) as g:
        enrol(g, rng, 10, 3, "p")
        g.search(unit(rng.standard_normal((1, D))), 1)
        (written,) = gallery_dir.glob("index-*.faiss")
    from faceid.gallery.sqlite import SqliteBackend

    monkeypatch.setattr(SqliteBackend, "_recover", lambda self: None)  # as if the removing process never opened it
    with Gallery(gallery_dir) as g:
        for p in range(4):
            g.remove(f"p {p}")
    monkeypatch.undo()
    monkeypatch.setattr(changes, "KEEP", 6)
    with Gallery(gallery_dir) as g:
        assert not written.exists()  # it might hold anyone removed since: deleted on open
        check_against_oracle(g, rng)
