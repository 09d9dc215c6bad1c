"""Decide each track once, from its frames, with the gallery's own open-set rule.

Two ways to turn a track's frames into one decision, both ending in
:func:`faceid.identify.decide` with the gallery's threshold and margin:

- ``"pool"`` (the default): the quality-weighted mean of the track's unit embeddings (see
  :func:`faceid.video.tracker.quality`), decided as one face whose similarity to each person is
  the mean's inner product with them: the weighted mean of the frames' own similarities. Not made
  unit again: that divides every similarity by the mean's length (below 1 when the frames differ),
  raising a blurred stranger's similarity to everyone, toward a false name (seen on the pedestrian
  clip: 0.24 on average over 12 frames, 0.285 made unit, over the 3-person threshold 0.263);
- ``"vote"``: each kept frame decided alone; the track is named when one name wins more than
  half of its frames, else it is unknown (or ambiguous when most frames were).

``faceid eval video`` (:mod:`faceid.eval.video`) measures both against per-frame decisions at the same false-name rate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from faceid.embedding_key import EmbeddingKey
from faceid.gallery import AnyGallery
from faceid.identify import candidates_for, decide
from faceid.results import AMBIGUOUS, KNOWN, UNKNOWN, Candidate
from faceid.thresholds import DecisionParams
from faceid.video.tracker import TrackState

__all__ = ["POOLINGS", "TrackDecision", "decide_track", "link_threshold", "mean_candidates"]

POOLINGS = ("pool", "vote")

#: Linking threshold for a model with no measured table: SFace's and FaceNet's one-person thresholds are 0.30-0.35.
_FALLBACK_LINK = 0.3


@dataclass(frozen=True)
class TrackDecision:
    """The decision for one track: status, the person (``None`` unless known), their similarity."""

    status: str
    name: str | None
    similarity: float


def link_threshold(key: EmbeddingKey | None) -> float:
    """The similarity above which two faces may be linked into one track, for embeddings of ``key``:
    the threshold measured to name a person in a gallery of one (``faceid.thresholds.TABLES``),
    so the same number that would call them the same person."""
    from faceid.errors import UncalibratedError
    from faceid.thresholds import threshold_for

    if key is None:
        return _FALLBACK_LINK
    try:
        return threshold_for(key, 1)
    except UncalibratedError:
        return _FALLBACK_LINK


def decide_track(
    gallery: AnyGallery, track: TrackState, params: DecisionParams, pooling: str = "pool"
) -> TrackDecision:
    """One decision for ``track`` (see the module docstring)."""
    if pooling == "vote":
        return _vote(gallery, [o.embedding for o in track.observations], params)
    cands = mean_candidates(gallery, track.mean()[None, :])
    d = decide(cands, params)[0]
    return TrackDecision(d.status, d.name, d.similarity)


def mean_candidates(gallery: AnyGallery, means: np.ndarray) -> list[list[Candidate]]:
    """The best people for each ``(n, D)`` mean of unit embeddings (rows of length at most 1), each
    similarity the row's inner product with the person's best face (searched with the row made unit,
    then scaled by its length)."""
    lengths = np.linalg.norm(means, axis=1)
    unit = means / np.maximum(lengths, 1e-12)[:, None]
    return [
        [Candidate(c.name, c.similarity * float(n)) for c in cands]
        for cands, n in zip(candidates_for(gallery, unit.astype(np.float32)), lengths)
    ]


def _vote(gallery: AnyGallery, embeddings: list[np.ndarray], params: DecisionParams) -> TrackDecision:
    cands = candidates_for(gallery, np.stack(embeddings))
    decisions = [decide([c], params)[0] for c in cands]
    names = Counter(d.name for d in decisions if d.status == KNOWN)
    if names:
        name, votes = names.most_common(1)[0]
        if votes * 2 > len(decisions):
            sims = [d.similarity for d in decisions if d.name == name]
            return TrackDecision(KNOWN, name, float(np.mean(sims)))
    ambiguous = sum(d.status == AMBIGUOUS for d in decisions)
    best = max(d.similarity for d in decisions)
    return TrackDecision(AMBIGUOUS if ambiguous * 2 > len(decisions) else UNKNOWN, None, float(best))
