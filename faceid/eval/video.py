"""Track decisions against per-frame decisions at the same false-name rate: ``faceid eval video``.

LFW people shown as synthetic tracks: people with at least ``frames + 1`` photos are split
(seeded) into enrolled people (their first photo enrolled, the next ``frames`` photos one track)
and strangers (``frames`` photos one track, never enrolled); people with exactly ``frames`` photos
are strangers too. Three ways to name what is seen, each at the threshold where a share ``fpir``
of the strangers' units (frames, or tracks) is named as someone:

- ``frame``: every photo decided alone (what naming each frame of a video does);
- ``pool``: each track decided once from the quality-weighted mean of its embeddings
  (:mod:`faceid.video.decision`);
- ``vote``: each track named by the majority of its frames' own decisions.

The figure for each is the share of enrolled people's units named right (DIR) at that rate, and
the share named as someone else. Everything uses the pipeline identify uses, the gallery's own
decision rule (:func:`faceid.identify.naming_thresholds`: margin, beta), and the embedding cache.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceid.identify import Naming
from faceid.pipeline import Pipeline

__all__ = ["TrackEvalReport", "evaluate_tracks", "track_units"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackEvalReport:
    """``rates[way][fpir]`` = ``{"named_right": DIR, "named_wrong": share of known units named as another}``."""

    frames_per_track: int
    known_tracks: int
    stranger_tracks: int
    known_frames: int
    stranger_frames: int
    no_face: int
    rates: dict[str, dict[str, dict[str, Any]]]
    model: str

    def to_json(self) -> dict:
        return asdict(self)


def track_units(
    people: dict[str, list[str]], frames: int, seed: int = 0, max_people: int | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, list[str]]], list[list[str]]]:
    """``(enrolled (name, photo), known tracks (name, photos), stranger tracks (photos))``: see the module docstring."""
    rng = np.random.default_rng(seed)
    many = sorted(n for n, imgs in people.items() if len(imgs) >= frames + 1)
    exact = sorted(n for n, imgs in people.items() if len(imgs) == frames)
    if max_people is not None:
        many = sorted(rng.choice(many, min(max_people, len(many)), replace=False).tolist())
        exact = sorted(rng.choice(exact, min(max_people, len(exact)), replace=False).tolist())
    order = rng.permutation(len(many))
    known = sorted(many[i] for i in order[: len(many) // 2])
    strangers = sorted([many[i] for i in order[len(many) // 2 :]] + exact)
    enrolled = [(n, people[n][0]) for n in known]
    known_tracks = [(n, people[n][1 : frames + 1]) for n in known]
    stranger_tracks = [people[n][:frames] for n in strangers]
    return enrolled, known_tracks, stranger_tracks


def evaluate_tracks(
    root: Path,
    pipeline: Pipeline | None = None,
    *,
    frames: int = 4,
    fpirs: Sequence[float] = (0.01, 0.05),
    seed: int = 0,
    max_people: int | None = None,
    cache: object | None = None,
    progress: Callable[[object], None] | None = None,
) -> TrackEvalReport:
    """The report (see the module docstring); ``root`` is LFW's folder (holding ``lfw-deepfunneled``)."""
    from faceid.eval.lfw import embed_lfw_images, lfw_people
    from faceid.gallery import Gallery, NewFace
    from faceid.identify import naming_thresholds, photo_namings
    from faceid.thresholds import decision_params
    from faceid.video.decision import mean_candidates
    from faceid.video.tracker import quality

    pipeline = pipeline or Pipeline()
    enrolled, known_tracks, stranger_tracks = track_units(lfw_people(root), frames, seed, max_people)
    paths = sorted(
        {p for _, p in enrolled} | {p for _, ps in known_tracks for p in ps} | {p for t in stranger_tracks for p in t}
    )
    embedded = embed_lfw_images(paths, pipeline, cache=cache, progress=progress)  # type: ignore[arg-type]
    row = {p: i for i, p in enumerate(embedded.paths)}
    missing = embedded.missing
    with tempfile.TemporaryDirectory() as tmp, Gallery(Path(tmp) / "g") as gallery:
        for name, path in enrolled:
            if path in missing:
                continue
            face = NewFace(embedded.embeddings[row[path]], hashlib.sha256(path.encode()).hexdigest(), (0, 0, 1, 1), 1.0)
            gallery.add_faces(name, [face], embedding_key=pipeline.key)
        params = decision_params(gallery, threshold=0.0)

        def frames_of(photos: list[str]) -> list[str]:
            return [p for p in photos if p not in missing]

        tracks: list[tuple[str | None, list[str]]] = [(n, frames_of(ps)) for n, ps in known_tracks]
        tracks += [(None, frames_of(ps)) for ps in stranger_tracks]
        tracks = [(n, ps) for n, ps in tracks if ps]
        frame_vectors = [embedded.embeddings[row[p]][None] for _, ps in tracks for p in ps]
        frame_namings = [n[0] for n in photo_namings(gallery, frame_vectors, params)]
        pooled = []
        for _, ps in tracks:
            weights = np.array([_weight(embedded.detections[row[p]], quality) for p in ps])
            v = (weights[:, None] * np.stack([embedded.embeddings[row[p]] for p in ps])).sum(axis=0)
            pooled.append((v / weights.sum()).astype(np.float32))
        pool_namings = [naming_thresholds([c], params)[0] for c in mean_candidates(gallery, np.stack(pooled))]
    truth_frames = [n for n, ps in tracks for _ in ps]
    vote_namings, start = [], 0
    for _, ps in tracks:
        vote_namings.append(_vote(frame_namings[start : start + len(ps)]))
        start += len(ps)
    truth_tracks = [n for n, _ in tracks]
    rates = {
        "frame": _rates(frame_namings, truth_frames, fpirs),
        "pool": _rates(pool_namings, truth_tracks, fpirs),
        "vote": _rates(vote_namings, truth_tracks, fpirs),
    }
    return TrackEvalReport(
        frames_per_track=frames,
        known_tracks=sum(n is not None for n in truth_tracks),
        stranger_tracks=sum(n is None for n in truth_tracks),
        known_frames=sum(n is not None for n in truth_frames),
        stranger_frames=sum(n is None for n in truth_frames),
        no_face=len(embedded.no_face),
        rates=rates,
        model=pipeline.key.model,
    )


def _weight(detection, quality) -> float:
    return max(quality(detection), 1e-3) if detection is not None else 1e-3


def _vote(namings: Sequence[Naming]) -> Naming:
    """The track's naming when named by a strict majority of its frames: the name most frames have,
    up to the threshold at which that many of them still name it."""
    need = len(namings) // 2 + 1
    best = Naming(None, -np.inf)
    for name in {n.name for n in namings if n.name is not None}:
        levels = sorted((n.threshold for n in namings if n.name == name), reverse=True)
        if len(levels) >= need and levels[need - 1] > best.threshold:
            best = Naming(name, levels[need - 1])
    return best


def _rates(namings: Sequence[Naming], truth: Sequence[str | None], fpirs: Sequence[float]) -> dict[str, dict[str, Any]]:
    from faceid.eval.fpir import threshold_at_fpir

    levels = np.array([n.threshold for n in namings], dtype=np.float64)
    strangers = np.array([t is None for t in truth])
    right = np.array([t is not None and n.name == t for n, t in zip(namings, truth)])
    wrong = np.array([t is not None and n.name is not None and n.name != t for n, t in zip(namings, truth)])
    known = max(1, int((~strangers).sum()))
    out = {}
    for fpir in fpirs:
        t = threshold_at_fpir(levels[strangers], fpir)
        named = levels >= t
        out[f"{fpir:g}"] = {
            "threshold": round(float(t), 4) if t > -1e300 else None,  # None: strangers never reach this rate
            "named_right": round(float((named & right).sum()) / known, 4),
            "named_wrong": round(float((named & wrong).sum()) / known, 4),
        }
    return out
