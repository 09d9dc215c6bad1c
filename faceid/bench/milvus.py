"""``faceid bench --only milvus``: the index kinds and search parameters of a gallery in Milvus.

Measured as the FAISS index is (``faceid bench --only gallery``), on the same clustered synthetic
identities (:func:`faceid.bench.synthetic_faces`: five noisy faces each, same-person cosine about
0.7), in a milvus-lite folder: for each index kind and search parameter, recall@1 against exact
search (numpy, brute force) for queries of enrolled people ("known") and of strangers
("unknown"), the latency of one query alone (median and p95 over ``alone`` queries) and per
query in one batch of ``queries``, and the time to insert the faces and to build the index. The
faces go in once per size; each index kind is built on them in turn (release, drop, create, load).

milvus-lite 3.2.2 builds its indexes with FAISS (FLAT, IVF_FLAT, HNSW; IVF_PQ is not built), per
segment of at most 100,000 rows, and answers through a gRPC server in this process: its figures
are those of this engine, not of a Milvus cluster.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KINDS", "MAX_FACES", "milvus_figures"]

#: the largest gallery measured (inserting through gRPC in one process takes minutes beyond it)
MAX_FACES = 100_000

#: ``(index_type, build params, [search params...])``; IVF's ``nlist`` is set from the size
KINDS: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("FLAT", {}, [{}]),
    ("IVF_FLAT", {"nlist": None}, [{"nprobe": 8}, {"nprobe": 32}, {"nprobe": 128}]),
    ("HNSW", {"M": 16, "efConstruction": 200}, [{"ef": 32}, {"ef": 64}, {"ef": 128}]),
]


def milvus_figures(
    sizes: Sequence[int],
    *,
    queries: int,
    alone: int,
    synthetic_faces: Callable[..., tuple[np.ndarray, np.ndarray]],
    noisy: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    figure: Callable[..., dict[str, Any]],
    work: Path | None = None,
    kinds: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """One dict per (size, index kind, search parameters); see the module docstring.

    ``synthetic_faces``, ``noisy`` and ``figure`` are :mod:`faceid.bench`'s (handed in, so the two
    modules do not import each other): the identities, the queries, and one figure with the load.
    """
    from faceid.gallery.milvus import require_milvus

    require_milvus("milvus-lite:")
    for name in ("pymilvus", "milvus_lite"):  # their tracebacks of failed calls: only critical ones here
        logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.CRITICAL))
    # milvus-lite's gRPC server logs each call pymilvus makes that it does not implement
    # (AllocTimestamp, on index changes) with a traceback; the calls fall back and succeed
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    from pymilvus import DataType, MilvusClient

    per = 5
    with tempfile.TemporaryDirectory(prefix="faceid-milvus-bench-", dir=work) as tmp:
        for n in [s for s in sizes if s <= MAX_FACES] or [min(min(sizes), MAX_FACES)]:
            people = max(1, n // per)
            centres, faces = synthetic_faces(people, per)
            d = faces.shape[1]
            rng = np.random.default_rng(1)
            known = noisy(centres[rng.integers(0, people, queries)], rng)
            strangers = noisy(synthetic_faces(queries, 1, seed=2)[0], rng)
            exact = {label: _exact_top1(faces, q) for label, q in (("known", known), ("unknown", strangers))}
            folder = Path(tmp) / f"bench-{n}.db"
            client = MilvusClient(str(folder))
            try:
                schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.INT64, is_primary=True)
                schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=d)
                client.create_collection("faces", schema=schema, consistency_level="Strong")
                start = time.perf_counter()
                for low in range(0, len(faces), 5000):
                    block = faces[low : low + 5000]
                    client.insert("faces", [{"id": low + i, "embedding": v} for i, v in enumerate(block.tolist())])
                client.flush("faces")
                insert_s = time.perf_counter() - start
                for kind, build, searches in KINDS:
                    if kinds is not None and kind not in kinds:
                        continue
                    params = {k: (v if v is not None else _nlist(len(faces))) for k, v in build.items()}
                    client.release_collection("faces")
                    if client.list_indexes("faces"):
                        client.drop_index("faces", "embedding")
                    index = client.prepare_index_params()
                    index.add_index(field_name="embedding", index_type=kind, metric_type="IP", params=params)
                    start = time.perf_counter()
                    client.create_index("faces", index)
                    client.load_collection("faces")
                    index_s = time.perf_counter() - start
                    for search in searches:
                        measured = _measure(client, known, strangers, exact, search, alone)
                        yield figure(
                            "milvus_index",
                            data="clustered synthetic, 5 faces per identity",
                            engine="milvus-lite (embedded, gRPC in this process)",
                            faces=len(faces),
                            index_type=kind,
                            build_params=params,
                            search_params=search,
                            insert_s=round(insert_s, 2),
                            index_s=round(index_s, 2),
                            **measured,
                        )
            finally:
                client.close()
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(folder))


def _nlist(n: int) -> int:
    """IVF cells: about 4 sqrt(n), as Milvus's guide suggests (400 at 10,000 faces, 1,265 at 100,000)."""
    return max(1, int(4 * np.sqrt(n)))


def _exact_top1(faces: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(best score (q,), best face id (q,))`` by brute force (ids are row numbers)."""
    best = np.empty(len(queries), np.int64)
    scores = np.empty(len(queries), np.float32)
    for low in range(0, len(queries), 256):
        sims = queries[low : low + 256] @ faces.T
        best[low : low + 256] = np.argmax(sims, axis=1)
        scores[low : low + 256] = sims[np.arange(len(sims)), best[low : low + 256]]
    return scores, best


def _search(client: Any, rows: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    hits = client.search(
        "faces",
        data=rows.tolist(),
        limit=10,
        anns_field="embedding",
        search_params={"metric_type": "IP", "params": params},
    )
    ids = np.array([[int(h["id"]) for h in row][:1] or [-1] for row in hits], np.int64)[:, 0]
    scores = np.array([[float(h["distance"]) for h in row][:1] or [-np.inf] for row in hits], np.float32)[:, 0]
    return scores, ids


def _measure(
    client: Any,
    known: np.ndarray,
    strangers: np.ndarray,
    exact: dict[str, tuple[np.ndarray, np.ndarray]],
    params: dict[str, Any],
    alone: int,
) -> dict[str, Any]:
    _search(client, known[:1], params)  # warm
    singles = []
    for q in known[:alone]:
        t = time.perf_counter()
        _search(client, q[None], params)
        singles.append(time.perf_counter() - t)
    start = time.perf_counter()
    found = {"known": _search(client, known, params)}
    batch_s = time.perf_counter() - start
    found["unknown"] = _search(client, strangers, params)
    figure: dict[str, Any] = {
        "search_alone_ms_median": round(statistics.median(singles) * 1000, 3),
        "search_alone_ms_p95": round(float(np.percentile(singles, 95)) * 1000, 3),
        "search_batch_ms_per_query": round(batch_s / len(known) * 1000, 4),
        "batch": len(known),
    }
    for label in ("known", "unknown"):
        want_scores, want_ids = exact[label]
        scores, ids = found[label]
        figure[f"recall_at_1_{label}"] = round(float(np.mean(ids == want_ids)), 4)
        figure[f"top1_similarity_gap_{label}_max"] = round(float(np.max(want_scores - scores)), 4)
    return figure
