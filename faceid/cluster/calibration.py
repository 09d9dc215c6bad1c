"""Grouping numbers from a model's own impostor similarities: arrays in, frozen dataclasses out.

Every model spreads its cosine similarities differently (the median of two strangers is 0.025 with
FaceNet and 0.107 with SFace on LFW; 0.68 is where FaceNet starts to merge and where SFace misses
most pairs of one person), so a similarity bar fitted to one model is wrong for the next. What carries is a *rate*:
the share of pairs of different people (impostor pairs) whose similarity is at least the bar.
Identify's threshold comes from a false-identification rate the same way (:mod:`faceid.thresholds`).

The rule (:data:`RULE`), the same for every model (rates swept on LFW A-M with SFace and
FaceNet; on FaceNet's A-M it gives 0.68 / 0.60, the numbers tuned by hand for FaceNet before;
on SFace's 0.50 / 0.44):

- ``threshold`` (two single faces merge): the similarity that :attr:`GroupingRule.merge_rate` of
  impostor pairs reach;
- ``floor`` (what the bar falls to for big groups, see :func:`faceid.cluster._agglomerate.needed`):
  the similarity that :attr:`GroupingRule.floor_rate` of impostor pairs reach;
- ``margin`` (how far a new face's best group must lead the runner-up in :func:`faceid.cluster.attach`):
  :attr:`GroupingRule.margin_share` of the distance from the impostor median to ``threshold``;
- ``suggest`` (an unknown face is offered to the enrolled person it matches best): the similarity
  that :attr:`GroupingRule.suggest_rate` of impostor pairs reach (a person reviews each offer, so
  it may be looser than a merge).

:func:`impostor_tail` measures the distribution (exactly, by counting every impostor pair in
blocks into 1e-4-wide bins: no ``N x N`` matrix), :func:`derive` applies the rule. The rates were
chosen on LFW people A-M and checked on N-Z and with a second model (``faceid eval cluster
--subset A-M --model M``; docs/grouping.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["RULE", "DerivedNumbers", "GroupingRule", "ImpostorTail", "derive", "impostor_tail"]

log = logging.getLogger(__name__)

#: Histogram bins over the cosine range [-1, 1] (bin width 1e-4).
BINS = 20_000
#: Rows compared with every face per block (bounds the ``BLOCK x N`` scratch).
BLOCK = 1024


@dataclass(frozen=True)
class GroupingRule:
    """Impostor rates that fix a model's grouping numbers (see the module docstring)."""

    merge_rate: float
    floor_rate: float
    margin_share: float
    suggest_rate: float

    def __post_init__(self) -> None:
        for name in ("merge_rate", "floor_rate", "suggest_rate"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be a rate in (0, 1), got {value}")
        if self.floor_rate < self.merge_rate:
            raise ValueError("floor_rate must be at least merge_rate (the floor is below the threshold)")
        if not 0.0 <= self.margin_share < 1.0:
            raise ValueError(f"margin_share must be in [0, 1), got {self.margin_share}")


#: The rule every registered model's grouping numbers come from: swept on LFW A-M for SFace and
#: FaceNet, checked on N-Z and all of LFW (docs/grouping.md, "One rule for every model"); 3e-5 /
#: 1e-4 before, which left FaceNet 0.002 short of its precision bar on all of LFW.
RULE = GroupingRule(merge_rate=2.5e-5, floor_rate=1.5e-4, margin_share=0.15, suggest_rate=1e-3)


@dataclass(frozen=True)
class ImpostorTail:
    """The similarity distribution of impostor pairs (pairs of faces of different people).

    ``counts`` ``(BINS,)`` int64: impostor pairs per 1e-4-wide bin of cosine similarity from -1
    to 1; ``pairs``: their total.
    """

    counts: np.ndarray
    pairs: int

    def similarity_at(self, rate: float) -> float:
        """The lowest similarity (a bin's lower edge) that at most ``rate`` of impostor pairs reach."""
        if self.pairs == 0:
            raise ValueError("no impostor pairs: the faces need at least two people")
        above = np.cumsum(self.counts[::-1])[::-1]  # pairs at or above each bin
        ok = np.flatnonzero(above <= rate * self.pairs)
        first = int(ok[0]) if len(ok) else BINS
        return round(-1.0 + 2.0 * first / BINS, 4)

    def rate_at(self, similarity: float) -> float:
        """The share of impostor pairs whose similarity is at least ``similarity``."""
        first = int(np.clip(np.ceil((similarity + 1.0) * BINS / 2.0 - 1e-9), 0, BINS))
        return float(self.counts[first:].sum()) / max(self.pairs, 1)

    @property
    def median(self) -> float:
        return self.similarity_at(0.5)


def impostor_tail(embeddings: np.ndarray, people: np.ndarray) -> ImpostorTail:
    """Count every impostor pair of ``embeddings`` ``(N, D)`` unit rows by similarity.

    ``people`` ``(N,)`` int: each face's person. Each unordered pair is counted once.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    who = np.asarray(people, dtype=np.int64).ravel()
    if x.ndim != 2 or len(who) != len(x):
        raise ValueError(f"embeddings {x.shape} and people ({len(who)},) do not match")
    counts = np.zeros(BINS, dtype=np.int64)
    n = len(x)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        s = x[start:stop] @ x.T  # (B, N)
        rows = np.arange(start, stop)[:, None]
        keep = (np.arange(n)[None, :] > rows) & (who[start:stop, None] != who[None, :])
        b = np.clip(((s[keep] + 1.0) * (BINS / 2.0)).astype(np.int64), 0, BINS - 1)
        counts += np.bincount(b, minlength=BINS)
    return ImpostorTail(counts, int(counts.sum()))


@dataclass(frozen=True)
class DerivedNumbers:
    """A model's grouping numbers as :data:`RULE` gives them from an :class:`ImpostorTail`."""

    threshold: float
    floor: float
    margin: float
    suggest: float
    impostor_median: float
    impostor_pairs: int

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def derive(tail: ImpostorTail, rule: GroupingRule = RULE) -> DerivedNumbers:
    """The grouping numbers ``rule`` gives on ``tail`` (similarities rounded to 0.01)."""
    threshold = round(tail.similarity_at(rule.merge_rate), 2)
    floor = min(threshold, round(tail.similarity_at(rule.floor_rate), 2))
    median = tail.median
    margin = round(max(0.0, rule.margin_share * (threshold - median)), 2)
    return DerivedNumbers(
        threshold, floor, margin, round(tail.similarity_at(rule.suggest_rate), 2), round(median, 3), tail.pairs
    )
