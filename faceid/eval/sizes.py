"""The 1%-FPIR threshold measured per gallery size (``faceid eval lfw-openset --sizes``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from faceid.cache import EmbeddingCache
from faceid.eval.fpir import threshold_at_fpir
from faceid.eval.lfw import embed_lfw_images, lfw_people
from faceid.eval.openset import openset_protocol, without_missing
from faceid.pipeline import Pipeline


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
    full, _ = without_missing(full, embedded)
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
