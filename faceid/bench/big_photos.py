"""``big-photos``: a real ``faceid serve`` answering concurrent 35-megapixel photos from one key,
and the memory of its processes meanwhile and after (``faceid bench --only big-photos``).

The photos are made by upscaling a sample photo with a face, so nothing is downloaded. Memory is
the resident set summed over the server's process and its children, sampled every 50 ms: its
figure when idle (models loaded, one small request answered), its peak during the burst, and
its figure ``settle_s`` seconds after the burst.
"""

from __future__ import annotations

import http.client
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BigPhotos", "big_jpeg", "figures", "run_big_photos", "tree_rss"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BigPhotos:
    """What one run measured (bytes and seconds)."""

    photos: int
    megapixels: float
    statuses: tuple[int, ...]
    idle_rss: int
    peak_rss: int
    settled_rss: int
    settle_s: float
    slowest_s: float

    def to_json(self) -> dict:
        return {
            "photos": self.photos,
            "megapixels": round(self.megapixels, 1),
            "answered_200": sum(s == 200 for s in self.statuses),
            "statuses": list(self.statuses),
            "idle_rss_mb": self.idle_rss >> 20,
            "peak_rss_mb": self.peak_rss >> 20,
            "settled_rss_mb": self.settled_rss >> 20,
            "settle_s": self.settle_s,
            "slowest_s": round(self.slowest_s, 1),
        }


def big_jpeg(source: Path, out: Path, megapixels: float = 35.0) -> Path:
    """``source`` upscaled to about ``megapixels`` (3:2), saved as a JPEG (quality 90) at ``out``."""
    from PIL import Image

    height = int((megapixels * 1e6 / 1.5) ** 0.5)
    width = int(height * 1.5)
    with Image.open(source) as image:
        small = image.convert("RGB")
    # the face in the middle of a plain field: a photo's size, one face to find
    canvas = Image.new("RGB", (width, height), (128, 128, 120))
    face = small.resize((height * small.width // small.height // 2, height // 2), Image.Resampling.BILINEAR)
    canvas.paste(face, ((width - face.width) // 2, (height - face.height) // 2))
    canvas.save(out, format="JPEG", quality=90)
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (Linux ``/proc``)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart upload of ``data`` as the ``file`` field."""
    boundary = "faceidbigphotos"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def ready(server: subprocess.Popen, port: int, log_file: Path, timeout: float) -> None:
    """Wait until the server's ``/healthz`` answers 200 (503 while it loads its models)."""
    end = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"faceid serve exited: {log_file.read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return
        except OSError:  # refused, or 503 while loading
            if time.monotonic() > end:
                raise RuntimeError(f"faceid serve was not ready within {timeout:g} s") from None
            time.sleep(0.2)


def _post(port: int, body: bytes, content_type: str, key: str, timeout: float) -> tuple[int, float]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {key}"}
        connection.request("POST", "/v1/identify", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except (OSError, http.client.HTTPException):
        return 0, time.perf_counter() - start
    finally:
        connection.close()


def run_big_photos(
    work: Path,
    photo: Path,
    *,
    photos: int = 8,
    megapixels: float = 35.0,
    settle_s: float = 60.0,
    serve_args: tuple[str, ...] = (),
    timeout: float = 600.0,
) -> BigPhotos:
    """Start ``faceid serve`` on a new gallery in ``work`` (one key), send ``photos`` copies of
    ``photo`` upscaled to ``megapixels`` at once, and measure its memory (see the module)."""
    from faceid.apikeys import ApiKeys
    from faceid.gallery import open_gallery

    work.mkdir(parents=True, exist_ok=True)
    big = big_jpeg(photo, work / f"big-{megapixels:g}mp.jpg", megapixels)
    with open_gallery(work / "gallery", create=True) as g:
        _, key = ApiKeys(g).create(f"big-photos-{time.time_ns()}")
    port = free_port()
    command = [sys.executable, "-m", "faceid", "serve", "--gallery", str(work / "gallery"), "--port", str(port)]
    with open(work / "serve.log", "wb") as out:
        server = subprocess.Popen([*command, *serve_args], stdout=out, stderr=out)
    try:
        ready(server, port, work / "serve.log", timeout)
        small_body, small_type = multipart(photo.name, photo.read_bytes())
        _post(port, small_body, small_type, key, timeout)
        time.sleep(2.0)
        idle = tree_rss(server.pid)
        body, content_type = multipart(big.name, big.read_bytes())
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(server.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: list[tuple[int, float]] = []
        clients = [
            threading.Thread(target=lambda: results.append(_post(port, body, content_type, key, timeout)))
            for _ in range(photos)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout)
        done.set()
        sampler.join()
        time.sleep(settle_s)
        settled = tree_rss(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    from PIL import Image

    with Image.open(big) as image:
        mp = image.width * image.height / 1e6
    return BigPhotos(
        photos=photos,
        megapixels=mp,
        statuses=tuple(sorted(s for s, _ in results)),
        idle_rss=idle,
        peak_rss=peak[0],
        settled_rss=settled,
        settle_s=settle_s,
        slowest_s=max((t for _, t in results), default=0.0),
    )


def figures(work: Path, photo: Path, *, tiny: bool = False) -> Iterator[dict]:
    """``faceid bench --only big-photos``: one figure of :func:`run_big_photos` (with ``tiny``, 2
    photos of 12 MP and 5 s to settle: a check that it runs). The requests may take up to 600 s
    (``--request-timeout 600``): the figure is memory, and a busy machine is slow."""
    from faceid.bench._common import load as _load

    photos, megapixels, settle = (2, 12.0, 5.0) if tiny else (8, 35.0, 60.0)
    load = _load()
    run = run_big_photos(
        work / "big-photos",
        photo,
        photos=photos,
        megapixels=megapixels,
        settle_s=settle,
        serve_args=("--request-timeout", "600"),
    )
    yield {"figure": "serve_big_photos", **run.to_json(), "load_before": load, "load_after": _load()}
