"""The demo: enrol the sample people shipped with faceid, then identify the sample photos."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from faceid.enroll import enroll_folders
from faceid.gallery import open_gallery
from faceid.identify import Identification, identify

if TYPE_CHECKING:
    from faceid.pipeline import Pipeline

__all__ = ["SAMPLES", "run_demo"]

SAMPLES = Path(__file__).resolve().parent / "samples"


def run_demo(
    out: str | Path, gallery: str | Path | None = None, pipeline: Pipeline | None = None
) -> list[Identification]:
    """Enrol ``samples/people/*`` into a fresh gallery (inside ``out`` unless given), identify
    ``samples/photos/*`` and write annotated copies into ``out``; return the identifications.

    ``pipeline`` defaults to the one that reproduces the gallery's embeddings (a new gallery: the defaults).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    where = gallery if gallery is not None else Path(tempfile.mkdtemp(prefix="gallery-", dir=out))
    with open_gallery(where) as g:
        if pipeline is None:
            from faceid.pipeline import Pipeline

            pipeline = Pipeline.from_key(g.embedding_key)
        failed = [r for r in enroll_folders(g, SAMPLES / "people", pipeline) if not r.ok]
        if failed:
            from faceid.errors import FaceIDError

            raise FaceIDError("demo enrolment failed: " + "; ".join(r.message for r in failed))
        photos = sorted(str(p) for p in (SAMPLES / "photos").iterdir() if p.suffix == ".jpg")
        return list(identify(photos, g, pipeline, annotate_dir=out))
