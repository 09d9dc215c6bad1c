"""SIGKILL the server in the middle of enrolments: the gallery's crash guarantees hold through it.

The server runs in a subprocess (uvicorn, fake models) while a client enrols people one request
after another; it is killed at a random moment, several times. Each time the gallery must open,
pass `faceid gallery check`, hold every enrolment the client was told succeeded, and nothing half
done: a person either has their face or is absent.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow  # child processes, killed

from conftest import ROOT, tile_image  # noqa: E402

SERVER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import uvicorn
from conftest import FakeDetector, FakeEmbedder
from faceid.pipeline import Pipeline
from faceid.server import Settings, create_app
app = create_app({gallery!r}, pipeline=Pipeline(detector=FakeDetector(), embedder=FakeEmbedder()),
                 settings=Settings(max_uploads=64))
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(i: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    colour = (40 + (i * 37) % 200, 40 + (i * 91) % 200, 40 + (i * 53) % 200)
    Image.fromarray(tile_image([colour])).save(buffer, format="PNG")
    return buffer.getvalue()


def _start(gallery: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    code = SERVER.format(root=str(ROOT), tests=str(ROOT / "tests"), gallery=str(gallery), port=port)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.stderr.read().decode()[-2000:] if process.stderr else "server did not start")


@pytest.mark.parametrize("kills", [5])
def test_killing_the_server_mid_enrolment_loses_nothing(tmp_path, kills):
    import requests

    from faceid.gallery import Gallery

    gallery = tmp_path / "gallery"
    confirmed: set[str] = set()
    rng = random.Random(8)
    n = 0
    for _ in range(kills):
        process, url = _start(gallery)
        stop = threading.Event()

        def enrol_until_stopped(url: str = url, stop: threading.Event = stop) -> None:
            nonlocal n
            session = requests.Session()
            while not stop.is_set():
                n += 1
                name = f"p{n}"
                try:
                    r = session.post(f"{url}/v1/people/{name}/faces", files={"file": (f"{name}.png", _png(n))})
                except requests.RequestException:
                    return  # the server died under this request: it may or may not have landed
                if r.status_code == 200 and r.json()["results"][0]["status"] == "added":
                    confirmed.add(name)

        client = threading.Thread(target=enrol_until_stopped)
        client.start()
        time.sleep(rng.uniform(0.3, 1.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        client.join(30)
        with Gallery(gallery) as g:
            assert g.check() == [], "the gallery is damaged after a kill"
            people = {p.name: p.faces for p in g.people()}
        assert confirmed <= set(people), f"confirmed enrolments lost: {sorted(confirmed - set(people))}"
        assert set(people.values()) <= {1}, "a person with a half-done enrolment"
    assert len(confirmed) >= kills  # the server did work between kills
