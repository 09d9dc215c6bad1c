"""faceid.video.watch: start/end events from a file, from an MJPEG stream that drops (served by the
test on 127.0.0.1), to a webhook and to a real Mosquitto broker."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest
from conftest import save_png, tile_image
from mjpeg import MjpegServer
from videos import BLUE, RED, tile_frame, two_people_clip

from faceid.enroll import enroll
from faceid.video.watch import watch

EVENT_KEYS = {"event", "source", "at", "time", "track", "name", "status", "similarity", "snapshot"}


@pytest.fixture
def alice_gallery(gallery, fake_pipeline, tmp_path):
    enroll(gallery, "alice", [save_png(tmp_path / "alice.png", tile_image([RED]))], fake_pipeline)
    return gallery


def _summary(events):
    return [(e["event"], e["track"], e["name"], e["status"]) for e in events]


def test_a_file_source_gives_start_and_end_events_with_names(alice_gallery, fake_pipeline, tmp_path):
    events = []
    stats = watch(
        str(two_people_clip(tmp_path / "two.mkv")),
        alice_gallery,
        fake_pipeline,
        on_event=lambda e: events.append(e.to_json()),
        snapshots=tmp_path / "snaps",
    )
    assert _summary(events) == [
        ("start", 1, "alice", "known"),
        ("start", 2, None, "unknown"),
        ("end", 1, "alice", "known"),
        ("end", 2, None, "unknown"),
    ]
    assert all(set(e) >= EVENT_KEYS for e in events) and stats.connects == 1 and stats.events == 4
    end = events[2]
    assert end["first"] == 0.0 and end["last"] >= 2.6 and end["frames"] == 9 and end["similarity"] > 0.99
    assert events[1]["time"] == pytest.approx(1.4)  # appeared at 1.0: found at the next whole-frame search
    for e in events:
        assert (tmp_path / "snaps").joinpath(e["snapshot"].rsplit("/", 1)[-1]).read_bytes()[:2] == b"\xff\xd8"
    json.dumps(events)


def _jpegs(n: int) -> list[bytes]:
    import cv2

    frames = [tile_frame({(i * 5 // n, 0): RED, (4, 2): BLUE}) for i in range(n)]
    return [cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]


@pytest.mark.slow
def test_an_mjpeg_stream_that_drops_is_reconnected(alice_gallery, fake_pipeline):
    events, stop = [], threading.Event()
    with MjpegServer(_jpegs(30), fps=10, per_connection=15) as server:
        stats = {}

        def run():
            stats["s"] = watch(
                server.url, alice_gallery, fake_pipeline, on_event=lambda e: events.append(e), stop=stop, backoff=0.2
            )

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while server.connections < 3 and time.monotonic() < deadline:  # the third is refused (503)
            time.sleep(0.1)
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and server.connections >= 3
    assert stats["s"].connects == 2
    alice = [(e.event, e.track.track) for e in events if e.track.name == "alice"]
    starts = [t for kind, t in alice if kind == "start"]
    ends = [t for kind, t in alice if kind == "end"]
    assert len(starts) == 2 and sorted(starts) == sorted(ends)  # one track per connection, each ended
    assert all(e.track.status == "unknown" for e in events if e.track.name is None)
    assert events[-1].time > events[0].time


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()


def test_events_are_posted_to_a_webhook(alice_gallery, fake_pipeline, tmp_path):
    from faceid.video.sinks import WebhookSink

    _Collector.received = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{httpd.server_address[1]}/hook")
        events = []
        watch(
            str(two_people_clip(tmp_path / "two.mkv")),
            alice_gallery,
            fake_pipeline,
            on_event=lambda e: (events.append(e.to_json()), sink(e)),
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert sink.failures == 0 and [body for _, body in _Collector.received] == events
    assert {kind for kind, _ in _Collector.received} == {"application/json"}


def test_a_webhook_that_is_down_is_counted_not_fatal(alice_gallery, fake_pipeline, tmp_path):
    from faceid.video.sinks import WebhookSink

    sink = WebhookSink(f"http://127.0.0.1:{_free_port()}/hook", timeout=1)
    stats = watch(str(two_people_clip(tmp_path / "two.mkv")), alice_gallery, fake_pipeline, on_event=sink)
    assert stats.events == 4 and sink.failures == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosquitto(tmp_path):
    """A real Mosquitto broker (Debian's ``mosquitto``) on 127.0.0.1 and a free port; stopped after."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None
    )
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"mosquitto did not start: {proc.communicate()[0]!r}")
    yield port
    proc.terminate()
    proc.wait(10)


def test_events_are_published_to_mosquitto(alice_gallery, fake_pipeline, tmp_path, mosquitto):
    import paho.mqtt.client as mqtt

    from faceid.video.sinks import MqttSink

    got, subscribed = [], threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda c, *a: c.subscribe("home/faces", qos=1)
    listener.on_subscribe = lambda *a: subscribed.set()
    listener.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    listener.connect("127.0.0.1", mosquitto)
    listener.loop_start()
    try:
        assert subscribed.wait(10)
        sink = MqttSink(f"mqtt://127.0.0.1:{mosquitto}/home/faces")
        events = []
        watch(
            str(two_people_clip(tmp_path / "two.mkv")),
            alice_gallery,
            fake_pipeline,
            on_event=lambda e: (events.append(e.to_json()), sink(e)),
        )
        sink.close()
        deadline = time.monotonic() + 10
        while len(got) < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert sink.failures == 0 and len(events) == 4
    assert got == [("home/faces", e) for e in events]


def test_bad_sink_addresses_are_refused():
    from faceid.errors import OptionError
    from faceid.video.sinks import MqttSink, WebhookSink

    with pytest.raises(OptionError, match="http"):
        WebhookSink("ftp://example.org/x")
    with pytest.raises(OptionError, match="mqtt://"):
        MqttSink("http://127.0.0.1:1883")


def test_watch_remembers_unknown_tracks_and_says_so_in_their_end_event(alice_gallery, fake_pipeline, tmp_path):
    events = []
    watch(
        str(two_people_clip(tmp_path / "two.mkv")),
        alice_gallery,
        fake_pipeline,
        on_event=lambda e: events.append(e.to_json()),
        remember=True,
    )
    ends = {e["name"]: e for e in events if e["event"] == "end"}
    assert ends[None]["kept"] == "kept" and ends[None]["kept_as"] is not None
    assert ends["alice"]["kept"] == "not kept: known" and alice_gallery.unknown.count() == 1


def test_cli_watch_prints_one_json_line_per_event_and_a_summary(alice_gallery, tmp_path):
    from conftest import fake_cli

    clip = two_people_clip(tmp_path / "two.mkv")
    result = fake_cli("watch", str(clip), "-g", str(alice_gallery.path), "--snapshots", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert _summary(lines) == [
        ("start", 1, "alice", "known"),
        ("start", 2, None, "unknown"),
        ("end", 1, "alice", "known"),
        ("end", 2, None, "unknown"),
    ]
    assert "4 events, 1 connection" in result.stderr
    missing = fake_cli("watch", str(tmp_path / "nowhere.mp4"), "-g", str(alice_gallery.path))
    assert missing.exit_code == 1 and "nowhere.mp4: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
