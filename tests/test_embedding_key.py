"""EmbeddingKey: validated on construction, stored by the gallery, the key of threshold tables."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from faceid.embedding_key import EmbeddingKey
from faceid.errors import EmbeddingKeyError, GalleryCorruptError, ModelMismatchError, UncalibratedError
from faceid.gallery import Gallery, NewFace
from faceid.models import DEFAULT_MODEL, MODELS
from faceid.models import FACENET as FACENET_ID
from faceid.pipeline import Pipeline
from faceid.thresholds import TABLES, threshold_for

FACENET = MODELS[FACENET_ID]


def test_for_model_takes_weights_and_dimension_from_the_registry():
    key = EmbeddingKey.for_model(FACENET_ID)
    assert (key.model, key.weights_sha256, key.dimension) == (FACENET_ID, FACENET.sha256, 128)
    assert (key.align, key.crop_margin, key.mirror) == ("margin", 0.1, False)
    assert EmbeddingKey.for_model(FACENET_ID, align="similarity", crop_margin=0.3).crop_margin is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dimension": 8}, "128-d"),
        ({"weights_sha256": "0" * 64}, "from weights"),
        ({"weights_sha256": "not a hash"}, "64 hex"),
        ({"dimension": 0}, "positive"),
        ({"dimension": True}, "positive"),
        ({"align": "typo"}, "unknown crop method 'typo'"),
        ({"crop_margin": -0.1}, "between 0 and 1"),
        ({"crop_margin": 1.5}, "between 0 and 1"),
        ({"crop_margin": None}, "between 0 and 1"),
        ({"align": "similarity", "crop_margin": 0.2}, "takes no crop margin"),
        ({"mirror": "yes"}, "true or false"),
        ({"model": ""}, "model id"),
    ],
)
def test_invalid_keys_are_refused_with_the_reason(change, message):
    fields = EmbeddingKey.for_model(FACENET_ID).to_json() | change
    with pytest.raises(EmbeddingKeyError, match=message):
        EmbeddingKey(**fields)


def test_json_round_trip_and_the_old_dict_form():
    key = EmbeddingKey.for_model(FACENET_ID, crop_margin=0.2, mirror=True)
    assert EmbeddingKey.from_json(key.to_json()) == key
    assert EmbeddingKey.from_json(key.dumps()) == key
    old = {"model": FACENET_ID, "dimension": 128, "align": "margin", "margin": 0.2, "mirror": True}
    assert EmbeddingKey.from_json(old) == key
    with pytest.raises(EmbeddingKeyError, match="unknown fields extra"):
        EmbeddingKey.from_json(key.to_json() | {"extra": 1})
    with pytest.raises(EmbeddingKeyError, match="not a JSON object"):
        EmbeddingKey.from_json("[1, 2")


def test_unregistered_models_are_kept_but_named_in_differences():
    other = EmbeddingKey("someone-elses-model", "a" * 64, 512, "similarity", None, False)
    assert EmbeddingKey.from_json(other.to_json()) == other
    differing = ["model", "weights_sha256", "dimension", "align", "crop_margin"]
    assert EmbeddingKey.for_model(FACENET_ID).differences(other) == differing


def test_pipeline_key_and_from_key_agree():
    key = EmbeddingKey.for_model(FACENET_ID, crop_margin=0.25, mirror=True)
    pipeline = Pipeline.from_key(key, detector=object(), embedder=object())
    assert pipeline.key == key
    assert pipeline.crop_margin == 0.25 and pipeline.mirror
    with pytest.raises(EmbeddingKeyError, match="unknown crop method"):
        Pipeline(align="typo", detector=object(), embedder=object())


def _face(seed: int, dimension: int = 128) -> NewFace:
    v = np.random.default_rng(seed).normal(size=dimension).astype(np.float32)
    return NewFace(v / np.linalg.norm(v), f"{seed:064x}", (0, 0, 10, 10), 0.99)


def test_gallery_stores_the_key_and_refuses_another(tmp_path):
    key = EmbeddingKey.for_model(FACENET_ID)
    with Gallery(tmp_path / "g") as g:
        assert g.embedding_key is None
        g.add_faces("ann", [_face(1)], embedding_key=key)
        assert g.embedding_key == key and g.dimension == 128
        mirrored = EmbeddingKey.for_model(FACENET_ID, mirror=True)
        with pytest.raises(ModelMismatchError, match=r"differs in mirror"):
            g.add_faces("bob", [_face(2)], embedding_key=mirrored)
        with pytest.raises(TypeError, match="EmbeddingKey"):
            g.add_faces("bob", [_face(2)], embedding_key=key.to_json())  # type: ignore[call-overload]
        assert [p.name for p in g.people()] == ["ann"]


def test_gallery_refuses_embeddings_of_another_length_than_the_key(tmp_path):
    with Gallery(tmp_path / "g") as g, pytest.raises(ValueError, match="128-d"):
        g.add_faces("ann", [_face(1, dimension=8)], embedding_key=EmbeddingKey.for_model(FACENET_ID))
        assert g.people() == []


def test_a_gallery_of_the_old_key_form_opens_with_the_same_key(tmp_path):
    key = EmbeddingKey.for_model(FACENET_ID, crop_margin=0.2)
    with Gallery(tmp_path / "g") as g:
        g.add_faces("ann", [_face(1)], embedding_key=key)
    old = {"model": FACENET_ID, "dimension": 128, "align": "margin", "margin": 0.2, "mirror": False}
    with sqlite3.connect(tmp_path / "g" / "gallery.db") as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'embedding_key'", (json.dumps(old),))
    with Gallery(tmp_path / "g") as g:
        assert g.embedding_key == key
        g.add_faces("bob", [_face(2)], embedding_key=key)  # still the same gallery for enrolment
    with sqlite3.connect(tmp_path / "g" / "gallery.db") as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'embedding_key'", ('{"model": 3}',))
    with Gallery(tmp_path / "g") as g, pytest.raises(GalleryCorruptError, match="embedding key"):
        _ = g.embedding_key


def test_threshold_tables_are_per_key():
    default = EmbeddingKey.for_model(FACENET_ID)
    assert default in TABLES
    assert EmbeddingKey.for_model(FACENET_ID, mirror=True) in TABLES
    assert threshold_for(default, 1680) != threshold_for(EmbeddingKey.for_model(FACENET_ID, mirror=True), 1680)
    for key in (
        EmbeddingKey.for_model(FACENET_ID, crop_margin=0.3),
        EmbeddingKey.for_model(FACENET_ID, align="similarity"),
    ):
        with pytest.raises(UncalibratedError, match=r"faceid calibrate.*--threshold"):
            threshold_for(key, 10)


def test_identify_without_a_table_for_the_key_is_one_line_naming_the_fixes(tmp_path):
    from conftest import fake_cli, make_fake_pipeline, save_png, tile_image

    from faceid.enroll import enroll

    photo = save_png(tmp_path / "ann.png", tile_image([(200, 30, 30)]))
    key = EmbeddingKey.for_model(FACENET_ID, crop_margin=0.3)  # no measured table for this crop
    pipeline = make_fake_pipeline(key)

    with Gallery(tmp_path / "g") as g:
        assert [r.status for r in enroll(g, "ann", [photo], pipeline)] == ["added"]
    result = fake_cli("identify", photo, "--gallery", tmp_path / "g")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "faceid calibrate" in lines[0] and "--threshold" in lines[0], result.output
    result = fake_cli("identify", photo, "--gallery", tmp_path / "g", "--threshold", "0.3", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["faces"][0]["name"] == "ann"


def test_the_default_model_of_new_galleries_is_one_constant(monkeypatch):
    """SFace by default (docs/models.md, "Which model a new gallery gets"); changing the one constant moves
    every new gallery, pipeline and key to another model, FaceNet's own functions staying FaceNet's."""
    from faceid import models, registry

    assert DEFAULT_MODEL == "sface" and EmbeddingKey.for_model().align == "arcface-112"
    assert Pipeline.from_key(None, detector=object(), embedder=object()).key == EmbeddingKey.for_model("sface")
    monkeypatch.setattr(registry, "DEFAULT_MODEL", FACENET_ID)
    assert EmbeddingKey.for_model() == EmbeddingKey.for_model(FACENET_ID)
    assert EmbeddingKey.for_model().align == "margin"
    assert Pipeline.from_key(None, detector=object(), embedder=object()).key == EmbeddingKey.for_model(FACENET_ID)
    assert Pipeline(FACENET_ID, detector=object(), embedder=object()).key.align == "margin"
    assert models.locate_graph.__defaults__ == (FACENET_ID,)
