"""Accuracy measurements: the LFW verification protocol and an open-set identification protocol.

Everything here reuses the exact pipeline faceid identifies with, and the embedding cache, so a
second run over the same images does not run the networks again. Metrics come from
``sklearn.metrics``.

LFW image policy: the face used is the detection nearest the image centre (LFW photos are
centred on their subject); where MTCNN finds no face, a fixed central box (the median MTCNN box
of LFW) is embedded instead, and the count of such images is reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from faceid.batch import process
from faceid.cache import EmbeddingCache
from faceid.detect import Detection
from faceid.pipeline import Pipeline

__all__ = [
    "LFW_CENTRE_BOX",
    "VerificationReport",
    "embed_lfw_images",
    "lfw_path",
    "read_pairs",
    "verification_report",
]

log = logging.getLogger(__name__)

#: Fallback face box for 250x250 LFW images where MTCNN finds nothing (x, y, w, h): the median
#: MTCNN box over the 7,701 images of LFW's pairs.txt.
LFW_CENTRE_BOX = (79, 65, 91, 123)


def lfw_path(root: Path, name: str, number: int) -> Path:
    return root / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"


def read_pairs(root: Path, protocol: str = "pairs.txt") -> tuple[list[tuple[Path, Path]], np.ndarray, np.ndarray]:
    """LFW pairs as ``(pairs, same (N,) bool, fold (N,) int)`` from ``root/protocol/pairs.txt``.

    The official file has a header "folds pairs_per_side", then per fold that many same-person
    lines ("name n1 n2") and as many different-person lines ("name1 n1 name2 n2").
    """
    lines = (Path(root) / "protocol" / protocol).read_text().split("\n")
    header = lines[0].split()
    folds, per_side = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    pairs, same, fold = [], [], []
    body = [line.split() for line in lines[1:] if line.strip()]
    if len(body) != folds * per_side * 2:
        raise ValueError(f"{protocol}: expected {folds * per_side * 2} pairs, found {len(body)}")
    for i, parts in enumerate(body):
        if len(parts) == 3:
            a, b = lfw_path(root, parts[0], int(parts[1])), lfw_path(root, parts[0], int(parts[2]))
            same.append(True)
        else:
            a, b = lfw_path(root, parts[0], int(parts[1])), lfw_path(root, parts[2], int(parts[3]))
            same.append(False)
        pairs.append((a, b))
        fold.append(i // (2 * per_side))
    return pairs, np.array(same), np.array(fold)


@dataclass
class EmbeddedSet:
    """Embeddings of a list of images (one face each) and how each face was found."""

    paths: list[str]
    embeddings: np.ndarray
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _central(detections: Sequence, width: int, height: int):
    cx, cy = width / 2, height / 2
    return min(
        detections,
        key=lambda f: (
            (f.detection.box[0] + f.detection.box[2] / 2 - cx) ** 2
            + (f.detection.box[1] + f.detection.box[3] / 2 - cy) ** 2
        ),
    )


def embed_lfw_images(
    paths: Sequence[str | os.PathLike],
    pipeline: Pipeline,
    *,
    cache: EmbeddingCache | None = None,
    progress: Callable[[object], None] | None = None,
) -> EmbeddedSet:
    """One embedding per image: the central face, or the fallback box where none was found."""
    names = [os.fspath(p) for p in paths]
    rows = np.zeros((len(names), pipeline.spec.dimension), dtype=np.float32)
    result = EmbeddedSet(names, rows)
    for i, item in enumerate(process(names, pipeline, batch_size=32, cache=cache, on_done=progress)):
        if item.image is None:
            result.unreadable.append(item.source)
            rows[i] = np.nan
            continue
        if item.faces:
            rows[i] = _central(item.faces, item.image.width, item.image.height).embedding
            continue
        result.no_face.append(item.source)
        h, w = item.image.height, item.image.width
        x, y, bw, bh = LFW_CENTRE_BOX
        sx, sy = w / 250, h / 250
        box = (round(x * sx), round(y * sy), round(bw * sx), round(bh * sy))
        rows[i] = pipeline.embed(item.image.pixels, [Detection(box, 0.0, ((0.0, 0.0),) * 5)])[0]
    return result


@dataclass(frozen=True)
class VerificationReport:
    """LFW verification figures (``accuracy`` = mean over folds, threshold chosen on the others)."""

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
    fallback: str = "central box (LFW_CENTRE_BOX) embedded where MTCNN found no face"

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
    scores: np.ndarray, same: np.ndarray, fold: np.ndarray, embedded: EmbeddedSet
) -> VerificationReport:
    """10-fold accuracy (threshold from the other folds), ROC AUC and TAR at FAR 1e-2 and 1e-3."""
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
    )


def pair_scores(pairs: Sequence[tuple[Path, Path]], embedded: EmbeddedSet) -> np.ndarray:
    """Cosine similarity of each pair's two embeddings."""
    position = {p: i for i, p in enumerate(embedded.paths)}
    a = embedded.embeddings[[position[os.fspath(p)] for p, _ in pairs]]
    b = embedded.embeddings[[position[os.fspath(q)] for _, q in pairs]]
    return np.nan_to_num(np.einsum("ij,ij->i", a, b), nan=-1.0)


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
    scores = pair_scores(pairs, embedded)
    report = verification_report(scores, same, fold, embedded)
    if plots is not None:
        write_plots(scores, same, plots, title=f"LFW, {pipeline.spec.name}")
    return report


def write_plots(scores: np.ndarray, same: np.ndarray, folder: Path, *, title: str) -> list[Path]:
    """ROC curve (log FAR) and same/different similarity histograms as PNG files in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(same, scores)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.semilogx(np.maximum(fpr, 1e-5), tpr)
    ax.set(
        xlabel="false accept rate", ylabel="true accept rate", title=f"ROC: {title}", xlim=(1e-4, 1), ylim=(0.8, 1.001)
    )
    ax.grid(True, which="both", alpha=0.3)
    roc = folder / "roc.png"
    fig.savefig(roc, dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(-0.5, 1.0, 76).tolist()
    ax.hist(scores[same], bins=bins, alpha=0.6, label="same person")
    ax.hist(scores[~same], bins=bins, alpha=0.6, label="different people")
    ax.set(xlabel="cosine similarity", ylabel="pairs", title=f"Similarities: {title}")
    ax.legend()
    hist = folder / "similarities.png"
    fig.savefig(hist, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [roc, hist]
