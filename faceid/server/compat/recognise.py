"""One image's faces, decided by faceid, with each face's best subjects on the compatibility scale.

The same steps as ``POST /v1/identify``: decode within the server's limits, find and embed the
faces through the batcher, decide every face with :func:`faceid.identify.identify_image` at the
gallery's parameters (:func:`faceid.thresholds.decision_params`). Then, for the clients:
detections under ``det_prob_threshold`` are dropped before deciding (as CompreFace does), the
largest ``limit`` faces kept (0: all), and each face's candidates put on :mod:`.scale`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from faceid.images import LoadedImage
from faceid.results import KNOWN, FaceMatch
from faceid.server.compat.scale import to_scale
from faceid.server.state import State
from faceid.server.uploads import uploaded_faces, upscaled

__all__ = ["Recognised", "Subject", "after_keeping", "recognise"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    """An enrolled person for a face: their name and similarity on the compatibility scale."""

    name: str
    similarity: float


@dataclass(frozen=True)
class Recognised:
    """One face: faceid's decision, its subjects best first (on the scale), and its embedding."""

    match: FaceMatch
    subjects: tuple[Subject, ...]
    embedding: np.ndarray

    @property
    def named(self) -> str | None:
        return self.match.name if self.match.status == KNOWN else None


class NoFace(Exception):
    """The image has no face (after ``det_prob_threshold``); each API answers it in its own way."""


def recognise(
    state: State,
    data: bytes,
    name: str,
    *,
    det_prob_threshold: float = 0.0,
    limit: int = 0,
    top: int = 1,
    remember: bool = False,
) -> tuple[LoadedImage, list[Recognised]]:
    """Decode ``data`` and decide its faces (run in a worker thread), largest face first.

    Raises:
        ImageError: not a readable image within the limits (mapped by the caller).
        ApiError: the face pipeline failed on the image (422).
        NoFace: no face at or above ``det_prob_threshold``.
    """
    from faceid.identify import candidates_for, decision_score, identify_image
    from faceid.thresholds import decision_params

    image, faces = uploaded_faces(state, data, name)
    faces = [f for f in faces if f.detection.confidence >= det_prob_threshold]
    faces.sort(key=lambda f: -f.detection.area)
    if limit > 0:
        faces = faces[:limit]
    if not faces:
        raise NoFace(f"{name}: no face found")
    with state.use() as gallery:
        params = decision_params(gallery)
        result = identify_image(image, gallery, state.pipeline, params, faces=faces, source=name, remember=remember)
        if remember:
            after_keeping(gallery, result.faces)
        # the decision is identify_image's; more subjects than it lists (prediction_count > 5) from the same search
        ranked = candidates_for(gallery, np.stack([f.embedding for f in faces]), top=max(top, 5))
    decided = {m.detection: m for m in result.faces}
    matches = upscaled([decided[f.detection] for f in faces], image)  # the answer speaks of the photo as sent
    out = []
    for face, m, candidates in zip(faces, matches, ranked):
        sims = [c.similarity for c in candidates]
        subjects = []
        for i, c in enumerate(candidates):
            others = max((s for j, s in enumerate(sims) if j != i), default=0.0)
            score = decision_score(c.similarity, others, params.beta)
            named = m.status == KNOWN and c.name == m.name
            subjects.append(Subject(c.name, to_scale(score, params.threshold, named=named)))
        subjects.sort(key=lambda s: -s.similarity)
        out.append(Recognised(m, tuple(subjects[:top]), face.embedding))
    return image, out


def after_keeping(gallery, matches) -> None:
    """Once unknown faces of a request are kept (``identify_image(..., remember=True)``): group them,
    as ``identify --remember`` does at the end of its run, and apply the gallery's retention."""
    if any(m.kept_as is not None for m in matches):
        from faceid.retention import enforce

        gallery.unknown.update_groups()
        enforce(gallery)  # the gallery's bound on kept faces (faceid gallery retention)
