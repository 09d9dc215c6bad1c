"""Accuracy measurements: the LFW verification protocol and an open-set identification protocol.

Everything here reuses the exact pipeline faceid identifies with, and the embedding cache, so a
second run over the same images does not run the networks again. Metrics come from
``sklearn.metrics``.

LFW image policy: the face used is the detection nearest the image centre (LFW photos are
centred on their subject); where MTCNN finds no face, a fixed central box (the median MTCNN box
of LFW) is embedded instead, and the count of such images is reported.

Failures are not missing faces. An image that cannot be read (``unreadable``) or that the face
pipeline failed on (``failed``) gets no embedding, not the fallback box; each is counted and its
message reported apart from ``no_face``. In LFW verification a pair with such an image counts as
wrong in every measure (:func:`pair_scores`): leaving it out would flatter the figures with the
very images faceid could not handle. In the open-set protocol such an image is left out (a
person whose every enrolment photo failed is not enrolled, so their probes count as misses) and
the count is reported.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid.batch import process
from faceid.cache import EmbeddingCache
from faceid.detect import Detection
from faceid.pipeline import Pipeline

if TYPE_CHECKING:  # pragma: no cover
    from faceid.gallery import Gallery
    from faceid.identify import Naming
    from faceid.thresholds import DecisionParams

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
    """Embeddings of a list of images (one face each) and how each face was found.

    ``no_face``: the pipeline found no face; the fallback box was embedded. ``unreadable`` and
    ``failed``: the file could not be read, or the pipeline failed on it; their rows are NaN and
    ``errors`` maps each of them to its one-line message.
    """

    paths: list[str]
    embeddings: np.ndarray
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: the face each row embeds (the central detection, or the fallback box); ``None`` where none
    detections: list[Detection | None] = field(default_factory=list)

    @property
    def missing(self) -> set[str]:
        """Images without an embedding: unreadable or failed."""
        return set(self.unreadable) | set(self.failed)


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
    """One embedding per image: the central face, or the fallback box where none was found; none
    (a NaN row) for an image that cannot be read or that the pipeline failed on."""
    names = [os.fspath(p) for p in paths]
    rows = np.zeros((len(names), pipeline.spec.dimension), dtype=np.float32)
    result = EmbeddedSet(names, rows, detections=[None] * len(names))
    for i, item in enumerate(process(names, pipeline, batch_size=32, cache=cache, on_done=progress)):
        if item.image is None or item.error is not None:
            (result.unreadable if item.image is None else result.failed).append(item.source)
            result.errors[item.source] = item.error or f"{item.source}: unreadable"
            log.warning("%s", result.errors[item.source])
            rows[i] = np.nan
            continue
        if item.faces:
            central = _central(item.faces, item.image.width, item.image.height)
            rows[i] = central.embedding
            result.detections[i] = central.detection
            continue
        result.no_face.append(item.source)
        h, w = item.image.height, item.image.width
        x, y, bw, bh = LFW_CENTRE_BOX
        sx, sy = w / 250, h / 250
        box = (round(x * sx), round(y * sy), round(bw * sx), round(bh * sy))
        fallback = Detection(box, 0.0, ((0.0, 0.0),) * 5)
        rows[i] = pipeline.embed(item.image.pixels, [fallback])[0]
        result.detections[i] = fallback
    return result


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


# -- open-set identification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSetProtocol:
    """Who is enrolled with which photos, and who probes.

    The LFW open-set protocol: people with at least two images are enrolled with their first
    ``enrol`` images (at most all but one, so each still has a probe); their remaining images are
    the known probes; people with a single image are the unknown probes.
    """

    enrolled: list[tuple[str, str]]  # (person, path)
    known: list[tuple[str, str]]  # (person, path)
    unknown: list[str]  # paths


def lfw_people(root: Path) -> dict[str, list[str]]:
    """Every LFW person and their image paths, sorted."""
    folder = Path(root) / "lfw-deepfunneled"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    people = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(str(p) for p in person.glob("*.jpg"))
        if images:
            people[person.name] = images
    return people


def openset_protocol(
    people: dict[str, list[str]],
    *,
    enrol: int = 1,
    max_people: int | None = None,
    max_strangers: int | None = None,
    seed: int = 0,
) -> OpenSetProtocol:
    """The protocol over ``people``; ``max_people``/``max_strangers`` draw a seeded random subset (for quick runs)."""
    rng = np.random.default_rng(seed)
    multi = sorted(n for n, imgs in people.items() if len(imgs) >= 2)
    single = sorted(n for n, imgs in people.items() if len(imgs) == 1)
    if max_people is not None and max_people < len(multi):
        multi = sorted(rng.choice(multi, max_people, replace=False).tolist())
    if max_strangers is not None and max_strangers < len(single):
        single = sorted(rng.choice(single, max_strangers, replace=False).tolist())
    enrolled, known = [], []
    for name in multi:
        images = people[name]
        k = min(enrol, len(images) - 1)
        enrolled += [(name, p) for p in images[:k]]
        known += [(name, p) for p in images[k:]]
    return OpenSetProtocol(enrolled, known, [people[n][0] for n in single])


@dataclass(frozen=True)
class OpenSetReport:
    """Open-set identification figures.

    ``dir_at_fpir[x]`` is the detection-and-identification rate (known probes named correctly)
    at the threshold where a share ``x`` of unknown probes is named (FPIR); ``at_default`` gives
    both rates at the default threshold for a gallery of this size (``None`` where no table is
    measured for the embedding key). ``unreadable`` and ``failed`` images are left out of the
    protocol (``excluded``: how many of its photos that removed; a person whose every enrolment
    photo failed is not enrolled and their probes count as misses); ``errors`` has their messages.
    The probe counts are those that were scored.
    """

    enrol: int
    people: int
    gallery_faces: int
    known_probes: int
    unknown_probes: int
    rank1: float
    dir_at_fpir: dict[str, dict[str, float]]
    at_default: dict[str, float] | None
    beta: float
    no_face: int
    unreadable: int = 0
    failed: int = 0
    excluded: int = 0
    errors: list[str] = field(default_factory=list)
    #: with ``migrate_from``: the source model, how the faces were migrated, and how close each
    #: migrated enrolment embedding is to the one made from the photo (cosine: min, mean)
    migration: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


def threshold_at_fpir(unknown_scores: np.ndarray, fpir: float) -> float:
    """The lowest threshold at which at most ``fpir`` of the unknown probes pass (score >= threshold)."""
    ranked = np.sort(np.asarray(unknown_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(fpir * len(ranked)))
    if allowed >= len(ranked):
        return float(ranked[-1]) if len(ranked) else 0.0
    return float(np.nextafter(ranked[allowed], np.inf))


def naming_arrays(namings: Sequence[Naming]) -> tuple[list[str | None], np.ndarray]:
    """Names and naming thresholds of one-face photos as ``(names, (N,) float64)``."""
    return [n.name for n in namings], np.array([n.threshold for n in namings], dtype=np.float64)


def single_face_namings(
    gallery: Gallery, vectors: np.ndarray, params: DecisionParams
) -> tuple[list[str | None], np.ndarray]:
    """What identify names each of these one-face photos as, and up to which threshold."""
    from faceid.identify import photo_namings

    namings = photo_namings(gallery, [v[None] for v in vectors], params)
    return naming_arrays([n[0] for n in namings])


def evaluate_openset(
    root: Path,
    pipeline: Pipeline,
    *,
    enrol: int = 1,
    cache: EmbeddingCache | None = None,
    max_people: int | None = None,
    max_strangers: int | None = None,
    seed: int = 0,
    beta: float | None = None,
    progress: Callable[[object], None] | None = None,
    migrate_from: Pipeline | None = None,
) -> OpenSetReport:
    """Run the open-set protocol through a real (temporary) gallery and :func:`faceid.identify.decide`
    itself, margin included (``beta`` overrides :data:`faceid.thresholds.BETA`, to measure it).

    With ``migrate_from``, the gallery is enrolled with that pipeline's model (each face with its
    chip, and no usable photo: its stored hash is not the file's) and moved to ``pipeline``'s model
    by :func:`faceid.migrate.migrate_gallery` from the chips alone; the probes are ``pipeline``'s.

    A probe counts as named at threshold ``t`` exactly when ``identify`` would name it there: its
    naming threshold (:func:`faceid.identify.naming_thresholds`) is at least ``t``.
    """
    import tempfile

    from faceid.errors import UncalibratedError
    from faceid.gallery import Gallery, NewFace
    from faceid.thresholds import BETA, DECISION_MARGIN, DecisionParams, threshold_for

    beta = BETA if beta is None else float(beta)
    params = DecisionParams(threshold=math.inf, margin=DECISION_MARGIN, beta=beta, source="evaluation")
    protocol = openset_protocol(
        lfw_people(root), enrol=enrol, max_people=max_people, max_strangers=max_strangers, seed=seed
    )
    images = sorted({p for _, p in protocol.enrolled} | {p for _, p in protocol.known} | set(protocol.unknown))
    embedded = embed_lfw_images(images, pipeline, cache=cache, progress=progress)
    protocol, excluded = _without_missing(protocol, embedded)
    row = {p: i for i, p in enumerate(embedded.paths)}
    vectors = embedded.embeddings
    migration = None
    with tempfile.TemporaryDirectory(prefix="faceid-openset-") as tmp:
        folder = Path(tmp) / "gallery"
        if migrate_from is None:
            with Gallery(folder) as gallery:
                by_person: dict[str, list] = {}
                for name, path in protocol.enrolled:
                    by_person.setdefault(name, []).append(
                        NewFace(vectors[row[path]], _text_sha256(path), LFW_CENTRE_BOX, 1.0, path)
                    )
                for name, faces in by_person.items():
                    gallery.add_faces(name, faces, embedding_key=pipeline.key)
        else:
            migration = _migrated_gallery(folder, protocol, migrate_from, pipeline, embedded, cache)
        with Gallery(folder, create=False) as gallery:
            known_names, known_scores, best, unknown_scores, people = _probe(gallery, protocol, embedded, params)
    correct = np.array([n == truth for n, (truth, _) in zip(known_names, protocol.known)])
    rank1 = float(np.mean([b == truth for b, (truth, _) in zip(best, protocol.known)]))
    figures = {}
    for fpir in (0.01, 0.001):
        t = threshold_at_fpir(unknown_scores, fpir)
        figures[str(fpir)] = {
            "threshold": round(t, 4),
            "dir": float(np.mean(correct & (known_scores >= t))),
            "fpir": float(np.mean(unknown_scores >= t)),
        }
    try:
        default: float | None = threshold_for(pipeline.key, people)
    except UncalibratedError:
        default = None
    return OpenSetReport(
        enrol=enrol,
        people=people,
        gallery_faces=len(protocol.enrolled),
        known_probes=len(protocol.known),
        unknown_probes=len(protocol.unknown),
        rank1=rank1,
        dir_at_fpir=figures,
        at_default=None
        if default is None
        else {
            "threshold": round(default, 4),
            "dir": float(np.mean(correct & (known_scores >= default))),
            "fpir": float(np.mean(unknown_scores >= default)),
        },
        beta=beta,
        no_face=len(embedded.no_face),
        unreadable=len(embedded.unreadable),
        failed=len(embedded.failed),
        excluded=excluded,
        errors=sorted(embedded.errors.values()),
        migration=migration,
    )


def _probe(
    gallery: Gallery, protocol: OpenSetProtocol, embedded: EmbeddedSet, params: DecisionParams
) -> tuple[list[str | None], np.ndarray, list[str | None], np.ndarray, int]:
    """The protocol's probes against ``gallery``: known names and scores, rank-1 names, unknown scores, people."""
    from faceid.identify import candidates_for

    row = {p: i for i, p in enumerate(embedded.paths)}
    vectors = embedded.embeddings
    known_vectors = vectors[[row[p] for _, p in protocol.known]]
    known_names, known_scores = single_face_namings(gallery, known_vectors, params)
    # rank-1: the most similar person is the right one, whatever the threshold and margin say
    best = [c[0].name if c else None for c in candidates_for(gallery, known_vectors, top=1)]
    _, unknown_scores = single_face_namings(gallery, vectors[[row[p] for p in protocol.unknown]], params)
    return known_names, known_scores, best, unknown_scores, len(gallery)


def _migrated_gallery(
    folder: Path,
    protocol: OpenSetProtocol,
    source: Pipeline,
    target: Pipeline,
    embedded: EmbeddedSet,
    cache: EmbeddingCache | None,
) -> dict:
    """Enrol the protocol's gallery in ``folder`` with ``source``'s model, each face with its chip, and
    migrate it to ``target``'s model from the chips; return what :attr:`OpenSetReport.migration` holds."""
    from faceid.gallery import Gallery, NewFace
    from faceid.gallery.chips import make_chip
    from faceid.images import read_image
    from faceid.migrate import migrate_gallery

    paths = sorted({p for _, p in protocol.enrolled})
    enrolled = embed_lfw_images(paths, source, cache=cache)
    at = {p: i for i, p in enumerate(enrolled.paths)}
    staging = folder.parent / "source"
    with Gallery(staging) as gallery:
        by_person: dict[str, list[NewFace]] = {}
        for name, path in protocol.enrolled:
            detection = enrolled.detections[at[path]]
            if detection is None:  # unreadable or failed with the source model: not enrolled
                continue
            chip = make_chip(read_image(path).pixels, detection)
            face = NewFace(
                enrolled.embeddings[at[path]], _text_sha256(path), detection.box, detection.confidence, path, chip=chip
            )
            by_person.setdefault(name, []).append(face)
        for name, faces in by_person.items():
            gallery.add_faces(name, faces, embedding_key=source.key)
    report = migrate_gallery(staging, target, to=folder)
    with Gallery(folder, create=False) as gallery:
        ids, _, migrated = gallery.embeddings()
        paths_of = {f.id: f.image_path for f in gallery.faces()}
    row = {p: i for i, p in enumerate(embedded.paths)}
    from_photo = embedded.embeddings[[row[str(paths_of[int(i)])] for i in ids]]
    cosines = np.sum(migrated * from_photo, axis=1)
    return {
        "from": source.key.describe(),
        "to": target.key.describe(),
        "faces": report.faces,
        "from_chips": report.from_chips,
        "from_photos": report.from_photos,
        "unmigrated": len(report.unmigrated),
        "cosine_to_photo_embedding": {"min": round(float(cosines.min()), 6), "mean": round(float(cosines.mean()), 6)},
    }


def _without_missing(protocol: OpenSetProtocol, embedded: EmbeddedSet) -> tuple[OpenSetProtocol, int]:
    """``protocol`` without the photos that have no embedding (unreadable or failed), and how many
    photos that removed."""
    gone = embedded.missing
    if not gone:
        return protocol, 0
    kept = OpenSetProtocol(
        [(n, p) for n, p in protocol.enrolled if p not in gone],
        [(n, p) for n, p in protocol.known if p not in gone],
        [p for p in protocol.unknown if p not in gone],
    )
    removed = len(protocol.enrolled) + len(protocol.known) + len(protocol.unknown)
    removed -= len(kept.enrolled) + len(kept.known) + len(kept.unknown)
    log.warning("%d photos of the open-set protocol have no embedding and are left out", removed)
    return kept, removed


def _text_sha256(text: str) -> str:
    """A stand-in image hash for a path (protocol galleries are built from embeddings, not files)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def threshold_by_size(
    root: Path,
    pipeline: Pipeline,
    *,
    sizes: Sequence[int] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1680),
    draws: int = 10,
    fpir: float = 0.01,
    cache: EmbeddingCache | None = None,
    seed: int = 0,
    progress: Callable[[object], None] | None = None,
) -> list[dict]:
    """The threshold holding ``fpir`` for galleries of each size: random galleries of N enrolled
    people (first image each), all single-image people as strangers; mean and spread over draws.

    Exact search in numpy, since hundreds of galleries are scored, then
    :func:`faceid.identify.naming_thresholds` (the decision itself, margin included) on each probe's
    two best people, which are all the decision of a one-face photo looks at.
    """
    from faceid.identify import Candidate, naming_thresholds
    from faceid.thresholds import BETA, DECISION_MARGIN, DecisionParams

    params = DecisionParams(threshold=math.inf, margin=DECISION_MARGIN, beta=BETA, source="evaluation")
    people = lfw_people(root)
    full = openset_protocol(people, enrol=1)
    images = sorted({p for _, p in full.enrolled} | {p for _, p in full.known} | set(full.unknown))
    embedded = embed_lfw_images(images, pipeline, cache=cache, progress=progress)
    full, _ = _without_missing(full, embedded)
    row = {p: i for i, p in enumerate(embedded.paths)}
    vectors = embedded.embeddings
    enrolled = {name: vectors[row[path]] for name, path in full.enrolled}
    known = [(name, vectors[row[path]]) for name, path in full.known]
    strangers = vectors[[row[p] for p in full.unknown]]
    names = sorted(enrolled)
    rng = np.random.default_rng(seed)

    def namings(similarities: np.ndarray, chosen: list[str]) -> tuple[list[str | None], np.ndarray]:
        top = np.argsort(-similarities, axis=1, kind="stable")[:, :2]
        out = [
            naming_thresholds([[Candidate(chosen[j], float(sims[j])) for j in best]], params)[0]
            for sims, best in zip(similarities, top)
        ]
        return [n.name for n in out], np.array([n.threshold for n in out])

    table = []
    for n in sizes:
        thresholds, rates = [], []
        for _ in range(draws if n < len(names) else 1):
            chosen = sorted(rng.choice(names, n, replace=False).tolist()) if n < len(names) else names
            gallery = np.stack([enrolled[c] for c in chosen])
            _, unknown_levels = namings(strangers @ gallery.T, chosen)
            t = threshold_at_fpir(unknown_levels, fpir)
            members = set(chosen)
            probes = [(name, v) for name, v in known if name in members]
            named, levels = namings(np.stack([v for _, v in probes]) @ gallery.T, chosen)
            right = np.array([got == name for got, (name, _) in zip(named, probes)])
            rates.append(float(np.mean(right & (levels >= t))))
            thresholds.append(t)
        table.append(
            {
                "people": n,
                "threshold": round(float(np.mean(thresholds)), 4),
                "spread": round(float(np.std(thresholds)), 4),
                "dir": round(float(np.mean(rates)), 4),
                "draws": len(thresholds),
            }
        )
    return table
