"""The embedding cache: what goes in comes out bit for bit, under its own key only, and a
corrupt row is a miss that is computed again, never a crash or a wrong embedding."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from conftest import make_fake_pipeline, save_png, tile_image, unit_vectors

from faceid.batch import process
from faceid.cache import EmbeddingCache
from faceid.detect import Detection
from faceid.pipeline import Face

LANDMARKS = ((12.25, 15.5), (28.0, 15.0), (20.125, 22.0), (14.0, 30.75), (26.0, 30.0))


def faces(seed: int, n: int) -> list[Face]:
    vectors = unit_vectors(seed, n)
    return [Face(Detection((3 * i, 7 + i, 40 + i, 41), 0.875 + i / 1024, LANDMARKS), vectors[i]) for i in range(n)]


def same_faces(got: list[Face] | None, want: list[Face]) -> bool:
    assert got is not None
    return [f.detection for f in got] == [f.detection for f in want] and all(
        g.embedding.dtype == np.float32 and g.embedding.tobytes() == w.embedding.tobytes() for g, w in zip(got, want)
    )


@pytest.fixture
def cache(tmp_path):
    c = EmbeddingCache(tmp_path / "cache.db")
    yield c
    c.close()


def test_round_trip_is_exact_and_survives_reopening(cache, tmp_path):
    stored = {"a" * 64: faces(1, 3), "b" * 64: faces(2, 1), "c" * 64: []}
    cache.put_many(list(stored.items()), "k1")
    for sha, want in stored.items():
        assert same_faces(cache.get(sha, "k1"), want)
    assert cache.get("c" * 64, "k1") == []  # "no face" is an answer, not a miss
    assert cache.get("d" * 64, "k1") is None
    assert (cache.hits, cache.misses) == (4, 1)
    cache.close()
    again = EmbeddingCache(tmp_path / "cache.db")
    assert same_faces(again.get("a" * 64, "k1"), stored["a" * 64])
    again.close()


def test_detections_round_trip_apart_from_faces(cache):
    found = [f.detection for f in faces(3, 2)]
    cache.put_detections([("a" * 64, found), ("b" * 64, [])], "d1")
    assert cache.get_detections("a" * 64, "d1") == found
    assert cache.get_detections("b" * 64, "d1") == []
    assert cache.get_detections("a" * 64, "d2") is None
    assert cache.get("a" * 64, "d1") is None  # detections alone are not faces


def test_keys_keep_pipelines_apart(cache):
    plain = EmbeddingCache.key_of({"pipeline": {"model": "m", "mirror": False}, "detector": {"min": 20}})
    mirror = EmbeddingCache.key_of({"pipeline": {"model": "m", "mirror": True}, "detector": {"min": 20}})
    assert plain != mirror
    assert plain == EmbeddingCache.key_of({"detector": {"min": 20}, "pipeline": {"mirror": False, "model": "m"}})
    cache.put_many([("a" * 64, faces(4, 1))], plain)
    cache.put_many([("a" * 64, faces(5, 2))], mirror)
    assert same_faces(cache.get("a" * 64, plain), faces(4, 1))
    assert same_faces(cache.get("a" * 64, mirror), faces(5, 2))
    assert cache.get("a" * 64, EmbeddingCache.key_of({})) is None
    cache.put_many([("a" * 64, faces(6, 1))], plain)  # replaced, not added to
    assert same_faces(cache.get("a" * 64, plain), faces(6, 1))


CORRUPTIONS = {
    "json cut short": ("detections", lambda v: v[: len(v) // 2]),
    "json not a list": ("detections", lambda v: '{"box": [1, 2, 3, 4]}'),
    "detection without landmarks": ("detections", lambda v: v.replace('"landmarks"', '"marks"')),
    "blob cut short": ("embeddings", lambda v: v[:-4]),
    "blob one byte short": ("embeddings", lambda v: v[:-1]),
    "blob empty": ("embeddings", lambda v: b""),
    "blob for more faces": ("embeddings", lambda v: v + v),
    "blob not unit vectors": ("embeddings", lambda v: np.full(len(v) // 4, 0.5, np.float32).tobytes()),
    "blob with nan": ("embeddings", lambda v: np.full(len(v) // 4, np.nan, np.float32).tobytes()),
    "blob is text": ("embeddings", lambda v: "x" * len(v)),
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_a_corrupt_row_is_a_miss_and_is_replaced(cache, damage, caplog):
    column, change = CORRUPTIONS[damage]
    cache.put_many([("a" * 64, faces(7, 2)), ("b" * 64, faces(8, 1))], "k")
    db = sqlite3.connect(cache.path)
    (value,) = db.execute(f"SELECT {column} FROM faces WHERE image_sha256 = ?", ("a" * 64,)).fetchone()
    db.execute(f"UPDATE faces SET {column} = ? WHERE image_sha256 = ?", (change(value), "a" * 64))
    db.commit()
    db.close()
    assert cache.get("a" * 64, "k") is None
    assert "corrupt cache row" in caplog.text and "a" * 64 in caplog.text
    assert same_faces(cache.get("b" * 64, "k"), faces(8, 1))  # the other rows are untouched
    cache.put_many([("a" * 64, faces(7, 2))], "k")
    assert same_faces(cache.get("a" * 64, "k"), faces(7, 2))


def test_corrupt_detections_are_detected_again(cache):
    cache.put_detections([("a" * 64, [f.detection for f in faces(9, 1)])], "d")
    db = sqlite3.connect(cache.path)
    db.execute("UPDATE detections SET detections = '[{\"box\": [1]}]'")
    db.commit()
    db.close()
    assert cache.get_detections("a" * 64, "d") is None


def test_a_run_over_a_corrupt_cache_gives_the_uncached_answer(tmp_path, cache):
    """Through the batch runner: the second run reads the cache, a damaged row is recomputed."""
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    photos = [save_png(tmp_path / f"p{i}.png", tile_image([c, colours[(i + 1) % 3]])) for i, c in enumerate(colours)]
    pipeline = make_fake_pipeline()
    fresh = [item.faces for item in process(photos, pipeline)]
    assert [len(f) for f in fresh] == [2, 2, 2]
    first = [item.faces for item in process(photos, pipeline, cache=cache)]
    db = sqlite3.connect(cache.path)
    db.execute("UPDATE faces SET embeddings = substr(embeddings, 1, 100)")  # every row
    db.commit()
    db.close()
    calls = pipeline.embedder.calls
    again = [item.faces for item in process(photos, pipeline, cache=cache)]
    assert pipeline.embedder.calls > calls  # recomputed, not served from the damaged rows
    cached = [item.faces for item in process(photos, pipeline, cache=cache)]
    for run in (first, again, cached):
        for got, want in zip(run, fresh):
            assert got is not None and same_faces(got, want)


def test_a_run_served_from_the_cache_does_not_prepare_the_networks(cache, tmp_path):
    """``Pipeline.expect`` starts loading the embedder (TensorFlow's import); a cached run needs none."""
    photos = [save_png(tmp_path / f"p{i}.png", tile_image([(40 * i + 60, 20, 20)])) for i in range(3)]
    pipeline = make_fake_pipeline()
    told: list[int] = []
    pipeline.embedder.expect = told.append  # type: ignore[attr-defined]
    first = [item.faces for item in process(photos, pipeline, cache=cache)]
    assert told == [3]
    again = [item.faces for item in process(photos, pipeline, cache=cache)]
    assert told == [3] and [len(f or []) for f in again] == [len(f or []) for f in first] == [1, 1, 1]
    photos.append(save_png(tmp_path / "new.png", tile_image([(10, 200, 10)])))
    list(process(photos, pipeline, cache=cache))
    assert told == [3, 4]  # one image not in the cache: told once, for the whole run
