"""Calibrate the decision threshold on the user's own photos.

Given people enrolled from one folder (one subfolder per person), probe photos of the same
people (same layout) and photos of people who are not enrolled, measure how often strangers
would be named (FPIR) and how often the enrolled people are named correctly (DIR) at each
threshold, and recommend the lowest threshold whose FPIR is at most the target. Scores are
faceid's decision scores (:mod:`faceid.identify`), so the result means exactly what
``identify`` will do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from faceid.batch import Processed, iter_image_files, process
from faceid.enroll import EnrollResult, enroll_folders, people_folders
from faceid.errors import FaceIDError, UncalibratedError
from faceid.eval.fpir import naming_arrays, threshold_at_fpir
from faceid.gallery import AnyGallery
from faceid.identify import Naming, photo_namings
from faceid.pipeline import Pipeline
from faceid.thresholds import decision_params, threshold_for

__all__ = ["CalibrationReport", "calibrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationReport:
    """The recommended threshold and the trade-off it was chosen from.

    ``table`` rows: ``threshold``, ``fpir`` (share of stranger faces named), ``dir`` (share of
    probe faces named as the right person), ``wrong`` (share of probe faces named as someone
    else). ``resolution`` is the smallest FPIR the stranger count can show (1 / strangers).
    ``missed_probes``: probe photos without a face, unreadable, or that the pipeline failed on;
    each unreadable or failed photo (probe or stranger) also has its line in ``warnings``.
    """

    target_fpir: float
    threshold: float
    fpir: float
    dir: float
    probes: int
    strangers: int
    resolution: float
    missed_probes: int
    enrolment_failures: int
    table: list[dict]
    stored: bool
    warnings: list[str]

    def to_json(self) -> dict:
        return asdict(self)


def _photos(outcomes: list[Processed]) -> tuple[list[np.ndarray], list[int], int]:
    """Each photo's ``(n, D)`` embeddings, the index of its largest face, and how many photos had no face."""
    photos, largest, missed = [], [], 0
    for item in outcomes:
        if item.error or not item.faces:
            missed += 1
            continue
        photos.append(np.stack([f.embedding for f in item.faces]))
        largest.append(max(range(len(item.faces)), key=lambda i: item.faces[i].detection.area))
    return photos, largest, missed


def calibrate(
    gallery: AnyGallery,
    enrolled: str | os.PathLike,
    probes: str | os.PathLike,
    strangers: str | os.PathLike,
    pipeline: Pipeline | None = None,
    *,
    target_fpir: float = 0.01,
    store: bool = True,
    progress: Callable[[object], None] | None = None,
) -> CalibrationReport:
    """Enrol ``enrolled``, score ``probes`` and ``strangers``, pick the threshold and (if ``store``) save it.

    Raises:
        FaceIDError: a folder is missing, a probe folder names nobody enrolled, or no face was found
            among the probes or the strangers.
    """
    if not 0 < target_fpir < 1:
        raise FaceIDError(f"the target false-identification rate must be between 0 and 1, got {target_fpir}")
    pipeline = pipeline if pipeline is not None else Pipeline.from_key(gallery.embedding_key)
    results: list[EnrollResult] = enroll_folders(gallery, enrolled, pipeline, progress=progress)
    warnings = [r.message for r in results if not r.ok]
    # identify's margin and beta for this gallery; the threshold is what is being measured
    params = dataclasses.replace(decision_params(gallery, threshold=np.inf), source="calibration")
    truth: list[str] = []
    probe_namings: list[Naming] = []
    missed = 0
    for name, folder in people_folders(probes):
        if name not in gallery:
            raise FaceIDError(f"{folder}: {name!r} is not enrolled; probe folders must be named after enrolled people")
        outcomes = list(process(list(iter_image_files([folder])), pipeline, on_done=progress))
        warnings += [item.error for item in outcomes if item.error]  # unreadable or failed: said, not just missed
        photos, largest, lost = _photos(outcomes)
        # A probe photo shows its person as its largest face; the others still take part in the
        # decision (one person per photo), as they would in identify.
        probe_namings += [faces[i] for faces, i in zip(photo_namings(gallery, photos, params), largest)]
        truth += [gallery.person(name).name] * len(photos)
        missed += lost
    if not Path(strangers).is_dir():
        raise FaceIDError(f"{strangers}: not a folder")
    stranger_outcomes = list(process(list(iter_image_files([strangers])), pipeline, on_done=progress))
    warnings += [item.error for item in stranger_outcomes if item.error]
    stranger_photos, _, _ = _photos(stranger_outcomes)
    if not probe_namings:
        raise FaceIDError(f"{probes}: no face found in any probe photo")
    if not stranger_photos:
        raise FaceIDError(f"{strangers}: no face found in any photo of a stranger")
    names, known_scores = naming_arrays(probe_namings)
    _, unknown_scores = naming_arrays([n for faces in photo_namings(gallery, stranger_photos, params) for n in faces])
    right = np.array([n == t for n, t in zip(names, truth)])
    threshold = threshold_at_fpir(unknown_scores, target_fpir)
    resolution = 1.0 / len(unknown_scores)
    if resolution > target_fpir:
        warnings.append(
            f"only {len(unknown_scores)} stranger faces: the smallest false-identification rate they can show is "
            f"{resolution:.3g}, above the target {target_fpir:g}; the threshold is the one that names none of them. "
            f"Add photos of at least {int(np.ceil(1 / target_fpir))} strangers for a reliable figure."
        )

    def row(t: float) -> dict:
        named = known_scores >= t
        return {
            "threshold": round(float(t), 4),
            "fpir": float(np.mean(unknown_scores >= t)),
            "dir": float(np.mean(right & named)),
            "wrong": float(np.mean(~right & named)),
        }

    points = {threshold_at_fpir(unknown_scores, x) for x in (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)}
    key = gallery.embedding_key
    if key is not None:
        try:
            points.add(threshold_for(key, len(gallery)))
        except UncalibratedError:
            pass  # no default to compare with
    table = [row(t) for t in sorted(points)]
    chosen = row(threshold)
    if store:
        gallery.set_setting("threshold", round(threshold, 4))
        gallery.set_setting(
            "calibration",
            {
                "target_fpir": target_fpir,
                "probes": len(known_scores),
                "strangers": len(unknown_scores),
                "fpir": chosen["fpir"],
                "dir": chosen["dir"],
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    return CalibrationReport(
        target_fpir=target_fpir,
        threshold=round(threshold, 4),
        fpir=chosen["fpir"],
        dir=chosen["dir"],
        probes=len(known_scores),
        strangers=len(unknown_scores),
        resolution=resolution,
        missed_probes=missed,
        enrolment_failures=sum(not r.ok for r in results),
        table=table,
        stored=store,
        warnings=warnings,
    )
