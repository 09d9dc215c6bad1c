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


@pytest.mark.xfail(strict=True, reason="hysteresis lost in the full-rebuild change; issue 11 restores it")
def test_gallery_keeps_the_approximate_index_until_it_shrinks_below_half_the_limit(small_limit, gallery_dir):
    """The README's promise (Speed, "How the gallery chooses"): switched to approximate at the
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
        for p in range(20, 26):  # 190 faces: below half
            g.remove(f"p {p}")
        g.search(query, 1)
        assert len(g.faces()) == 190 and g.index_spec.kind == gi.EXACT


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
