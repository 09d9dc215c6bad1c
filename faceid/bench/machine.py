"""``faceid bench --only machine``: CPU, cores, versions.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from faceid.bench import _common as common


def figures() -> dict:
    import faiss

    cpu = platform.processor()
    flags: list[str] = []
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        flags = sorted(f for f in line.split() if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"))
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for name, dists in (
        ("tensorflow", ("tensorflow-cpu", "tensorflow")),
        ("keras", ("keras",)),
        ("mtcnn", ("mtcnn",)),
        ("dlib", ("dlib-bin", "dlib")),
        ("face_recognition", ("face-recognition",)),
    ):
        for dist in dists:
            try:
                versions[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return common.figure("machine", cpu=cpu, cores=os.cpu_count(), flags=flags, versions=versions)
