"""``faceid bench --only serve``: the server under load, on loopback, bounded in count and time.

Figures (each with the machine's load average):

- ``serve_cold_vs_warm``: ``faceid identify`` on a one-face 640x480 JPEG as a new process (cold
  start) beside one warm HTTP answer from ``faceid serve``.
- ``serve_load``: in rounds, side by side: the server's work for one request in this process
  (decode, detect and embed, decide; the pipeline the server uses, frozen graph), then identify
  requests of that photo from 1 and from 8 concurrent clients (each on its own keep-alive
  connection): errors, p50/p95 latency, requests/s, and how busy the server kept the cores (its
  CPU time over the wall time, and per request); the ratios within each round and their
  medians; how much faster 8 photos run as one batch than one by one in this process; the
  pipeline's own ceiling (photos/s one at a time, and in batches of 8 from two threads and from
  two separate processes: what no server in front of it can exceed); the server's resident
  memory idle, after the warm-up (before the rounds), after each round and after all, and its
  growth after the first round (the steady state: the first round still fills allocator pools and
  the eight clients' threads).

The server is a real ``faceid serve`` subprocess on 127.0.0.1 and a free port, stopped with SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from faceid.gallery import Gallery
from faceid.images import read_image
from faceid.server.settings import Settings

__all__ = ["serve_figures"]


def _load() -> list[float]:
    try:
        return [round(float(v), 2) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _figure(name: str, **values) -> dict:
    return {"figure": name, **values, "load": _load()}


def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _measured(pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s figures, with how busy the server was: the cores its CPU time kept busy over
    the wall time, and its CPU milliseconds per answered request."""
    cpu, start = _cpu_seconds(pid), time.perf_counter()
    out = run()
    used, wall = _cpu_seconds(pid) - cpu, time.perf_counter() - start
    answered = out["requests"] - out["errors"]
    out["server_cores_busy"] = round(used / wall, 2) if wall > 0 and used == used else None
    out["server_cpu_ms_per_request"] = round(used / answered * 1000, 1) if answered and used == used else None
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "faceidbench7f3a"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _clients(port: int, body: bytes, content_type: str, clients: int, total: int, limit_s: float) -> dict[str, Any]:
    """``total`` requests shared by ``clients`` threads; latencies, errors and requests/s."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    left = [total]
    deadline = time.monotonic() + limit_s

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while True:
                with lock:
                    if left[0] <= 0 or time.monotonic() > deadline:
                        return
                    left[0] -= 1
                start = time.perf_counter()
                try:
                    connection.request("POST", "/v1/identify", body=body, headers={"Content-Type": content_type})
                    response = connection.getresponse()
                    payload = response.read()
                    ok = response.status == 200 and len(json.loads(payload)["faces"]) == 1
                    problem = None if ok else f"{response.status} {payload[:200]!r}"
                except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                elapsed = time.perf_counter() - start
                with lock:
                    if problem is None:
                        latencies.append(elapsed)
                    else:
                        errors.append(problem)
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = len(latencies)
    return {
        "clients": clients,
        "requests": done + len(errors),
        "errors": len(errors),
        "first_errors": errors[:3],
        "ms_p50": round(_percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "ms_p95": round(_percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "requests_per_s": round(done / wall, 2) if wall > 0 else None,
        "seconds": round(wall, 2),
    }


def _median_of(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls, after two untimed ones."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pipeline_ceiling(pipeline, pixels: np.ndarray, seconds: float) -> dict[str, Any]:
    """Photos/s of ``pipeline.faces_many`` alone, one photo at a time in one thread, then in batches
    of 8 in two threads at once (both cores busy, the GIL shared), each for ``seconds``; and their
    ratio: what 8 clients could gain over 1 if the server itself cost nothing."""

    def rate(batch: int, threads: int) -> tuple[float, float]:
        done = [0] * threads
        stop = time.perf_counter() + seconds

        def work(i: int) -> None:
            while time.perf_counter() < stop:
                pipeline.faces_many([pixels] * batch)
                done[i] += batch

        cpu, start = time.process_time(), time.perf_counter()
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        return sum(done) / wall, (time.process_time() - cpu) / wall

    pipeline.faces_many([pixels] * 8)
    one, one_busy = rate(1, 1)
    many, many_busy = rate(8, 2)
    return {
        "one_at_a_time_per_s": round(one, 1),
        "one_at_a_time_cores_busy": round(one_busy, 2),
        "batches_of_8_two_threads_per_s": round(many, 1),
        "batches_of_8_two_threads_cores_busy": round(many_busy, 2),
        "ratio": round(many / one, 2),
    }


_ONE_PROCESS = """
import json, sys, time
from faceid.images import read_image
from faceid.pipeline import Pipeline
pipeline = Pipeline(frozen=True, detector=sys.argv[3] if len(sys.argv) > 3 else None)
pixels = read_image(sys.argv[1]).pixels
for _ in range(3):
    pipeline.faces_many([pixels] * 8)
print("ready", flush=True)
sys.stdin.readline()
done, start = 0, time.perf_counter()
while time.perf_counter() - start < float(sys.argv[2]):
    pipeline.faces_many([pixels] * 8)
    done += 8
print(json.dumps({"photos": done, "seconds": time.perf_counter() - start}), flush=True)
"""


def _two_processes(photo: Path, seconds: float, env: dict[str, str], detector: str | None = None) -> float:
    """Photos/s of two separate processes (no GIL shared), each running the pipeline on batches of
    8 for ``seconds``, started together once both have loaded their models."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _ONE_PROCESS, str(photo), str(seconds), *([detector] if detector else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a pipeline process failed to start")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        rates = []
        for process in processes:
            assert process.stdout is not None
            out = json.loads(process.stdout.readline())
            rates.append(out["photos"] / out["seconds"])
        return sum(rates)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _server_path(photo: Path, gallery, pipeline) -> None:
    from faceid.identify import identify_image

    image = read_image(photo.read_bytes(), name=photo.name)
    faces = pipeline.faces_many([image.pixels])[0]  # as the server's batcher finds them
    identify_image(image, gallery, pipeline, faces=faces)


def serve_figures(
    work: Path,
    photo: Path,
    make_gallery: Callable[..., Gallery],
    *,
    requests: int = 360,
    rounds: int = 3,
    tiny: bool = False,
    limit_s: float = 300.0,
    other_workers: int | None = 1,
    detector: str | None = None,
) -> Iterator[dict]:
    """Measure the server (see the module docstring) on ``photo`` (one face, 640x480) against the
    gallery ``make_gallery(path, pipeline)`` enrols with ``detector`` (``None``: the default), which
    the server then follows (``faceid serve --detector`` is that gallery's).

    On a shared machine the load moves from minute to minute, so what is compared is measured
    side by side, in ``rounds`` rounds: each round times the in-process work, then
    ``requests / rounds`` requests from 1 client, then as many from 8 clients, and each ratio is
    taken within a round (the figures give the median over rounds, and every round). With
    ``other_workers`` a second server with that many batch workers (the default server has
    :attr:`Settings.batch_workers <faceid.server.settings.Settings>`) answers 8 clients too, in
    each round, so the two settings are compared under the same load.
    """
    from faceid.pipeline import Pipeline

    if tiny:
        requests, rounds = min(requests, 8), 1
    per_round = max(1, requests // rounds)
    gallery_dir = work / f"serve-gallery-{detector or 'default'}"
    pipeline = Pipeline(frozen=True, detector=detector)  # what the server runs
    gallery = make_gallery(gallery_dir, pipeline)
    try:
        pixels = read_image(photo).pixels
        alone = _median_of(lambda: pipeline.faces_many([pixels]), 3 if tiny else 7)
        batch = _median_of(lambda: pipeline.faces_many([pixels] * 8), 3 if tiny else 7)
        ceiling = _pipeline_ceiling(pipeline, pixels, 1.0 if tiny else 8.0)
        here = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        if not tiny:
            processes = _two_processes(photo, 8.0, env, detector)
            ceiling["batches_of_8_two_processes_per_s"] = round(processes, 1)
            ceiling["two_processes_ratio"] = round(processes / ceiling["one_at_a_time_per_s"], 2)
        gallery.close()  # the server and the CLI open it; this process reopens it per round

        command = [sys.executable, "-m", "faceid"]
        start = time.perf_counter()
        cold = subprocess.run(
            [*command, "identify", str(photo), "-g", str(gallery_dir), "--json", "-q"],
            capture_output=True,
            text=True,
            env=env,
        )
        cold_s = time.perf_counter() - start
        if cold.returncode != 0:
            raise RuntimeError(f"faceid identify failed: {cold.stderr.strip()[-500:]}")

        port = _free_port()
        log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
        start = time.perf_counter()
        server = subprocess.Popen(
            [*command, "serve", "--gallery", str(gallery_dir), "--port", str(port)], stdout=log, stderr=log, env=env
        )
        other: subprocess.Popen | None = None
        try:
            _wait_for(server, port, work, start)
            startup_s = time.perf_counter() - start
            rss_idle = _rss_of(server.pid)
            if other_workers:  # the same, with other batch workers: 8 clients on each, side by side
                other_port = _free_port()
                other = subprocess.Popen(
                    [*command, "serve", "--gallery", str(gallery_dir), "--port", str(other_port)]
                    + ["--batch-workers", str(other_workers)],
                    stdout=log,
                    stderr=log,
                    env=env,
                )
                _wait_for(other, other_port, work, time.perf_counter())
            body, content_type = _multipart(photo.name, photo.read_bytes())
            # a new server's memory grows over its first few hundred requests (allocator pools of its
            # threads, the runtimes' kernels per batch shape): warm it up past that
            warm_up = 16 if tiny else 480
            warmup = _clients(port, body, content_type, 8, warm_up, limit_s)
            if other is not None:
                warmup["errors"] += _clients(other_port, body, content_type, 8, warm_up, limit_s)["errors"]
            first = _clients(port, body, content_type, 1, 1, limit_s)
            rss_before = _rss_of(server.pid)
            rounds_out: list[dict[str, Any]] = []
            for _ in range(rounds):
                with Gallery(gallery_dir) as g:
                    in_process = _median_of(lambda g=g: _server_path(photo, g, pipeline), 3 if tiny else 9)
                one = _measured(server.pid, lambda: _clients(port, body, content_type, 1, per_round, limit_s))
                before = _batches(port)
                eight = _measured(server.pid, lambda: _clients(port, body, content_type, 8, per_round, limit_s))
                after = _batches(port)
                runs, images = after[0] - before[0], after[1] - before[1]
                eight["mean_batch"] = round(images / runs, 2) if runs else None
                more: dict[str, Any] = {}
                if other is not None:
                    more = _measured(other.pid, lambda: _clients(other_port, body, content_type, 8, per_round, limit_s))
                    more["workers"] = other_workers
                    more["over_one_throughput"] = (
                        round(more["requests_per_s"] / one["requests_per_s"], 2)
                        if more["requests_per_s"] and one["requests_per_s"]
                        else None
                    )
                rounds_out.append(
                    {
                        "in_process_ms": round(in_process * 1000, 1),
                        "one_client": one,
                        "eight_clients": eight,
                        "http_p50_over_in_process": round(one["ms_p50"] / (in_process * 1000), 2)
                        if one["ms_p50"]
                        else None,
                        "eight_over_one_throughput": round(eight["requests_per_s"] / one["requests_per_s"], 2)
                        if eight["requests_per_s"] and one["requests_per_s"]
                        else None,
                        "eight_clients_other_workers": more or None,
                        "server_rss_mb": round(_rss_of(server.pid) / 2**20, 1),
                        "load": _load(),
                    }
                )
            rss_after = _rss_of(server.pid)
            rss_first_round = round(rounds_out[0]["server_rss_mb"] * 2**20) if rounds_out else rss_after
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(60)
        finally:
            for process in (server, other):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            log.close()
    finally:
        gallery.close()

    def median(key: str, sub: str | None = None) -> float | None:
        found = [(r[key] or {}).get(sub) if sub else r[key] for r in rounds_out]
        values: list[float] = [float(v) for v in found if v is not None]
        return round(statistics.median(values), 2) if values else None

    yield _figure(
        "serve_cold_vs_warm",
        detector=detector or "mtcnn",
        cli_cold_s=round(cold_s, 2),
        server_startup_s=round(startup_s, 2),
        server_warm_ms=first["ms_p50"],
        note="faceid identify ONE_PHOTO as a new process, beside one HTTP request to a warm faceid serve",
    )
    yield _figure(
        "serve_load",
        detector=detector or "mtcnn",
        image="640x480, one face",
        requests_per_round=per_round,
        rounds=rounds_out,
        errors=sum(
            r["one_client"]["errors"]
            + r["eight_clients"]["errors"]
            + (r["eight_clients_other_workers"] or {}).get("errors", 0)
            for r in rounds_out
        )
        + warmup["errors"],
        in_process_ms_median=median("in_process_ms"),
        one_client_ms_p50_median=median("one_client", "ms_p50"),
        one_client_ms_p95_median=median("one_client", "ms_p95"),
        eight_clients_ms_p50_median=median("eight_clients", "ms_p50"),
        eight_clients_ms_p95_median=median("eight_clients", "ms_p95"),
        one_client_requests_per_s_median=median("one_client", "requests_per_s"),
        eight_clients_requests_per_s_median=median("eight_clients", "requests_per_s"),
        eight_clients_mean_batch_median=median("eight_clients", "mean_batch"),
        one_client_server_cores_busy_median=median("one_client", "server_cores_busy"),
        eight_clients_server_cores_busy_median=median("eight_clients", "server_cores_busy"),
        one_client_server_cpu_ms_per_request_median=median("one_client", "server_cpu_ms_per_request"),
        eight_clients_server_cpu_ms_per_request_median=median("eight_clients", "server_cpu_ms_per_request"),
        http_p50_over_in_process=median("http_p50_over_in_process"),
        eight_over_one_throughput=median("eight_over_one_throughput"),
        batch_workers=Settings().batch_workers,
        other_workers=other_workers,
        other_workers_eight_over_one_throughput=median("eight_clients_other_workers", "over_one_throughput"),
        other_workers_eight_clients_server_cores_busy_median=median("eight_clients_other_workers", "server_cores_busy"),
        batch_of_8_over_8_alone=round(8 * alone / batch, 2),
        pipeline_ceiling=ceiling,
        server_rss_mb_idle=round(rss_idle / 2**20, 1),
        server_rss_mb_before=round(rss_before / 2**20, 1),
        server_rss_mb_after=round(rss_after / 2**20, 1),
        server_rss_mb_growth_after_first_round=round((rss_after - rss_first_round) / 2**20, 1),
        sigterm_exit_code=exit_code,
        note="ratios are medians of per-round ratios; in_process is the server's work per request "
        "(decode, detect + embed, decide) in this process, frozen graph; batch_of_8_over_8_alone: how "
        "much faster Pipeline.faces_many runs 8 photos at once than one by one; pipeline_ceiling: photos/s of "
        "the pipeline alone (no HTTP, no decoding, no decision) one photo at a time in one thread, and in "
        "batches of 8 in two threads at once, the most any server in this process could answer here, and "
        "(not with --tiny) in two separate processes, which share no GIL",
    )


def _batches(port: int) -> tuple[int, int]:
    """The server's batch counters: ``(batches, images)`` so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        health = json.load(r)
    return int(health["batches"]), int(health["batched_images"])


def _wait_for(server: subprocess.Popen, port: int, work: Path, start: float) -> None:
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"faceid serve exited: {(work / 'serve.log').read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            if time.perf_counter() - start > 300:
                raise RuntimeError("faceid serve did not start within 300 s") from None
            time.sleep(0.2)
