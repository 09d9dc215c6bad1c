"""Grouping unknown faces: metrics against hand-computed values, the kNN fast path against
brute-force oracles, every constraint, incremental attach, and real photos."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from faceid.cluster import (
    Attachment,
    GroupCentroids,
    GroupingParams,
    attach,
    cannot_link_pairs,
    cluster_scores,
    group_faces,
    keep_for_grouping,
    knn_brute_force,
    knn_graph,
    moved_out_pairs,
)
from faceid.cluster._agglomerate import agglomerate, needed


def people(n_people: int, per: int, *, noise: float = 0.5, dim: int = 32, seed: int = 0):
    """``(faces (n_people*per, dim) float32 unit rows, identity (n,) int64)``: noisy faces around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    who = np.repeat(np.arange(n_people), per)
    x = centres[who] + noise / np.sqrt(dim) * rng.standard_normal((len(who), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), who


def partition(labels) -> set[frozenset[int]]:
    """The grouping as a set of member sets (ungrouped ``-1`` faces are groups of one)."""
    out: dict[int, set[int]] = {}
    for i, g in enumerate(np.asarray(labels)):
        out.setdefault(int(g) if g >= 0 else -1 - i, set()).add(i)
    return {frozenset(v) for v in out.values()}


# -- metrics -----------------------------------------------------------------------------------------


def test_metrics_hand_computed():
    # groups {0,1,2} {3}; people {0,1} {2,3}
    s = cluster_scores([0, 0, 1, 1], [5, 5, 5, -1])
    assert s.bcubed_precision == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1) / 4)
    assert s.bcubed_recall == pytest.approx((1 + 1 + 1 / 2 + 1 / 2) / 4)
    assert s.pairwise_precision == pytest.approx(1 / 3)  # pairs 01 02 12, one right
    assert s.pairwise_recall == pytest.approx(1 / 2)  # pairs 01 23, one together
    assert s.bcubed_f == pytest.approx(2 * (2 / 3) * 0.75 / (2 / 3 + 0.75))
    assert (s.groups, s.ungrouped) == (1, 1)


def test_metrics_all_ungrouped_and_perfect():
    s = cluster_scores([0, 0, 1, 2], [-1, -1, -1, -1])
    assert (s.bcubed_precision, s.bcubed_recall, s.pairwise_precision, s.pairwise_recall) == (1.0, 0.75, 1.0, 0.0)
    s = cluster_scores(["a", "a", "b"], [7, 7, -1])
    assert (s.bcubed_f, s.pairwise_f, s.groups, s.ungrouped) == (1.0, 1.0, 1, 1)


def test_pairwise_metrics_match_sklearn_pair_confusion():
    from sklearn.metrics.cluster import pair_confusion_matrix

    rng = np.random.default_rng(3)
    for _ in range(20):
        truth = rng.integers(0, 6, 40)
        labels = rng.integers(0, 8, 40)
        (_, fp), (fn, tp) = pair_confusion_matrix(truth, labels) / 2
        s = cluster_scores(truth, labels)
        assert s.pairwise_precision == pytest.approx(tp / (tp + fp))
        assert s.pairwise_recall == pytest.approx(tp / (tp + fn))


def test_bcubed_matches_per_face_definition():
    rng = np.random.default_rng(4)
    truth, labels = rng.integers(0, 5, 30), rng.integers(0, 7, 30)
    p = np.mean([np.mean(truth[labels == labels[i]] == truth[i]) for i in range(30)])
    r = np.mean([np.mean(labels[truth == truth[i]] == labels[i]) for i in range(30)])
    s = cluster_scores(truth, labels)
    assert (s.bcubed_precision, s.bcubed_recall) == (pytest.approx(p), pytest.approx(r))


# -- the graph -----------------------------------------------------------------------------------------


def test_exact_knn_graph_equals_brute_force():
    x, _ = people(40, 5, dim=16)
    fast, oracle = knn_graph(x, 7), knn_brute_force(x, 7)
    assert fast.exact
    np.testing.assert_array_equal(fast.ids, oracle.ids)
    np.testing.assert_allclose(fast.scores, oracle.scores, atol=1e-5)


def test_knn_graph_smaller_than_k():
    x, _ = people(2, 2)
    g = knn_graph(x, 6)
    assert (g.ids[:, 3:] == -1).all() and (g.ids[:, :3] >= 0).all()
    np.testing.assert_array_equal(g.ids, knn_brute_force(x, 6).ids)


def test_approximate_knn_graph_finds_the_same_person_neighbours():
    x, _ = people(1200, 5, noise=0.65, dim=64, seed=1)
    fast, oracle = knn_graph(x, 4, exact=False), knn_brute_force(x, 4)
    assert not fast.exact
    recall = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(fast.ids, oracle.ids)])
    assert recall > 0.95  # measured 0.97
    found = fast.ids >= 0
    np.testing.assert_allclose(
        fast.scores[found], np.sum(x[:, None] * x[np.maximum(fast.ids, 0)], -1)[found], atol=1e-5
    )


def test_cell_join_finds_what_faiss_ivf_search_finds_with_the_same_cells():
    """The cell join's oracle: FAISS's IndexIVFFlat over the same trained cells, at the same nprobe."""
    import faiss

    from faceid.cluster import _graph

    x, _ = people(1000, 5, noise=0.65, dim=64, seed=3)
    fast = knn_graph(x, 8, exact=False, nprobe=4)
    cells = int(min(_graph.IVF_MAX_CELLS, max(64, len(x) // _graph.IVF_FACES_PER_CELL)))
    kmeans = faiss.Clustering(x.shape[1], cells)
    kmeans.seed, kmeans.niter, kmeans.spherical = 1234, 10, True
    quantiser = faiss.IndexFlatIP(x.shape[1])
    kmeans.train(x, quantiser)  # every face is in the sample below 40 per cell
    index = faiss.IndexIVFFlat(quantiser, x.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.add(x)
    index.nprobe = 4
    scores, ids = index.search(x, 9)
    mine = ids == np.arange(len(x))[:, None]
    assert mine.any(axis=1).all()  # each face finds itself first: the rest are its 8 neighbours
    theirs = scores[~mine].reshape(len(x), 8)
    np.testing.assert_allclose(fast.scores, theirs, atol=1e-5)  # the same neighbours (ties aside)
    distinct = np.all(np.diff(theirs, axis=1) < -1e-5, axis=1)
    assert distinct.mean() > 0.9
    np.testing.assert_array_equal(fast.ids[distinct], ids[~mine].reshape(len(x), 8)[distinct])


def test_approximate_knn_graph_is_deterministic():
    x, _ = people(1000, 5, noise=0.65, dim=64, seed=2)
    a, b = knn_graph(x, 8, exact=False), knn_graph(x.copy(), 8, exact=False)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


# -- agglomeration against scipy -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_complete_graph_is_scipy_average_link(seed):
    from scipy.cluster.hierarchy import fcluster, linkage

    x, _ = people(25, 4, noise=0.9, dim=16, seed=seed)
    x = x.astype(np.float64)
    d = 1 - x @ x.T
    iu = np.triu_indices(len(x), 1)
    for t in (0.45, 0.6, 0.75):
        want = fcluster(linkage(np.clip(d[iu], 0, None), method="average"), 1 - t, criterion="distance")
        edges = np.stack(iu, axis=1)
        got = agglomerate(x, edges, t)
        assert partition(got) == partition(want - 1), t


def test_sparse_knn_path_equals_the_brute_force_graph():
    x, _ = people(60, 4, noise=0.8, dim=16, seed=5)
    params = GroupingParams(k=6)
    fast = group_faces(x, params=params)
    oracle = group_faces(x, params=params, neighbours=knn_brute_force(x, 6))
    np.testing.assert_array_equal(fast.labels, oracle.labels)


def test_merging_bar_falls_with_group_sizes():
    assert needed(1, 1, 0.7, 0.6) == pytest.approx(0.7)
    assert needed(16, 1, 0.7, 0.6) == pytest.approx(0.65)
    assert needed(4, 4, 0.7, 0.6) == pytest.approx(0.65)
    assert needed(100, 100, 0.7, 0.7) == pytest.approx(0.7)


# -- grouping and its constraints ---------------------------------------------------------------


def test_groups_clear_identities_and_numbers_them_biggest_first():
    x, who = people(6, 1)
    y, who_y = people(3, 4, seed=9)
    faces = np.concatenate([y[:4], x, y[4:]])  # sizes 4, 4, 4 + six strangers
    g = group_faces(faces, params=GroupingParams(min_group=2))
    assert g.groups == 3 and g.ungrouped == 6
    assert list(g.sizes) == [4, 4, 4]
    assert list(g.members(0)) == [0, 1, 2, 3]  # ties by smallest member
    assert (g.labels[4:10] == -1).all()
    truth = np.concatenate([who_y[:4], 100 + who, who_y[4:]])
    assert cluster_scores(truth, g.labels).bcubed_f == 1.0


def test_deterministic():
    x, _ = people(200, 5, noise=0.8, dim=32, seed=2)
    photos = np.random.default_rng(0).integers(0, 300, len(x))
    a = group_faces(x, photos=photos)
    b = group_faces(x.copy(), photos=photos.copy())
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    assert list(a.sizes) == sorted(a.sizes, reverse=True)
    firsts = [a.members(i)[0] for i in range(a.groups)]
    for i in range(a.groups - 1):
        if a.sizes[i] == a.sizes[i + 1]:
            assert firsts[i] < firsts[i + 1]


def test_cannot_link_pairs_from_photos():
    pairs = cannot_link_pairs([3, -1, 3, 7, 3, 7, -1])
    assert {tuple(p) for p in pairs.tolist()} == {(0, 2), (0, 4), (2, 4), (3, 5)}
    assert cannot_link_pairs([-1, -1]).shape == (0, 2)


@pytest.mark.parametrize("seed", range(5))
def test_faces_of_one_photo_are_never_grouped(seed):
    rng = np.random.default_rng(seed)
    x, who = people(30, 6, noise=0.6, dim=24, seed=seed)
    photos = rng.integers(0, 60, len(x))  # many photos hold two faces of one person
    g = group_faces(x, photos=photos)
    for i, j in cannot_link_pairs(photos):
        assert g.labels[i] < 0 or g.labels[i] != g.labels[j]
    free = group_faces(x)
    assert free.ungrouped <= g.ungrouped  # the constraint did bite
    assert any(free.labels[i] >= 0 and free.labels[i] == free.labels[j] for i, j in cannot_link_pairs(photos))


def test_random_cannot_link_pairs_hold():
    rng = np.random.default_rng(11)
    for _ in range(10):
        x, _ = people(8, 5, noise=0.7, dim=16, seed=int(rng.integers(1000)))
        pairs = rng.integers(0, len(x), (15, 2))
        g = group_faces(x, cannot_link=pairs, params=GroupingParams(threshold=0.5, floor=0.3))
        for i, j in pairs:
            assert i == j or g.labels[i] < 0 or g.labels[i] != g.labels[j]


def test_a_face_moved_out_never_rejoins_the_group():
    x, who = people(5, 6, noise=0.5, dim=16, seed=3)
    before = group_faces(x)
    group = before.members(0)
    face = int(group[2])
    after = group_faces(x, cannot_link=moved_out_pairs([(face, group)]))
    others = [int(f) for f in group if f != face]
    assert after.labels[face] < 0 or after.labels[face] not in set(after.labels[others])
    assert len(set(after.labels[others])) == 1  # the rest still one group


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unit rows"):
        group_faces(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        group_faces(np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="photos"):
        group_faces(people(2, 2)[0], photos=[1])
    with pytest.raises(ValueError, match="cannot_link"):
        group_faces(people(2, 2)[0], cannot_link=[[0, 9]])
    with pytest.raises(ValueError, match="floor"):
        GroupingParams(threshold=0.5, floor=0.6)
    assert group_faces(np.zeros((0, 8), np.float32)).groups == 0


# -- incremental attach ----------------------------------------------------------------------------


def attach_oracle(members, labels, new, params, photos_old=None, photos_new=None, forbidden=()):
    """Each new face's best allowed group by brute force over member faces (no centroids, no FAISS)."""
    groups = sorted(set(labels[labels >= 0].tolist()))
    out = []
    for i, f in enumerate(new):
        scored = []
        for g in groups:
            if (i, g) in set(map(tuple, forbidden)):
                continue
            same_photo = photos_new is not None and photos_old is not None and photos_new[i] >= 0
            if same_photo and photos_new[i] in set(photos_old[labels == g].tolist()):
                continue
            scored.append((float(np.mean(members[labels == g].astype(np.float64) @ f)), g))
        scored.sort(key=lambda t: (-t[0], t[1]))
        if not scored:
            out.append(-1)
            continue
        best, g = scored[0]
        runner = scored[1][0] if len(scored) > 1 else -np.inf
        bar = float(needed(1, np.sum(labels == g), params.threshold, params.floor))
        out.append(g if best >= bar and best - runner >= params.margin else -1)
    return np.array(out)


def test_attach_equals_the_brute_force_oracle():
    x, who = people(12, 7, noise=0.55, dim=16, seed=8)
    old, new = x[np.arange(len(x)) % 7 != 0], x[np.arange(len(x)) % 7 == 0]
    g = group_faces(old)
    params = GroupingParams()
    rng = np.random.default_rng(0)
    photos_old = rng.integers(0, 40, len(old))
    photos_new = rng.integers(0, 40, len(new))
    photos_new[::2] = -1
    forbidden = [(0, int(g.labels[0])), (3, 1)]
    centroids = GroupCentroids.from_labels(old, g.labels, photos_old)
    got = attach(new, centroids, photos=None, forbidden=np.array(forbidden), params=params)
    np.testing.assert_array_equal(got.groups, attach_oracle(old, g.labels, new, params, forbidden=forbidden))
    got = attach(new, centroids, photos=photos_new, params=params)
    want = attach_oracle(old, g.labels, new, params, photos_old, photos_new)
    # the oracle does not resolve two new faces of one photo choosing one group: none here
    np.testing.assert_array_equal(got.groups, want)
    assert got.attached > len(new) // 2


def test_attach_places_clear_faces_and_leaves_strangers_and_look_alikes():
    x, who = people(4, 6, noise=0.4, dim=32, seed=4)
    g = group_faces(x)
    assert g.groups == 4
    centroids = GroupCentroids.from_labels(x, g.labels)
    same, _ = people(4, 1, noise=0.4, dim=32, seed=4)  # same centres, fresh noise: seed fixes centres first
    stranger, _ = people(1, 1, dim=32, seed=99)
    between = centroids.sums[0] / centroids.sizes[0] + centroids.sums[1] / centroids.sizes[1]
    between = (between / np.linalg.norm(between)).astype(np.float32)[None]
    got = attach(np.concatenate([same, stranger, between]), centroids)
    label_of = {int(who[i]): int(g.labels[i]) for i in range(len(x))}
    assert list(got.groups[:4]) == [label_of[p] for p in range(4)]
    assert got.groups[4] == -1  # a stranger
    assert got.groups[5] == -1  # as close to two groups: no margin
    assert got.best[5] in (0, 1) and got.scores[5] - got.runner_up[5] < 0.05


def test_attach_respects_photos_and_two_new_faces_of_one_photo():
    x, _ = people(2, 5, noise=0.3, dim=16, seed=6)
    g = group_faces(x)
    photos_old = np.arange(len(x))
    centroids = GroupCentroids.from_labels(x, g.labels, photos_old)
    new = np.concatenate([x[:1], x[:1], x[:1]])
    got = attach(new, centroids, photos=[0, 50, 50])  # photo 0 holds a member already
    group = int(g.labels[0])
    assert got.groups[0] != group
    assert sorted(got.groups[1:].tolist()) == sorted([group, -1]) or list(got.groups[1:]) == [group, -1]
    assert got.groups[1] == group and got.groups[2] == -1  # equal scores: the first keeps it
    updated = centroids.with_attached(new, got, photos=[0, 50, 50])
    assert updated.sizes[group] == centroids.sizes[group] + 1
    again = attach(x[:1], updated, photos=[50])
    assert again.groups[0] != group


def test_attach_to_nothing():
    x, _ = people(2, 2)
    empty = GroupCentroids(np.zeros((0, x.shape[1])), np.zeros(0, np.int64))
    got = attach(x, empty)
    assert isinstance(got, Attachment) and (got.groups == -1).all()


def test_keep_for_grouping():
    boxes = np.array([[0, 0, 80, 100], [0, 0, 30, 100], [0, 0, 80, 100]])
    keep = keep_for_grouping(boxes, [0.99, 0.99, 0.5], min_size=40, min_confidence=0.9)
    assert keep.tolist() == [True, False, False]


# -- real photos -------------------------------------------------------------------------------------


@pytest.mark.model
def test_groups_the_sample_photos(real_pipeline):
    from faceid.bench import SAMPLES
    from faceid.images import load_image

    paths = sorted(SAMPLES.glob("**/*.jpg"))
    rows, photos, names = [], [], []
    for p, path in enumerate(paths):
        image = load_image(path)
        faces = real_pipeline.faces(image)
        for f in faces:
            rows.append(f.embedding)
            photos.append(p)
            names.append(path.stem)
    x = np.array(rows, dtype=np.float32)
    g = group_faces(x, photos=photos)
    for i, j in itertools.combinations(range(len(x)), 2):
        if photos[i] == photos[j]:
            assert g.labels[i] < 0 or g.labels[i] != g.labels[j]
    # the two Obama photos group together, and nothing else joins them
    obama = [i for i, n in enumerate(names) if n == "obama"]
    assert len(obama) == 1
    together = [i for i in range(len(x)) if g.labels[i] >= 0 and g.labels[i] == g.labels[obama[0]]]
    assert len(together) == 2, (names, g.labels)


@pytest.mark.model
@pytest.mark.shared
def test_lfw_subset_is_grouped_purely(data, real_pipeline):
    from faceid.cache import EmbeddingCache
    from faceid.eval.grouping import evaluate_grouping, lfw_faces
    from faceid.eval.lfw import lfw_people

    everyone = lfw_people(data / "lfw")
    chosen = sorted(everyone)[::12]  # about 480 people, 1,100 faces
    faces = lfw_faces(data / "lfw", real_pipeline, cache=EmbeddingCache(), people=chosen)
    (report,) = evaluate_grouping(faces, baselines=())
    s = report.scores
    assert s.bcubed_precision >= 0.98 and s.bcubed_f >= 0.95, s


def test_cli_eval_cluster_refuses_a_folder_that_is_not_lfw(tmp_path):
    from conftest import cli

    result = cli("eval", "cluster", "--data", tmp_path / "nowhere", "--quiet")
    assert result.exit_code == 1
    assert "not an LFW folder" in result.output and "Traceback" not in result.output


def test_group_sums_in_blocks_equal_a_plain_sum(monkeypatch):
    import faceid.cluster as fc

    monkeypatch.setattr(fc, "SUM_BLOCK", 3)
    x, _ = people(10, 3, dim=8)
    labels = np.random.default_rng(1).integers(-1, 9, len(x))
    want = np.zeros((9, 8))
    np.add.at(want, labels[labels >= 0], x[labels >= 0].astype(np.float64))
    np.testing.assert_allclose(fc._group_sums(x, labels, 9), want, atol=1e-12)


def test_bench_cluster_part(tmp_path):
    from faceid import bench

    figures = list(bench.run(["cluster"], sizes=[2000], tiny=True, workdir=tmp_path))
    group, attached = figures
    assert group["figure"] == "cluster_group" and group["faces"] == 2000 and group["graph_exact"]
    assert group["bcubed_precision"] == 1.0 and group["graph_recall_strong"] == 1.0 and "load" in group
    assert attached["figure"] == "cluster_attach" and attached["new_faces"] == 100
    assert attached["known_attached_elsewhere"] == 0 and attached["strangers_attached"] == 0
    assert attached["known_attached"] > 40
