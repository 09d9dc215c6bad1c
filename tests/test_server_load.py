"""The real server under a bounded load on loopback: every request answered, memory bounded.

A real ``faceid serve`` subprocess (the default model, a gallery of the sample people) answers
identify requests of a one-face 640x480 photo from 8 concurrent clients, as ``faceid bench
--only serve`` does. Speed is not asserted here (that is the benchmark's job); what is asserted
is that nothing fails and that the server's memory stops growing once it is warm.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from faceid.bench._common import one_face_640x480 as _one_face_640x480
from faceid.bench._common import sample_gallery as _sample_gallery
from faceid.bench.serve import _clients, _free_port, _multipart, _rss_of, _wait_for

pytest.importorskip("fastapi")

# A new server grows while it warms up (allocator pools of its threads, the runtimes' kernels for
# each batch shape): measured with 2 batch workers, 992 MB idle, 1,488 MB after 120 requests,
# 1,577 MB after 600, then 1,526-1,579 MB up to 1,920. Even warm, it still steps up now and then
# by up to about 110 MB (a fresh clone's CI run: +111 MB over 360 requests after 480 of warm-up),
# a one-off each time; a leak grows in every window. So two windows are measured, and the
# smaller growth must stay under the bound: a leak of a fifth of a decoded photo per request
# (640x480x3 bytes is 0.9 MB) fails both.
WARM_UP = 480
WINDOW = 360
GROWTH_BOUND = 60 * 2**20


@pytest.mark.model
def test_warm_server_answers_every_request_and_its_memory_stays_bounded(tmp_path):
    from faceid.pipeline import Pipeline

    photo = _one_face_640x480(tmp_path / "one-face-640x480.jpg")
    gallery = tmp_path / "gallery"
    _sample_gallery(gallery, Pipeline()).close()
    port = _free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "faceid", "serve", "--gallery", str(gallery), "--port", str(port)],
            stdout=log,
            stderr=log,
        )
        try:
            _wait_for(server, port, tmp_path, time.perf_counter())
            body, content_type = _multipart(photo.name, photo.read_bytes())
            warm = _clients(port, body, content_type, 8, WARM_UP, 180)
            rss = [_rss_of(server.pid)]
            windows = []
            for _ in range(2):
                windows.append(_clients(port, body, content_type, 8, WINDOW, 300))
                rss.append(_rss_of(server.pid))
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    for run in (warm, *windows):
        assert run["errors"] == 0, run["first_errors"]
    assert [w["requests"] for w in windows] == [WINDOW, WINDOW]  # none cut off by the time limit
    growth = [after - before for before, after in zip(rss, rss[1:])]
    assert rss[0] > 0 and min(growth) < GROWTH_BOUND, f"resident memory after each window: {[m >> 20 for m in rss]} MB"
    assert exit_code == 0
