"""The default threshold tables: their points, interpolation in log N between them, held beyond,
and a clear error for embeddings no table was measured for."""

from __future__ import annotations

import pytest

from faceid.embedding_key import EmbeddingKey
from faceid.errors import UncalibratedError
from faceid.thresholds import TABLES, threshold_for

DEFAULT = EmbeddingKey.for_model()  # faceid's default embeddings, which have a measured table


@pytest.fixture
def table(monkeypatch):
    """A table whose log-N midpoints have round values: 10 people lie halfway between 1 and 100."""
    key = EmbeddingKey("test-model", "0" * 64, 8)  # a model the registry does not know
    monkeypatch.setitem(TABLES, key, ((1, 0.2), (100, 0.4), (10_000, 0.6)))
    return key


@pytest.mark.parametrize(
    "people, want",
    [(0, 0.2), (1, 0.2), (10, 0.3), (100, 0.4), (1000, 0.5), (10_000, 0.6), (50_000, 0.6), (10**9, 0.6)],
)
def test_interpolated_in_log_people_and_held_at_the_ends(table, people, want):
    assert threshold_for(table, people) == pytest.approx(want, abs=1e-12)


def test_between_points_by_log_people(table):
    # 3 people: log(3) / log(100) = 0.2386 of the way from 1 to 100
    assert threshold_for(table, 3) == pytest.approx(0.2 + 0.2 * (0.4771212547 / 2), abs=1e-9)
    assert threshold_for(table, 3) < threshold_for(table, 4) < threshold_for(table, 10)


def test_the_shipped_table_at_its_own_points():
    table = TABLES[DEFAULT]
    for people, threshold in table:
        assert threshold_for(DEFAULT, people) == pytest.approx(threshold, abs=1e-12)
    assert threshold_for(DEFAULT, table[-1][0] * 10) == table[-1][1]
    for (n0, t0), (n1, t1) in zip(table, table[1:]):  # between two points, between their values
        if n1 - n0 > 1:
            assert min(t0, t1) <= threshold_for(DEFAULT, n0 + 1) <= max(t0, t1)


def test_embeddings_without_a_table_are_named_with_the_way_out():
    wide = EmbeddingKey.for_model("facenet-20170512-110547", crop_margin=0.3)  # the margin crop of FaceNet
    assert wide not in TABLES
    with pytest.raises(UncalibratedError, match="faceid calibrate.*--threshold"):
        threshold_for(wide, 10)
