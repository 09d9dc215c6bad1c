"""``faceid bench --only unknown``: the review loop of unknown faces in a real gallery at each size.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from faceid.bench import _common as common

REGROUP_UP_TO = 200_000
#: How many shuffled batches the "unknown_batches" figure keeps the faces in (the issue's 4).
BATCHES = 4


def batched_scores(folder: Path, faces: np.ndarray, per: int, key, *, batches: int) -> dict:
    """Keep ``faces`` ``(N, D)`` (identity ``i // per``) in ``batches`` shuffled batches, grouping
    after each as ``identify --remember`` does, in a new gallery at ``folder``; BCubed scores of
    the groups it ends with, the seconds of each grouping step and the faces left in no group; then
    the same after settling the faces left in no group (``update_groups(leftovers=True)``)."""
    import shutil

    from faceid.cluster import cluster_scores
    from faceid.gallery import Gallery, NewFace

    order = np.random.default_rng(10).permutation(len(faces))
    steps = []
    with Gallery(folder) as g:
        for part in np.array_split(order, batches):
            for first in range(0, len(part), 1000):
                chunk = part[first : first + 1000].tolist()
                kept = [
                    NewFace(faces[i], f"{i:064x}", (0, 0, 80, 80), 0.99, f"/photos/{i}.jpg", thumbnail=b"\xff" * 4000)
                    for i in chunk
                ]
                g.unknown.keep(kept, embedding_key=key, group=False)
            start = time.perf_counter()
            g.unknown.update_groups()
            steps.append(round(time.perf_counter() - start, 2))
        truth = np.arange(len(faces)) // per

        def scores():
            labels = np.full(len(faces), -1, np.int64)
            for number, grp in enumerate(g.unknown.groups()):  # a face's photo name is its index in ``faces``
                labels[[int(f.image_sha256, 16) for f in grp.faces]] = number
            return cluster_scores(truth, labels), len(g.unknown.ungrouped())

        s, ungrouped = scores()
        # the faces left in no group wait until they are few or grew by a quarter (UnknownFaces.update_groups):
        # settling them now is what a later run, or `update_groups(leftovers=True)`, does
        start = time.perf_counter()
        g.unknown.update_groups(leftovers=True)
        settle_s = time.perf_counter() - start
        settled, settled_ungrouped = scores()
    shutil.rmtree(folder)
    return {
        "f": s.bcubed_f,
        "precision": s.bcubed_precision,
        "recall": s.bcubed_recall,
        "steps_s": steps,
        "ungrouped": ungrouped,
        "settled_f": settled.bcubed_f,
        "settled_precision": settled.bcubed_precision,
        "settled_s": round(settle_s, 2),
        "settled_ungrouped": settled_ungrouped,
    }


def figures(work: Path, sizes: Sequence[int], new: int) -> Iterator[dict]:
    import shutil

    from faceid.cluster import cluster_scores
    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import Gallery, NewFace

    key = EmbeddingKey.for_model()
    assert key.dimension == common.DIMENSION
    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = common.synthetic_faces(people, per, seed=8)
        rng = np.random.default_rng(9)
        who = rng.integers(0, people, new)
        arrivals = common.noisy(centres[who], rng)
        more = common.noisy(centres[rng.integers(0, people, new)], rng)

        def new_faces(vectors: np.ndarray, first: int) -> list[NewFace]:
            return [
                NewFace(
                    v, f"{first + i:064x}", (0, 0, 80, 80), 0.99, f"/photos/{first + i}.jpg", thumbnail=b"\xff" * 4000
                )
                for i, v in enumerate(vectors)
            ]

        folder = work / f"unknown-{n}"
        with Gallery(folder) as g:
            start = time.perf_counter()
            for first in range(0, len(faces), 1000):
                g.unknown.keep(new_faces(faces[first : first + 1000], first), embedding_key=key, group=False)
            keep_s = time.perf_counter() - start
            common.peak_reset()
            start = time.perf_counter()
            first_grouping = g.unknown.update_groups()
            group_s = time.perf_counter() - start
            group_peak = common.peak()
            labels = np.full(len(faces), -1, np.int64)
            for number, grp in enumerate(g.unknown.groups()):
                labels[[f.id - 1 for f in grp.faces]] = number
            scores = cluster_scores(np.arange(len(faces)) // per, labels)
            attach_s = []
            attached = []
            for round_, part in enumerate((arrivals, more)):  # two rounds: the second also reads cached sums
                before = g.unknown.count() - len(g.unknown.ungrouped())
                start = time.perf_counter()
                kept = g.unknown.keep(new_faces(part, len(faces) + round_ * new), embedding_key=key)
                attach_s.append(time.perf_counter() - start)
                attached.append(g.unknown.count() - len(g.unknown.ungrouped()) - before)
            biggest = g.unknown.groups()[0]
            start = time.perf_counter()
            g.unknown.name(biggest.id, "someone")
            named_s = time.perf_counter() - start
            g.search(arrivals[:1], 10)
            named_search_s = time.perf_counter() - start
            regroup_s = None
            if n <= REGROUP_UP_TO:  # the same work as the first grouping (every face read and grouped)
                start = time.perf_counter()
                g.unknown.regroup()
                regroup_s = round(time.perf_counter() - start, 2)
        shutil.rmtree(folder)
        batched = batched_scores(work / f"unknown-batched-{n}", faces, per, key, batches=BATCHES)
        yield common.figure(
            "unknown_loop",
            data="clustered synthetic, 5 faces per identity, one face per photo",
            faces=len(faces),
            keep_s=round(keep_s, 2),
            first_grouping_s=round(group_s, 2),
            first_grouping_peak_rss_gib=round(group_peak / 2**30, 2) if group_peak else None,
            groups=first_grouping.new_groups,
            ungrouped=first_grouping.ungrouped,
            bcubed_precision=round(scores.bcubed_precision, 4),
            bcubed_recall=round(scores.bcubed_recall, 4),
            keep_and_attach_new_s=round(attach_s[0], 2),
            new_faces=new,
            attached=attached[0],
            keep_and_attach_again_s=round(attach_s[1], 2),
            again_new_faces=kept.added,
            again_attached=attached[1],
            name_biggest_group_s=round(named_s, 3),
            name_and_first_search_s=round(named_search_s, 3),
            regroup_s=regroup_s,
            threads=common.threads(),
        )
        yield common.figure(
            "unknown_batches",
            data="the same faces, kept in shuffled batches, grouped after each (as identify --remember runs)",
            faces=len(faces),
            batches=BATCHES,
            one_run_bcubed_f=round(scores.bcubed_f, 4),
            batched_bcubed_f=round(batched["f"], 4),
            batched_bcubed_precision=round(batched["precision"], 4),
            batched_bcubed_recall=round(batched["recall"], 4),
            f_difference=round(batched["f"] - scores.bcubed_f, 4),
            batched_group_steps_s=batched["steps_s"],
            batched_ungrouped=batched["ungrouped"],
            leftovers_settled_bcubed_f=round(batched["settled_f"], 4),
            leftovers_settled_bcubed_precision=round(batched["settled_precision"], 4),
            leftovers_settled_f_difference=round(batched["settled_f"] - scores.bcubed_f, 4),
            leftovers_settled_s=batched["settled_s"],
            leftovers_settled_ungrouped=batched["settled_ungrouped"],
            threads=common.threads(),
        )
        del faces
