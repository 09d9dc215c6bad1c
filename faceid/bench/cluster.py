"""``faceid bench --only cluster``: grouping unknown faces and attaching new ones at each size.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

from faceid.bench import _common as common


def figures(sizes: Sequence[int], new: int) -> Iterator[dict]:
    from faceid.cluster import GroupCentroids, GroupingParams, attach, cluster_scores, group_faces, knn_graph

    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = common.synthetic_faces(people, per, seed=5)
        truth = np.arange(len(faces)) // per
        rng = np.random.default_rng(6)
        photos = rng.permutation(len(faces)) // 3  # three faces per photo, of random identities
        base = common.rss()
        common.peak_reset()
        start = time.perf_counter()
        graph = knn_graph(faces, 32)
        graph_s = time.perf_counter() - start
        # recall of the neighbours that matter: those similar enough to be grouped with; the
        # grouping uses an edge found from either end, so both counts are given
        sample = rng.choice(len(faces), min(len(faces), 500), replace=False)
        floor = GroupingParams().floor
        strong = [np.setdiff1d(np.flatnonzero(row >= floor), [i]) for row, i in zip(faces[sample] @ faces.T, sample)]
        one, either = [], []
        for i, s in zip(sample, strong):
            if len(s):
                mine = np.isin(s, graph.ids[i])
                one.append(float(np.mean(mine)))
                either.append(float(np.mean(mine | np.any(graph.ids[s] == i, axis=1))))
        recall = float(np.mean(one)) if one else 1.0
        recall_either = float(np.mean(either)) if either else 1.0
        start = time.perf_counter()
        grouping = group_faces(faces, photos=photos, neighbours=graph)
        group_s = time.perf_counter() - start
        peak = common.peak()
        del graph
        scores = cluster_scores(truth, grouping.labels)
        yield common.figure(
            "cluster_group",
            data="clustered synthetic, 5 faces per identity, 3 faces per photo",
            faces=len(faces),
            graph_s=round(graph_s, 1),
            graph_exact=bool(grouping.exact_graph),
            graph_recall_strong=round(recall, 4),
            graph_recall_strong_either_end=round(recall_either, 4),
            agglomerate_s=round(group_s, 1),
            total_s=round(graph_s + group_s, 1),
            peak_rss_gib=round(peak / 2**30, 2) if peak else None,
            rss_before_gib=round(base / 2**30, 2),
            groups=grouping.groups,
            ungrouped=grouping.ungrouped,
            bcubed_precision=round(scores.bcubed_precision, 4),
            bcubed_recall=round(scores.bcubed_recall, 4),
            threads=common.threads(),
        )
        start = time.perf_counter()
        centroids = GroupCentroids.from_labels(faces, grouping.labels, photos)
        centroids_s = time.perf_counter() - start
        half = new // 2
        who = rng.integers(0, people, half)
        arrivals = np.concatenate(
            [common.noisy(centres[who], rng), common.noisy(common.synthetic_faces(new - half, 1, seed=7)[0], rng)]
        )
        start = time.perf_counter()
        placed = attach(arrivals, centroids, photos=np.arange(len(arrivals)) + photos.max() + 1)
        attach_s = time.perf_counter() - start
        # wrong: a known identity's face joined a group holding none of that identity's faces
        grouped = grouping.labels >= 0
        span = max(1, grouping.groups)
        pairs = np.unique(truth[grouped] * span + grouping.labels[grouped])
        joined = placed.groups[:half]
        wrong_known = int(np.sum((joined >= 0) & ~np.isin(who * span + joined, pairs)))
        yield common.figure(
            "cluster_attach",
            faces=len(faces),
            new_faces=len(arrivals),
            attach_s=round(attach_s, 2),
            centroids_s=round(centroids_s, 2),
            known_attached=int(np.sum(joined >= 0)),
            known_attached_elsewhere=wrong_known,
            strangers_attached=int(np.sum(placed.groups[half:] >= 0)),
            threads=common.threads(),
        )
        del faces, grouping, centroids
