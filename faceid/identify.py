"""Open-set identification: name every face in an image, or say it is unknown or ambiguous.

For each face the gallery returns its most similar enrolled faces; a person's similarity is their
best face's (cosine, higher is closer). The decision uses a *score* that discounts a face that
resembles several people alike::

    score(person) = similarity(person) - beta * max(0, best similarity of any other person)

Strangers tend to resemble many enrolled people a little; a person's own face resembles them much
more than anyone else. On LFW's open-set protocol this score named 81% of known faces at 1% false
identifications where the raw similarity named 69%, and the threshold that holds 1% no longer
grows with the size of the gallery (docs/accuracy.md). For each face:

- ``known``: the best person's score is at least ``threshold`` and their similarity leads every
  other person still available by at least ``margin``;
- ``ambiguous``: the score passes the threshold but another person is within ``margin``;
- ``unknown``: no person's score passes the threshold.

A person appears at most once in a photo: faces are assigned greedily, highest score first, and a
face whose best person was taken by a stronger face falls to its next candidate.

:func:`decide` is the only implementation of this rule. Calibration and evaluation need the rule
at every threshold at once; :func:`naming_thresholds` gets that from :func:`decide` itself: lowering
the threshold never takes a name away (it only adds lower-scored pairs after the ones already
placed, and fewer people remain as rivals), so each face has one threshold at and below which it is
named, and one name.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceid.detect import Detection
from faceid.errors import OptionError
from faceid.gallery import AnyGallery
from faceid.results import AMBIGUOUS, KNOWN, UNKNOWN, Candidate, Face, FaceMatch, Identification
from faceid.thresholds import DecisionParams

if TYPE_CHECKING:
    from faceid.batch import Processed
    from faceid.cache import EmbeddingCache
    from faceid.images import LoadedImage
    from faceid.pipeline import Pipeline

__all__ = [
    "AMBIGUOUS",
    "KNOWN",
    "UNKNOWN",
    "Candidate",
    "Decision",
    "FaceMatch",
    "Identification",
    "Naming",
    "decide",
    "decision_score",
    "identify",
    "identify_image",
    "identify_images",
    "match_faces",
    "naming_thresholds",
    "photo_namings",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The outcome for one face: status, the person named (or ``None``), their similarity and score."""

    status: str
    name: str | None
    similarity: float
    score: float


def decision_score(similarity: float, best_other: float, beta: float) -> float:
    """``similarity - beta * max(0, best_other)``: see the module docstring."""
    return float(similarity) - beta * max(0.0, float(best_other))


def _scores(cands: Sequence[Candidate], beta: float) -> list[float]:
    """The decision score of each candidate of one face (candidates best first)."""
    out = []
    for i, c in enumerate(cands):
        others = [o.similarity for j, o in enumerate(cands) if j != i]
        out.append(decision_score(c.similarity, max(others, default=0.0), beta))
    return out


def decide(candidates: Sequence[Sequence[Candidate]], params: DecisionParams) -> list[Decision]:
    """The decision for each face of one photo from its candidates (each list best first), in input order."""
    scored = [_scores(cands, params.beta) for cands in candidates]
    pairs = sorted(
        (
            (score, f, c.name, c.similarity)
            for f, cands in enumerate(candidates)
            for c, score in zip(cands, scored[f])
            if score >= params.threshold
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    chosen: dict[int, tuple[str, float, float]] = {}
    taken: set[str] = set()
    for score, face, name, similarity in pairs:
        if face in chosen or name in taken:
            continue
        chosen[face] = (name, similarity, score)
        taken.add(name)
    out: list[Decision] = []
    for f, cands in enumerate(candidates):
        if f not in chosen:
            best = (cands[0].similarity, scored[f][0]) if cands else (-1.0, -1.0)
            out.append(Decision(UNKNOWN, None, float(best[0]), float(best[1])))
            continue
        name, similarity, score = chosen[f]
        rivals = [c.similarity for c in cands if c.name not in taken]  # people placed elsewhere are no rivals
        if similarity - max(rivals, default=-1.0) < params.margin:
            out.append(Decision(AMBIGUOUS, None, similarity, score))
        else:
            out.append(Decision(KNOWN, name, similarity, score))
    return out


@dataclass(frozen=True)
class Naming:
    """Who :func:`decide` names a face as, and up to which threshold.

    ``name`` is the person the face is named as at every threshold up to and including
    ``threshold``, and at no higher one; ``None`` with ``threshold = -inf`` for a face no threshold
    names (no candidates, or always ambiguous).
    """

    name: str | None
    threshold: float


def naming_thresholds(candidates: Sequence[Sequence[Candidate]], params: DecisionParams) -> list[Naming]:
    """For each face of one photo, the name and the highest threshold at which :func:`decide` names it.

    ``params.threshold`` is ignored; the margin, beta and the one-person-per-photo rule apply as in
    :func:`decide`, which this calls at each distinct candidate score of the photo, highest first.
    """
    out: list[Naming | None] = [None] * len(candidates)
    levels = sorted({s for cands in candidates for s in _scores(cands, params.beta)}, reverse=True)
    for level in levels:
        for f, decision in enumerate(decide(candidates, dataclasses.replace(params, threshold=level))):
            if out[f] is None and decision.status == KNOWN:
                out[f] = Naming(decision.name, level)
        if all(n is not None for n in out):
            break
    never = Naming(None, -math.inf)
    return [n if n is not None else never for n in out]


def candidates_for(gallery: AnyGallery, embeddings: np.ndarray, *, top: int = 5, k: int = 64) -> list[list[Candidate]]:
    """The ``top`` best people for each ``(n, D)`` embedding row, from the gallery's nearest ``k`` faces."""
    if len(embeddings) == 0:
        return []
    # k is not bounded by the gallery's size: a search pads with -1 (asking for the count was two
    # round trips a photo on a Milvus server)
    scores, ids = gallery.search(embeddings, max(1, k))
    owners = gallery.face_owners(ids)
    out = []
    for row_scores, row_ids in zip(scores, ids):
        best: dict[str, float] = {}
        for score, fid in zip(row_scores, row_ids):
            name = owners.get(int(fid))
            if name is not None and score > best.get(name, -np.inf):
                best[name] = float(score)
        ranked = sorted(best.items(), key=lambda t: (-t[1], t[0]))[:top]
        out.append([Candidate(n, s) for n, s in ranked])
    return out


def photo_namings(
    gallery: AnyGallery, photos: Sequence[np.ndarray], params: DecisionParams, *, top: int = 5
) -> list[list[Naming]]:
    """:func:`naming_thresholds` for the faces of each photo (one ``(n_i, D)`` array of embeddings each),
    searched in one batch: what :func:`identify` would name each face as, at every threshold."""
    sizes = [len(p) for p in photos]
    if not sum(sizes):
        return [[] for _ in photos]
    cands = candidates_for(gallery, np.concatenate([p for p in photos if len(p)]), top=top)
    out, start = [], 0
    for n in sizes:
        out.append(naming_thresholds(cands[start : start + n], params))
        start += n
    return out


def match_faces(
    gallery: AnyGallery,
    detections: Sequence[Detection],
    embeddings: np.ndarray,
    params: DecisionParams,
    *,
    top: int = 5,
) -> tuple[FaceMatch, ...]:
    """Decide every face of one photo (see the module docstring)."""
    cands = candidates_for(gallery, embeddings, top=top)
    decisions = decide(cands, params)
    return tuple(
        FaceMatch(
            detection=d, status=x.status, name=x.name, similarity=x.similarity, score=x.score, candidates=tuple(c)
        )
        for d, c, x in zip(detections, cands, decisions)
    )


def identify_image(
    image: LoadedImage,
    gallery: AnyGallery,
    pipeline: Pipeline,
    params: DecisionParams | None = None,
    *,
    faces: Sequence[Face] | None = None,
    source: str | None = None,
    remember: bool = False,
    image_path: str | None = None,
    threshold: float | None = None,
    margin: float | None = None,
) -> Identification:
    """Identify every face of one decoded image: the one place that goes from an image's faces to
    its :class:`Identification` (for :func:`identify`, every HTTP route, and the Ray runs).

    Args:
        image: the decoded image (:func:`faceid.images.read_image`).
        gallery: whom to name; its embedding key must be ``pipeline``'s (else :class:`ModelMismatchError`).
        pipeline: detects and embeds the faces, unless ``faces`` are given.
        params: the decision's threshold, margin and beta [default: :func:`faceid.thresholds.decision_params`
            of the gallery with ``threshold`` and ``margin``: calibrated, else the model's measured
            default for its size].
        faces: the image's faces, already detected and embedded by ``pipeline`` (by
            :func:`faceid.batch.process`, or the server's micro-batcher); ``None``: found here.
        source: the image as the caller names it, which ``Identification.image`` holds: the path as
            given, or an upload's file name [default: ``image.name``].
        remember: keep the faces called unknown in the gallery (one transaction; see :func:`identify`),
            without grouping them (:meth:`~faceid.gallery.unknown.UnknownFaces.update_groups` does).
        image_path: the photo's path recorded with the kept faces (``None``: none is recorded).
        threshold, margin: override the gallery's, when ``params`` is not given.

    Faces are listed left to right (by box). When the pipeline fails on the image (one of
    :func:`faceid.batch.image_failures`), the result has no faces and an ``error`` in the words
    :func:`faceid.batch.describe_failure` gives it; a bug propagates.
    """
    from faceid.batch import Processed, run_batch

    name = image.name if source is None else source
    gallery.check_embedding_key(pipeline.key)
    if params is None:
        from faceid.thresholds import decision_params

        params = decision_params(gallery, threshold=threshold, margin=margin)
    elif threshold is not None or margin is not None:
        raise OptionError("identify_image: give params, or threshold and margin, not both")
    if faces is None:
        (done,) = run_batch([Processed(name, image)], pipeline)
        if done.error is not None:
            return Identification(name, (), params, error=done.error)
        faces = done.faces
    vectors = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 1), np.float32)
    matches = match_faces(gallery, [f.detection for f in faces], vectors, params)
    matches = tuple(sorted(matches, key=lambda m: (m.detection.box[0], m.detection.box[1])))
    if remember:
        matches = _keep_unknown(gallery, pipeline, image, faces, matches, image_path)
    return Identification(name, matches, params, width=image.width, height=image.height)


def identify_images(
    images: Sequence[LoadedImage],
    gallery: AnyGallery,
    pipeline: Pipeline,
    params: DecisionParams | None = None,
    *,
    sources: Sequence[str] | None = None,
) -> list[Identification]:
    """:func:`identify_image` of several decoded images, their faces detected and embedded in one batch
    (:func:`faceid.batch.run_batch`: an image the pipeline fails on gets its ``error``, the others go on)."""
    from faceid.batch import Processed, run_batch

    names = [im.name for im in images] if sources is None else list(sources)
    if len(names) != len(images):
        raise ValueError(f"identify_images: {len(images)} images but {len(names)} sources")
    gallery.check_embedding_key(pipeline.key)
    if params is None:
        from faceid.thresholds import decision_params

        params = decision_params(gallery)
    done = run_batch([Processed(n, im) for n, im in zip(names, images)], pipeline)
    return [
        identify_image(im, gallery, pipeline, params, faces=item.faces, source=n)
        if item.error is None
        else Identification(n, (), params, error=item.error)
        for n, im, item in zip(names, images, done)
    ]


def identify(
    sources: Sequence[str | os.PathLike[str]],
    gallery: AnyGallery,
    pipeline: Pipeline | None = None,
    *,
    threshold: float | None = None,
    margin: float | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    annotate_dir: str | os.PathLike[str] | None = None,
    on_done: Callable[[Identification], None] | None = None,
    runner: Callable[..., Iterator[Processed]] | None = None,
    remember: bool = False,
) -> Iterator[Identification]:
    """Identify every face in each image file of ``sources``; yield one :class:`Identification` each, in order.

    ``threshold`` and ``margin`` default to the gallery's calibrated values, else to the model's
    measured defaults for a gallery of this size (:func:`faceid.thresholds.decision_params`). An unreadable
    source yields an ``Identification`` with ``error`` set and no faces; the run goes on.
    With ``annotate_dir``, an annotated copy of each image is written there (see :mod:`faceid.draw`).
    ``runner`` replaces :func:`faceid.batch.process` (same arguments, same results in the same
    order): :class:`faceid.distributed.RayRunner` runs the pipeline on a Ray cluster.
    With ``remember``, the faces called unknown are kept in the gallery (one change per ``batch_size``
    photos, so their results come out a batch at a time;
    :meth:`UnknownFaces.keep <faceid.gallery.unknown.UnknownFaces.keep>`: never matched, with a
    thumbnail; ``FaceMatch.kept_as`` says the id), and once every source is done they are grouped
    (:meth:`~faceid.gallery.unknown.UnknownFaces.update_groups`). An empty gallery takes the
    pipeline's embedding key.
    """
    from faceid.batch import process
    from faceid.pipeline import Pipeline
    from faceid.thresholds import decision_params

    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    gallery.check_embedding_key(pipeline.key)
    params = decision_params(gallery, threshold=threshold, margin=margin)

    def finished(item: Processed, result: Identification) -> Identification:
        if annotate_dir is not None and item.image is not None and result.error is None:
            from faceid.draw import save_annotated

            written = save_annotated(item.image.pixels, result, annotate_dir, item.source)
            result = dataclasses.replace(result, annotated=str(written))
        if on_done is not None:
            on_done(result)
        return result

    # With remember, the unknown faces of up to batch_size photos are kept in one change: on a Milvus
    # server each change costs several round trips, so one per photo made a run 1.7x milvus-lite's.
    waiting: list[tuple[Processed, Identification]] = []

    def kept() -> Iterator[Identification]:
        photos = [
            (image, item.faces, result.faces, os.path.abspath(item.source), result)
            for item, result in waiting
            if result.error is None and (image := item.image) is not None
        ]
        matches = _keep_unknown_many(gallery, pipeline, [photo[:4] for photo in photos])
        with_ids = {id(photo[4]): faces for photo, faces in zip(photos, matches)}
        for item, result in waiting:
            if id(result) in with_ids:
                result = dataclasses.replace(result, faces=with_ids[id(result)])
            yield finished(item, result)
        waiting.clear()

    for item in (runner or process)(sources, pipeline, batch_size=batch_size, cache=cache):
        if item.error is not None or item.image is None:
            result = Identification(item.source, (), params, error=item.error)
        else:
            result = identify_image(item.image, gallery, pipeline, params, faces=item.faces, source=item.source)
        if not remember:
            yield finished(item, result)
            continue
        sha = item.image.sha256 if item.image is not None else None
        if sha is not None and any(w.image is not None and w.image.sha256 == sha for w, _ in waiting):
            yield from kept()  # the same photo twice: its second copy sees the first's faces kept
        waiting.append((item, result))
        if len(waiting) >= batch_size:
            yield from kept()
    if waiting:
        yield from kept()
    if remember:
        from faceid.retention import enforce

        gallery.unknown.update_groups()
        enforce(gallery)  # the gallery's bound on kept faces (faceid gallery retention)


def _keep_unknown(
    gallery: AnyGallery,
    pipeline: Pipeline,
    image: LoadedImage,
    found: Sequence[Face],
    faces: tuple[FaceMatch, ...],
    image_path: str | None,
) -> tuple[FaceMatch, ...]:
    """Keep the unknown faces of one photo; the matches with ``kept_as`` set."""
    return _keep_unknown_many(gallery, pipeline, [(image, found, faces, image_path)])[0]


def _keep_unknown_many(
    gallery: AnyGallery,
    pipeline: Pipeline,
    photos: Sequence[tuple[LoadedImage, Sequence[Face], tuple[FaceMatch, ...], str | None]],
) -> list[tuple[FaceMatch, ...]]:
    """Keep the unknown faces of several photos (each ``(image, faces found, matches, path)``) in one
    change; each photo's matches with ``kept_as`` (or ``not_kept``) set."""
    from faceid.chips import make_chip
    from faceid.draw import face_thumbnail
    from faceid.gallery import NewFace

    new: list[NewFace] = []
    spots: list[tuple[int, int]] = []  # (photo, face) of each new face
    for p, (image, found, faces, image_path) in enumerate(photos):
        embedding_of = {f.detection: f.embedding for f in found}
        for i, match in enumerate(faces):
            if match.status != UNKNOWN:
                continue
            spots.append((p, i))
            new.append(
                NewFace(
                    embedding=embedding_of[match.detection],
                    image_sha256=image.sha256,
                    box=match.detection.box,
                    confidence=match.detection.confidence,
                    image_path=image_path,
                    thumbnail=face_thumbnail(image.pixels, match.detection.box),
                    chip=make_chip(image.pixels, match.detection),  # what another model needs of it
                )
            )
    out = [list(faces) for _, _, faces, _ in photos]
    if not new:
        return [tuple(faces) for faces in out]
    kept = gallery.unknown.keep(new, embedding_key=pipeline.key, group=False)
    reasons = kept.reasons or (None,) * len(new)
    before = kept.before or (False,) * len(new)
    for (p, i), face_id, why, again in zip(spots, kept.ids, reasons, before):
        out[p][i] = dataclasses.replace(out[p][i], kept_as=face_id, not_kept=why, kept_before=again)
    return [tuple(faces) for faces in out]
