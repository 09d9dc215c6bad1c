"""Grouping unknown faces into identities: arrays in, frozen dataclasses out.

Scores are cosine similarities of unit embedding rows (higher is closer). The method
(measured on LFW, docs/grouping.md):

1. a k-nearest-neighbour graph of the faces (FAISS, exact up to 60,000 faces; above, IVF cells
   joined cell by cell by matrix products), so no ``N x N`` matrix is ever formed;
2. average-link agglomeration over that graph (the average link of two groups is the inner
   product of their mean vectors, so it is exact, not estimated from the graph), merging
   reciprocal best pairs in rounds while their average similarity is high enough: the model's
   bar for two single faces (SFace 0.49, FaceNet 0.67: :func:`params_for`, from its impostor
   similarities, :mod:`faceid.cluster.calibration`), falling towards its floor for big groups
   (an average over many pairs is steadier); :class:`GroupingParams`' defaults are FaceNet's;
   never across a cannot-link pair (two faces of one photo, a face the user moved out of a group);
3. groups of fewer than :attr:`GroupingParams.min_group` faces are left ungrouped (``-1``).

Everything is deterministic: the same faces and constraints give the same groups, numbered
biggest first, ties by smallest member index. A gallery goes on from its groups as photos arrive
with :func:`faceid.cluster.incremental.settle` (the same agglomeration, from groups: faces join,
groups merge); :func:`attach` (same average link, plus a margin over the runner-up group) is
the older attach-only step, kept for the LFW attach protocol.
Faces already named are not passed in: the caller groups only unknown faces.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceid.cluster._agglomerate import agglomerate, needed
from faceid.cluster._graph import Neighbours, knn_brute_force, knn_graph
from faceid.cluster.metrics import ClusterScores, cluster_scores

__all__ = [
    "MIN_CONFIDENCE",
    "MIN_FACE_SIZE",
    "Attachment",
    "ClusterScores",
    "GroupCentroids",
    "Grouping",
    "GroupingParams",
    "Neighbours",
    "attach",
    "cannot_link_pairs",
    "cluster_scores",
    "group_faces",
    "keep_for_grouping",
    "knn_brute_force",
    "knn_graph",
    "moved_out_pairs",
    "not_kept_reasons",
    "params_for",
    "keep_filters",
]

log = logging.getLogger(__name__)

#: The keep filters measured with FaceNet: the defaults of :func:`keep_for_grouping` for arrays;
#: a gallery uses its model's (:func:`keep_filters`, :data:`faceid.thresholds.GROUPING`).
#: Faces whose detection box's shorter side is below this many pixels are not kept for grouping.
#: Measured on every face MTCNN finds in LFW (``faceid eval cluster --filters``): background
#: faces smaller than 20 px ended in a group 100% of the time, 20-30 px 89%, 30-40 px 66%, and
#: from 40 px up a flat 38-43% (the rate of genuine repeats): below 40 px they make junk groups.
#: No central LFW face is under 50 px.
MIN_FACE_SIZE = 40
#: Faces detected with less confidence than this are not kept for grouping. On LFW, 0.95 drops
#: 62 of the 13,232 central faces (0.5%) and raises BCubed precision of grouping every face
#: (background ones as strangers) from 0.9405 to 0.9475 at 40 px; 0.99 would drop 1,017 (7.7%).
MIN_CONFIDENCE = 0.95


@dataclass(frozen=True)
class GroupingParams:
    """Settings of :func:`group_faces` and :func:`attach`.

    ``threshold``: the average cosine similarity two single faces need to merge; ``floor``: what
    it falls to for big groups (two groups of ``a`` and ``b`` faces need
    ``floor + (threshold - floor) * (a * b) ** -0.25``; a new face joining a group of ``b`` the
    same with ``a = 1``). ``k``: neighbours per face in the graph. ``min_group``: smallest group
    reported; smaller ones are left ungrouped. ``margin``: how far a new face's best group must
    lead the runner-up for :func:`attach` to join it (on LFW, ``faceid eval cluster``'s ``attach``
    figures: margin 0.05 attached 762 held-out faces right, 5 wrong and 23 strangers; 0.10
    attached 752 right, 3 wrong, 16 strangers: a face left out is grouped at the next
    re-grouping, a wrong one mixes a group, so 0.10).
    """

    threshold: float = 0.68
    floor: float = 0.60
    k: int = 32
    min_group: int = 2
    margin: float = 0.10

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {self.threshold}")
        if not -1.0 <= self.floor <= self.threshold:
            raise ValueError(f"floor must be in [-1, threshold], got {self.floor}")
        if self.k < 1 or self.min_group < 1:
            raise ValueError("k and min_group must be at least 1")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")


@dataclass(frozen=True)
class Grouping:
    """The groups of ``N`` faces.

    ``labels`` ``(N,)`` int64: each face's group, ``0 .. groups-1`` numbered biggest first (ties
    by smallest member index), ``-1`` for a face left ungrouped. ``sizes`` ``(groups,)`` int64.
    """

    labels: np.ndarray
    sizes: np.ndarray
    params: GroupingParams
    exact_graph: bool

    @property
    def groups(self) -> int:
        return len(self.sizes)

    @property
    def ungrouped(self) -> int:
        return int(np.sum(self.labels < 0))

    def members(self, group: int) -> np.ndarray:
        """``(sizes[group],)`` int64 face indices of one group, ascending."""
        return np.flatnonzero(self.labels == group)


def cannot_link_pairs(photos: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(P, 2)`` int64: every pair of faces that share a photo id (``photos`` ``(N,)`` int; ``-1`` = none)."""
    photos = np.asarray(photos, dtype=np.int64).ravel()
    faces = np.flatnonzero(photos >= 0)
    order = faces[np.argsort(photos[faces], kind="stable")]
    sorted_photos = photos[order]
    starts = np.flatnonzero(np.r_[True, sorted_photos[1:] != sorted_photos[:-1]]) if len(order) else np.array([], int)
    ends = np.r_[starts[1:], len(order)]
    pairs = []
    for s, e in zip(starts, ends):
        if e - s > 1:
            members = order[s:e]
            i, j = np.triu_indices(len(members), 1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), dtype=np.int64)


def moved_out_pairs(moves: Iterable[tuple[int, Iterable[int]]]) -> np.ndarray:
    """``(P, 2)`` int64 cannot-link pairs from ``(face, faces it must not be grouped with)`` entries:
    a face the user moved out of a group, with that group's other faces."""
    pairs = [(int(face), int(other)) for face, others in moves for other in others if int(other) != int(face)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _check_rows(embeddings: np.ndarray, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{what} must be an (N, D) array, got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) and not np.all(np.isfinite(x)):
        raise ValueError(f"{what} hold NaN or infinite values")
    if len(x):
        norms = np.linalg.norm(x, axis=1)
        if np.max(np.abs(norms - 1.0)) > 1e-3:
            raise ValueError(
                f"{what} must be unit rows (L2-normalised); norms range {norms.min():.3f}-{norms.max():.3f}"
            )
    return x


def _numbered(roots: np.ndarray, min_group: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``0..G-1`` biggest group first, ties by smallest member (the root is the smallest member)."""
    ids, inverse, counts = np.unique(roots, return_inverse=True, return_counts=True)
    kept = counts >= min_group
    order = np.lexsort((ids, -counts))
    order = order[kept[order]]
    rank = np.full(len(ids), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], counts[order].astype(np.int64)


def group_faces(
    embeddings: np.ndarray,
    *,
    photos: Sequence[int] | np.ndarray | None = None,
    cannot_link: np.ndarray | None = None,
    params: GroupingParams | None = None,
    neighbours: Neighbours | None = None,
) -> Grouping:
    """Group unknown faces into identities (see the module docstring for the method).

    Args:
        embeddings: ``(N, D)`` float32 unit rows: only the faces to group (not named ones).
        photos: ``(N,)`` int photo id of each face (``-1`` = unknown): faces of one photo are
            never grouped together.
        cannot_link: ``(P, 2)`` int64 face index pairs never grouped together, e.g. from
            :func:`moved_out_pairs`.
        params: settings; :class:`GroupingParams` defaults otherwise.
        neighbours: a precomputed graph from :func:`knn_graph` (else one is built with ``params.k``).
    """
    params = params or GroupingParams()
    x = _check_rows(embeddings)
    n = len(x)
    constraints = [np.zeros((0, 2), dtype=np.int64)]
    if photos is not None:
        photos_arr = np.asarray(photos, dtype=np.int64).ravel()
        if len(photos_arr) != n:
            raise ValueError(f"photos has {len(photos_arr)} entries for {n} faces")
        constraints.append(cannot_link_pairs(photos_arr))
    if cannot_link is not None:
        cl = np.asarray(cannot_link, dtype=np.int64).reshape(-1, 2)
        if len(cl) and (cl.min() < 0 or cl.max() >= n):
            raise ValueError(f"cannot_link holds a face index outside 0..{n - 1}")
        constraints.append(cl)
    if n == 0:
        return Grouping(np.zeros(0, np.int64), np.zeros(0, np.int64), params, True)
    graph = neighbours if neighbours is not None else knn_graph(x, params.k)
    if graph.ids.shape[0] != n:
        raise ValueError(f"the neighbour graph has {graph.ids.shape[0]} rows for {n} faces")
    strong = graph.scores >= params.floor
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], graph.ids.shape)
    edges = np.stack([rows[strong], graph.ids[strong]], axis=1)
    roots = agglomerate(x, edges, params.threshold, np.concatenate(constraints), floor=params.floor)
    labels, sizes = _numbered(roots, params.min_group)
    return Grouping(labels, sizes, params, graph.exact)


# -- incremental attach -------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupCentroids:
    """What :func:`attach` needs of existing groups: per-group embedding sums and sizes, and photos.

    ``sums`` ``(G, D)`` float64 sums of each group's unit embeddings; ``sizes`` ``(G,)`` int64;
    ``photo_group`` ``(P, 2)`` int64 unique ``(photo id, group)`` rows: the photos each group's
    faces come from (for the cannot-link rule). The mean ``sums[g] / sizes[g]`` has inner product
    with a unit face equal to the face's average cosine similarity to the group's faces.
    """

    sums: np.ndarray
    sizes: np.ndarray
    photo_group: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @classmethod
    def from_labels(
        cls, embeddings: np.ndarray, labels: np.ndarray, photos: Sequence[int] | np.ndarray | None = None
    ) -> GroupCentroids:
        """From member faces ``(N, D)`` unit rows and their ``labels`` ``(N,)`` (``-1`` = in no group)."""
        x = _check_rows(embeddings)
        labels = np.asarray(labels, dtype=np.int64).ravel()
        if len(labels) != len(x):
            raise ValueError(f"labels has {len(labels)} entries for {len(x)} faces")
        g = int(labels.max()) + 1 if len(labels) else 0
        grouped = labels >= 0
        sums = _group_sums(x, labels, g)
        sizes = np.bincount(labels[grouped], minlength=g).astype(np.int64)
        photo_group = np.zeros((0, 2), np.int64)
        if photos is not None:
            p = np.asarray(photos, dtype=np.int64).ravel()
            ok = grouped & (p >= 0)
            photo_group = _unique_rows(p[ok], labels[ok])
        return cls(sums, sizes, photo_group)

    def with_attached(
        self, embeddings: np.ndarray, attachment: Attachment, photos: Sequence[int] | np.ndarray | None = None
    ) -> GroupCentroids:
        """A copy with the faces that :func:`attach` placed added to their groups."""
        x = _check_rows(embeddings)
        placed = attachment.groups >= 0
        sums = self.sums + _group_sums(x, attachment.groups, len(self.sizes))
        sizes = self.sizes + np.bincount(attachment.groups[placed], minlength=len(self.sizes))
        photo_group = self.photo_group
        if photos is not None:
            p = np.asarray(photos, dtype=np.int64).ravel()
            ok = placed & (p >= 0)
            photo_group = _unique_rows(
                np.concatenate([photo_group[:, 0], p[ok]]), np.concatenate([photo_group[:, 1], attachment.groups[ok]])
            )
        return GroupCentroids(sums, sizes, photo_group)


def _unique_rows(photos: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(P, 2)`` int64 unique ``(photo, group)`` rows, sorted (by one int64 key per row: fast)."""
    if len(photos) == 0:
        return np.zeros((0, 2), np.int64)
    photos, groups = photos.astype(np.int64), groups.astype(np.int64)
    span = int(groups.max()) + 1
    key = np.unique(photos * span + groups)
    return np.stack([key // span, key % span], axis=1)


#: Groups summed per block by :func:`_group_sums`.
SUM_BLOCK = 65_536


def _group_sums(x: np.ndarray, labels: np.ndarray, groups: int) -> np.ndarray:
    """``(groups, D)`` float64 sums of the rows of ``x`` by ``labels`` (``-1`` rows left out)."""
    sums = np.zeros((groups, x.shape[1]), dtype=np.float64)
    rows = np.flatnonzero(labels >= 0)
    if len(rows) == 0:
        return sums
    rows = rows[np.argsort(labels[rows], kind="stable")]
    sorted_labels = labels[rows]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    step = SUM_BLOCK
    for first in range(0, len(starts), step):  # groups in blocks: bounded float64 scratch
        lo = starts[first]
        hi = starts[first + step] if first + step < len(starts) else len(rows)
        block = x[rows[lo:hi]].astype(np.float64)
        sums[sorted_labels[starts[first : first + step]]] = np.add.reduceat(block, starts[first : first + step] - lo)
    return sums


@dataclass(frozen=True)
class Attachment:
    """Where :func:`attach` put each of ``M`` new faces.

    ``groups`` ``(M,)`` int64: the existing group joined, ``-1`` = left for the next grouping.
    ``best`` ``(M,)`` int64: the best allowed group whether joined or not (``-1`` if none);
    ``scores`` ``(M,)`` float32: average similarity to it; ``runner_up`` ``(M,)`` float32: to the
    next allowed group (``-inf`` if none).
    """

    groups: np.ndarray
    best: np.ndarray
    scores: np.ndarray
    runner_up: np.ndarray

    @property
    def attached(self) -> int:
        return int(np.sum(self.groups >= 0))


#: Candidate groups fetched per new face before cannot-link filtering (more are scanned exactly if all are barred).
ATTACH_CANDIDATES = 16


def attach(
    embeddings: np.ndarray,
    centroids: GroupCentroids,
    *,
    photos: Sequence[int] | np.ndarray | None = None,
    forbidden: np.ndarray | None = None,
    params: GroupingParams | None = None,
) -> Attachment:
    """Attach new faces to existing groups when they clearly belong; leave the rest (``-1``).

    A face joins its best group when its average cosine similarity to the group's faces is at
    least what a merge with that group needs (:class:`GroupingParams`) and leads the runner-up
    group by ``params.margin``. Groups barred for the face are skipped: a group holding a face
    of the same photo, a ``forbidden`` one, and (among the new faces) a group another new face
    of the same photo joins with a higher score.

    Args:
        embeddings: ``(M, D)`` float32 unit rows of the new faces.
        centroids: the existing groups (:meth:`GroupCentroids.from_labels`).
        photos: ``(M,)`` int photo id of each new face (``-1`` = unknown).
        forbidden: ``(P, 2)`` int64 ``(new face index, group)`` rows the face must not join (the
            user moved it out of that group).
    """
    import faiss

    params = params or GroupingParams()
    x = _check_rows(embeddings, "new embeddings")
    m = len(x)
    groups = np.full(m, -1, dtype=np.int64)
    best = np.full(m, -1, dtype=np.int64)
    scores = np.full(m, -np.inf, dtype=np.float32)
    runner = np.full(m, -np.inf, dtype=np.float32)
    g = len(centroids.sizes)
    if m == 0 or g == 0:
        return Attachment(groups, best, scores, runner)
    if centroids.sums.shape[1] != x.shape[1]:
        raise ValueError(f"new faces are {x.shape[1]}-d, the groups {centroids.sums.shape[1]}-d")
    p = np.full(m, -1, np.int64) if photos is None else np.asarray(photos, dtype=np.int64).ravel()
    if len(p) != m:
        raise ValueError(f"photos has {len(p)} entries for {m} new faces")
    barred: dict[int, set[int]] = {}
    for face, group in np.asarray(forbidden if forbidden is not None else np.zeros((0, 2)), np.int64).reshape(-1, 2):
        barred.setdefault(int(face), set()).add(int(group))
    photo_groups: dict[int, set[int]] = {}
    relevant = centroids.photo_group[np.isin(centroids.photo_group[:, 0], p[p >= 0])]
    for photo, group in relevant.tolist():
        photo_groups.setdefault(photo, set()).add(group)
    for face in np.flatnonzero(p >= 0).tolist():
        barred.setdefault(face, set()).update(photo_groups.get(int(p[face]), ()))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.ascontiguousarray(centroids.sums / np.maximum(centroids.sizes, 1)[:, None], dtype=np.float32)
    means[centroids.sizes == 0] = 0.0
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(means)
    k = min(g, ATTACH_CANDIDATES)
    s, ids = index.search(x, k)
    order = np.lexsort((ids, -s), axis=1)
    s, ids = np.take_along_axis(s, order, axis=1), np.take_along_axis(ids, order, axis=1)
    empty = set(np.flatnonzero(centroids.sizes == 0).tolist())
    for i in range(m):
        skip = barred.get(i, set()) | empty if empty else barred.get(i, set())
        cand = [(float(sc), int(j)) for sc, j in zip(s[i], ids[i]) if j >= 0 and int(j) not in skip]
        if len(cand) < 2 and k < g:  # the short list was barred: score every group exactly
            all_s = means.astype(np.float64) @ x[i].astype(np.float64)
            ranked = np.lexsort((np.arange(g), -all_s))
            cand = [(float(all_s[j]), int(j)) for j in ranked if int(j) not in skip][:2]
        if cand:
            best[i], scores[i] = cand[0][1], cand[0][0]
        if len(cand) > 1:
            runner[i] = cand[1][0]
    bar = needed(1.0, centroids.sizes[np.maximum(best, 0)], params.threshold, params.floor)
    ok = (best >= 0) & (scores >= bar) & (scores - runner >= params.margin)
    # two new faces of one photo never join one group: the higher score keeps it
    taken: set[tuple[int, int]] = set()
    for face in sorted(np.flatnonzero(ok).tolist(), key=lambda f: (-float(scores[f]), f)):
        key = (int(p[face]), int(best[face]))
        if p[face] >= 0 and key in taken:
            continue
        taken.add(key)
        groups[face] = best[face]
    return Attachment(groups, best, scores, runner)


def params_for(key: Any) -> GroupingParams:
    """The grouping settings measured for embeddings of ``key`` (an
    :class:`~faceid.embedding_key.EmbeddingKey`): :data:`faceid.thresholds.GROUPING`.

    Raises:
        UncalibratedError: no numbers were measured for ``key``.
    """
    from faceid.grouping_thresholds import grouping_numbers

    numbers = grouping_numbers(key)
    return GroupingParams(threshold=numbers.threshold, floor=numbers.floor, margin=numbers.margin)


def keep_filters(key: Any, min_size: float | None = None, min_confidence: float | None = None) -> tuple[float, float]:
    """``(min_size, min_confidence)`` for keeping faces: the values given, else those measured for
    embeddings (and the detector) of ``key`` (:data:`faceid.thresholds.GROUPING`).

    Raises:
        UncalibratedError: a value is missing and no numbers were measured for ``key``.
    """
    if min_size is not None and min_confidence is not None:
        return float(min_size), float(min_confidence)
    from faceid.grouping_thresholds import grouping_numbers

    numbers = grouping_numbers(key)
    return (
        float(numbers.min_face_size if min_size is None else min_size),
        float(numbers.min_confidence if min_confidence is None else min_confidence),
    )


def keep_for_grouping(
    boxes: np.ndarray,
    confidences: np.ndarray,
    *,
    min_size: float = MIN_FACE_SIZE,
    min_confidence: float = MIN_CONFIDENCE,
) -> np.ndarray:
    """``(N,)`` bool: which detections to keep for grouping.

    ``boxes`` ``(N, 4)`` ``(x, y, w, h)`` pixels; ``confidences`` ``(N,)`` detector scores. A face
    is kept when the shorter side of its box is at least ``min_size`` and its confidence at least
    ``min_confidence`` (small, unsure faces make junk groups: docs/grouping.md).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    confidences = np.asarray(confidences, dtype=np.float64).ravel()
    if len(boxes) != len(confidences):
        raise ValueError(f"{len(boxes)} boxes but {len(confidences)} confidences")
    return (np.minimum(boxes[:, 2], boxes[:, 3]) >= min_size) & (confidences >= min_confidence)


def not_kept_reasons(
    boxes: np.ndarray, confidences: np.ndarray, *, min_size: float, min_confidence: float
) -> list[str | None]:
    """Per detection, why :func:`keep_for_grouping` does not keep it (``None``: it is kept), in
    words: ``"confidence 0.91 below 0.95"``, ``"face 35 px, below 40 px"``, or both."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    confidences = np.asarray(confidences, dtype=np.float64).ravel()
    out: list[str | None] = []
    for side, conf in zip(np.minimum(boxes[:, 2], boxes[:, 3]).tolist(), confidences.tolist()):
        why = []
        if conf < min_confidence:
            why.append(f"confidence {conf:.2f} below {min_confidence:.2f}")
        if side < min_size:
            why.append(f"face {side:.0f} px, below {min_size:.0f} px")
        out.append("; ".join(why) or None)
    return out
