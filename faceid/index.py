"""The gallery's search index, chosen by size: exact below :data:`EXACT_LIMIT` faces, approximate above.

Both take ``(n, D)`` float32 unit rows, search by inner product (cosine similarity, higher is
closer), use face ids as ids, and return ``-1`` for "no result".

- ``"exact"``: ``IndexIDMap(IndexFlatIP)``: every query is compared with every face. One query
  costs time in proportion to the gallery (tens of milliseconds at a million faces).
- ``"approximate"``: ``IndexIDMap(IndexRefineFlat(IndexPQFastScan))``: every face is also kept
  as a 16-byte product-quantised code (32 sub-vectors of 4 bits) that SIMD "fast scan" compares
  with a query (one query over a million faces: 0.9 ms, against 44 ms for the float vectors);
  the ``k * k_factor`` best codes are then re-scored exactly from the float vectors. So every
  similarity it returns is exact, and it can only miss a face whose code scored outside that
  short list.

Why not IVF or HNSW: on clustered synthetic faces (identities with several noisy faces each,
same-person cosine about 0.7, the spread of FaceNet's), an IVF index with 4,096 cells over a
million faces found the exact nearest face for 74% of queries at nprobe 32 (83% at 64), and
HNSW (M 16, efSearch 128) over 200,000 for 92%: in 128 dimensions a face and its nearest
neighbours often fall in different cells or graph neighbourhoods. The fast-scan + re-rank index
found it for 100% at a million faces, in under a millisecond per query in a batch, trains in
seconds and costs about 540 bytes per face (``faceid bench``, docs/speed.md).

The gallery builds an index once (about 2.4 s for a million faces, training included) and then
changes it in place: :func:`add` appends faces (the approximate index encodes them with the
quantiser it was trained with), :func:`remove` moves the last faces into the removed ones'
places, so that either costs time in proportion to the faces changed, not to the gallery.
:func:`erase` overwrites removed faces in an index file, so that no file keeps their vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "APPROXIMATE",
    "ERASED",
    "EXACT",
    "EXACT_LIMIT",
    "IndexSpec",
    "add",
    "build",
    "choose",
    "contents",
    "erase",
    "file_ids",
    "mapped",
    "ids",
    "remove",
    "reserve",
    "search",
    "spec_of",
    "view",
]

log = logging.getLogger(__name__)

EXACT, APPROXIMATE = "exact", "approximate"

#: A gallery switches to the approximate index when it reaches this many faces, and back to the
#: exact one when it shrinks below half of it (so that it does not flip at the boundary).
#: Measured here (``faceid bench --only gallery``, 2 cores, load 4-5): one exact query costs
#: 0.28 ms at 10k faces, 0.53 ms at 20k, 1.4 ms at 50k, 3.0 ms at 100k, 9.9 ms at 200k, growing
#: with the gallery; the approximate one 0.03-0.24 ms over the same sizes. Up to 50k faces exact
#: search stays near a millisecond, about 1% of identifying a photo (detection and embedding
#: take 100+ ms), so it is kept there: it never misses. Above, it would soon dominate.
EXACT_LIMIT = 50_000
#: Product quantiser of the approximate index: dimensions per sub-vector, bits per sub-vector
#: (128-d FaceNet vectors become 32 sub-vectors of 4 bits: 16 bytes).
PQ_DSUB, PQ_BITS = 4, 4
#: The approximate index re-scores ``k * K_FACTOR`` candidates exactly. At a million faces,
#: factors 2 to 16 all found the exact nearest face for every query of an enrolled person; for
#: strangers (whose nearest face is one of many near-equal ones) 8 found it for 85% of queries
#: at k 64, against 76% for 4, at the same cost within measurement noise.
K_FACTOR = 8
#: The id of a face erased from an index file (:func:`erase`).
ERASED = -1
#: Faces sampled to train the product quantiser.
TRAIN_SAMPLE = 65_536
#: Queries up to this many are searched on one thread: starting a second one costs more than it
#: saves, and far more when the other core is busy.
SINGLE_THREAD_QUERIES = 4


@dataclass(frozen=True)
class IndexSpec:
    """Which index: ``kind`` ``"exact"`` or ``"approximate"``, and the latter's code size and re-rank factor."""

    kind: str
    pq_m: int = 0
    pq_bits: int = 0
    k_factor: int = 0

    def to_json(self) -> dict:
        return {"kind": self.kind, "pq_m": self.pq_m, "pq_bits": self.pq_bits, "k_factor": self.k_factor}


def choose(n: int, dimension: int, current: IndexSpec | None = None) -> IndexSpec:
    """The index for ``n`` faces of ``dimension``; ``current`` (the one in use) is kept while it still fits."""
    if n >= EXACT_LIMIT or (current is not None and current.kind == APPROXIMATE and n >= EXACT_LIMIT // 2):
        if current is not None and current.kind == APPROXIMATE:
            return current
        m = max(1, dimension // PQ_DSUB)
        while dimension % m:
            m -= 1
        return IndexSpec(APPROXIMATE, m, PQ_BITS, K_FACTOR)
    return IndexSpec(EXACT)


def build(ids: np.ndarray, vectors: np.ndarray, dimension: int, spec: IndexSpec | None = None) -> Any:
    """A new index holding ``vectors`` ``(n, D)`` float32 under ``ids`` ``(n,)`` int64.

    ``spec`` defaults to :func:`choose` for ``n``. The quantiser of the approximate index is
    trained on a seeded sample, so the same faces give the same index.
    """
    import faiss

    dimension = max(1, int(dimension))
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dimension)
    spec = spec if spec is not None else choose(len(ids), dimension)
    if spec.kind == EXACT:
        index = faiss.IndexIDMap(faiss.IndexFlatIP(dimension))
    elif spec.kind == APPROXIMATE:
        codes = faiss.IndexPQFastScan(dimension, spec.pq_m, spec.pq_bits, faiss.METRIC_INNER_PRODUCT)
        refine = faiss.IndexRefineFlat(codes)
        refine.k_factor = float(spec.k_factor)
        index = faiss.IndexIDMap(refine)
        take = min(len(ids), TRAIN_SAMPLE)
        sample = vectors
        if take < len(ids):
            sample = vectors[np.sort(np.random.default_rng(0).choice(len(ids), take, replace=False))]
        log.info("training the approximate index's quantiser on %d of %d faces", len(sample), len(ids))
        index.train(sample)
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def spec_of(index: Any) -> IndexSpec:
    """The :class:`IndexSpec` of an index made by :func:`build`; ``ValueError`` for any other index."""
    import faiss

    outer: Any = faiss.downcast_index(index)  # a view: ``index`` keeps owning the object
    if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        inner = faiss.downcast_index(outer.index)
        if isinstance(inner, faiss.IndexFlat):
            return IndexSpec(EXACT)
        if isinstance(inner, faiss.IndexRefine):
            codes = faiss.downcast_index(inner.base_index)
            if isinstance(codes, faiss.IndexPQFastScan) and isinstance(
                faiss.downcast_index(inner.refine_index), faiss.IndexFlat
            ):
                return IndexSpec(APPROXIMATE, int(codes.pq.M), int(codes.pq.nbits), round(inner.k_factor))
    raise ValueError(f"not a gallery index: {type(outer).__name__}")


def _flat_of(index: Any) -> Any:
    """The ``IndexFlat`` holding the float vectors of a gallery index."""
    import faiss

    outer: Any = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    return faiss.downcast_index(inner.refine_index) if isinstance(inner, faiss.IndexRefine) else inner


def contents(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """What a gallery index holds: ``(ids (n,) int64, vectors (n, D) float32)``, sorted by id (copies)."""
    ids, vectors = view(index)
    order = np.argsort(ids, kind="stable")
    return ids[order], vectors[order]


def view(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (n,), vectors (n, D))`` of a gallery index in its internal order: views, valid while it is unchanged."""
    import faiss

    spec_of(index)  # raises for anything else
    outer: Any = faiss.downcast_index(index)  # a view: ``index`` keeps owning the object
    n, d = int(outer.ntotal), int(outer.d)
    if not n:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    ids = faiss.rev_swig_ptr(outer.id_map.data(), n)
    return ids, faiss.rev_swig_ptr(_flat_of(outer).get_xb(), n * d).reshape(n, d)


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (n, k) float32, ids (n, k) int64)`` of the ``k`` best faces for each ``(n, D)`` query row."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(queries) > SINGLE_THREAD_QUERIES:
        return index.search(queries, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k)
    finally:
        faiss.omp_set_num_threads(threads)


def _parts(index: Any) -> tuple[Any, Any, Any | None]:
    """``(id map, flat index of the float vectors, fast-scan index of the codes or None)`` of a gallery index."""
    import faiss

    spec_of(index)  # raises for anything else
    outer: Any = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    if isinstance(inner, faiss.IndexRefine):
        return outer, faiss.downcast_index(inner.refine_index), faiss.downcast_index(inner.base_index)
    return outer, inner, None


def ids(index: Any) -> np.ndarray:
    """The face ids ``(n,)`` int64 a gallery index holds, in its internal order (a copy)."""
    import faiss

    outer: Any = faiss.downcast_index(index)
    return faiss.rev_swig_ptr(outer.id_map.data(), int(outer.ntotal)).copy() if outer.ntotal else np.zeros(0, np.int64)


def reserve(index: Any, extra: int) -> None:
    """Make room in ``index`` for ``extra`` more faces, so that adding them does not copy it.

    FAISS keeps the float vectors and ids in growing arrays: an add past their capacity copies
    the whole array (half a gigabyte at a million faces, about a second on a busy machine). Done
    when the index is built or loaded, the copy costs nothing an enrolment waits for.
    """
    outer, flat, _ = _parts(index)
    n = int(outer.ntotal)
    for array, per_face in ((flat.codes, int(flat.code_size)), (outer.id_map, 1)):
        array.resize((n + extra) * per_face)  # capacity grows (and stays when the array shrinks back)
        array.resize(n * per_face)


def add(index: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add ``vectors`` ``(n, D)`` float32 under new ``ids`` ``(n,)`` int64 to ``index``, in place.

    The approximate index encodes them with the quantiser it was trained with.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), index.d), ids)


def remove(index: Any, ids: np.ndarray) -> int:
    """Remove the faces ``ids`` (ids not held are ignored) from ``index`` in place; return how many went.

    The last faces are moved into the removed ones' places and the arrays cut short, so this
    costs time in proportion to the faces removed (FAISS's own ``remove_ids`` shifts every face
    after the first removed one, and the approximate index has none). The removed faces' vectors
    and codes are overwritten, in memory too.
    """
    import faiss

    outer, flat, codes = _parts(index)
    n = int(outer.ntotal)
    if n == 0 or not len(ids):
        return 0
    held = faiss.rev_swig_ptr(outer.id_map.data(), n)  # a view: writes go to the index
    gone = np.flatnonzero(np.isin(held, np.asarray(ids, dtype=np.int64)))
    if not len(gone):
        return 0
    keep = n - len(gone)
    holes = gone[gone < keep]  # places below the new end to fill
    movers = np.setdiff1d(np.arange(keep, n), gone, assume_unique=True)  # kept faces beyond it
    d = int(outer.d)
    xb = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
    xb[holes] = xb[movers]
    held[holes] = held[movers]
    xb[keep:] = 0
    flat.codes.resize(keep * int(flat.code_size))
    flat.ntotal = keep
    if codes is not None:
        packer = codes.get_CodePacker()
        table = faiss.rev_swig_ptr(codes.codes.get(), codes.codes.size())
        block = int(packer.block_size)
        code = np.zeros(int(packer.code_size), np.uint8)
        for hole, mover in zip(holes.tolist(), movers.tolist()):
            src = table[(mover // codes.bbs) * block :]
            packer.unpack_1_c(faiss.swig_ptr(src), mover % codes.bbs, faiss.swig_ptr(code))
            dst = table[(hole // codes.bbs) * block :]
            packer.pack_1_c(faiss.swig_ptr(code), hole % codes.bbs, faiss.swig_ptr(dst))
        code[:] = 0
        for place in range(keep, n):  # overwrite the codes left beyond the new end
            dst = table[(place // codes.bbs) * block :]
            packer.pack_1_c(faiss.swig_ptr(code), place % codes.bbs, faiss.swig_ptr(dst))
        codes.ntotal = keep
        codes.ntotal2 = -(-keep // codes.bbs) * codes.bbs
        codes.codes.resize(codes.ntotal2 // codes.bbs * block)
        faiss.downcast_index(outer.index).ntotal = keep
    outer.id_map.resize(keep)
    outer.ntotal = keep
    if isinstance(outer, faiss.IndexIDMap2):
        outer.construct_rev_map()
    return len(gone)


def _checked_layout(handle: Any) -> tuple[int, dict]:
    """``(faces, layout)`` of the index file open in ``handle``: :func:`_layout` of its header, every
    fixed part checked. ``ValueError`` if it is not laid out as a gallery index."""
    import os
    import struct

    size = os.fstat(handle.fileno()).st_size
    head = handle.read(1 << 16)
    if len(head) < 16:
        raise ValueError("too short")
    n = int(struct.unpack_from("<q", head, 8)[0])
    where = _layout(head, size, n)
    for offset, expected in where["checks"]:
        handle.seek(offset)
        if handle.read(len(expected)) != expected:
            raise ValueError("not laid out as expected")
    return n, where


def _layout(head: bytes, size: int, n: int) -> dict[str, Any]:
    """Where an index file made by ``faiss.serialize_index`` of a gallery index keeps what :func:`erase` overwrites.

    ``head``: the file's first bytes (64 KiB or the whole file); ``size``: its length; ``n``: how
    many faces it holds (from its header). Returns the offsets of the ids, the vectors and (for
    the approximate index) the codes, and ``checks``: ``(offset, bytes)`` the file must hold there
    for these offsets to be right. ``ValueError`` for any other layout.
    """
    import struct

    def at(fmt: str, offset: int) -> int:
        return int(struct.unpack_from("<" + fmt, head, offset)[0])

    if head[:4] not in (b"IxMp", b"IxM2") or len(head) < 200:
        raise ValueError("not an id map")
    d = at("i", 4)
    if d <= 0 or n < 0 or size < 8 * n + 8:
        raise ValueError("bad header")
    header = 4 + 33  # fourcc, then d, ntotal, two dummies, is_trained, metric (inner product: no argument)
    ids = size - 8 * n  # the id map comes last: its length, then the ids
    checks = [(ids - 8, struct.pack("<Q", n))]
    where: dict[str, Any] = {"d": d, "ids": ids, "checks": checks}
    inner = head[header : header + 4]
    if inner == b"IxFI":
        xb_end = ids - 8
    elif inner == b"IxRF" and head[2 * header : 2 * header + 4] == b"IPfs":
        xb_end = ids - 8 - 4  # the refine factor follows the vectors
        offset = 3 * header
        pq_d, m, nbits, centroids = at("Q", offset), at("Q", offset + 8), at("Q", offset + 16), at("Q", offset + 24)
        offset += 32 + 4 * centroids
        bbs, ntotal2, m2 = at("i", offset + 4), at("q", offset + 12), at("i", offset + 20)
        if pq_d != d or nbits != 4 or bbs <= 0 or m2 < m or ntotal2 != -(-n // bbs) * bbs:
            raise ValueError("unexpected codes")
        codes_size = ntotal2 * m2 // 2  # they end where the refine index's header begins
        refine = xb_end - 4 * d * n - 8 - header
        where.update(m=m, bbs=bbs, codes=refine - codes_size)
        checks += [(refine - codes_size - 8, struct.pack("<Q", codes_size)), (refine, b"IxFI")]
    else:
        raise ValueError("not a gallery index")
    where["xb"] = xb_end - 4 * d * n
    checks.append((where["xb"] - 8, struct.pack("<Q", d * n)))  # the number of floats
    if where["xb"] < 2 * header + 8:
        raise ValueError("unexpected length")
    return where


def erase(path: Any, ids: np.ndarray) -> int:
    """Overwrite with zeros, in the index file ``path``, the vectors and codes of the faces ``ids``; return how many.

    The file is changed in place and synced: it keeps its length and its other faces; an erased
    face's id becomes :data:`ERASED` (written last), so an index loaded from the file must
    remove the faces of that id, and erasing again finds nothing to do. ``ValueError`` if the file is not
    laid out as a gallery index; the caller then deletes it instead.
    """
    import os
    import struct

    import faiss

    ids = np.asarray(ids, dtype=np.int64)
    with open(path, "r+b") as handle:
        n, where = _checked_layout(handle)
        handle.seek(where["ids"])
        places = np.flatnonzero(np.isin(np.frombuffer(handle.read(8 * n), dtype=np.int64), ids))
        if not len(places):
            return 0
        d = where["d"]
        zeros = bytes(4 * d)
        for place in places.tolist():
            handle.seek(where["xb"] + 4 * d * place)
            handle.write(zeros)
        if "codes" in where:
            bbs = where["bbs"]
            codes: Any = faiss.IndexPQFastScan(d, where["m"], 4, faiss.METRIC_INNER_PRODUCT, bbs)
            packer = codes.get_CodePacker()
            block = int(packer.block_size)
            code = np.zeros(int(packer.code_size), np.uint8)
            for first in sorted({place // bbs for place in places.tolist()}):
                handle.seek(where["codes"] + first * block)
                data = np.frombuffer(handle.read(block), dtype=np.uint8).copy()
                for place in places[places // bbs == first].tolist():
                    packer.pack_1_c(faiss.swig_ptr(code), place % bbs, faiss.swig_ptr(data))
                handle.seek(where["codes"] + first * block)
                handle.write(data.tobytes())
        for place in places.tolist():  # last, so that a face whose id is still there may not be erased yet
            handle.seek(where["ids"] + 8 * place)
            handle.write(struct.pack("<q", ERASED))
        handle.flush()
        os.fsync(handle.fileno())
    return len(places)


def file_ids(path: Any) -> np.ndarray:
    """The face ids ``(n,)`` int64 an index file holds (:data:`ERASED` for erased faces); ``ValueError`` if not one."""
    import struct

    with open(path, "rb") as handle:
        head = handle.read(16)
        if len(head) < 16 or head[:4] not in (b"IxMp", b"IxM2"):
            raise ValueError("not an id map")
        n = int(struct.unpack_from("<q", head, 8)[0])
        size = handle.seek(0, 2)
        if n < 0 or size < 8 * n + 8:
            raise ValueError("bad header")
        handle.seek(size - 8 * n - 8)
        data = handle.read(8 * n + 8)
    if struct.unpack_from("<q", data, 0)[0] != n:
        raise ValueError("not laid out as expected")
    return np.frombuffer(data, dtype=np.int64, offset=8).copy()


def mapped(path: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (n,) int64, vectors (n, D) float32)`` of the index file ``path``, memory-mapped read-only.

    Nothing is copied or decoded: the pages are read as a search touches them (from the page
    cache when the file was read lately). An erased face's id is :data:`ERASED`. ``ValueError``
    if the file is not laid out as a gallery index (then load it with FAISS, which checks it).
    """
    import mmap

    with open(path, "rb") as handle:
        n, where = _checked_layout(handle)
    d = int(where["d"])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    with open(path, "rb") as handle:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # map every page now: cheaper than a fault each
        data = mmap.mmap(handle.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    ids = np.frombuffer(data, dtype=np.int64, count=n, offset=where["ids"])
    vectors = np.frombuffer(data, dtype=np.float32, count=n * d, offset=where["xb"]).reshape(n, d)
    return ids, vectors
