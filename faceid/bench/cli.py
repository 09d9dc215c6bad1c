"""``faceid bench --only cli``: the command line end to end on a folder, beside face_recognition's.

See :mod:`faceid.bench` for what each figure means."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from faceid.bench import _common as common


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target.resolve())
    except OSError:
        shutil.copyfile(target, link)


def _cli_inputs(work: Path, data: Path | None, images: int) -> tuple[Path, Path, Path, int, str]:
    """A flat folder of photos, the known people as per-person folders (faceid) and as one folder
    of ``<name>.jpg`` (face_recognition), the photo count and a description."""
    photos, known_faceid, known_fr = work / "photos", work / "known-faceid", work / "known-fr"
    photos.mkdir()
    lfw = common.lfw_files(data, images)
    bigbang = data / "bigbang" if data is not None and (data / "bigbang").is_dir() else None
    count = 0
    for i, path in enumerate(lfw):
        _link(path, photos / f"lfw{i:05d}_{path.name}")
        count += 1
    if bigbang is not None:
        for path in sorted([*bigbang.glob("faces/*"), *bigbang.glob("group/*")]):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                _link(path, photos / f"bigbang_{path.parent.name}_{path.name}")
                count += 1
        people = sorted(p for p in (bigbang / "faces").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        people = sorted((common.SAMPLES / "people").glob("*/*.jpg"))
    if count == 0:
        for path in sorted((common.SAMPLES / "photos").glob("*.jpg")):
            _link(path, photos / path.name)
            count += 1
    for path in people:
        name = path.stem if bigbang is not None else path.parent.name
        _link(path, known_faceid / name / path.name)
        _link(path, known_fr / f"{name}{path.suffix.lower()}")
    what = f"first {len(lfw)} LFW photos (sorted paths)" if lfw else "sample photos"
    if bigbang is not None:
        what += " and the Big Bang photos"
    return photos, known_faceid, known_fr, count, what


def _face_recognition_ready() -> str | None:
    """``None`` if face_recognition's command line can run here, else why not."""
    import importlib.util

    for module in ("face_recognition", "face_recognition_models", "dlib"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (make bench-setup)"
    import face_recognition_models

    if not Path(face_recognition_models.face_recognition_model_location()).is_file():
        return "face_recognition_models has no model files"
    if common.script("face_recognition") is None:
        return "the face_recognition command is not installed (make bench-setup)"
    return None


def figures(
    work: Path,
    data: Path | None,
    images: int,
    compare: bool,
    rounds: int = 2,
    models: Sequence[str | None] = (None,),
    detectors: Sequence[str | None] = (None,),
) -> Iterator[dict]:
    """The command lines end to end. With ``compare``, faceid identify (each of ``models`` with
    each of ``detectors`` on its own gallery of the same people) and face_recognition run
    ``rounds`` times, alternately, and each keeps its best: on a shared machine all then get its
    quieter moments."""
    from faceid.registry import DEFAULT_MODEL

    photos, known_faceid, known_fr, count, what = _cli_inputs(work, data, images)
    faceid = common.script("faceid")
    base = [str(faceid)] if faceid is not None else [sys.executable, "-m", "faceid"]
    # one variant a model and detector: "sface", or "sface+yunet" where a detector is named
    variants = {
        f"{m or DEFAULT_MODEL}{'+' + d if d else ''}": (m or DEFAULT_MODEL, d) for m in models for d in detectors
    }
    names = list(variants)
    galleries = {name: work / f"cli-gallery-{name}" for name in names}
    enroll_s: dict[str, float] = {}
    for name, gallery in galleries.items():
        model, detector = variants[name]
        chosen = ["--detector", detector] if detector else []
        if compare:
            enroll_s[name], enrolled = common.timed(
                [*base, "enroll", "--folders", str(known_faceid), "-g", str(gallery), "--model", model, *chosen]
                + ["--json", "-q"]
            )
            if enrolled.returncode != 0:
                raise RuntimeError(f"faceid enroll failed: {enrolled.stderr.strip()[-500:]}")
        else:  # the quick run enrols in this process, saving one start-up of the models
            from faceid.enroll import enroll_folders
            from faceid.gallery import Gallery
            from faceid.pipeline import Pipeline

            start = time.perf_counter()
            with Gallery(gallery) as g:
                enroll_folders(g, known_faceid, Pipeline(model, detector=detector))
            enroll_s[name] = time.perf_counter() - start
    why = _face_recognition_ready() if compare else "not compared in the quick run"
    script = common.script("face_recognition")
    mine: dict[str, list[float]] = {name: [] for name in names}
    mine_cpu: dict[str, list[float]] = {name: [] for name in names}
    lines: dict[str, list[dict]] = {}
    theirs: list[float] = []
    by_photo: dict[str, list[str]] = {}
    for _ in range(rounds if compare else 1):
        for name, gallery in galleries.items():
            seconds, cpu, found = common.timed_cpu([*base, "identify", str(photos), "-g", str(gallery), "--json", "-q"])
            lines[name] = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
            if found.returncode != 0 or len(lines[name]) != count:
                raise RuntimeError(f"faceid identify failed on {count} photos: {found.stderr.strip()[-500:]}")
            mine[name].append(seconds)
            mine_cpu[name].append(cpu)
        if why is None and script is not None:
            # (no CPU figure: its worker processes are not waited for, so their time is not counted)
            seconds, done = common.timed([str(script), "--cpus", "2", str(known_fr), str(photos)])
            if done.returncode != 0:
                why = f"face_recognition failed: {done.stderr.strip()[-300:]}"
                continue
            theirs.append(seconds)
            by_photo = {}
            for row in (line.split(",") for line in done.stdout.splitlines() if "," in line):
                by_photo.setdefault(row[0], []).append(row[1])
    for name in names:
        identify_s = min(mine[name])
        model, detector = variants[name]
        yield common.figure(
            "cli_faceid",
            model=model,
            detector=detector or "mtcnn",
            command="faceid identify PHOTOS --json -q (gallery enrolled by faceid enroll --folders KNOWN "
            f"--model {model}{' --detector ' + detector if detector else ''})",
            input=what,
            known_people=len(list(known_faceid.iterdir())),
            photos=count,
            enroll_s=round(enroll_s[name], 2),
            identify_s=round(identify_s, 2),
            identify_s_each_round=[round(v, 2) for v in mine[name]],
            cpu_s_each_round=[round(v, 2) for v in mine_cpu[name]],
            photos_per_s=round(count / identify_s, 2),
            photos_per_s_with_enroll=round(count / (enroll_s[name] + identify_s), 2),
            photos_without_face=sum(1 for r in lines[name] if not r["faces"]),
            faces=sum(len(r["faces"]) for r in lines[name]),
        )
    for name, (model, detector) in variants.items():  # each detector against MTCNN, same model, same run
        mtcnn = next((n for n, (m, d) in variants.items() if m == model and d in (None, "mtcnn")), None)
        if detector not in (None, "mtcnn") and mtcnn is not None:
            yield common.figure(
                "cli_detector_ratio",
                model=model,
                detector=detector,
                photos=count,
                speedup_over_mtcnn=round(min(mine[mtcnn]) / min(mine[name]), 2),
                cpu_ratio_mtcnn_over_this=round(min(mine_cpu[mtcnn]) / min(mine_cpu[name]), 2),
                note=f"seconds (wall; CPU) of faceid identify PHOTOS with MTCNN over {detector}'s, best rounds",
            )
    if not compare:  # the quick run: checks that the command line works, measures no more
        return
    if why is not None or not theirs:
        yield common.figure("cli_face_recognition", skipped=why or "face_recognition is not installed")
        return
    fr_s = min(theirs)
    yield common.figure(
        "cli_face_recognition",
        command="face_recognition --cpus 2 KNOWN PHOTOS",
        photos=count,
        seconds=round(fr_s, 2),
        seconds_each_round=[round(v, 2) for v in theirs],
        photos_per_s=round(count / fr_s, 2),
        photos_answered=len(by_photo),
        photos_without_face=sum(1 for names in by_photo.values() if names == ["no_persons_found"]),
    )
    for name in names:
        identify_s = min(mine[name])
        yield common.figure(
            "cli_ratio",
            model=variants[name][0],
            detector=variants[name][1] or "mtcnn",
            faceid_identify_over_face_recognition=round(fr_s / identify_s, 2),
            with_faceid_enroll_over_face_recognition=round(fr_s / (enroll_s[name] + identify_s), 2),
            note="photos/s of faceid identify (cold start included, gallery already enrolled) over "
            "face_recognition's (which reads its known people on every run); with_faceid_enroll adds "
            "the one-off faceid enroll, a second cold start, to faceid's time",
        )
