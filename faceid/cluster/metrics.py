"""Clustering quality against true identities: pairwise and BCubed precision, recall and F.

Pairwise: over all pairs of faces, precision is the share of pairs put in one group that are
one person, recall the share of one-person pairs put in one group. BCubed (Bagga and Baldwin
1998; Amigo et al. 2009): per face, precision is the share of its group (itself included) that
is its person, recall the share of its person that is in its group; both averaged over faces.
A face left ungrouped counts as a group of one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ClusterScores", "cluster_scores"]


@dataclass(frozen=True)
class ClusterScores:
    """Pairwise and BCubed precision, recall, F1 of a grouping (``groups``: groups of 2 or more)."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    groups: int
    ungrouped: int

    def to_json(self, digits: int = 4) -> dict:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def cluster_scores(truth: np.ndarray, labels: np.ndarray) -> ClusterScores:
    """Scores of ``labels`` ``(N,)`` int (``-1`` = ungrouped, a group of one) against ``truth`` ``(N,)``.

    Pairwise precision with no pair grouped is 1 (nothing wrong was claimed); pairwise recall
    with no same-person pair is 1.
    """
    truth = np.asarray(truth).ravel()
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if len(truth) != len(labels):
        raise ValueError(f"{len(truth)} true identities but {len(labels)} labels")
    n = len(labels)
    if n == 0:
        return ClusterScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0)
    single = labels < 0
    # every ungrouped face is its own group
    pred = np.where(single, labels.max(initial=-1) + 1 + np.arange(n), labels)
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    t, p = t.ravel(), p.ravel()
    cells, nij = np.unique(t.astype(np.int64) * (p.max() + 1) + p, return_counts=True)
    ti, pj = cells // (p.max() + 1), cells % (p.max() + 1)
    a = np.bincount(t).astype(np.float64)  # faces per person
    b = np.bincount(p).astype(np.float64)  # faces per group
    nij = nij.astype(np.float64)
    bp = float(np.sum(nij**2 / b[pj]) / n)
    br = float(np.sum(nij**2 / a[ti]) / n)
    together = float(np.sum(nij * (nij - 1)) / 2)
    grouped_pairs = float(np.sum(b * (b - 1)) / 2)
    same_pairs = float(np.sum(a * (a - 1)) / 2)
    pp = together / grouped_pairs if grouped_pairs else 1.0
    pr = together / same_pairs if same_pairs else 1.0
    groups = int(np.sum(np.bincount(p) >= 2))
    return ClusterScores(pp, pr, _f(pp, pr), bp, br, _f(bp, br), groups, int(np.sum(b == 1)))
