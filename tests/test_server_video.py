"""Short videos on ``POST /v1/identify``: the tracks ``faceid identify VIDEO --json`` prints, the
video size and duration limits, bad videos as 422s, and the temporary file always removed
(fake models on synthetic clips; the sample clip with the real models)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from conftest import FakeDetector, FakeEmbedder, cli, fake_cli, needs_milvus, save_png, tile_image  # noqa: E402
from videos import BLUE, RED, tile_frame, two_people_clip, write_video  # noqa: E402

JSON_KEYS = {"video", "duration", "fps", "frames_read", "tracks", "error"}


def make_client(gallery_dir: Path, pipeline=None, **settings):
    from fastapi.testclient import TestClient

    from faceid.pipeline import Pipeline
    from faceid.server import Settings, create_app

    if pipeline is None:
        pipeline = Pipeline(detector=FakeDetector(), embedder=FakeEmbedder())
    app = create_app(gallery_dir, pipeline=pipeline, settings=Settings(**settings))
    return TestClient(app, raise_server_exceptions=False)


def upload(client, name: str, data: bytes, content_type: str = "application/octet-stream", **params):
    return client.post("/v1/identify", files=[("file", (name, data, content_type))], params=params)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    return body["error"]


@pytest.fixture
def uploads_dir(tmp_path, monkeypatch) -> Path:
    """Where the server's temporary files go in this test (to see that none is left behind)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def alice_server(tmp_path, uploads_dir):
    """A server whose gallery knows alice (the RED tile)."""
    save_png(tmp_path / "alice.png", tile_image([RED]))
    assert fake_cli("enroll", "alice", tmp_path / "alice.png", "-g", tmp_path / "g").exit_code == 0
    with make_client(tmp_path / "g") as client:
        yield client


def test_a_video_gives_the_tracks_the_cli_prints(alice_server, tmp_path, uploads_dir):
    clip = two_people_clip(tmp_path / "two.mkv")
    r = upload(alice_server, "two.mkv", clip.read_bytes(), fps=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == JSON_KEYS and body["video"] == "two.mkv" and body["error"] is None
    assert [(t["name"], t["status"]) for t in body["tracks"]] == [("alice", "known"), (None, "unknown")]
    line = json.loads(fake_cli("identify", clip, "--json", "--fps", "3", "-g", tmp_path / "g").stdout)
    assert body == {**line, "video": "two.mkv"}
    assert list(uploads_dir.glob("faceid-upload-*")) == []  # the temporary file is gone
    # a photo on the same route is still a photo
    photo = upload(alice_server, "p.png", (tmp_path / "alice.png").read_bytes())
    assert photo.status_code == 200 and [f["name"] for f in photo.json()["faces"]] == ["alice"]


def test_fps_is_bounded_like_the_cli(alice_server, tmp_path):
    clip = two_people_clip(tmp_path / "two.mkv", seconds=2).read_bytes()
    for fps in ("0", "121", "x"):
        assert "fps" in error_of(upload(alice_server, "two.mkv", clip, fps=fps), 400)
    fast = upload(alice_server, "two.mkv", clip, fps=10).json()
    slow = upload(alice_server, "two.mkv", clip, fps=1).json()
    assert fast["tracks"][0]["frames"] == 20 and slow["tracks"][0]["frames"] == 2


def test_remember_keeps_the_unknown_tracks(alice_server, tmp_path):
    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()
    tracks = upload(alice_server, "two.mkv", clip, remember="true").json()["tracks"]
    alice, stranger = tracks
    assert "kept" not in alice or alice["kept_as"] is None
    assert stranger["kept"] == "kept" and isinstance(stranger["kept_as"], int)
    from faceid.gallery import Gallery

    with Gallery(tmp_path / "g", create=False) as g:
        assert g.unknown.count() == 1
        kept = [f.id for f in g.unknown.ungrouped()] + [f.id for grp in g.unknown.groups() for f in grp.faces]
    assert kept == [stranger["kept_as"]]


def test_a_video_holds_the_servers_memory_budget_for_one_frame(tmp_path, uploads_dir):
    pytest.importorskip("faceid.server.budget", reason="this server has no memory budget (faceid/server/budget.py)")
    from faceid.server.budget import BYTES_PER_PIXEL

    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()  # 240 x 120 frames
    with make_client(tmp_path / "g") as client:
        assert upload(client, "two.mkv", clip).status_code == 200
        budget = client.app.state.faceid.budget
        assert budget.peak == 240 * 120 * BYTES_PER_PIXEL and budget.used == 0


def test_a_video_over_the_size_limit_is_413_naming_the_setting(tmp_path, uploads_dir):
    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()
    with make_client(tmp_path / "g", max_video_bytes=len(clip) - 1, max_body_bytes=len(clip) * 4) as client:
        message = error_of(upload(client, "two.mkv", clip), 413)
    assert "two.mkv" in message and "max_video_bytes" in message and "--max-video-mb" in message
    assert list(uploads_dir.glob("faceid-upload-*")) == []


def test_identify_takes_a_video_body_larger_than_the_photo_limit(tmp_path, uploads_dir):
    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()
    big_photo = b"\x89PNG\r\n\x1a\n" + bytes(len(clip))
    with make_client(tmp_path / "g", max_body_bytes=len(clip) // 2, max_video_bytes=len(clip) * 2) as client:
        assert upload(client, "two.mkv", clip).status_code == 200
        assert "more than the" in error_of(upload(client, "big.png", big_photo), 413)
        # other routes keep the photo limit, before the body is read
        enrol = client.post("/v1/people/x/faces", files=[("file", ("big.png", big_photo, "image/png"))])
        assert enrol.status_code == 413


def test_a_video_over_the_duration_limit_is_422_naming_the_setting(tmp_path, uploads_dir):
    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()  # 3 s
    with make_client(tmp_path / "g", max_video_seconds=2) as client:
        message = error_of(upload(client, "two.mkv", clip), 422)
    assert "3.0 s long" in message and "max_video_seconds" in message and "--max-video-seconds" in message
    assert list(uploads_dir.glob("faceid-upload-*")) == []


def test_a_video_whose_container_hides_its_length_is_stopped_at_the_limit(tmp_path, uploads_dir, monkeypatch):
    from faceid.video.reader import VideoInfo

    monkeypatch.setattr(VideoInfo, "duration", property(lambda self: 0.0))  # as an unindexed stream says
    seen = []
    original = FakeDetector.detect_many

    def counting(self, images):
        seen.append(len(images))
        return original(self, images)

    monkeypatch.setattr(FakeDetector, "detect_many", counting)
    clip = two_people_clip(tmp_path / "two.mkv", seconds=6).read_bytes()
    with make_client(tmp_path / "g", max_video_seconds=2) as client:
        message = error_of(upload(client, "two.mkv", clip, fps=3), 422)
    assert "longer than its container said" in message and "--max-video-seconds" in message
    assert len(seen) <= 7  # one call a frame (whole or its regions) up to 2 s at 3 a second, not 18
    assert list(uploads_dir.glob("faceid-upload-*")) == []


def test_a_video_past_the_request_timeout_stops_being_worked_on(tmp_path, uploads_dir, monkeypatch):
    import time

    seen = []
    original = FakeDetector.detect_many

    def slow(self, images):
        seen.append(len(images))
        time.sleep(0.1)
        return original(self, images)

    monkeypatch.setattr(FakeDetector, "detect_many", slow)
    clip = two_people_clip(tmp_path / "two.mkv", seconds=6).read_bytes()  # 60 frames at fps=10: 6 s of detection
    with make_client(tmp_path / "g", request_timeout=1.0) as client:
        error_of(upload(client, "two.mkv", clip, fps=10), 503)
        time.sleep(2.0)  # the frame under way when the deadline passed ends
        stopped_at = len(seen)
        time.sleep(0.5)
    assert len(seen) == stopped_at < 30  # stopped soon after the deadline, not carried on to the end
    assert list(uploads_dir.glob("faceid-upload-*")) == []


@pytest.mark.parametrize(
    "content, content_type, reason",
    [
        (b"", "video/mp4", "empty file (0 bytes)"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "application/octet-stream", "cannot open it as a video"),
        (b"\x1a\x45\xdf\xa3" + bytes(300), "application/octet-stream", "cannot open it as a video"),
    ],
)
def test_a_corrupt_or_empty_video_is_422_in_the_apis_words(alice_server, uploads_dir, content, content_type, reason):
    message = error_of(upload(alice_server, "bad.mp4", content, content_type), 422)
    assert message.startswith("bad.mp4: ") and reason in message
    assert "faceid-upload-" not in message and str(uploads_dir) not in message
    assert list(uploads_dir.glob("faceid-upload-*")) == []


def test_a_video_with_no_face_has_no_tracks(alice_server, tmp_path):
    clip = write_video(tmp_path / "empty.mkv", [np.zeros((120, 240, 3), np.uint8)] * 10)
    body = upload(alice_server, "empty.mkv", clip.read_bytes()).json()
    assert body["tracks"] == [] and body["error"] is None and body["frames_read"] == 10


def test_the_clip_in_an_mp4_container_is_read_too(alice_server, tmp_path):
    frames = [tile_frame({(1, 1): RED, (4, 0): BLUE})] * 10
    clip = write_video(tmp_path / "two.mp4", frames, fourcc="mp4v")
    body = upload(alice_server, "two.mp4", clip.read_bytes()).json()
    assert "alice" in [t["name"] for t in body["tracks"]]


def test_containers_are_told_from_photos_by_their_first_bytes():
    from faceid.server.video_upload import is_video_upload, video_suffix

    assert video_suffix(b"\x00\x00\x00\x20ftypisom" + bytes(8)) == ".mp4"
    assert video_suffix(b"\x00\x00\x00\x14ftypqt  " + bytes(8)) == ".mp4"
    assert video_suffix(b"\x1a\x45\xdf\xa3\x01") == ".mkv"
    assert video_suffix(b"RIFF\x00\x00\x00\x00AVI LIST") == ".avi"
    assert video_suffix(b"RIFF\x00\x00\x00\x00WEBPVP8 ") is None  # a WebP photo
    assert video_suffix(b"\x00\x00\x00\x18ftypheic" + bytes(8)) is None  # a HEIF photo
    assert video_suffix(b"\x00\x00\x00\x1cftypavif" + bytes(8)) is None  # an AVIF photo
    assert not is_video_upload(b"\x89PNG\r\n\x1a\n", "image/png")
    assert is_video_upload(b"", "video/webm")


def test_openapi_documents_both_answers(alice_server):
    spec = alice_server.get("/openapi.json").json()
    ok = spec["paths"]["/v1/identify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {s["$ref"].rsplit("/", 1)[-1] for s in ok["anyOf"]}
    assert refs == {"IdentifyOut", "VideoOut"}
    assert set(spec["components"]["schemas"]["VideoOut"]["properties"]) == JSON_KEYS
    params = {p["name"] for p in spec["paths"]["/v1/identify"]["post"]["parameters"]}
    assert "fps" in params


# -- the sample clip, real models ----------------------------------------------------------------


@pytest.mark.model
@pytest.mark.shared
def test_the_sample_clip_on_the_route_matches_the_cli(tmp_path, data, uploads_dir):
    from faceid.errors import ModelNotFoundError
    from faceid.models import DEFAULT_MODEL, locate

    try:
        locate(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        pytest.skip(f"the default model's weights are not installed ({exc})")
    videos, obama = data / "video", data / "face_recognition_examples" / "examples" / "knn_examples" / "train" / "obama"
    g = tmp_path / "g"
    for name, photos in (
        ("Lin-Manuel Miranda", videos / "lin-manuel-miranda.png"),
        ("Alex Lacamoire", videos / "alex-lacamoire.png"),
        ("Barack Obama", obama),
    ):
        assert cli("enroll", name, photos, "-g", g).exit_code == 0
    clip = videos / "short_hamilton_clip.mp4"
    line = json.loads(cli("identify", clip, "--json", "-g", g).stdout)
    from fastapi.testclient import TestClient

    from faceid.server import Settings, create_app

    with TestClient(create_app(g, settings=Settings(request_timeout=600)), raise_server_exceptions=False) as client:
        r = upload(client, clip.name, clip.read_bytes(), "video/mp4")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["video"] == clip.name and body["error"] is None
    assert {k: body[k] for k in ("duration", "fps", "frames_read")} == {
        k: line[k] for k in ("duration", "fps", "frames_read")
    }

    def shape(tracks):
        return [(t["track"], t["name"], t["status"], t["first"], t["last"], t["frames"]) for t in tracks]

    assert shape(body["tracks"]) == shape(line["tracks"])
    similarities = [t["similarity"] for t in line["tracks"]]
    assert [t["similarity"] for t in body["tracks"]] == pytest.approx(similarities, abs=2e-3)
    assert "Barack Obama" in {t["name"] for t in body["tracks"]}
    assert list(uploads_dir.glob("faceid-upload-*")) == []


@needs_milvus
def test_a_video_kept_on_milvus_shares_the_servers_id_counters(tmp_path, uploads_dir):
    """On Milvus a process has one writer per gallery (its id counters live in memory): a video that
    keeps faces writes through the server's gallery, so faces kept before and after it by photos get
    ids of their own (a second writer in the process once handed out an id twice)."""
    spec = f"milvus-lite:{tmp_path / 'g.db'}"
    save_png(tmp_path / "alice.png", tile_image([RED]))
    assert fake_cli("enroll", "alice", tmp_path / "alice.png", "-g", spec).exit_code == 0
    clip = two_people_clip(tmp_path / "two.mkv").read_bytes()
    kept = []
    with make_client(spec) as client:
        for i, colour in enumerate([(20, 200, 20), None, (200, 200, 20)]):
            if colour is None:
                (_, stranger) = upload(client, "two.mkv", clip, remember="true").json()["tracks"]
                kept.append(stranger["kept_as"])
            else:
                photo = save_png(tmp_path / f"s{i}.png", tile_image([colour])).read_bytes()
                (face,) = upload(client, f"s{i}.png", photo, remember="true").json()["faces"]
                kept.append(face["kept_as"])
    assert all(isinstance(k, int) for k in kept) and len(set(kept)) == 3, kept
    from faceid.gallery import open_gallery

    with open_gallery(spec) as g:
        assert g.unknown.count() == 3 and g.check() == []
