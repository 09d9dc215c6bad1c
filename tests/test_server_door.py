"""The server's door on a real socket (uvicorn on loopback, fake models): the key before the body,
stalled uploads cut off, one key's excess queued without holding up others, /healthz while loading,
TLS. Every wait is bounded; nothing leaves this machine."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import FakeDetector, FakeEmbedder, cli, tile_image  # noqa: E402
from test_server import RED, files, png  # noqa: E402


def fake_pipeline(detector=None):
    from faceid.pipeline import Pipeline

    return Pipeline(detector=detector or FakeDetector(), embedder=FakeEmbedder())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app, *, ssl_files: tuple[str, str] | None = None, timeout: float = 20.0):
    """``app`` served by uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    extra = {"ssl_certfile": ssl_files[0], "ssl_keyfile": ssl_files[1]} if ssl_files else {}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=5, **extra)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"{'https' if ssl_files else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "the server did not stop"


def keyed_app(gallery_dir, **settings):
    from faceid.server import Settings, create_app

    key = cli("keys", "create", "phone", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    app = create_app(gallery_dir, pipeline=fake_pipeline(), settings=Settings(**settings))
    return app, key


def stalled_upload(port: int, headers: str = "", size: int = 1_000_000) -> socket.socket:
    """A connection that sends the headers of a 1 MB upload and 1 kB of its body, then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {size}\r\n{headers}\r\n"
    )
    s.sendall(head.encode() + b"--x\r\n" + b"a" * 1000)
    return s


def answer_of(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(65536)
        if not piece:
            break
        data += piece
    return data


def test_keyless_stalled_uploads_get_401_at_once_and_hold_nothing(gallery_dir):
    import httpx

    app, key = keyed_app(gallery_dir, max_uploads=2, key_concurrency=2, read_timeout=30)
    photo = files(("x.png", png(tile_image([RED]))))
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        stalled = [stalled_upload(port) for _ in range(10)]
        try:
            answers = [answer_of(s) for s in stalled]
            assert time.monotonic() - started < 5
            for a in answers:
                assert a.startswith(b"HTTP/1.1 401"), a[:200]
                assert b'www-authenticate: Bearer realm="faceid"' in a.lower().replace(b"bearer", b"Bearer")
            # ...and while those connections are still open, a keyed client gets all of its answers
            with httpx.Client(base_url=url, timeout=10) as c:
                statuses = [
                    c.post("/v1/identify", files=photo, headers={"Authorization": f"Bearer {key}"}).status_code
                    for _ in range(10)
                ]
                assert statuses == [200] * 10
                assert c.post("/v1/identify", files=photo, headers={"x-api-key": key}).status_code == 200
                wrong = c.post("/v1/identify", files=photo, headers={"x-api-key": "fid_wrong"})
                assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Bearer realm="faceid"'
        finally:
            for s in stalled:
                s.close()


def test_a_keyed_stalled_upload_is_cut_off_after_read_timeout_and_others_go_on(gallery_dir):
    import httpx

    app, key = keyed_app(gallery_dir, max_uploads=2, key_concurrency=2, read_timeout=1.0)
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        s = stalled_upload(port, f"Authorization: Bearer {key}\r\n")
        try:
            started = time.monotonic()
            with httpx.Client(base_url=url, timeout=10) as c:
                photo = files(("x.png", png(tile_image([RED]))))
                r = c.post("/v1/identify", files=photo, headers={"x-api-key": key})
                assert r.status_code == 200  # the key's second slot
            answer = answer_of(s)
            waited = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"no data for 1 s" in answer + s.recv(4096)
            assert 0.8 < waited < 5, waited
        finally:
            s.close()


def test_one_keys_burst_is_queued_and_served_without_holding_up_another_key(gallery_dir):
    import httpx

    from faceid.server import Settings, create_app

    class SlowDetector(FakeDetector):
        def detect_many(self, images):
            time.sleep(0.4)
            return super().detect_many(images)

    greedy = cli("keys", "create", "greedy", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    other = cli("keys", "create", "other", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    settings = Settings(max_uploads=3, key_concurrency=2, batch_wait_ms=0, max_batch=1, request_timeout=60)
    app = create_app(gallery_dir, pipeline=fake_pipeline(SlowDetector()), settings=settings)
    photo = files(("x.png", png(tile_image([RED]))))
    answers: list[tuple[int, float]] = []  # (status, when it came) of the burst's requests
    with running(app) as url:

        def burst():
            with httpx.Client(base_url=url, timeout=60) as c:
                status = c.post("/v1/identify", files=photo, headers={"x-api-key": greedy}).status_code
                answers.append((status, time.monotonic()))

        threads = [threading.Thread(target=burst) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the burst is queued now
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/identify", files=photo, headers={"x-api-key": other})
            other_done = time.monotonic()
        for t in threads:
            t.join(60)
    assert r.status_code == 200
    assert sorted(s for s, _ in answers) == [200] * 12  # the whole burst is served, none refused
    # 12 requests two at a time take 6 rounds: the other key was answered in the burst's first
    # rounds, not after it (its own slot, not a place at the end of the greedy key's queue)
    later = [when for _, when in answers if when > other_done]
    assert len(later) >= 4, (len(later), "burst answers came after the other key's")


def test_healthz_says_loading_from_the_start_then_ok(gallery_dir):
    import httpx

    from faceid.server import Settings, create_app

    release = threading.Event()

    def slow_factory(gallery):
        assert release.wait(20)
        return fake_pipeline()

    app = create_app(gallery_dir, pipeline_factory=slow_factory, settings=Settings(), load_in_background=True)
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json() == {"status": "loading"}
        busy = c.get("/v1/people")
        assert busy.status_code == 503 and "loading" in busy.json()["error"] and busy.headers["retry-after"]
        assert c.get("/").status_code == 200  # the page itself is there already
        release.set()
        end = time.monotonic() + 20
        while (r := c.get("/healthz")).status_code == 503 and time.monotonic() < end:
            time.sleep(0.05)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert c.get("/v1/people").status_code == 200


def test_a_failed_load_stops_the_server_with_its_reason(gallery_dir):
    from faceid.errors import ModelNotFoundError
    from faceid.server.app import serve

    def broken(*args, **kwargs):
        raise ModelNotFoundError("no such model here")

    import faceid.server.app as app_module

    original = app_module._start
    app_module._start = broken
    try:
        with pytest.raises(ModelNotFoundError, match="no such model here"):
            serve(gallery_dir, port=free_port(), log_level="critical")
    finally:
        app_module._start = original


def self_signed(folder: Path) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def test_tls_with_a_self_signed_certificate(gallery_dir, tmp_path):
    import shutil

    import httpx

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (it makes the test's certificate)")
    from faceid.server import Settings, create_app

    cert, key = self_signed(tmp_path)
    app = create_app(gallery_dir, pipeline=fake_pipeline(), settings=Settings())
    with running(app, ssl_files=(cert, key)) as url:
        assert url.startswith("https://")
        context = ssl.create_default_context(cafile=cert)
        with httpx.Client(base_url=url, timeout=10, verify=context) as c:
            assert c.get("/healthz").json()["status"] == "ok"
            assert c.post("/v1/identify", files=files(("x.png", png(tile_image([RED]))))).status_code == 200
        with pytest.raises(httpx.ConnectError):  # the certificate is checked: an unknown one is refused
            httpx.get(url + "/healthz", timeout=10)
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to the TLS port
            httpx.get(url.replace("https", "http") + "/healthz", timeout=10)


def test_key_limits_queue_within_the_deadline_and_refuse_beyond_it():
    from faceid.server.slots import KeyLimits, Refused

    async def scenario():
        limits = KeyLimits(concurrency=1, rate=20.0, burst=2)
        order: list[str] = []

        async def one(who: str, name: str, deadline: float):
            async with limits.hold(who, deadline):
                order.append(name)
                await asyncio.sleep(0.05)

        far = time.monotonic() + 5
        started = time.monotonic()
        await asyncio.gather(*(one("a", f"a{i}", far) for i in range(4)), one("b", "b0", far))
        took = time.monotonic() - started
        assert sorted(order) == ["a0", "a1", "a2", "a3", "b0"]
        assert order.index("b0") <= 1  # b did not wait behind a's queue
        assert 0.15 < took < 2  # a's four ran one at a time
        # a deadline the rate cannot meet: 429 with a Retry-After, the token given back
        for _ in range(2):
            async with limits.hold("c", far):
                pass
        with pytest.raises(Refused) as refused:
            async with limits.hold("c", time.monotonic() + 0.01):
                pass
        assert refused.value.status == 429 and refused.value.retry_after >= 1
        await asyncio.sleep(0.2)
        limits.sweep()
        assert len(limits) == 0  # idle keys leave no bookkeeping behind

    asyncio.run(scenario())


def test_the_memory_budget_queues_in_order_and_refuses_only_past_the_deadline():
    from faceid.server.budget import Budget
    from faceid.server.slots import Refused

    async def scenario():
        budget = Budget(100, trim=False)
        order: list[str] = []

        async def one(name: str, need: int, hold: float, deadline: float):
            async with budget.hold(need, deadline):
                order.append(name)
                assert budget.used <= budget.limit
                await asyncio.sleep(hold)

        far = time.monotonic() + 5
        await asyncio.gather(
            one("a", 60, 0.1, far), one("b", 60, 0.05, far), one("c", 30, 0.0, far), one("huge", 1000, 0.0, far)
        )
        assert order == ["a", "b", "c", "huge"]  # in arrival order: c waits behind b, though it would fit
        assert budget.used == 0 and budget.peak <= 100
        async with budget.hold(100, far):
            with pytest.raises(Refused) as refused:
                async with budget.hold(1, time.monotonic() + 0.05):
                    pass
        assert refused.value.status == 503 and "memory" in refused.value.message
        assert budget.used == 0 and budget._waiting == []

    asyncio.run(scenario())


def test_form_key_routes_pass_the_door_to_read_their_own_key(gallery_dir):
    """DeepStack's clients send the key as a form field: without a header key, a request under
    /v1/vision/ goes on to its route, which reads the key from the form; any other keyless request
    is a 401 at the door."""
    from fastapi.testclient import TestClient

    app, key = keyed_app(gallery_dir)
    with TestClient(app, raise_server_exceptions=False) as c:
        photo = files(("x.png", png(tile_image([RED]))))
        image = {"image": ("x.png", png(tile_image([RED])))}  # DeepStack's field
        assert c.post("/v1/vision/face/recognize", files=image, data={"api_key": key}).status_code == 200
        assert c.post("/v1/vision/face/recognize", files=photo).status_code == 401  # the route's own refusal
        assert c.post("/v1/identify", files=photo).status_code == 401
        assert c.post("/v1/vision/face/recognize", files=photo, headers={"x-api-key": "fid_wrong"}).status_code == 401
