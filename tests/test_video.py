"""faceid.video: tracks in video files, decided once each (fakes for most; the sample clip for the real models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_png, tile_image
from videos import BLUE, RED, tile_frame, two_people_clip, write_video

from faceid.enroll import enroll
from faceid.video import identify_video

JSON_KEYS = {"video", "duration", "fps", "frames_read", "tracks", "error"}
TRACK_KEYS = {"track", "name", "status", "similarity", "first", "last", "frames", "box", "best_frame"}


@pytest.fixture
def alice_gallery(gallery, fake_pipeline, tmp_path):
    enroll(gallery, "alice", [save_png(tmp_path / "alice.png", tile_image([RED]))], fake_pipeline)
    return gallery


def test_each_person_is_one_track_named_once(alice_gallery, fake_pipeline, tmp_path):
    clip = two_people_clip(tmp_path / "two.mkv")
    result = identify_video(clip, alice_gallery, fake_pipeline, fps=3)
    assert result.error is None and result.frames_read == 30 and result.fps == pytest.approx(10)
    assert result.duration == pytest.approx(3.0)
    alice = [t for t in result.tracks if t.name == "alice"]
    others = [t for t in result.tracks if t.name != "alice"]
    assert len(alice) == 1 and alice[0].status == "known" and alice[0].similarity > 0.99
    assert alice[0].first == 0.0 and alice[0].last >= 2.6 and alice[0].frames == 9
    assert alice[0].box[2:] == (40, 40)
    assert len(others) == 1 and others[0].status == "unknown" and others[0].name is None
    # BLUE appears at 1.0 s, on a sample searched only around the tracked faces: found on the next
    # whole-frame search, one sample later (FULL_DETECT_EVERY = 2)
    assert others[0].first == pytest.approx(1.4) and others[0].box[:2] == (160, 80)
    line = result.to_json()
    assert set(line) == JSON_KEYS and all(set(t) == TRACK_KEYS for t in line["tracks"])
    json.dumps(line)


def test_pooled_and_voted_decisions_agree_on_clean_tracks(alice_gallery, fake_pipeline, tmp_path):
    clip = two_people_clip(tmp_path / "two.mkv")
    pooled = identify_video(clip, alice_gallery, fake_pipeline, fps=3, pooling="pool")
    voted = identify_video(clip, alice_gallery, fake_pipeline, fps=3, pooling="vote")
    assert [(t.name, t.status) for t in pooled.tracks] == [(t.name, t.status) for t in voted.tracks]


def test_a_face_after_a_shot_cut_starts_a_new_track(alice_gallery, fake_pipeline, tmp_path):
    first = [tile_frame({(0, 0): RED})] * 10
    crowd = {(c, r): BLUE for c in range(1, 6) for r in range(3)}  # (the fake detector's faces are tiles)
    second = [tile_frame({(0, 0): RED} | crowd)] * 10  # the same face in the same place, another scene
    result = identify_video(write_video(tmp_path / "cut.mkv", first + second), alice_gallery, fake_pipeline, fps=5)
    alice = [(round(t.first, 1), round(t.last, 1)) for t in result.tracks if t.name == "alice"]
    assert alice == [(0.0, 0.8), (1.0, 1.8)]


def test_a_video_with_no_face_has_no_tracks_and_no_error(alice_gallery, fake_pipeline, tmp_path):
    clip = write_video(tmp_path / "empty.mkv", [np.zeros((120, 240, 3), np.uint8)] * 10)
    result = identify_video(clip, alice_gallery, fake_pipeline)
    assert result.error is None and result.tracks == () and result.frames_read == 10


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file (0 bytes)"), (b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "cannot open it as a video")],
)
def test_unreadable_videos_are_errors_naming_the_file(alice_gallery, fake_pipeline, tmp_path, content, reason):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    result = identify_video(bad, alice_gallery, fake_pipeline)
    assert result.tracks == () and result.error is not None
    assert str(bad) in result.error and reason in result.error
    assert result.to_json()["error"] == result.error


def test_a_missing_file_is_an_error(alice_gallery, fake_pipeline, tmp_path):
    result = identify_video(tmp_path / "nowhere.mp4", alice_gallery, fake_pipeline)
    assert result.error is not None and "no such file" in result.error


def test_fps_out_of_range_is_refused(alice_gallery, fake_pipeline, tmp_path):
    from faceid.errors import OptionError

    with pytest.raises(OptionError, match="fps"):
        identify_video(tmp_path / "x.mp4", alice_gallery, fake_pipeline, fps=0)


def test_remember_keeps_one_face_per_unknown_track_and_says_why_not(alice_gallery, fake_pipeline, tmp_path):
    clip = two_people_clip(tmp_path / "two.mkv")
    result = identify_video(clip, alice_gallery, fake_pipeline, fps=3, remember=True)
    by_name = {t.name: t for t in result.tracks}
    assert by_name["alice"].kept_as is None and by_name["alice"].kept == "not kept: known"
    stranger = by_name[None]
    assert stranger.kept == "kept" and stranger.kept_as is not None
    assert alice_gallery.unknown.count() == 1
    again = identify_video(clip, alice_gallery, fake_pipeline, fps=3, remember=True)
    assert {t.kept for t in again.tracks if t.name is None} == {"kept before"}
    assert json.loads(json.dumps(result.to_json()))["tracks"][0]["kept"]


def test_tracks_of_a_long_video_hold_bounded_memory(alice_gallery, fake_pipeline):
    from faceid.thresholds import decision_params
    from faceid.video.engine import TrackEngine
    from faceid.video.reader import Frame

    engine = TrackEngine(alice_gallery, fake_pipeline, decision_params(alice_gallery))
    frame = tile_frame({(0, 0): RED, (3, 1): BLUE})
    for i in range(300):
        engine.add(Frame(i, i / 5, frame))
    assert len(engine.tracker.active) == 2
    assert all(len(t.observations) <= engine.tracker.keep for t in engine.tracker.active)
    assert all(t.frames == 300 for t in engine.tracker.active)


# -- the sample clip, real models ----------------------------------------------------------------

CLIP_PEOPLE = {"Lin-Manuel Miranda": (0.0, 7.2), "Alex Lacamoire": (0.0, 2.9), "Barack Obama": (7.2, 9.2)}


@pytest.fixture(scope="module")
def clip_gallery(tmp_path_factory, data):
    """SFace (the default) gallery with the clip's three people enrolled from their own photos."""
    from faceid.errors import ModelNotFoundError
    from faceid.gallery import Gallery
    from faceid.models import DEFAULT_MODEL, locate

    try:
        locate(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        pytest.skip(f"the default model's weights are not installed ({exc})")
    videos, examples = data / "video", data / "face_recognition_examples" / "examples"
    g = Gallery(tmp_path_factory.mktemp("clip") / "g")
    enroll(g, "Lin-Manuel Miranda", [videos / "lin-manuel-miranda.png"])
    enroll(g, "Alex Lacamoire", [videos / "alex-lacamoire.png"])
    enroll(g, "Barack Obama", [examples / "knn_examples" / "train" / "obama"])
    yield g
    g.close()


@pytest.mark.model
@pytest.mark.shared
def test_sample_clip_names_each_person_in_their_own_scenes_only(clip_gallery, data):
    result = identify_video(data / "video" / "short_hamilton_clip.mp4", clip_gallery)
    assert result.error is None and result.frames_read == 275
    named = [t for t in result.tracks if t.status == "known"]
    for t in named:  # never named as someone not on screen then
        start, end = CLIP_PEOPLE[t.name]
        assert start <= t.first and t.last <= end, t
    long_miranda = [t for t in named if t.name == "Lin-Manuel Miranda" and t.last - t.first > 3]
    assert len(long_miranda) == 1  # the performance, one track
    assert any(t.name == "Barack Obama" for t in named)
    assert sum(t.frames for t in result.tracks) <= result.sampled * 6


def test_folders_give_photos_and_videos_apart(tmp_path):
    from faceid.video.reader import split_media

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/clip.MP4", "a/b/y.webm", "a/b/z.png", "a/notes.txt", "a/.hidden.mkv"):
        (tmp_path / name).write_bytes(b"")
    photos, videos = split_media([tmp_path / "a", tmp_path / "named.mov"])
    assert [p.split("/a/")[-1] for p in photos] == ["x.jpg", "b/z.png"]
    assert [v.rsplit("/", 1)[-1] for v in videos] == ["clip.MP4", "y.webm", "named.mov"]


def test_cli_identify_mixes_photos_and_videos_and_goes_on_past_bad_ones(tmp_path):
    from conftest import fake_cli

    save_png(tmp_path / "enrol" / "alice.png", tile_image([RED]))
    assert fake_cli("enroll", "alice", tmp_path / "enrol" / "alice.png", "-g", tmp_path / "g").exit_code == 0
    media = tmp_path / "media"
    media.mkdir()
    two_people_clip(media / "two.mkv")
    save_png(media / "photo.png", tile_image([RED, BLUE]))
    (media / "zero.mp4").write_bytes(b"")
    result = fake_cli("identify", media, "-g", tmp_path / "g", "--json", "--fps", "3", "-q")
    assert result.exit_code == 1 and "1 of 3 inputs failed" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    photo, video, zero = lines
    assert [f["name"] for f in photo["faces"]] == ["alice", None]
    assert set(video) == JSON_KEYS and video["error"] is None
    assert [(t["name"], t["status"]) for t in video["tracks"]] == [("alice", "known"), (None, "unknown")]
    assert zero["tracks"] == [] and "empty file" in zero["error"]
    text = fake_cli("identify", media / "two.mkv", "-g", tmp_path / "g", "--annotate", tmp_path / "out")
    assert text.exit_code == 0 and "2 tracks" in text.stdout and "track 1   alice" in text.stdout
    assert "-> " in text.stdout and list((tmp_path / "out").iterdir())


def test_a_track_mean_scores_the_weighted_mean_of_its_frames_similarities(alice_gallery, fake_pipeline):
    from faceid.identify import candidates_for
    from faceid.video.decision import mean_candidates

    rng = np.random.default_rng(5)
    frames = rng.normal(size=(6, 128)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    weights = rng.uniform(0.1, 1.0, 6)
    mean = (weights[:, None] * frames).sum(axis=0) / weights.sum()
    [cands] = mean_candidates(alice_gallery, mean[None].astype(np.float32))
    per_frame = [c[0].similarity for c in candidates_for(alice_gallery, frames)]  # one person: alice
    assert cands[0].name == "alice"
    assert cands[0].similarity == pytest.approx(float(np.dot(weights, per_frame) / weights.sum()), abs=1e-5)


@pytest.mark.model
@pytest.mark.shared
def test_strangers_walking_by_are_never_named(clip_gallery, data):
    """The pedestrian clip (no one enrolled is in it): once, a stranger's blurred track scored by its
    mean embedding made unit again was named Obama; scored by the mean of its frames' similarities, none is."""
    result = identify_video(data / "video" / "pedestrians.mp4", clip_gallery, fps=2)
    assert result.error is None and len(result.tracks) >= 3
    assert [t for t in result.tracks if t.name is not None] == []


def test_large_frames_are_shrunk_for_detection_and_boxes_mapped_back(alice_gallery, tmp_path):
    from conftest import FakeDetector, FakeEmbedder

    from faceid.pipeline import Pipeline
    from faceid.thresholds import decision_params
    from faceid.video.engine import TrackEngine
    from faceid.video.reader import Frame

    detector = FakeDetector(tile=20)  # finds the 40 px tiles only at half size
    pipeline = Pipeline.from_key(alice_gallery.embedding_key, detector=detector, embedder=FakeEmbedder())
    params = decision_params(alice_gallery)
    engine = TrackEngine(alice_gallery, pipeline, params, detect_short_side=60, full_every=1)
    frame = tile_frame({(2, 1): RED})  # 240 x 120: shrunk to 120 x 60
    for i in range(3):
        engine.add(Frame(i, i / 3, frame))
    [(track, _)] = engine.finish()
    assert track.box == (80, 40, 40, 40) and track.frames == 3  # (the fake's landmarks fit 40 px tiles only)
    full = TrackEngine(alice_gallery, pipeline, params, detect_short_side=None, full_every=1)
    full.add(Frame(0, 0.0, frame))
    assert {t.box[2:] for t, _ in full.finish()} == {(20, 20)}  # at full size: four quarter tiles, 20 px
