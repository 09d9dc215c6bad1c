"""``faceid bench --only gallery``: the index and the whole gallery at each size.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from faceid.bench import _common as common


def figures(work: Path, sizes: Sequence[int], queries: int, alone: int) -> Iterator[dict]:
    import faiss

    from faceid import index as gi

    per = 5
    for n in sizes:
        people = max(1, n // per)
        centres, faces = common.synthetic_faces(people, per)
        ids = np.arange(1, len(faces) + 1, dtype=np.int64)
        rng = np.random.default_rng(1)
        known = common.noisy(centres[rng.integers(0, people, queries)], rng)
        strangers = common.noisy(common.synthetic_faces(queries, 1, seed=2)[0], rng)
        exact_results = {}
        for kind in (gi.EXACT, gi.APPROXIMATE):
            spec = gi.IndexSpec(gi.EXACT) if kind == gi.EXACT else gi.choose(max(n, gi.EXACT_LIMIT), common.DIMENSION)
            before = common.rss()
            start = time.perf_counter()
            index = gi.build(ids, faces, common.DIMENSION, spec)
            build_s = time.perf_counter() - start
            grown = common.rss() - before
            size = faiss.serialize_index(index).nbytes
            singles = []
            for q in known[:alone]:
                t = time.perf_counter()
                gi.search(index, q[None], 10)
                singles.append(time.perf_counter() - t)
            start = time.perf_counter()
            k_scores, k_ids = gi.search(index, known, 10)
            batch_s = time.perf_counter() - start
            u_scores, u_ids = gi.search(index, strangers, 10)
            figure = {
                "faces": len(faces),
                "index": kind,
                "spec": spec.to_json(),
                "enrol_s": round(build_s, 2),
                "bytes_per_face_file": round(size / len(faces), 1),
                "bytes_per_face_memory": round(grown / len(faces), 1),
                "search_alone_ms_median": round(statistics.median(singles) * 1000, 3),
                "search_alone_ms_p95": round(float(np.percentile(singles, 95)) * 1000, 3),
                "search_batch_ms_per_query": round(batch_s / len(known) * 1000, 4),
                "batch": len(known),
            }
            if kind == gi.EXACT:
                exact_results = {"known": (k_scores, k_ids), "unknown": (u_scores, u_ids)}
            else:
                for label, (scores, found) in (("known", (k_scores, k_ids)), ("unknown", (u_scores, u_ids))):
                    want_scores, want_ids = exact_results[label]
                    figure[f"recall_at_1_{label}"] = round(float(np.mean(found[:, 0] == want_ids[:, 0])), 4)
                    figure[f"top1_similarity_gap_{label}_max"] = round(
                        float(np.max(want_scores[:, 0] - scores[:, 0])), 4
                    )
            del index
            yield common.figure("gallery_index", data="clustered synthetic, 5 faces per identity", **figure)
        del faces
    yield from _gallery_sqlite(work, min(sizes), per_transaction=5)
    if max(sizes) > min(sizes):
        yield from _gallery_sqlite(work, max(sizes), per_transaction=1000)


def _gallery_sqlite(work: Path, n: int, per_transaction: int) -> Iterator[dict]:
    """The whole gallery (SQLite + index file): enrolment in transactions of ``per_transaction``
    faces (one person each), the first search (reading the embeddings, building the index and
    writing its file), searches with the 64 candidates ``identify`` asks for; then, the index in
    place: enrolling one person of five faces and searching (the time to the first result),
    removing one person (the oldest, and two just enrolled) until the removal is in effect
    (committed, out of the index and scrubbed from its files), then apart the rewrite of
    gallery.db (VACUUM) that secure deletion needs and ``faceid serve`` runs in the background;
    a new process's first search (from the index file memory-mapped, some changes behind, while it
    loads and is checked in the background: :mod:`faceid.gallery.firstsearch`) and the time until
    that load is done; and a full rebuild."""
    import shutil

    from faceid.embedding_key import EmbeddingKey
    from faceid.gallery import Gallery, NewFace

    key = EmbeddingKey.for_model()
    assert key.dimension == common.DIMENSION
    per = 5
    centres, faces = common.synthetic_faces(max(1, n // per), per, seed=3)
    path = work / f"sqlite-gallery-{n}"
    rng = np.random.default_rng(4)
    queries = common.noisy(centres[rng.integers(0, len(centres), 200)], rng)
    newcomers = common.synthetic_faces(5, per, seed=5)[1]
    with Gallery(path) as gallery:
        start = time.perf_counter()
        for first in range(0, len(faces), per_transaction):
            rows = faces[first : first + per_transaction]
            gallery.add_faces(
                f"person {first}",
                [NewFace(v, f"{first + j:064d}", (0, 0, 100, 100), 0.99) for j, v in enumerate(rows)],
                embedding_key=key,
            )
        enrol_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.search(queries[:1], 64)
        first_s = time.perf_counter() - start
        alone = []
        for q in queries[:50]:
            start = time.perf_counter()
            gallery.search(q[None], 64)
            alone.append(time.perf_counter() - start)
        start = time.perf_counter()
        gallery.search(queries, 64)
        batch_s = time.perf_counter() - start
        kind = gallery.index_spec.kind
        enrol_search = []
        for i in range(5):
            rows = newcomers[i * per : (i + 1) * per]
            start = time.perf_counter()
            gallery.add_faces(
                f"newcomer {i}",
                [NewFace(v, f"n{i}{j:062d}", (0, 0, 100, 100), 0.99) for j, v in enumerate(rows)],
                embedding_key=key,
            )
            _, found = gallery.search(rows[:1], 64)
            enrol_search.append(time.perf_counter() - start)
            assert gallery.face_owners(found[:, :1]).get(int(found[0, 0])) == f"newcomer {i}"
        remove_s, compact_s = [], []
        for name in ("person 0", "newcomer 0", "newcomer 1"):
            start = time.perf_counter()
            gallery.remove(name, compact=False)  # in effect: committed, out of the index and its files
            remove_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            gallery.compact()  # then gallery.db's rewrite (VACUUM), as faceid serve runs it in the background
            compact_s.append(time.perf_counter() - start)
        gallery.search(queries[:1], 64)
    start = time.perf_counter()
    with Gallery(path) as gallery:
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.search(queries[:1], 64)
        reopen_s = time.perf_counter() - start
        _ = gallery.index_spec  # waits for the index file loaded and checked against the database
        checked_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.rebuild_index()
        rebuild_s = time.perf_counter() - start
    sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    db = sizes.get("gallery.db", 0)
    index_file = sum(v for k, v in sizes.items() if k.startswith("index-"))
    shutil.rmtree(path, ignore_errors=True)
    yield common.figure(
        "gallery_sqlite",
        faces=len(faces),
        faces_per_transaction=per_transaction,
        enrol_s=round(enrol_s, 2),
        faces_per_s=round(len(faces) / enrol_s, 1),
        first_search_s=round(first_s, 3),
        search_alone_ms_median_k64=round(statistics.median(alone) * 1000, 3),
        search_batch_ms_per_query_k64=round(batch_s / len(queries) * 1000, 4),
        enrol_5_and_search_ms=[round(t * 1000, 1) for t in enrol_search],
        remove_person_s=round(remove_s[0], 3),
        remove_person_s_oldest_new_new=[round(t, 3) for t in remove_s],
        then_rewrite_s=[round(t, 3) for t in compact_s],
        new_process_open_s=round(open_s, 3),
        new_process_first_search_s=round(reopen_s, 3),
        new_process_index_checked_s=round(checked_s, 3),
        files="in the page cache (written just before)",
        full_rebuild_s=round(rebuild_s, 2),
        index=kind,
        db_bytes_per_face=round(db / len(faces), 1),
        index_file_bytes_per_face=round(index_file / len(faces), 1),
    )
