"""`faceid watch` as a process, with the real models: a file source ends by itself; a looped one
runs until SIGTERM (or SIGINT), then ends its open tracks, flushes their events and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLES
from videos import write_video

pytestmark = pytest.mark.model


def _faceid(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "faceid", *args], env=env, text=True, **kwargs)


@pytest.fixture(scope="module")
def obama(tmp_path_factory):
    """A gallery with Obama enrolled, and a 2 s clip of his portrait (20 frames at 10 fps)."""
    from faceid.errors import ModelNotFoundError
    from faceid.images import load_image
    from faceid.models import DEFAULT_MODEL, locate

    try:
        locate(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        pytest.skip(f"the default model's weights are not installed ({exc})")
    work = tmp_path_factory.mktemp("watch")
    photo = SAMPLES / "people" / "barack_obama" / "obama.jpg"
    enrol = _faceid(
        "enroll", "barack", str(photo), "-g", str(work / "g"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, errors = enrol.communicate(timeout=300)
    assert enrol.returncode == 0, errors
    pixels = load_image(photo)
    pixels = pixels[: pixels.shape[0] // 2 * 2, : pixels.shape[1] // 2 * 2]
    return work / "g", write_video(work / "obama.mkv", [pixels] * 20, fps=10)


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_file_source_ends_by_itself_with_start_and_end(obama):
    gallery, clip = obama
    proc = _faceid("watch", str(clip), "-g", str(gallery), "--fps", "5", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, errors
    events = _events(out)
    assert [(e["event"], e["name"]) for e in events] == [("start", "barack"), ("end", "barack")], errors
    assert events[1]["frames"] == 10 and "1 connection" in errors


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_cleanly_and_flushes_the_open_tracks(obama, sig):
    gallery, clip = obama
    proc = _faceid(
        "watch", str(clip), "--loop", "-g", str(gallery), "--fps", "5", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = ""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        first = proc.stdout.readline()
        if first.startswith("{"):
            break
    assert json.loads(first)["event"] == "start", proc.stderr.read() if proc.poll() is not None else first
    proc.send_signal(sig)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    events = [json.loads(first), *_events(out)]
    starts = [e["track"] for e in events if e["event"] == "start"]
    ends = [e["track"] for e in events if e["event"] == "end"]
    assert starts and sorted(starts) == sorted(ends)  # every track that started was ended and reported
    assert {e["name"] for e in events} == {"barack"} and "Traceback" not in errors
