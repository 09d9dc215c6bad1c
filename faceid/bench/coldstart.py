"""``faceid bench --only coldstart``: a new process's first line and exit, and ``faceid --help``.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from faceid.bench import _common as common


def figures(work: Path, data: Path | None, repeats: int, detector: str | None = None) -> Iterator[dict]:
    """``faceid identify ONE_PHOTO`` in a new process, as a user types it: best of ``repeats``;
    the gallery enrolled with ``detector`` (``None``: the default), which identify then follows."""
    faceid = common.script("faceid")
    base = [str(faceid)] if faceid is not None else [sys.executable, "-m", "faceid"]
    gallery = work / f"coldstart-gallery-{detector or 'default'}"
    chosen = ["--detector", detector] if detector else []
    enrolled = subprocess.run(
        [*base, "enroll", "--folders", str(common.SAMPLES / "people"), "-g", str(gallery), "-q", *chosen],
        capture_output=True,
        text=True,
    )
    if enrolled.returncode != 0:
        raise RuntimeError(f"faceid enroll failed: {enrolled.stderr.strip()[-500:]}")
    lfw = common.lfw_files(data, 1)
    photo = lfw[0] if lfw else common.SAMPLES / "photos" / "astronaut.jpg"
    runs = [common.first_line([*base, "identify", str(photo), "-g", str(gallery)]) for _ in range(max(1, repeats))]
    help_s, _ = common.timed([*base, "--help"])
    from faceid import models

    yield common.figure(
        "cold_start",
        command=f"faceid identify {photo.name} -g GALLERY (3 people, enrolled with {detector or 'the default'} "
        "detector)",
        detector=detector or "mtcnn",
        first_line_s=round(min(r[0] for r in runs), 2),
        exit_s=round(min(r[1] for r in runs), 2),
        cpu_s=round(min(r[2] for r in runs), 2),
        first_line_s_each=[round(r[0], 2) for r in runs],
        cpu_s_each=[round(r[2], 2) for r in runs],
        graph_file=models.locate_graph() is not None,
        help_s=round(help_s, 2),
    )
