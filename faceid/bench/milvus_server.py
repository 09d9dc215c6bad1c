"""``faceid bench --only milvus``, second part: milvus-lite and a real Milvus server side by side.

A fresh Milvus 2.3.5 standalone (:class:`faceid.milvus_standalone.StandaloneMilvus`, from
``.venv-milvus``; without it the part is skipped, saying so) and a fresh milvus-lite folder get the
same work in the same run, with the real models (SFace and MTCNN unless the defaults change):

- in this process, models loaded once: enrol the seven Big Bang people (``enroll_folders``, one
  photo each), identify the cast photo warm (median of three, after one), remove Penny (the call,
  and the time until a second open gallery, a reader, no longer finds her: the time to effect),
  ``faceid gallery check`` right after (a fresh process: its exit status), and
  ``identify(..., remember=True)`` of the first 100 LFW photos (10 with ``--tiny``);
- as a user runs them, each a fresh ``faceid`` process on a new gallery: ``enroll --folders`` of the
  seven, ``remove Penny``, ``gallery check``.

Each figure is given for both and as the ratio server / lite; the goals of issue 21 are printed
beside them (``goals``) with whether they hold in this run.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faceid.bench import _common as common

__all__ = ["GOALS", "server_figures"]

#: issue 21's goals on the server: seconds, or a ratio to milvus-lite (``x``)
GOALS = {
    "enrol_7_s": 5.0,
    "identify_warm_s": 0.5,
    "remove_effect_s": 2.0,
    "remember_x": 1.5,
    "process_enroll_x": 2.0,
    "process_remove_x": 2.0,
}

_GONE = "Penny"


def server_figures(work: Path, data: Path | None, *, tiny: bool, figure: Callable[..., dict]) -> Iterator[dict]:
    """One figure comparing milvus-lite with a fresh Milvus server (or one saying why it was skipped)."""
    from faceid.milvus_standalone import StandaloneMilvus, milvus_python

    python = milvus_python()
    faces = data / "bigbang" / "faces" if data is not None else None
    why = None
    if python is None:
        why = "no Milvus server here: `make milvus-server` installs milvus==2.3.5 in .venv-milvus"
    elif faces is None or not faces.is_dir():
        why = "the Big Bang photos (../shared/data/bigbang) are not here"
    if why is not None:
        yield figure("milvus_lite_vs_server", skipped=why)
        return
    assert faces is not None and python is not None and data is not None
    people = _people_folder(faces, work / "milvus-people")
    cast = data / "bigbang" / "group" / "cast.jpg"
    photos = common.lfw_files(data, 10 if tiny else 100)
    from faceid.pipeline import Pipeline

    pipeline = Pipeline()
    _warm(pipeline, cast)  # the models' first run is paid here, not by whichever gallery goes first
    started = time.perf_counter()
    with StandaloneMilvus(work / "milvus-server", python) as server:
        start_s = time.perf_counter() - started
        addresses = {"lite": f"milvus-lite:{work / 'bench-lite.db'}", "server": server.gallery("bench")}
        sides = {side: _in_process(address, people, cast, photos, pipeline) for side, address in addresses.items()}
        fresh = {"lite": f"milvus-lite:{work / 'bench-cli.db'}", "server": server.gallery("bench_cli")}
        for side, address in fresh.items():
            sides[side].update(_processes(address, people))
        version = server.version
    lite, srv = sides["lite"], sides["server"]
    ratios = {key: round(srv[key] / lite[key], 2) for key in lite if key.endswith("_s") and lite[key] > 0}
    measured = {
        "enrol_7_s": srv["enrol_s"],
        "identify_warm_s": srv["identify_warm_s"],
        "remove_effect_s": srv["remove_effect_s"],
        "remember_x": ratios.get("remember_s"),
        "process_enroll_x": ratios.get("process_enroll_s"),
        "process_remove_x": ratios.get("process_remove_s"),
    }
    goals = {
        key: {"goal": bar, "measured": measured[key], "met": measured[key] is not None and measured[key] <= bar}
        for key, bar in GOALS.items()
    }
    goals["check_exit_0"] = {
        "goal": 0,
        "measured": [srv["check_exit"], srv["process_check_exit"]],
        "met": srv["check_exit"] == 0 and srv["process_check_exit"] == 0,
    }
    yield figure(
        "milvus_lite_vs_server",
        server=f"Milvus {version} standalone (milvus==2.3.5 wheel), started in {start_s:.1f} s",
        model=pipeline.spec.name,
        detector=pipeline.detector_name,
        people=7,
        remember_photos=len(photos),
        lite=lite,
        server_side=srv,
        server_over_lite=ratios,
        goals=goals,
    )


def _people_folder(faces: Path, folder: Path) -> Path:
    """One subfolder per person holding a link to their photo (as ``enroll --folders`` wants)."""
    for photo in sorted(faces.iterdir()):
        person = folder / photo.stem
        person.mkdir(parents=True, exist_ok=True)
        link = person / photo.name
        if not link.exists():
            link.symlink_to(photo.resolve())
    return folder


def _in_process(address: str, people: Path, cast: Path, photos: list[Path], pipeline: Any) -> dict[str, Any]:
    """The in-process figures of one gallery (see the module docstring)."""
    from faceid.enroll import enroll_folders
    from faceid.gallery import open_gallery
    from faceid.identify import candidates_for, identify

    out: dict[str, Any] = {}
    with open_gallery(address) as g:
        start = time.perf_counter()
        results = enroll_folders(g, people, pipeline)
        out["enrol_s"] = round(time.perf_counter() - start, 3)
        failed = [r.message for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{address}: enrolment failed: {'; '.join(failed)}")
        list(identify([cast], g, pipeline))  # warm
        times = []
        for _ in range(3):
            start = time.perf_counter()
            (found,) = identify([cast], g, pipeline)
            times.append(time.perf_counter() - start)
        out["identify_warm_s"] = round(statistics.median(times), 3)
        out["named"] = sorted(m.name for m in found.faces if m.name)
        vectors = _embeddings(pipeline, cast)
        times = []
        for _ in range(3):  # the gallery's part of an identification: the search of the photo's faces
            start = time.perf_counter()
            candidates_for(g, vectors)
            times.append(time.perf_counter() - start)
        out["search_warm_s"] = round(statistics.median(times), 4)
        with open_gallery(address) as reader:
            out["remove_s"], out["remove_effect_s"] = _remove_watched(g, reader)
    start = time.perf_counter()
    check = subprocess_faceid(["gallery", "check", "--gallery", address])
    out["check_s"], out["check_exit"] = round(time.perf_counter() - start, 3), check.returncode
    with open_gallery(address) as g:
        start = time.perf_counter()
        kept = sum(
            1 for r in identify([str(p) for p in photos], g, pipeline, remember=True) for m in r.faces if m.kept_as
        )
        out["remember_s"] = round(time.perf_counter() - start, 3)
        out["remember_kept"] = kept
    return out


def _embeddings(pipeline: Any, photo: Path) -> Any:
    from faceid.images import read_image

    pixels = read_image(photo).pixels
    return pipeline.embed(pixels, pipeline.detector.detect(pixels))


def _warm(pipeline: Any, photo: Path) -> None:
    _embeddings(pipeline, photo)


def _remove_watched(g: Any, reader: Any) -> tuple[float, float]:
    """Remove :data:`_GONE` from ``g`` while ``reader`` looks for them every 10 ms: the seconds until the
    removal returns, and until the reader no longer finds them (the time to effect)."""
    if _GONE not in reader:
        raise RuntimeError(f"{reader.path}: {_GONE} was not enrolled")
    errors: list[BaseException] = []
    returned: list[float] = []
    start = time.perf_counter()

    def remove() -> None:
        try:
            g.remove(_GONE)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
        returned.append(time.perf_counter() - start)

    worker = threading.Thread(target=remove, name="bench-remove")
    worker.start()
    while _GONE in reader and time.perf_counter() - start < 120:
        time.sleep(0.01)
    effect = time.perf_counter() - start
    worker.join()
    if errors:
        raise errors[0]
    if _GONE in reader:
        raise RuntimeError(f"{reader.path}: {_GONE} still listed 120 s after the removal began")
    return round(returned[0], 3), round(effect, 3)


def _processes(address: str, people: Path) -> dict[str, Any]:
    """Whole processes, as a user runs them, on a new gallery: enrol the seven, remove one, check."""
    out: dict[str, Any] = {}
    for key, args in (
        ("process_enroll", ["enroll", "--folders", str(people), "-q", "--gallery", address]),
        ("process_remove", ["remove", _GONE, "--gallery", address]),
        ("process_check", ["gallery", "check", "--gallery", address]),
    ):
        start = time.perf_counter()
        done = subprocess_faceid(args)
        out[f"{key}_s"] = round(time.perf_counter() - start, 3)
        out[f"{key}_exit"] = done.returncode
        if done.returncode != 0 and key != "process_check":
            raise RuntimeError(f"faceid {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return out


def subprocess_faceid(args: list[str]) -> Any:
    """``faceid ARGS`` in a fresh process (this Python, ``-m faceid``)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "faceid", *args], capture_output=True, text=True, check=False)
