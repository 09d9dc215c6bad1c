"""The real client libraries against a real ``faceid serve`` on 127.0.0.1 (a subprocess on a free
port, stopped at the end), with the real default model: compreface-sdk 0.6 (from its own
virtualenv, ``make compat-clients``, through tests/compat_clients/compreface_scenario.py),
deepstack-python 0.9, and Double Take's exact request shapes replayed (from its
``api/src/util/detectors/{compreface,deepstack}.js``). The server has an API key, so every client
sends it its own way: ``x-api-key`` (CompreFace), the ``api_key`` form field (DeepStack).

Each client enrols the committed sample people and names both faces of the sample group photo; with
../shared/data, also the seven Big Bang cast members and their group photo (the origin scenario).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
requests = pytest.importorskip("requests")

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "faceid" / "samples"
PEOPLE = SAMPLES / "people"
GROUP = SAMPLES / "photos" / "obama_and_biden.jpg"
COMPREFACE_PYTHON = ROOT / ".venv-compreface" / "bin" / "python"
SCENARIO = Path(__file__).resolve().parent / "compat_clients" / "compreface_scenario.py"
SAMPLE_NAMES = {"barack_obama", "joe_biden"}  # the two faces of the group photo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(base URL, port, admin key)`` of a real ``faceid serve`` with one API key."""
    from faceid.errors import ModelNotFoundError
    from faceid.models import DEFAULT_MODEL, locate

    try:
        locate(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        pytest.skip(f"the default model's weights are not installed ({exc})")
    gallery = tmp_path_factory.mktemp("compat") / "gallery"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    made = subprocess.run(
        [sys.executable, "-m", "faceid", "keys", "create", "clients", "--gallery", str(gallery)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = (gallery.parent / "serve.log").open("w+")
    # --max-batch 2: the server warms each batch size it may use at start-up; two are enough here
    process = subprocess.Popen(
        [sys.executable, "-m", "faceid", "serve", "--gallery", str(gallery), "--port", str(port), "--max-batch", "2"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"faceid serve ended with {process.returncode}: {log.read()[-2000:]}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "faceid serve did not answer within 600 s"
            time.sleep(0.5)
        yield base, port, key
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _names(result: list[dict]) -> set[str]:
    return {face["subjects"][0]["subject"] for face in result if face["subjects"][0]["similarity"] >= 0.6}


# -- compreface-sdk ---------------------------------------------------------------------------------------


def _run_compreface(server, people: Path, group: Path) -> dict:
    if not COMPREFACE_PYTHON.exists():
        pytest.skip(f"{COMPREFACE_PYTHON} is missing: `make compat-clients` makes it (compreface-sdk needs urllib3<2)")
    _, port, key = server
    run = subprocess.run(
        [str(COMPREFACE_PYTHON), str(SCENARIO), "http://127.0.0.1", str(port), key, str(people), str(group)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_compreface_sdk_samples(server):
    log = _run_compreface(server, PEOPLE, GROUP)
    added = log["added"]
    assert [a["subject"] for a in added] == ["barack_obama", "grace_hopper", "joe_biden"]
    assert all(a["image_id"].isdigit() for a in added)
    assert log["subjects"] == {"subjects": ["barack_obama", "grace_hopper", "joe_biden"]}
    assert log["faces"]["total_elements"] == 3 and len(log["faces"]["faces"]) == 3
    result = log["recognised"]["result"]
    assert len(result) == 2 and _names(result) == SAMPLE_NAMES
    assert all(len(face["landmarks"]) == 5 for face in result) and "plugins_versions" in log["recognised"]
    sims = sorted(face["similarity"] for face in log["verify"]["result"])
    assert sims[0] < 0.6 <= sims[1]  # Obama's enrolled face matches one face of the group
    assert log["renamed"] == {"updated": True}
    assert "barack_obama renamed" in log["after_rename"]["subjects"]
    assert "barack_obama renamed" in _names(log["recognised_after_rename"]["result"])
    assert log["deleted_face"] == {"image_id": added[0]["image_id"], "subject": "barack_obama renamed"}
    assert log["deleted_examples"] == {"deleted": 1}
    assert log["deleted_subject"] == {"subject": "joe_biden"}
    assert log["delete_all"] == {"deleted": len(log["before_delete_all"]["subjects"])}
    assert log["final"] == {"subjects": []}


# -- deepstack-python ------------------------------------------------------------------------------------


def _deepstack(server):
    core = pytest.importorskip("deepstack.core")
    _, port, key = server
    return core, core.DeepstackFace(ip="127.0.0.1", port=port, api_key=key, timeout=120, min_confidence=0.45)


def _clear_deepstack(server, face) -> None:
    base, _, key = server
    for userid in face.get_registered_faces():
        r = requests.post(f"{base}/v1/vision/face/delete", data={"userid": userid, "api_key": key}, timeout=60)
        assert r.status_code == 200 and r.json() == {"success": True}  # DeepStack's own delete call
    assert face.get_registered_faces() == []


def test_deepstack_python_samples(server):
    core, face = _deepstack(server)
    _clear_deepstack(server, face)
    for folder in sorted(PEOPLE.iterdir()):
        for photo in sorted(folder.iterdir()):
            assert face.register(folder.name, photo.read_bytes()) == "face added"
    assert sorted(face.get_registered_faces()) == ["barack_obama", "grace_hopper", "joe_biden"]
    predictions = face.recognize(GROUP.read_bytes())
    assert len(predictions) == 2
    assert set(core.get_recognized_faces(predictions)) == SAMPLE_NAMES
    assert len(face.detect(GROUP.read_bytes())) == 2
    wrong = core.DeepstackFace(ip="127.0.0.1", port=server[1], api_key="not-a-key", timeout=60)
    with pytest.raises(core.DeepstackException):
        wrong.recognize(GROUP.read_bytes())
    _clear_deepstack(server, face)


# -- Double Take's request shapes ------------------------------------------------------------------------


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body with the parts in this order (Double Take appends the image before api_key)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: image/jpeg\r\n" if filename else ""
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_double_take_compreface_shapes(server):
    base, _, key = server
    headers = {"x-api-key": key}
    requests.delete(f"{base}/api/v1/recognition/subjects", headers=headers, timeout=60)
    for folder in sorted(PEOPLE.iterdir()):
        photo = next(folder.iterdir())
        with photo.open("rb") as f:  # train(): POST /faces, params {subject}
            r = requests.post(
                f"{base}/api/v1/recognition/faces",
                params={"subject": folder.name},
                files={"file": f},
                headers=headers,
                timeout=120,
            )
        assert r.status_code == 201, r.text
    with GROUP.open("rb") as f:  # recognize(): the literal face_plugins=undefined, det_prob_threshold 0.8
        r = requests.post(
            f"{base}/api/v1/recognition/recognize?face_plugins=undefined",
            params={"det_prob_threshold": 0.8},
            files={"file": f},
            headers=headers,
            timeout=120,
        )
    assert r.status_code == 200, r.text
    # normalize(): the first subject, its similarity as a percentage to two decimals, match at 60
    named = {
        face["subjects"][0]["subject"].lower()
        for face in r.json()["result"]
        if round(face["subjects"][0]["similarity"] * 100, 2) >= 60
    }
    assert named == SAMPLE_NAMES
    with (SAMPLES / "photos" / "astronaut.jpg").open("rb") as f:
        stranger = requests.post(
            f"{base}/api/v1/recognition/recognize?face_plugins=undefined",
            params={"det_prob_threshold": 0.8},
            files={"file": f},
            headers=headers,
            timeout=120,
        ).json()
    assert all(round(face["subjects"][0]["similarity"] * 100, 2) < 60 for face in stranger["result"])
    for folder in sorted(PEOPLE.iterdir()):  # remove(): DELETE /faces, params {subject}
        r = requests.delete(
            f"{base}/api/v1/recognition/faces", params={"subject": folder.name}, headers=headers, timeout=60
        )
        assert r.status_code == 200 and r.json() == {"deleted": 1}


def test_double_take_deepstack_shapes(server):
    base, _, key = server
    for folder in sorted(PEOPLE.iterdir()):  # train(): image first, then userid, then api_key
        photo = next(folder.iterdir())
        body, kind = _multipart(
            [
                ("image", photo.read_bytes(), photo.name),
                ("userid", folder.name.encode(), None),
                ("api_key", key.encode(), None),
            ]
        )
        r = requests.post(f"{base}/v1/vision/face/register", data=body, headers={"Content-Type": kind}, timeout=120)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
    body, kind = _multipart([("image", GROUP.read_bytes(), GROUP.name), ("api_key", key.encode(), None)])
    r = requests.post(f"{base}/v1/vision/face/recognize", data=body, headers={"Content-Type": kind}, timeout=120)
    assert r.status_code == 200 and r.json()["success"] is True
    named = {
        p["userid"].lower() for p in r.json()["predictions"] if p["userid"] != "unknown" and p["confidence"] >= 0.6
    }
    assert named == SAMPLE_NAMES
    keyless, kind = _multipart([("image", GROUP.read_bytes(), GROUP.name)])
    refused = requests.post(
        f"{base}/v1/vision/face/recognize", data=keyless, headers={"Content-Type": kind}, timeout=60
    )
    assert refused.status_code == 401 and refused.json()["success"] is False
    for folder in sorted(PEOPLE.iterdir()):  # remove(): userid, api_key
        body, kind = _multipart([("userid", folder.name.encode(), None), ("api_key", key.encode(), None)])
        r = requests.post(f"{base}/v1/vision/face/delete", data=body, headers={"Content-Type": kind}, timeout=60)
        assert r.status_code == 200


# -- the origin scenario: seven people, one group photo ------------------------------------------------------


@pytest.fixture(scope="module")
def bigbang(optional_data):
    if optional_data is None or not (optional_data / "bigbang").is_dir():
        pytest.skip("../shared/data/bigbang is not here")
    root = optional_data / "bigbang"
    truth = json.loads((root / "ground_truth.json").read_text())
    return root, truth["probes"]["group/cast.jpg"]


def test_compreface_sdk_bigbang(server, bigbang):
    root, cast = bigbang
    log = _run_compreface(server, root / "faces", root / "group" / "cast.jpg")
    result = sorted(log["recognised"]["result"], key=lambda face: face["box"]["x_min"])
    assert [face["subjects"][0]["subject"] for face in result] == cast
    assert all(face["subjects"][0]["similarity"] >= 0.6 for face in result)


def test_deepstack_python_bigbang(server, bigbang):
    root, cast = bigbang
    core, face = _deepstack(server)
    _clear_deepstack(server, face)
    for photo in sorted((root / "faces").iterdir()):
        assert face.register(photo.stem.lower(), photo.read_bytes()) == "face added"
    predictions = sorted(face.recognize((root / "group" / "cast.jpg").read_bytes()), key=lambda p: p["x_min"])
    assert [p["userid"] for p in predictions] == cast
    _clear_deepstack(server, face)
