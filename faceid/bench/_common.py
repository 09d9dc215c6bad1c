"""What the benchmark's parts share: figures with the load average, timers, memory, synthetic
faces, sample photos and galleries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


DIMENSION = 128


def load() -> list[float]:
    try:
        return [round(float(v), 2) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def figure(name: str, **values: Any) -> dict:
    return {"figure": name, **values, "load": load()}


def best(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls, in seconds."""
    fastest = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing), after handing freed
    heap memory back to the system (glibc), so that a growth measures new allocations."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def lfw_files(data: Path | None, count: int) -> list[Path]:
    root = data / "lfw" / "lfw-deepfunneled" if data is not None else None
    if root is None or not root.is_dir():
        return []
    from faceid.batch import iter_image_files

    out = []
    for path in iter_image_files([root]):
        out.append(Path(path))
        if len(out) >= count:
            break
    return out


def one_face_640x480(path: Path) -> Path:
    """The astronaut sample (one face) centred on a 640x480 grey canvas, as a JPEG."""
    import cv2
    from PIL import Image

    from faceid.images import load_image

    canvas = np.full((480, 640, 3), 128, dtype=np.uint8)
    face = cv2.resize(load_image(SAMPLES / "photos" / "astronaut.jpg"), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas[:, 80:560] = face
    Image.fromarray(canvas).save(path, quality=92)
    return path


def sample_gallery(path: Path, pipeline=None):
    from faceid.enroll import enroll_folders
    from faceid.gallery import Gallery

    gallery = Gallery(path)
    results = enroll_folders(gallery, SAMPLES / "people", pipeline)
    if not all(r.ok for r in results):
        raise RuntimeError("benchmark gallery: " + "; ".join(r.message for r in results if not r.ok))
    return gallery


def script(name: str) -> Path | None:
    """A console script installed beside this Python, else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    seconds, _, done = timed_cpu(command, **kwargs)
    return seconds, done


def timed_cpu(command: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system, with its threads and children) and the result."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, children_cpu() - cpu, done


def first_line(command: list[str]) -> tuple[float, float, float, str]:
    """Seconds to the command's first line on stdout, to its exit, its CPU seconds, and that line."""
    cpu = children_cpu()
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        first = time.perf_counter() - start
        _, err = proc.communicate()
    total = time.perf_counter() - start
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(command[:2])} failed: {err.strip()[-500:]}")
    return first, total, children_cpu() - cpu, line


def synthetic_faces(people: int, per: int = 5, *, noise: float = 0.65, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (people, 128), faces (people * per, 128))``: unit float32 rows, ``per`` noisy faces each.

    Two faces of one identity have cosine about ``1 / (1 + noise**2)`` (0.7 at the default), as
    two FaceNet embeddings of one person typically do; different identities are random.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, DIMENSION), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces = np.empty((people * per, DIMENSION), dtype=np.float32)
    step = 100_000
    for start in range(0, len(faces), step):
        rows = np.arange(start, min(len(faces), start + step)) // per
        block = centres[rows] + (noise / np.sqrt(DIMENSION)) * rng.standard_normal(
            (len(rows), DIMENSION), dtype=np.float32
        )
        faces[start : start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return centres, faces


def noisy(centres: np.ndarray, rng: np.random.Generator, noise: float = 0.65) -> np.ndarray:
    rows = centres + (noise / np.sqrt(DIMENSION)) * rng.standard_normal(centres.shape, dtype=np.float32)
    return np.ascontiguousarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def peak_reset() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak() -> int:
    """Peak resident memory of this process since the last :func:`peak_reset`, in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())
