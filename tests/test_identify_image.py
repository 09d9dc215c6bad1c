"""``identify_image``: the one step from a decoded image to its Identification. The library call,
``identify()`` over files, ``faceid identify --json`` and ``POST /v1/identify`` give the same
object for the same photo: with the fake models here, with the real ones on real photos below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeEmbedder, fake_cli, save_png, tile_image
from test_failures import RED as FAILING_RED
from test_failures import FailingDetector

from faceid.batch import describe_failure, image_failures
from faceid.errors import OptionError, PipelineError
from faceid.identify import identify, identify_image, identify_images
from faceid.images import read_image
from faceid.pipeline import Pipeline

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)
SAMPLES = Path(__file__).resolve().parent.parent / "faceid" / "samples"


@pytest.fixture
def enrolled(gallery_dir, tmp_path):
    """A gallery with Alice (red) and Bob (green), enrolled through the CLI."""
    for name, colour in (("Alice", RED), ("Bob", GREEN)):
        photo = save_png(tmp_path / "enrol" / f"{name}.png", tile_image([colour]))
        assert fake_cli("enroll", name, photo, "--gallery", gallery_dir).exit_code == 0
    return gallery_dir


def test_identify_image_is_what_identify_and_the_cli_give(enrolled, tmp_path, fake_pipeline):
    from faceid.gallery import Gallery

    path = save_png(tmp_path / "group.png", tile_image([GREEN, BLUE, RED]))
    with Gallery(enrolled) as g:
        one = identify_image(read_image(path), g, fake_pipeline)
        (batch,) = identify([path], g, fake_pipeline)
    assert [(f.status, f.name) for f in one.faces] == [("known", "Bob"), ("unknown", None), ("known", "Alice")]
    assert one == batch  # the same frozen object, field for field
    line = json.loads(fake_cli("identify", path, "--json", "--gallery", enrolled).stdout.splitlines()[0])
    assert one.to_json() == line


def test_identify_images_is_identify_image_of_each(enrolled, fake_pipeline):
    from faceid.gallery import Gallery

    images = [read_image(tile_image(c)) for c in ([RED], [BLUE, GREEN], [(0, 0, 0)])]
    with Gallery(enrolled) as g:
        many = identify_images(images, g, fake_pipeline, sources=["a", "b", "c"])
        alone = [identify_image(im, g, fake_pipeline, source=s) for im, s in zip(images, "abc")]
    assert many == alone
    assert [[f.name for f in r.faces] for r in many] == [["Alice"], [None, "Bob"], []]
    assert many[2].error is None  # no face is not an error


def test_a_pipeline_failure_is_an_error_in_the_batch_words_never_no_face(enrolled):
    from faceid.gallery import Gallery

    failing = Pipeline(detector=FailingDetector(PipelineError("odd")), embedder=FakeEmbedder())
    with Gallery(enrolled) as g:
        red, green = read_image(tile_image([FAILING_RED])), read_image(tile_image([GREEN]))  # it fails on that red
        bad, good = identify_images([red, green], g, failing)
        alone = identify_image(red, g, failing, source="red.png")
    assert bad.faces == () and bad.error == describe_failure(PipelineError("odd"), "<array>")
    assert bad.error == "<array>: the face pipeline failed on it: odd"
    assert [f.name for f in good.faces] == ["Bob"] and good.error is None  # the batch goes on
    assert alone.error == "red.png: the face pipeline failed on it: odd"


def test_describe_failure_names_a_foreign_error_by_its_class():
    assert describe_failure(MemoryError(), "x.png") == "x.png: the face pipeline failed on it: MemoryError"
    assert describe_failure(PipelineError("a\nb"), "x.png") == "x.png: the face pipeline failed on it: a b"
    assert PipelineError in image_failures() and MemoryError in image_failures()
    assert TypeError not in image_failures()  # a bug is not a bad image


def test_params_or_threshold_not_both(enrolled, fake_pipeline):
    from faceid.gallery import Gallery
    from faceid.thresholds import decision_params

    image = read_image(tile_image([RED]))
    with Gallery(enrolled) as g:
        params = decision_params(g)
        with pytest.raises(OptionError, match="not both"):
            identify_image(image, g, fake_pipeline, params, threshold=0.5)
        strict = identify_image(image, g, fake_pipeline, threshold=1.01)
    assert strict.params.threshold == pytest.approx(1.01) and strict.params.source == "explicit"
    assert [f.status for f in strict.faces] == ["unknown"]


def test_remember_keeps_the_unknown_faces(enrolled, fake_pipeline):
    from faceid.gallery import Gallery

    image = read_image(tile_image([BLUE, RED]))
    with Gallery(enrolled) as g:
        result = identify_image(image, g, fake_pipeline, remember=True, image_path="/photos/x.png")
        kept = g.unknown.ungrouped()
    blue, red = result.faces
    assert blue.status == "unknown" and blue.kept_as is not None and red.kept_as is None
    assert [(f.id, f.image_path) for f in kept] == [(blue.kept_as, "/photos/x.png")]


def test_remembering_a_run_keeps_a_batch_of_photos_in_one_change(enrolled, fake_pipeline, tmp_path, monkeypatch):
    """identify(..., remember=True) keeps the unknown faces of up to batch_size photos in one change
    (on a Milvus server a change costs round trips); results stay in order, a bad file goes by, and
    a photo seen twice in one batch is kept once: its second copy says so, as it would a run later."""
    from faceid.gallery import Gallery
    from faceid.gallery.unknown import UnknownFaces

    blue = save_png(tmp_path / "run" / "blue.png", tile_image([BLUE]))
    photos = [
        blue,
        tmp_path / "run" / "missing.png",
        save_png(tmp_path / "run" / "two.png", tile_image([BLUE, (90, 90, 0)])),
        save_png(tmp_path / "run" / "blue-again.png", tile_image([BLUE])),  # the same bytes as blue.png
        save_png(tmp_path / "run" / "alice.png", tile_image([RED])),
    ]
    changes: list[int] = []
    real_keep = UnknownFaces.keep

    def counting(self, faces, **kwargs):
        changes.append(len(faces))
        return real_keep(self, faces, **kwargs)

    monkeypatch.setattr(UnknownFaces, "keep", counting)
    with Gallery(enrolled) as g:
        results = list(identify(photos, g, fake_pipeline, remember=True))
    assert [r.image for r in results] == [str(p) for p in photos]
    assert results[1].error is not None and results[1].faces == ()
    assert changes == [3, 1]  # blue, two (2 faces); then from the second copy of blue, which came back to it
    first, again = results[0].faces[0], results[3].faces[0]
    assert first.kept_as is not None and not first.kept_before
    assert again.kept_as == first.kept_as and again.kept_before
    assert [f.status for f in results[4].faces] == ["known"] and results[4].faces[0].kept_as is None
    assert len({first.kept_as, *(f.kept_as for f in results[2].faces)}) == 3  # three faces, three ids


# -- the real models, on real photos ------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.shared
def test_real_photos_same_identification_from_library_cli_and_route(data, gallery_dir, real_pipeline):
    """The Big Bang cast enrolled from one photo each; their group photo and a stranger identified
    by the library call, by `faceid identify --json` and by POST /v1/identify: the same objects."""
    from conftest import cli
    from fastapi.testclient import TestClient

    from faceid.enroll import enroll
    from faceid.gallery import Gallery
    from faceid.server import Settings, create_app

    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    probes = [data / "bigbang" / "group" / "cast.jpg", SAMPLES / "photos" / "astronaut.jpg"]
    with Gallery(gallery_dir) as gallery:
        for name, photo in truth["gallery"].items():
            (result,) = enroll(gallery, name, [data / "bigbang" / photo], real_pipeline)
            assert result.ok, result.message
        library = [identify_image(read_image(p), gallery, real_pipeline, source=str(p)) for p in probes]
    assert [f.name for f in library[0].faces] == truth["probes"]["group/cast.jpg"]  # left to right
    assert [f.status for f in library[1].faces] == ["unknown"]

    def models(key):  # the CLI's pipeline maker: the pipeline already loaded
        assert key == real_pipeline.key
        return real_pipeline

    for probe, expected in zip(probes, library):
        out = cli("identify", probe, "--json", "--gallery", gallery_dir, models=models)
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout.splitlines()[0]) == expected.to_json()
    with TestClient(create_app(gallery_dir, pipeline=real_pipeline, settings=Settings())) as client:
        for probe, expected in zip(probes, library):
            r = client.post("/v1/identify", files=[("file", (probe.name, probe.read_bytes(), "image/jpeg"))])
            assert r.status_code == 200, r.text
            assert r.json() == {**expected.to_json(), "image": probe.name}  # the upload's name, not a path
