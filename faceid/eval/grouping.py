"""The LFW grouping protocol: every LFW face kept as unknown, grouped, scored against the true people.

One face per image (the detection nearest the centre, as in :mod:`faceid.eval.lfw`); images
where MTCNN finds no face are left out (one image of LFW), so all 13,232 faces of 5,749 people
are grouped. Baselines run on the same embeddings in the same call: average link on the full
matrix (scikit-learn) at cosine distances 0.30, 0.35, 0.45, HDBSCAN (min cluster size 3) and
DBSCAN (eps 0.35, min samples 2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceid.cluster import GroupingParams, group_faces, keep_for_grouping
from faceid.cluster.calibration import DerivedNumbers, derive, impostor_tail
from faceid.cluster.metrics import ClusterScores, cluster_scores

__all__ = [
    "BASELINES",
    "GroupingReport",
    "GroupingSettings",
    "LfwDetections",
    "LfwFaces",
    "evaluate_attach",
    "evaluate_grouping",
    "KEEP_RULE_SIZE",
    "chosen_filter",
    "filter_table",
    "grouping_settings",
    "subset_mask",
    "sweep_rules",
    "lfw_detections",
    "lfw_faces",
]

log = logging.getLogger(__name__)

#: Baselines run beside the method: name -> what it is (see :func:`baseline_labels`).
BASELINES = (
    "average_link_0.30",
    "average_link_0.35",
    "average_link_0.45",
    "hdbscan_min_cluster_size_3",
    "dbscan_eps_0.35_min_samples_2",
)


@dataclass(frozen=True)
class LfwFaces:
    """LFW faces: ``embeddings`` ``(N, D)`` float32 unit rows, ``people`` ``(N,)`` int64 person
    index, ``names`` of the people, ``paths`` of the images; ``left_out``: images with no face;
    ``errors``: images that could not be read or that the pipeline failed on, with their message."""

    embeddings: np.ndarray
    people: np.ndarray
    names: list[str]
    paths: list[str]
    left_out: int
    errors: dict[str, str]


def lfw_faces(
    root: Path,
    pipeline=None,
    *,
    cache=None,
    people: Sequence[str] | None = None,
    progress: Callable[[object], None] | None = None,
) -> LfwFaces:
    """Embed LFW (or only ``people``) with faceid's pipeline and the embedding cache."""
    from faceid.eval.lfw import embed_lfw_images, lfw_people
    from faceid.pipeline import Pipeline

    everyone = lfw_people(Path(root))
    chosen = list(everyone) if people is None else [p for p in people if p in everyone]
    paths: list[str] = []
    who: list[int] = []
    for i, name in enumerate(chosen):
        paths += everyone[name]
        who += [i] * len(everyone[name])
    embedded = embed_lfw_images(paths, pipeline or Pipeline(), cache=cache, progress=progress)
    failed = embedded.missing
    missing = set(embedded.no_face) | failed
    keep = np.array([p not in missing for p in embedded.paths], dtype=bool)
    return LfwFaces(
        np.ascontiguousarray(embedded.embeddings[keep], dtype=np.float32),
        np.asarray(who, dtype=np.int64)[keep],
        chosen,
        [p for p, k in zip(embedded.paths, keep) if k],
        len(set(embedded.no_face) - failed),
        {p: embedded.errors.get(p, "could not be read") for p in sorted(failed)},
    )


@dataclass(frozen=True)
class GroupingReport:
    """Scores of one method on a set of faces, and its time in seconds."""

    method: str
    faces: int
    people: int
    scores: ClusterScores
    seconds: float

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "faces": self.faces,
            "people": self.people,
            **self.scores.to_json(),
            "seconds": round(self.seconds, 2),
        }


def baseline_labels(name: str, x: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 labels (``-1`` = ungrouped) of one of :data:`BASELINES` on ``x`` ``(N, D)``."""
    from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering

    if name.startswith("average_link_"):
        cut = float(name.rsplit("_", 1)[1])
        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=cut
        ).fit_predict(x)
    elif name == "hdbscan_min_cluster_size_3":
        labels = HDBSCAN(min_cluster_size=3, metric="cosine").fit_predict(x)
    elif name == "dbscan_eps_0.35_min_samples_2":
        labels = DBSCAN(eps=0.35, min_samples=2, metric="cosine").fit_predict(x)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    labels = np.asarray(labels, dtype=np.int64)
    grouped = labels >= 0
    counts = np.bincount(labels[grouped], minlength=1)
    return np.where(grouped & (counts[np.where(grouped, labels, 0)] >= 2), labels, -1)


def subset_mask(faces: LfwFaces, subset: str) -> np.ndarray:
    """``(N,)`` bool: the faces of the people whose name starts with ``subset``'s letters
    (``"A-M"``, ``"N-Z"``), or every face (``"all"``)."""
    if subset.lower() == "all":
        return np.ones(len(faces.people), dtype=bool)
    lo, hi = subset.upper().split("-")
    first = np.array([n[:1].upper() for n in faces.names])
    return ((first >= lo) & (first <= hi))[faces.people]


@dataclass(frozen=True)
class GroupingSettings:
    """The settings an evaluation groups with: the model's stored numbers (``source`` "table"),
    else those the rule derives on LFW people A-M ("derived"); ``derived``: what the rule gives
    on A-M (what the table should hold), and ``check``: what it gives on N-Z alone."""

    params: GroupingParams
    source: str
    derived: DerivedNumbers
    check: DerivedNumbers


def grouping_settings(faces: LfwFaces, key: object) -> GroupingSettings:
    """Derive the grouping numbers of ``key``'s model from its impostor pairs on LFW A-M
    (:mod:`faceid.cluster.calibration`), and the settings to evaluate with."""
    from faceid.cluster import params_for
    from faceid.errors import UncalibratedError

    tuning, check = subset_mask(faces, "A-M"), subset_mask(faces, "N-Z")
    derived = derive(impostor_tail(faces.embeddings[tuning], faces.people[tuning]))
    other = derive(impostor_tail(faces.embeddings[check], faces.people[check]))
    try:
        return GroupingSettings(params_for(key), "table", derived, other)
    except UncalibratedError:
        params = GroupingParams(threshold=derived.threshold, floor=derived.floor, margin=derived.margin)
        return GroupingSettings(params, "derived", derived, other)


def evaluate_grouping(
    faces: LfwFaces,
    *,
    params: GroupingParams | None = None,
    baselines: Sequence[str] = BASELINES,
    subset: str = "all",
) -> list[GroupingReport]:
    """Group ``faces`` with ``params`` (the defaults), then each baseline; one report each.

    ``subset``: ``"all"``, or ``"A-M"`` / ``"N-Z"`` for the people whose name starts with those
    letters (the method's settings were chosen on A-M).
    """
    mask = subset_mask(faces, subset)
    x, truth = faces.embeddings[mask], faces.people[mask]
    people = len(np.unique(truth))
    reports = []
    start = time.perf_counter()
    grouping = group_faces(x, params=params)
    reports.append(
        GroupingReport("faceid", len(x), people, cluster_scores(truth, grouping.labels), time.perf_counter() - start)
    )
    for name in baselines:
        start = time.perf_counter()
        labels = baseline_labels(name, x)
        reports.append(GroupingReport(name, len(x), people, cluster_scores(truth, labels), time.perf_counter() - start))
        log.info("%s done", name)
    return reports


@dataclass(frozen=True)
class LfwDetections:
    """Every face MTCNN finds in LFW: ``embeddings`` ``(N, D)`` float32, ``boxes`` ``(N, 4)`` int
    ``(x, y, w, h)``, ``confidences`` ``(N,)``, ``photos`` ``(N,)`` int64 image index, ``people``
    ``(N,)`` int64 for the central face of each image, ``-1`` for the others (background faces,
    whose identity LFW does not give); ``errors``: images that could not be read or that the
    pipeline failed on, with their message."""

    embeddings: np.ndarray
    boxes: np.ndarray
    confidences: np.ndarray
    photos: np.ndarray
    people: np.ndarray
    errors: dict[str, str]


def lfw_detections(root: Path, pipeline=None, *, cache=None, progress=None) -> LfwDetections:
    """All faces of all LFW images (the central one and background ones), through the cache."""
    from faceid.batch import process
    from faceid.eval.lfw import lfw_people
    from faceid.pipeline import Pipeline

    pipeline = pipeline or Pipeline()
    everyone = lfw_people(Path(root))
    paths, who = [], []
    for i, images in enumerate(everyone.values()):
        paths += images
        who += [i] * len(images)
    rows, boxes, conf, photos, people = [], [], [], [], []
    errors: dict[str, str] = {}
    for i, item in enumerate(process(paths, pipeline, batch_size=32, cache=cache, on_done=progress)):
        if item.image is None or item.error:
            errors[item.source] = item.error or "could not be read"
            continue
        if not item.faces:
            continue
        cx, cy = item.image.width / 2, item.image.height / 2
        central = min(
            range(len(item.faces)),
            key=lambda j: (
                (item.faces[j].detection.box[0] + item.faces[j].detection.box[2] / 2 - cx) ** 2
                + (item.faces[j].detection.box[1] + item.faces[j].detection.box[3] / 2 - cy) ** 2
            ),
        )
        for j, face in enumerate(item.faces):
            rows.append(face.embedding)
            boxes.append(face.detection.box)
            conf.append(face.detection.confidence)
            photos.append(i)
            people.append(who[i] if j == central else -1)
    return LfwDetections(
        np.asarray(rows, dtype=np.float32).reshape(len(rows), -1),
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        np.asarray(conf, dtype=np.float64),
        np.asarray(photos, dtype=np.int64),
        np.asarray(people, dtype=np.int64),
        errors,
    )


#: Face sizes (shorter box side, pixels) and confidences :func:`filter_table` tries.
FILTER_SIZES = (0, 20, 30, 40, 50, 60)
FILTER_CONFIDENCES = (0.0, 0.85, 0.88, 0.9, 0.92, 0.95, 0.99)
SIZE_BUCKETS = (0, 20, 30, 40, 50, 60, 80, 10_000)


def filter_table(faces: LfwDetections, params: GroupingParams | None = None) -> list[dict]:
    """Where to draw the line for keeping faces: rows of figures (JSON-able dicts).

    Every LFW face is grouped (faces of one image cannot-link); background faces count as
    strangers (each its own person: an upper bound on their errors, since a background face
    may be someone seen again). ``"bucket"`` rows: per box-size bucket, how many background
    faces end up in a group (junk groups grow as faces shrink). ``"keep"`` rows: grouping only
    the faces that pass ``min_size`` and ``min_confidence``: central faces lost, background faces
    kept and grouped, BCubed precision, recall, F.
    """
    n = len(faces.people)
    central = faces.people >= 0
    truth = np.where(central, faces.people, faces.people.max(initial=0) + 1 + np.arange(n))
    side = np.minimum(faces.boxes[:, 2], faces.boxes[:, 3])
    rows: list[dict] = []
    everything = group_faces(faces.embeddings, photos=faces.photos, params=params)
    grouped = everything.labels >= 0
    for lo, hi in zip(SIZE_BUCKETS[:-1], SIZE_BUCKETS[1:]):
        m = (side >= lo) & (side < hi)
        background = m & ~central
        rows.append(
            {
                "row": "bucket",
                "min_side": int(lo),
                "max_side": int(hi),
                "faces": int(m.sum()),
                "central": int((m & central).sum()),
                "background": int(background.sum()),
                "background_grouped": round(float(grouped[background].mean()), 3) if background.any() else None,
            }
        )
    for min_size in FILTER_SIZES:
        for min_conf in FILTER_CONFIDENCES:
            keep = keep_for_grouping(faces.boxes, faces.confidences, min_size=min_size, min_confidence=min_conf)
            g = group_faces(faces.embeddings[keep], photos=faces.photos[keep], params=params)
            s = cluster_scores(truth[keep], g.labels)
            rows.append(
                {
                    "row": "keep",
                    "min_size": min_size,
                    "min_confidence": min_conf,
                    "central_lost": int((central & ~keep).sum()),
                    "background_kept": int((~central & keep).sum()),
                    "background_grouped": int(np.sum((g.labels >= 0) & ~central[keep])),
                    "bcubed_precision": round(s.bcubed_precision, 4),
                    "bcubed_recall": round(s.bcubed_recall, 4),
                    "bcubed_f": round(s.bcubed_f, 4),
                }
            )
    return rows


#: The impostor rates ``faceid eval cluster --sweep`` tries (merge x floor; docs/grouping.md).
SWEEP_MERGE_RATES = (1e-5, 1.5e-5, 2e-5, 2.5e-5, 3e-5, 4e-5)
SWEEP_FLOOR_RATES = (5e-5, 7e-5, 1e-4, 1.5e-4, 2e-4, 3e-4)


def sweep_rules(
    faces: LfwFaces,
    merge_rates: Sequence[float] = SWEEP_MERGE_RATES,
    floor_rates: Sequence[float] = SWEEP_FLOOR_RATES,
) -> list[dict]:
    """For each rule (merge rate x floor rate, the other rates as :data:`RULE`): the numbers it
    derives from the impostor pairs of LFW people A-M, and BCubed precision, recall, F of grouping
    with them on A-M (where a rule is chosen), N-Z (the check) and all; one JSON-able row each."""
    from faceid.cluster.calibration import RULE, GroupingRule

    am, nz = subset_mask(faces, "A-M"), subset_mask(faces, "N-Z")
    tail = impostor_tail(faces.embeddings[am], faces.people[am])
    rows: list[dict] = []
    seen: dict[tuple[float, float, float], dict] = {}
    for merge_rate in merge_rates:
        for floor_rate in (r for r in floor_rates if r >= merge_rate):
            d = derive(tail, GroupingRule(merge_rate, floor_rate, RULE.margin_share, RULE.suggest_rate))
            numbers = (d.threshold, d.floor, d.margin)
            if numbers not in seen:  # rates that round to the same numbers group the same
                params = GroupingParams(threshold=d.threshold, floor=d.floor, margin=d.margin)
                seen[numbers] = {}
                for name, mask in (("a_m", am), ("n_z", nz), ("all", np.ones_like(am))):
                    s = cluster_scores(faces.people[mask], group_faces(faces.embeddings[mask], params=params).labels)
                    seen[numbers][name] = [round(v, 4) for v in (s.bcubed_precision, s.bcubed_recall, s.bcubed_f)]
            rows.append(
                {
                    "row": "rule",
                    "merge_rate": merge_rate,
                    "floor_rate": floor_rate,
                    "threshold": d.threshold,
                    "floor": d.floor,
                    "margin": d.margin,
                    **seen[numbers],
                }
            )
    return rows


#: The keep rule: the highest detection-confidence bar that loses at most this share of the
#: central faces (the photo's subject) at the key's minimum face size. On MTCNN with SFace it gives
#: 0.90 (10 of 13,232 lost; 0.95 loses 60), the bar chosen by hand before the rule.
MAX_CENTRAL_LOST = 0.001
#: The minimum face size the keep rule is applied at (40 px: below it background faces end in
#: junk groups, measured with FaceNet and with SFace; docs/grouping.md).
KEEP_RULE_SIZE = 40


def chosen_filter(rows: list[dict], min_size: int, max_lost: float = MAX_CENTRAL_LOST) -> dict:
    """The ``"chosen"`` row for :func:`filter_table`'s ``rows``: the highest ``min_confidence``
    whose ``"keep"`` row at ``min_size`` loses at most ``max_lost`` of the central faces."""
    central = sum(r["central"] for r in rows if r["row"] == "bucket")
    ok = [
        r for r in rows if r["row"] == "keep" and r["min_size"] == min_size and r["central_lost"] <= max_lost * central
    ]
    if not ok:
        raise ValueError(f"no keep row at {min_size} px loses at most {max_lost:.1%} of the central faces")
    best = max(ok, key=lambda r: r["min_confidence"])
    return {
        "row": "chosen",
        "rule": f"highest confidence losing at most {max_lost:.1%} of central faces at {min_size} px",
        "min_size": min_size,
        "min_confidence": best["min_confidence"],
        "central_lost": best["central_lost"],
        "central": central,
        "bcubed_precision": best["bcubed_precision"],
        "bcubed_f": best["bcubed_f"],
    }


def evaluate_attach(faces: LfwFaces, *, params: GroupingParams | None = None) -> dict:
    """The incremental protocol: hold out the last image of every person with 3 or more images
    ("known": their person has other faces) and every second person with a single image
    ("strangers"), group the rest, then :func:`faceid.cluster.attach` the held-out faces.

    A known face is attached right when it joins a group whose most common person is its own.
    """
    from faceid.cluster import GroupCentroids, attach

    x, who = faces.embeddings, faces.people
    counts = np.bincount(who)
    held = np.zeros(len(who), dtype=bool)
    for person in np.flatnonzero(counts >= 3):
        held[np.flatnonzero(who == person)[-1]] = True
    held[np.flatnonzero(counts[who] == 1)[::2]] = True
    start = time.perf_counter()
    grouping = group_faces(x[~held], params=params)
    old = who[~held]
    majority = np.array(
        [np.bincount(old[grouping.labels == g]).argmax() for g in range(grouping.groups)], dtype=np.int64
    )
    centroids = GroupCentroids.from_labels(x[~held], grouping.labels)
    t = time.perf_counter()
    placed = attach(x[held], centroids, params=params)
    attach_s = time.perf_counter() - t
    new = who[held]
    known = counts[new] >= 3
    joined = placed.groups >= 0
    right = joined & (majority[np.maximum(placed.groups, 0)] == new)
    return {
        "known_new": int(known.sum()),
        "known_attached_right": int(np.sum(known & right)),
        "known_attached_wrong": int(np.sum(known & joined & ~right)),
        "strangers_new": int((~known).sum()),
        "strangers_attached": int(np.sum(~known & joined)),
        "attach_s": round(attach_s, 3),
        "seconds": round(time.perf_counter() - start, 2),
    }
