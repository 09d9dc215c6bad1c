"""`faceid watch rtsp://...`: events from a real RTSP server (GStreamer's gst-rtsp-server, Debian's
``gir1.2-gst-rtsp-server-1.0``, run by the test on 127.0.0.1), and a stream that drops (the server
is killed) and comes back (started again on the same port): the open track ends, a new one starts.

Skipped, with the reason, where the system Python has no GStreamer RTSP server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES, save_png, tile_image
from videos import BLUE, RED, tile_frame

from faceid.enroll import enroll
from faceid.video.watch import watch

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


def _server_missing() -> str | None:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('multifilesrc', 'jpegdec', 'videorate', 'jpegenc', 'rtpjpegpay')"
        " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no system python3 to run the RTSP server ({exc})"
    if done.returncode != 0:
        return "no GStreamer RTSP server (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi)"
    if done.stdout.strip():
        return f"GStreamer elements missing: {done.stdout.strip()} (apt-get install gstreamer1.0-plugins-good)"
    return None


pytestmark = pytest.mark.skipif(bool(reason := _server_missing()), reason=reason or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """``rtsp_server.py`` serving ``folder``'s JPEG frames at ``rtsp://127.0.0.1:PORT/faces``;
    :meth:`stop` kills it (the stream drops), :meth:`start` serves again on the same port."""

    def __init__(self, folder: Path, fps: int = 10) -> None:
        self.folder, self.fps, self.port = folder, fps, _free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/faces"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.folder), str(self.fps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _write_frames(folder: Path, frames) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
def test_an_rtsp_stream_gives_named_events_and_survives_a_drop(gallery, fake_pipeline, tmp_path):
    enroll(gallery, "alice", [save_png(tmp_path / "alice.png", tile_image([RED]))], fake_pipeline)
    # alice walks right and back, a stranger stands still: 20 frames looped at 10 a second
    frames = _write_frames(
        tmp_path / "frames", [tile_frame({(min(i, 19 - i) // 3, 0): RED, (4, 2): BLUE}) for i in range(20)]
    )
    events, stop, stats = [], threading.Event(), {}
    with RtspServer(frames) as server:
        thread = threading.Thread(
            target=lambda: stats.update(
                s=watch(server.url, gallery, fake_pipeline, on_event=events.append, stop=stop, backoff=0.5, fps=5)
            )
        )
        thread.start()
        try:
            started = lambda: {e.track.name for e in events if e.event == "start"} >= {"alice", None}  # noqa: E731
            assert _wait(started, 90), [e.to_json() for e in events]
            server.stop()  # the stream drops: the open tracks end
            assert _wait(lambda: sum(e.event == "end" for e in events) >= 2, 60), [e.to_json() for e in events]
            first = len(events)
            server.start()  # and comes back: faceid reconnects and starts new tracks
            again = lambda: any(e.event == "start" and e.track.name == "alice" for e in events[first:])  # noqa: E731
            assert _wait(again, 90), [e.to_json() for e in events]
        finally:
            stop.set()
            thread.join(60)
    assert not thread.is_alive() and stats["s"].connects >= 2
    alice = [(e.event, e.track.track) for e in events if e.track.name == "alice"]
    starts = [t for kind, t in alice if kind == "start"]
    assert len(starts) >= 2 and sorted(starts) == sorted(t for kind, t in alice if kind == "end")
    assert all(e.track.status == "unknown" for e in events if e.track.name is None)
    assert all(e.source == server.url for e in events)


def _faceid(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "faceid", *args], env=env, text=True, **kwargs)


def _collect(proc: subprocess.Popen) -> list[dict]:
    """The JSON lines ``faceid watch`` prints, appended as they come (a reader thread)."""
    events: list[dict] = []

    def read() -> None:
        for line in proc.stdout or ():
            if line.startswith("{"):
                events.append(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return events


def _collect_lines(stream) -> list[str]:
    """The lines of ``stream`` (a process's stderr), appended as they come (a reader thread)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
    return lines


@pytest.mark.model
@pytest.mark.slow
def test_cli_watch_names_a_person_on_rtsp_across_a_drop(tmp_path):
    """The command as a user runs it, with the real models: start/end with the name, a drop, a new
    start after the server comes back, and SIGTERM ends it with exit 0 and the last end event."""
    from faceid.errors import ModelNotFoundError
    from faceid.images import load_image
    from faceid.models import DEFAULT_MODEL, locate

    try:
        locate(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        pytest.skip(f"the default model's weights are not installed ({exc})")
    photo = SAMPLES / "people" / "barack_obama" / "obama.jpg"
    enrol = _faceid(
        "enroll", "barack", str(photo), "-g", str(tmp_path / "g"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, errors = enrol.communicate(timeout=300)
    assert enrol.returncode == 0, errors
    pixels = load_image(photo)
    pixels = pixels[: pixels.shape[0] // 2 * 2, : pixels.shape[1] // 2 * 2]
    frames = _write_frames(tmp_path / "frames", [pixels] * 10)
    with RtspServer(frames) as server:
        proc = _faceid("watch", server.url, "-g", str(tmp_path / "g"), "--fps", "2",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            events, log = _collect(proc), _collect_lines(proc.stderr)
            assert _wait(lambda: any(e["event"] == "start" for e in events), 240), log
            first = events[0]
            assert (first["event"], first["name"], first["status"], first["source"]) == (
                "start", "barack", "known", server.url
            )  # fmt: skip
            server.stop()  # the drop: every open track ends (a slow machine may have split it in several)
            opened = lambda: {e["track"] for e in events if e["event"] == "start"}  # noqa: E731
            closed = lambda: {e["track"] for e in events if e["event"] == "end"}  # noqa: E731
            # faceid may still read frames it had buffered; it says when the stream has stopped, after
            # the last event of that connection
            assert _wait(lambda: any("the stream stopped" in line for line in log), 120), log
            assert opened() <= closed(), events
            before = len(events)
            server.start()  # back: faceid reconnects and starts a new track
            assert _wait(lambda: any(e["event"] == "start" for e in events[before:]), 240), (events, log)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    _wait(lambda: any(line.startswith("faceid: watched") for line in log), 10)  # the reader takes the last lines
    errors = "".join(log)
    assert proc.returncode == 0, errors
    assert all(e["name"] == "barack" and e["status"] == "known" for e in events), events
    assert max(e["track"] for e in events[:before]) < min(e["track"] for e in events[before:])
    assert opened() == closed()  # SIGTERM ended the tracks still open
    assert "2 connections" in errors and "Traceback" not in errors
