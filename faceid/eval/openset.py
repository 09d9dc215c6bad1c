"""The LFW open-set identification protocol: rank-1, DIR at FPIR 1% and 0.1%."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceid.cache import EmbeddingCache
from faceid.eval.fpir import single_face_namings, threshold_at_fpir
from faceid.eval.lfw import LFW_CENTRE_BOX, EmbeddedSet, embed_lfw_images, lfw_people
from faceid.pipeline import Pipeline

if TYPE_CHECKING:  # pragma: no cover
    from faceid.gallery import Gallery
    from faceid.thresholds import DecisionParams

log = logging.getLogger(__name__)


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
    protocol, excluded = without_missing(protocol, embedded)
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
    from faceid.chips import make_chip
    from faceid.gallery import Gallery, NewFace
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


def without_missing(protocol: OpenSetProtocol, embedded: EmbeddedSet) -> tuple[OpenSetProtocol, int]:
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
