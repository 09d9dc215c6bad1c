"""Bulk runs on Ray (``--ray``): the same results as without Ray, in order, with one writer; a killed
worker loses no photo; a bad photo is reported once. One local Ray cluster (2 CPUs, so 2 worker
actors) serves the whole module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, FakeDetector, cli, fake_cli, make_fake_pipeline, save_png, tile_image

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'faceid[ray]'")
pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'faceid[ray]'")

from faceid.batch import process  # noqa: E402
from faceid.distributed import RayRunner, ray_cluster  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray cluster with 2 CPUs for the module; faceid's commands use it (and leave it running)."""
    with ray_cluster(cpus=2) as ray:
        yield ray


def _photos(folder: Path, n: int, *, bad_at: int | None = None) -> list[str]:
    """``n`` fake-model photos (1-3 'faces' each) and, at ``bad_at``, a file that is no image."""
    out = []
    for i in range(n):
        colours = [((37 * i) % 200 + 40, 90, 60), (0, 0, 0), (200, (i % 3) * 70 + 20, 9)][: 1 + i % 3]
        out.append(str(save_png(folder / f"p{i:03}.png", tile_image(colours))))
    if bad_at is not None:
        bad = folder / "broken.jpg"
        bad.write_bytes(b"\xff\xd8 this is not a jpeg")
        out.insert(bad_at, str(bad))
    return out


def _same(a, b) -> None:
    """Two runs of :func:`faceid.batch.process` gave the same outcome for every photo."""
    assert [x.source for x in a] == [x.source for x in b]
    for x, y in zip(a, b):
        assert x.error == y.error
        assert (x.image is None) == (y.image is None)
        if x.image is not None:
            assert x.image.sha256 == y.image.sha256 and np.array_equal(x.image.pixels, y.image.pixels)
        assert [f.detection for f in x.faces] == [f.detection for f in y.faces]
        for f, g in zip(x.faces, y.faces):
            assert np.array_equal(f.embedding, g.embedding)


def test_runner_gives_what_process_gives(ray_local, tmp_path):
    sources = _photos(tmp_path, 21, bad_at=5)
    pipeline = make_fake_pipeline()
    seen = []
    got = list(RayRunner(make_fake_pipeline, workers=2, batch_size=4)(sources, pipeline, on_done=seen.append))
    _same(list(process(sources, pipeline)), got)
    assert seen == got
    assert [x.source for x in got if x.error] == [sources[5]]  # reported once, not retried into duplicates


def test_without_pixels_only_the_size_comes_back(ray_local, tmp_path):
    sources = _photos(tmp_path, 3)
    got = list(RayRunner(make_fake_pipeline, keep_pixels=False)(sources, make_fake_pipeline()))
    assert [x.image.pixels.shape for x in got] == [(40, 40 * (1 + i % 3), 3) for i in range(3)]
    assert not any(x.image.pixels.any() or x.image.pixels.flags.writeable for x in got)


# -- a worker killed mid-run -------------------------------------------------------------------------


class _SlowDetector(FakeDetector):
    def detect_many(self, images):
        time.sleep(0.3)
        return super().detect_many(images)


def _slow_pipeline(key, *, pids: str):
    """The fake pipeline, slowed down, in an actor that writes its process id into ``pids``."""
    from faceid.pipeline import Pipeline

    Path(pids, str(os.getpid())).touch()
    return Pipeline.from_key(key, detector=_SlowDetector(), embedder=make_fake_pipeline().embedder)


def test_a_killed_worker_loses_no_photo(ray_local, tmp_path):
    sources = _photos(tmp_path / "photos", 24, bad_at=11)
    pids = tmp_path / "pids"
    pids.mkdir()
    killed: list[int] = []

    def kill_one(_item) -> None:
        if not killed:  # after the first result: both workers are busy with batches of their own
            victim = int(sorted(pids.iterdir())[0].name)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    runner = RayRunner(partial(_slow_pipeline, pids=str(pids)), workers=2, batch_size=2)
    got = list(runner(sources, make_fake_pipeline(), on_done=kill_one))
    assert killed
    assert len(list(pids.iterdir())) >= 3, "the killed worker was not replaced"
    _same(list(process(sources, make_fake_pipeline())), got)
    assert sum(x.error is not None for x in got) == 1


# -- the commands --------------------------------------------------------------------------------------


def test_identify_with_ray_prints_what_it_prints_without(ray_local, tmp_path):
    people = tmp_path / "people"
    for i, colour in enumerate([(77, 90, 60), (200, 20, 9)]):
        save_png(people / f"person{i}" / "a.png", tile_image([colour]))
    assert fake_cli("enroll", "--folders", people, "-g", tmp_path / "g", "-q").exit_code == 0
    sources = _photos(tmp_path / "photos", 12, bad_at=3)
    args = ["identify", tmp_path / "photos", "-g", tmp_path / "g", "--json"]
    plain = fake_cli(*args, "--annotate", tmp_path / "a1")
    on_ray = fake_cli(*args, "--annotate", tmp_path / "a2", "--ray")
    assert plain.exit_code == on_ray.exit_code == 1  # the broken photo
    lines = [json.loads(line) for line in on_ray.stdout.splitlines()]
    assert len(lines) == len(sources)
    assert on_ray.stdout == plain.stdout.replace(str(tmp_path / "a1"), str(tmp_path / "a2"))
    assert any(face["status"] == "known" for line in lines for face in line.get("faces", []))
    assert [line["image"] for line in lines if line.get("error")] == [sources[3]]  # reported once
    assert (
        on_ray.stderr
        == plain.stderr
        == "faceid: 1 of 13 inputs failed (unreadable, or the face pipeline failed on them)\n"
    )
    for drawn in sorted((tmp_path / "a1").iterdir()):
        assert drawn.read_bytes() == (tmp_path / "a2" / drawn.name).read_bytes()


def test_enroll_folders_with_ray_enrols_what_it_enrols_without(ray_local, tmp_path):
    people = tmp_path / "people"
    for i in range(5):
        for j in range(3):
            save_png(people / f"person {i}" / f"{j}.png", tile_image([(40 * i + 30, 10 * j + 5, 60)]))
    save_png(people / "person 2" / "two faces.png", tile_image([(9, 9, 200), (0, 0, 0), (200, 9, 9)]))
    (people / "person 3" / "broken.png").write_bytes(b"not a png")
    outputs = []
    for name, extra in (("plain", []), ("ray", ["--ray"])):
        result = fake_cli("enroll", "--folders", people, "-g", tmp_path / name, "--json", *extra)
        assert result.exit_code == 1  # the broken photo and the photo with two faces
        outputs.append(result.stdout)
        people_list = fake_cli("people", "-g", tmp_path / name, "--json").stdout
    assert outputs[0] == outputs[1]
    assert len(outputs[1].splitlines()) == 17
    from faceid.gallery import Gallery

    with Gallery(tmp_path / "plain", create=False) as plain, Gallery(tmp_path / "ray", create=False) as on_ray:
        ids = [f.id for f in plain.faces()]
        assert ids == [f.id for f in on_ray.faces()] and ids
        for i in ids:  # thumbnails and chips come from the pixels the workers send back
            assert plain.face_thumbnail(i) == on_ray.face_thumbnail(i)
            assert plain.face_chip(i) == on_ray.face_chip(i)
    assert '"status": "added"' in outputs[1] and len(json.loads(people_list.splitlines()[0])) >= 1


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    from faceid.distributed import RayUnavailableError, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(RayUnavailableError, match=r"^--ray needs the ray extra: pip install 'faceid\[ray\]'$"):
        import_ray()
    save_png(tmp_path / "p.png", tile_image([(9, 9, 200)]))
    result = fake_cli("enroll", "someone", tmp_path / "p.png", "-g", tmp_path / "g", "--ray")
    assert result.exit_code == 1
    assert result.stderr == "faceid: error: --ray needs the ray extra: pip install 'faceid[ray]'\n"


def test_faceid_distributed_imports_no_ray():
    code = "import sys, faceid, faceid.distributed, faceid.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the real models -------------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.shared
@pytest.mark.slow
def test_real_models_on_ray_name_and_box_what_they_do_without(ray_local, tmp_path, data, real_pipeline):
    """Samples and 40 LFW photos: the same names, boxes and similarities with 2 Ray workers as without."""
    gallery = tmp_path / "g"
    assert cli("enroll", "--folders", SAMPLES / "people", "-g", gallery, "-q").exit_code == 0
    lfw = sorted((data / "lfw" / "lfw-deepfunneled").iterdir())[::100][:40]
    photos = [SAMPLES / "photos", *(sorted(p.iterdir())[0] for p in lfw)]
    plain = cli("identify", *photos, "-g", gallery, "--json")
    on_ray = cli("identify", *photos, "-g", gallery, "--json", "--ray")
    assert plain.exit_code == on_ray.exit_code == 0, (plain.stderr, on_ray.stderr)
    a = [json.loads(line) for line in plain.stdout.splitlines()]
    b = [json.loads(line) for line in on_ray.stdout.splitlines()]
    assert len(a) == len(b) == 42

    def summary(results):
        return [
            (
                r["image"],
                [(f["status"], f["name"], f["box"]) for f in r["faces"]],
                [f["similarity"] for f in r["faces"]],
            )
            for r in results
        ]

    assert [s[:2] for s in summary(a)] == [s[:2] for s in summary(b)]
    for x, y in zip(summary(a), summary(b)):
        np.testing.assert_allclose(x[2], y[2], atol=1.01e-4)  # printed to 4 places: one step of rounding
    assert {f["name"] for r in b for f in r["faces"]} >= {"barack_obama", "joe_biden"}
    assert sum(len(r["faces"]) for r in b) >= 42


def test_identify_remember_with_ray_keeps_what_it_keeps_without(ray_local, tmp_path):
    """--remember writes the unknown faces (thumbnails from the pixels the workers send back) in the
    command, the one writer: the same faces and groups as without Ray."""
    _photos(tmp_path / "photos", 9, bad_at=2)
    outputs = []
    for name, extra in (("plain", []), ("ray", ["--ray"])):
        run = fake_cli("identify", tmp_path / "photos", "-g", tmp_path / name, "--remember", "--json", *extra)
        assert run.exit_code == 1  # the broken photo
        groups = fake_cli("clusters", "-g", tmp_path / name, "--json")
        assert groups.exit_code == 0, groups.output
        outputs.append((run.stdout, groups.stdout))
    assert outputs[0] == outputs[1]
    assert '"kept_as"' in outputs[1][0] and outputs[1][1].strip()


def test_an_address_nobody_answers_on_is_one_line_not_minutes():
    from faceid.distributed import _check_reachable
    from faceid.errors import FaceIDError

    with pytest.raises(FaceIDError, match=r"^cannot reach the Ray cluster at 127\.0\.0\.1:1 \("):
        _check_reachable("127.0.0.1:1")
    _check_reachable("auto")  # Ray's own forms go to Ray


_SLOW_RAYLET = "The current node timed out during startup. This could happen because some of the raylet failed"


def test_a_local_cluster_slow_to_start_is_started_once_more(monkeypatch, caplog):
    """Ray gives its raylet a fixed 30 s to register and then raises a bare Exception; a local
    node's first start on a busy machine can miss that, so faceid tries once more, and only once."""
    import ray

    from faceid.errors import FaceIDError

    calls: list[dict] = []

    def init(**options):
        calls.append(options)
        if len(calls) < failures:
            raise Exception(_SLOW_RAYLET)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # another test's cluster may be running
    failures = 2  # the first start fails, the second works
    with caplog.at_level("WARNING", logger="faceid.distributed"), ray_cluster(cpus=1) as started:
        assert started is ray
    assert len(calls) == 2 and "starting it once more" in caplog.text
    calls.clear()
    failures = 3  # both fail: one line, no traceback, no third try
    slow = r"^cannot start or join a local Ray cluster: The current node timed out"
    with pytest.raises(FaceIDError, match=slow), ray_cluster(cpus=1):
        pass
    assert len(calls) == 2
    calls.clear()

    def broken(**options):
        calls.append(options)
        raise Exception("boom")

    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(FaceIDError, match="boom"), ray_cluster(cpus=1):  # any other failure is not retried
        pass
    assert len(calls) == 1


class _PoisonDetector(FakeDetector):
    """Kills its own process on a photo whose first pixel is (1, 2, 3): a decoder crash, say."""

    def detect_many(self, images):
        if any(tuple(image[0, 0]) == (1, 2, 3) for image in images):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().detect_many(images)


def _poison_pipeline(key):
    from faceid.pipeline import Pipeline

    return Pipeline.from_key(key, detector=_PoisonDetector(), embedder=make_fake_pipeline().embedder)


def test_a_photo_that_kills_every_worker_is_reported_and_the_run_goes_on(ray_local, tmp_path):
    """Its batch is retried TASK_RETRIES times, then its photos are errors; not workers killed forever."""
    sources = _photos(tmp_path, 10)
    save_png(Path(sources[5]), tile_image([(1, 2, 3)]))
    seen = []
    got = list(RayRunner(_poison_pipeline, workers=2, batch_size=2)(sources, make_fake_pipeline(), on_done=seen.append))
    assert [x.source for x in got] == sources and seen == got
    lost = [x for x in got if x.error]
    assert [x.source for x in lost] == sources[4:6]  # the poisoned photo's batch
    assert (
        lost[0].error == f"{sources[4]}: its batch lost its Ray worker 4 times (a photo in it may crash "
        "the decoder or use up the memory); not tried again"
    )
    _same(
        [x for x in process(sources, make_fake_pipeline()) if x.source not in sources[4:6]],
        [x for x in got if not x.error],
    )


class _BuggyDetector(FakeDetector):
    def detect_many(self, images):
        if any(image.any() for image in images):  # not on the blank warm-up image: on the photos
            raise KeyError("a bug")
        return super().detect_many(images)


def _buggy_pipeline(key):
    from faceid.pipeline import Pipeline

    return Pipeline.from_key(key, detector=_BuggyDetector(), embedder=make_fake_pipeline().embedder)


def test_a_bug_on_a_worker_stops_the_run_with_its_traceback(ray_local, tmp_path):
    sources = _photos(tmp_path, 4)
    with pytest.raises(RuntimeError, match=r"(?s)batch code failed on a Ray worker:.*KeyError: 'a bug'"):
        list(RayRunner(_buggy_pipeline, workers=1, batch_size=2)(sources, make_fake_pipeline()))
