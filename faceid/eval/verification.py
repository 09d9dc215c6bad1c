"""The LFW verification protocol: 10-fold accuracy, ROC AUC, TAR at fixed FAR."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceid.cache import EmbeddingCache
from faceid.eval.lfw import EmbeddedSet, embed_lfw_images, read_pairs
from faceid.eval.plots import write_plots
from faceid.pipeline import Pipeline


@dataclass(frozen=True)
class VerificationReport:
    """LFW verification figures (``accuracy`` = mean over folds, threshold chosen on the others).

    ``no_face``: images where no face was found (the fallback box was embedded). ``unreadable``
    and ``failed``: images that could not be read, or that the pipeline failed on; the
    ``failed_pairs`` pairs holding one count as wrong in every figure; ``errors`` has their messages.
    """

    pairs: int
    folds: int
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    auc: float
    tar_at_far: dict[str, float]
    best_threshold: float
    images: int
    no_face: int
    unreadable: int
    failed: int
    failed_pairs: int
    errors: list[str]
    fallback: str = "central box (LFW_CENTRE_BOX) embedded where MTCNN found no face"
    failures: str = "a pair with an unreadable or failed image counts as wrong"

    def to_json(self) -> dict:
        return asdict(self)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (midpoint between neighbouring scores)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(same, scores, drop_intermediate=False)
    positives, negatives = same.sum(), (~same).sum()
    correct = tpr * positives + (1 - fpr) * negatives
    i = int(np.argmax(correct))
    finite = thr[np.isfinite(thr)]
    below = finite[finite < thr[i]]
    return float((thr[i] + below.max()) / 2) if len(below) and np.isfinite(thr[i]) else float(finite.min())


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """True accept rate at the largest threshold whose false accept rate is at most ``far``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(same, scores)
    ok = fpr <= far
    return float(tpr[ok].max()) if ok.any() else 0.0


def verification_report(
    scores: np.ndarray, same: np.ndarray, fold: np.ndarray, embedded: EmbeddedSet, *, failed_pairs: int = 0
) -> VerificationReport:
    """10-fold accuracy (threshold from the other folds), ROC AUC and TAR at FAR 1e-2 and 1e-3.

    ``failed_pairs``: how many of the pairs hold an image without an embedding (already scored as
    wrong by :func:`pair_scores`), for the report."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    accuracies, thresholds = [], []
    folds = sorted(set(fold.tolist()))
    for k in folds:
        train, test = fold != k, fold == k
        if len(folds) > 1:
            t = best_threshold(scores[train], same[train])
        else:
            t = best_threshold(scores, same)
        thresholds.append(t)
        accuracies.append(float(accuracy_score(same[test], scores[test] >= t)))
    return VerificationReport(
        pairs=int(len(same)),
        folds=len(folds),
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=[round(a, 4) for a in accuracies],
        thresholds=[round(t, 4) for t in thresholds],
        auc=float(roc_auc_score(same, scores)),
        tar_at_far={"1e-2": tar_at_far(scores, same, 1e-2), "1e-3": tar_at_far(scores, same, 1e-3)},
        best_threshold=best_threshold(scores, same),
        images=len(embedded.paths),
        no_face=len(embedded.no_face),
        unreadable=len(embedded.unreadable),
        failed=len(embedded.failed),
        failed_pairs=int(failed_pairs),
        errors=sorted(embedded.errors.values()),
    )


#: Score of a pair holding an image without an embedding (unreadable, or the pipeline failed on
#: it): outside the cosine range and on the wrong side of every threshold, so that accuracy, ROC
#: AUC and TAR all count the pair as wrong.
WRONG_SAME, WRONG_DIFFERENT = -2.0, 2.0


def pair_scores(pairs: Sequence[tuple[Path, Path]], embedded: EmbeddedSet, same: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair's two embeddings; :data:`WRONG_SAME` / :data:`WRONG_DIFFERENT`
    for a pair with an image that has none (``same``: ``(N,)`` bool, the pairs' truth)."""
    position = {p: i for i, p in enumerate(embedded.paths)}
    a = embedded.embeddings[[position[os.fspath(p)] for p, _ in pairs]]
    b = embedded.embeddings[[position[os.fspath(q)] for _, q in pairs]]
    scores = np.einsum("ij,ij->i", a, b)
    missing = np.isnan(scores)
    scores[missing] = np.where(np.asarray(same, dtype=bool)[missing], WRONG_SAME, WRONG_DIFFERENT)
    return scores


def evaluate_lfw(
    root: Path,
    pipeline: Pipeline,
    *,
    cache: EmbeddingCache | None = None,
    folds: Sequence[int] | None = None,
    plots: Path | None = None,
    progress: Callable[[object], None] | None = None,
) -> VerificationReport:
    """The LFW verification protocol on ``root`` (``lfw-deepfunneled/`` and ``protocol/pairs.txt``)."""
    pairs, same, fold = read_pairs(root)
    if folds is not None:
        keep = np.isin(fold, list(folds))
        pairs = [p for p, k in zip(pairs, keep) if k]
        same, fold = same[keep], fold[keep]
    images = sorted({os.fspath(p) for pair in pairs for p in pair})
    embedded = embed_lfw_images(images, pipeline, cache=cache, progress=progress)
    scores = pair_scores(pairs, embedded, same)
    lost = embedded.missing
    failed_pairs = sum(os.fspath(p) in lost or os.fspath(q) in lost for p, q in pairs)
    report = verification_report(scores, same, fold, embedded, failed_pairs=failed_pairs)
    if plots is not None:
        write_plots(scores, same, plots, title=f"LFW, {pipeline.spec.name}")
    return report
