"""The LFW grouping protocol: every LFW face kept as unknown, grouped, scored against the true people.

One face per image (the detection nearest the centre, as in :mod:`faceid.evaluate`); images
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

from faceid.cluster import GroupingParams, group_faces
from faceid.cluster.metrics import ClusterScores, cluster_scores

__all__ = ["BASELINES", "GroupingReport", "LfwFaces", "evaluate_grouping", "lfw_faces"]

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
    index, ``names`` of the people, ``paths`` of the images; ``left_out``: images with no face."""

    embeddings: np.ndarray
    people: np.ndarray
    names: list[str]
    paths: list[str]
    left_out: int


def lfw_faces(
    root: Path,
    pipeline=None,
    *,
    cache=None,
    people: Sequence[str] | None = None,
    progress: Callable[[object], None] | None = None,
) -> LfwFaces:
    """Embed LFW (or only ``people``) with faceid's pipeline and the embedding cache."""
    from faceid.evaluate import embed_lfw_images, lfw_people
    from faceid.pipeline import Pipeline

    everyone = lfw_people(Path(root))
    chosen = list(everyone) if people is None else [p for p in people if p in everyone]
    paths: list[str] = []
    who: list[int] = []
    for i, name in enumerate(chosen):
        paths += everyone[name]
        who += [i] * len(everyone[name])
    embedded = embed_lfw_images(paths, pipeline or Pipeline(), cache=cache, progress=progress)
    missing = set(embedded.no_face) | set(embedded.unreadable)
    keep = np.array([p not in missing for p in embedded.paths], dtype=bool)
    return LfwFaces(
        np.ascontiguousarray(embedded.embeddings[keep], dtype=np.float32),
        np.asarray(who, dtype=np.int64)[keep],
        chosen,
        [p for p, k in zip(embedded.paths, keep) if k],
        int(np.sum(~keep)),
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
    mask = np.ones(len(faces.people), dtype=bool)
    if subset != "all":
        lo, hi = subset.upper().split("-")
        first = np.array([n[:1].upper() for n in faces.names])
        mask = ((first >= lo) & (first <= hi))[faces.people]
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
