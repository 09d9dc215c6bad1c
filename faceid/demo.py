"""The demo: enrol the sample people shipped with faceid, then identify the sample photos."""

from __future__ import annotations

import tempfile
from pathlib import Path

from faceid.enroll import enroll_folders
from faceid.gallery import Gallery
from faceid.identify import Identification, identify

__all__ = ["SAMPLES", "run_demo"]

SAMPLES = Path(__file__).resolve().parent / "samples"


def run_demo(out: str | Path, gallery: str | Path | None = None) -> list[Identification]:
    """Enrol ``samples/people/*`` into a fresh gallery (inside ``out`` unless given), identify
    ``samples/photos/*`` and write annotated copies into ``out``; return the identifications."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    where = Path(gallery) if gallery is not None else Path(tempfile.mkdtemp(prefix="gallery-", dir=out))
    with Gallery(where) as g:
        failed = [r for r in enroll_folders(g, SAMPLES / "people") if not r.ok]
        if failed:
            from faceid.errors import FaceIDError

            raise FaceIDError("demo enrolment failed: " + "; ".join(r.message for r in failed))
        photos = sorted(str(p) for p in (SAMPLES / "photos").iterdir() if p.suffix == ".jpg")
        return list(identify(photos, g, annotate_dir=out))
