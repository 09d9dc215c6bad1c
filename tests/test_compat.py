"""The CompreFace- and DeepStack-compatible routes in-process with fake models: their shapes, the
similarity scale, error shapes and codes, keys from all three places, and the DeepStack form-field
key read before the upload. The real client libraries against a real server: test_compat_clients.py."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from conftest import cli, tile_image  # noqa: E402
from test_server import make_client, png  # noqa: E402

RED, GREEN, BLUE, GREY = (200, 0, 0), (0, 200, 0), (0, 0, 200), (120, 120, 120)
CF = "/api/v1/recognition"
DS = "/v1/vision/face"


@pytest.fixture
def client(gallery_dir):
    with make_client(gallery_dir) as c:
        yield c


def upload(colours, name="photo.png", field="file"):
    return [(field, (name, png(tile_image(colours)), "image/png"))]


def add(client, subject, colour, **params):
    return client.post(f"{CF}/faces", params={"subject": subject, **params}, files=upload([colour], f"{subject}.png"))


def enrol_three(client):
    for subject, colour in (("Red", RED), ("Green", GREEN), ("Blue", BLUE)):
        r = add(client, subject, colour)
        assert r.status_code == 201, r.text
        assert r.json()["subject"] == subject and r.json()["image_id"].isdigit()


# -- the scale ----------------------------------------------------------------------------------------


def test_scale_puts_the_decision_at_060():
    from faceid.server.compat.scale import BELOW, DECISION_AT, to_scale

    for t in (-0.2, 0.0, 0.25, 0.37, 0.9):
        assert to_scale(t, t, named=True) == DECISION_AT
        assert to_scale(1.0, t, named=True) == 1.0
        assert to_scale(-1.0, t, named=False) == 0.0
        assert to_scale(t - 1e-6, t, named=False) < DECISION_AT
        assert to_scale(0.99, t, named=False) <= BELOW  # a subject faceid did not name stays below
        values = [to_scale(s, t, named=s >= t) for s in np.linspace(-1, 1, 201)]
        assert values == sorted(values)  # monotone: a client's ranking is faceid's
    assert round(BELOW * 100, 2) < 60  # Double Take's two-decimal percentage stays under its 60


# -- CompreFace -----------------------------------------------------------------------------------------


def test_recognize_names_every_face_and_keeps_strangers_below(client):
    enrol_three(client)
    r = client.post(
        f"{CF}/recognize",
        params={"face_plugins": "undefined", "det_prob_threshold": 0.8},
        files=upload([RED, GREY, BLUE]),
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert len(result) == 3
    by_x = sorted(result, key=lambda f: f["box"]["x_min"])
    assert by_x[0]["subjects"][0]["subject"] == "Red" and by_x[0]["subjects"][0]["similarity"] >= 0.6
    assert by_x[2]["subjects"][0]["subject"] == "Blue" and by_x[2]["subjects"][0]["similarity"] >= 0.6
    assert len(by_x[1]["subjects"]) == 1 and by_x[1]["subjects"][0]["similarity"] < 0.6  # the stranger
    box = by_x[0]["box"]
    assert set(box) == {"probability", "x_min", "y_min", "x_max", "y_max"} and box["x_max"] - box["x_min"] == 40
    assert "landmarks" not in by_x[0] and "embedding" not in by_x[0] and "plugins_versions" not in r.json()


def test_recognize_options(client):
    enrol_three(client)
    r = client.post(
        f"{CF}/recognize?&limit=2&prediction_count=3&face_plugins=landmarks,calculator,age&status=true",
        files=upload([RED, GREEN, BLUE]),
    ).json()
    assert len(r["result"]) == 2 and "plugins_versions" in r
    face = r["result"][0]
    assert len(face["subjects"]) == 3 and len(face["landmarks"]) == 5 and len(face["embedding"]) == 128
    assert [s["similarity"] for s in face["subjects"]] == sorted(
        (s["similarity"] for s in face["subjects"]), reverse=True
    )
    every = client.post(f"{CF}/recognize", params={"limit": 0}, files=upload([RED, GREEN, BLUE])).json()
    assert len(every["result"]) == 3


def test_recognize_base64_json(client):
    enrol_three(client)
    body = {"file": base64.b64encode(png(tile_image([GREEN]))).decode()}
    r = client.post(f"{CF}/recognize", json=body)
    assert r.status_code == 200 and r.json()["result"][0]["subjects"][0]["subject"] == "Green"


def test_no_face_is_code_28(client):
    r = client.post(f"{CF}/recognize", files=upload([(0, 0, 0)]))
    assert r.status_code == 400 and r.json() == {"message": "No face is found in the given image", "code": 28}
    r = add(client, "Nobody", (0, 0, 0))
    assert r.status_code == 400 and r.json()["code"] == 28


def test_errors_have_compreface_shape(client):
    r = client.post(f"{CF}/recognize", params={"limit": -1}, files=upload([RED]))
    assert r.status_code == 400 and set(r.json()) == {"message", "code"}
    r = client.post(f"{CF}/recognize", files=[("file", ("x.png", b"not an image", "image/png"))])
    assert r.status_code in (415, 422) and set(r.json()) == {"message", "code"} and "x.png" in r.json()["message"]
    r = client.post(f"{CF}/faces", params={"subject": "Two"}, files=upload([RED, GREEN]))
    assert r.status_code == 400 and r.json()["code"] == 31
    assert client.delete(f"{CF}/faces/999").json()["code"] == 11
    assert client.delete(f"{CF}/subjects/nobody").json()["code"] == 42


def test_faces_list_paging_and_delete(client):
    enrol_three(client)
    listing = client.get(f"{CF}/faces", params={"page": 0, "size": 2}).json()
    assert listing["total_elements"] == 3 and listing["total_pages"] == 2 and len(listing["faces"]) == 2
    assert listing["page_number"] == 0 and listing["page_size"] == 2
    last = client.get(f"{CF}/faces", params={"page": 1, "size": 2}).json()["faces"]
    assert len(last) == 1
    one = listing["faces"][0]
    gone = client.delete(f"{CF}/faces/{one['image_id']}")
    assert gone.status_code == 200 and gone.json() == one
    assert client.delete(f"{CF}/faces", params={"subject": "blue"}).json() == {"deleted": 1}  # case-insensitive
    remaining = client.get(f"{CF}/faces").json()
    assert remaining["total_elements"] == 1


def test_delete_face_list(client):
    enrol_three(client)
    ids = [f["image_id"] for f in client.get(f"{CF}/faces").json()["faces"]]
    r = client.post(f"{CF}/faces/delete", json=[ids[0], ids[1], "12345"])
    assert r.status_code == 200 and [f["image_id"] for f in r.json()] == ids[:2]


def test_subjects(client):
    assert client.post(f"{CF}/subjects", json={"subject": "Later"}).json() == {"subject": "Later"}
    enrol_three(client)
    assert client.get(f"{CF}/subjects").json() == {"subjects": ["Blue", "Green", "Later", "Red"]}
    assert client.post(f"{CF}/subjects", json={"subject": "red"}).json()["code"] == 43
    assert client.put(f"{CF}/subjects/Red", json={"subject": "Scarlet"}).json() == {"updated": True}
    assert client.put(f"{CF}/subjects/Scarlet", json={"subject": "Green"}).json()["code"] == 43
    assert client.delete(f"{CF}/subjects/Scarlet").json() == {"subject": "Scarlet"}
    assert client.get(f"{CF}/subjects").json() == {"subjects": ["Blue", "Green", "Later"]}
    assert add(client, "later", GREY).json()["subject"] == "later"  # a face for the pending subject
    assert client.delete(f"{CF}/subjects").json() == {"deleted": 3}
    assert client.get(f"{CF}/subjects").json() == {"subjects": []}


def test_adding_to_a_name_in_another_case_joins_that_person(client):
    add(client, "Sheldon", RED)
    r = add(client, "sheldon", (210, 0, 0))
    assert r.status_code == 201 and r.json()["subject"] == "Sheldon" and r.json()["new_subject"] is False
    assert client.get(f"{CF}/subjects").json() == {"subjects": ["Sheldon"]}


def test_face_verify(client):
    enrol_three(client)
    red = next(f for f in client.get(f"{CF}/faces").json()["faces"] if f["subject"] == "Red")
    r = client.post(f"{CF}/faces/{red['image_id']}/verify", files=upload([GREEN, RED]))
    assert r.status_code == 200
    sims = sorted(f["similarity"] for f in r.json()["result"])
    assert sims[0] < 0.6 <= sims[1]


# -- DeepStack ---------------------------------------------------------------------------------------------


def ds_image(colours, field="image"):
    return upload(colours, "frame.png", field)


def test_deepstack_register_recognize_list_delete(client):
    for name, colour in (("red", RED), ("green", GREEN)):
        r = client.post(f"{DS}/register", data={"userid": name}, files=ds_image([colour]))
        assert r.status_code == 200 and r.json() == {
            "success": True,
            "message": "face added",
            "userid": name,
            "new_person": True,
        }
    # register adds, never replaces
    r = client.post(f"{DS}/register", data={"userid": "RED"}, files=ds_image([(210, 0, 0)]))
    assert r.json()["success"] is True and (r.json()["userid"], r.json()["new_person"]) == ("red", False)
    assert client.get("/v1/people").json() == [{"name": "green", "faces": 1}, {"name": "red", "faces": 2}]
    r = client.post(f"{DS}/recognize", data={"min_confidence": "0.45"}, files=ds_image([RED, GREY]))
    assert r.status_code == 200 and r.json()["success"] is True
    predictions = sorted(r.json()["predictions"], key=lambda p: p["x_min"])
    assert predictions[0]["userid"] == "red" and predictions[0]["confidence"] >= 0.6
    assert predictions[1]["userid"] == "unknown"
    assert set(predictions[0]) == {"userid", "confidence", "x_min", "y_min", "x_max", "y_max"}
    strict = client.post(f"{DS}/recognize", data={"min_confidence": "0.999"}, files=ds_image([GREEN])).json()
    assert strict["predictions"][0]["userid"] == "unknown"
    assert client.post(f"{DS}/list").json() == {"success": True, "faces": ["green", "red"]}
    assert client.post(f"{DS}/delete", data={"userid": "red"}).json() == {"success": True}
    assert client.post(f"{DS}/list").json()["faces"] == ["green"]


def test_deepstack_no_face_is_200_empty(client):
    r = client.post(f"{DS}/recognize", files=ds_image([(0, 0, 0)]))
    assert r.status_code == 200 and r.json()["predictions"] == [] and r.json()["success"] is True


def test_deepstack_detection_and_match(client):
    r = client.post(DS, files=ds_image([RED, GREEN]))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    same = client.post(f"{DS}/match", files=ds_image([RED], "image1") + ds_image([RED], "image2")).json()
    other = client.post(f"{DS}/match", files=ds_image([RED], "image1") + ds_image([BLUE], "image2")).json()
    assert same["similarity"] >= 0.6 > other["similarity"]


def test_deepstack_errors(client):
    r = client.post(f"{DS}/register", files=ds_image([RED]))
    assert r.status_code == 400 and r.json()["success"] is False and "userid" in r.json()["error"]
    r = client.post(f"{DS}/recognize", files=[("image", ("x.png", b"junk", "image/png"))])
    assert r.status_code in (415, 422) and r.json()["success"] is False


# -- keys -------------------------------------------------------------------------------------------------


def test_keys_from_every_place(gallery_dir):
    key = cli("keys", "create", "cam", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    reader = cli("keys", "create", "ro", "--read-only", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    with make_client(gallery_dir) as client:
        assert client.get(f"{CF}/subjects").status_code == 401
        assert client.get(f"{CF}/subjects", headers={"x-api-key": "wrong"}).status_code == 401
        assert client.get(f"{CF}/subjects", headers={"x-api-key": key}).status_code == 200
        assert client.get(f"{CF}/subjects", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        denied = client.post(f"{CF}/subjects", json={"subject": "x"}, headers={"x-api-key": reader})
        assert denied.status_code == 403 and set(denied.json()) == {"message", "code"}
        # DeepStack: the form field, before the image (deepstack-python) or after it (Double Take)
        ok = client.post(f"{DS}/register", data={"api_key": key, "userid": "red"}, files=ds_image([RED]))
        assert ok.status_code == 200, ok.text
        assert client.post(f"{DS}/list", data={"api_key": key}).json()["faces"] == ["red"]
        none = client.post(f"{DS}/recognize", data={"api_key": ""}, files=ds_image([RED]))
        assert none.status_code == 401 and none.json()["success"] is False
        bad = client.post(f"{DS}/recognize", data={"api_key": "wrong"}, files=ds_image([RED]))
        assert bad.status_code == 401
        ro = client.post(f"{DS}/delete", data={"api_key": reader, "userid": "red"})
        assert ro.status_code == 403
        assert client.post(f"{DS}/list", headers={"x-api-key": key}).status_code == 200


def test_a_read_only_key_may_not_keep_faces(gallery_dir):
    """remember=true writes to the gallery: a read-only key is refused on every identify route, and
    nothing is kept; the same request with an admin key keeps the face."""
    admin = cli("keys", "create", "cam", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    reader = cli("keys", "create", "ro", "--read-only", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    with make_client(gallery_dir) as client:
        ro = {"x-api-key": reader}
        asks = [
            client.post("/v1/identify", params={"remember": "true"}, files=upload([GREY], field="file"), headers=ro),
            client.post(f"{CF}/recognize", params={"remember": "true"}, files=upload([GREY]), headers=ro),
            client.post(f"{DS}/recognize", data={"api_key": reader, "remember": "true"}, files=ds_image([GREY])),
        ]
        for r in asks:
            assert r.status_code == 403 and "read-only" in r.text and "remember" in r.text, r.text
        plain = client.post(f"{CF}/recognize", files=upload([GREY]), headers=ro)  # not asking: allowed
        assert plain.status_code == 200, plain.text
        assert kept_count(gallery_dir) == 0
        kept = client.post(
            "/v1/identify", params={"remember": "true"}, files=upload([GREY]), headers={"x-api-key": admin}
        )
        assert kept.status_code == 200 and kept.json()["faces"][0]["kept_as"] is not None, kept.text
    assert kept_count(gallery_dir) == 1


def test_form_key_is_read_before_the_image():
    from faceid.server.compat.formkey import first_field

    boundary = b"xyz"
    head = b'--xyz\r\nContent-Disposition: form-data; name="api_key"\r\n\r\nSECRET\r\n'
    image = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n' + b"\xff" * 50
    assert first_field(head[:20], boundary, b"api_key")[:2] == (None, False)  # not complete yet
    assert first_field(head + image, boundary, b"api_key")[:2] == (b"SECRET", False)  # before the image ends
    image_first = image + b"\r\n" + head + b"--xyz--\r\n"
    assert first_field(image_first, boundary, b"api_key")[:2] == (b"SECRET", False)
    assert first_field(image + b"\r\n--xyz--\r\n", boundary, b"api_key")[:2] == (None, True)
    # fed in pieces of every size, resuming where the last call left off: the same answer
    for step in (1, 3, 7, 64):
        body, resume, found = bytearray(), 0, None
        for i in range(0, len(image_first), step):
            seen = len(body)
            body += image_first[i : i + step]
            value, _, resume = first_field(body, boundary, b"api_key", resume, seen)
            if value is not None:
                found = value
                break
        assert found == b"SECRET", step


def test_no_compat_turns_them_off(gallery_dir):
    with make_client(gallery_dir, compat=False) as client:
        assert client.get(f"{CF}/subjects").status_code == 404
        assert "/api/v1/recognition/recognize" not in client.get("/openapi.json").json()["paths"]
    with make_client(gallery_dir) as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/v1/recognition/recognize" in paths and "/v1/vision/face/recognize" in paths
        assert "/v1/verify" in paths


# -- remember ---------------------------------------------------------------------------------------------


def test_remember_keeps_unknown_faces_from_every_route(gallery_dir):
    with make_client(gallery_dir) as client:
        enrol_three(client)
        r = client.post("/v1/identify", params={"remember": "true"}, files=upload([RED, GREY]))
        faces = r.json()["faces"]
        assert [f.get("kept_as") is not None for f in faces] == [False, True]
        client.post(f"{CF}/recognize", params={"remember": "true"}, files=upload([(120, 120, 0)], "cam1.png"))
        client.post(f"{DS}/recognize", data={"remember": "true"}, files=ds_image([(0, 120, 120)]))
        client.post(f"{CF}/recognize", files=upload([(120, 0, 120)], "not-kept.png"))  # no remember: not kept
    assert kept_count(gallery_dir) == 3
    with make_client(gallery_dir, remember_unknown=True) as client:  # faceid serve --remember-unknown
        client.post(f"{CF}/recognize", files=upload([(60, 60, 60)], "cam2.png"))
    assert kept_count(gallery_dir) == 4


def kept_count(gallery_dir) -> int:
    from faceid.gallery import open_gallery

    with open_gallery(gallery_dir) as g:
        return g.unknown.count()


# -- names that differ only in case ---------------------------------------------------------------------------


def test_every_enrol_answer_names_the_stored_person(gallery_dir, tmp_path):
    from conftest import fake_cli, save_png

    with make_client(gallery_dir) as client:
        first = client.post("/v1/people/Sheldon/faces", files=upload([RED], "a.png")).json()
        assert first["person"] == "Sheldon" and first["new_person"] is True
        again = client.post("/v1/people/sheldon/faces", files=upload([(210, 0, 0)], "b.png")).json()
        assert again["person"] == "Sheldon" and again["new_person"] is False
        assert again["results"][0]["person"] == "Sheldon" and again["results"][0]["new_person"] is False
        assert client.get("/v1/people").json() == [{"name": "Sheldon", "faces": 2}]
    photo = save_png(tmp_path / "c.png", tile_image([(220, 0, 0)]))
    out = fake_cli("enroll", "SHELDON", photo, "--gallery", gallery_dir, "--json")
    line = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert line["person"] == "Sheldon" and line["new_person"] is False and line["status"] == "added"


# -- the DeepStack key reader's own slots and timeout ------------------------------------------------------


class _FakeKeys:
    def count(self):
        return 1

    def check(self, token):
        return object() if token == "good" else None


class _FakeState:
    from contextlib import nullcontext

    def __init__(self, settings):
        self.settings = settings
        self.keys = _FakeKeys()

    def use(self, caller=None):
        return self.nullcontext()


def _form_key_call(settings, parts, *, stall_after=None):
    """Run FormKey on one DeepStack upload made of ``parts`` (bytes chunks); the answer's status and
    whether the app behind it was reached. ``stall_after``: stop sending after that many chunks."""
    import asyncio
    from types import SimpleNamespace

    from faceid.server.compat.formkey import FormKey

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["state"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = FormKey(app, settings)
    holder = SimpleNamespace(state=SimpleNamespace(faceid=_FakeState(settings)))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/vision/face/recognize",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
        "app": holder,
    }
    sent: list = []

    async def run():
        queue = list(parts)
        count = 0

        async def receive():
            nonlocal count
            if stall_after is not None and count >= stall_after:
                await asyncio.sleep(3600)
            count += 1
            chunk = queue.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

        async def send(message):
            sent.append(message)

        await middleware(scope, receive, send)

    asyncio.run(run())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, bool(reached), middleware


def test_form_key_reader_cuts_off_a_stalled_client_and_refuses_bad_keys():
    import time

    from faceid.server.settings import Settings

    settings = Settings(loopback=False, form_key_timeout=0.2, form_key_slots=1)
    key = b'--xyz\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n'
    image = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n' + b"\xff" * 100
    good = [key + b"good\r\n", image + b"\r\n--xyz--\r\n"]
    assert _form_key_call(settings, good)[:2] == (200, True)
    bad = [key + b"wrong\r\n", image + b"\r\n--xyz--\r\n"]
    assert _form_key_call(settings, bad)[:2] == (401, False)  # refused before the image is read
    started = time.monotonic()
    status, reached, middleware = _form_key_call(settings, [image[:50], image[50:]], stall_after=1)
    assert (status, reached) == (408, False) and time.monotonic() - started < 5
    assert middleware.busy == 0  # the slot is given back
    keyless = [image + b"\r\n--xyz--\r\n"]
    assert _form_key_call(settings, keyless)[:2] == (401, False)


def test_form_key_reader_has_its_own_slots():
    from faceid.server.settings import Settings

    settings = Settings(loopback=False, form_key_slots=1)
    from faceid.server.compat.formkey import FormKey

    middleware = FormKey(None, settings)
    middleware.busy = 1  # one upload is waiting for its key already
    import asyncio
    from types import SimpleNamespace

    sent: list = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/vision/face/recognize",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
        "app": SimpleNamespace(state=SimpleNamespace(faceid=_FakeState(settings))),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]


def test_boxes_are_the_photos_own_pixels(gallery_dir):
    """A photo larger than the server's working size is decoded smaller; both compatibility APIs still
    answer with boxes in the photo's own pixels (clients draw them on the photo they sent)."""
    big = [("file", ("big.png", png(tile_image([GREEN, RED], tile=80)), "image/png"))]
    with make_client(gallery_dir, working_side=80) as client:
        enrol_three(client)
        cf = client.post(f"{CF}/recognize", files=big)
        assert cf.status_code == 200, cf.text
        boxes = sorted(
            (b["x_min"], b["y_min"], b["x_max"], b["y_max"]) for b in (r["box"] for r in cf.json()["result"])
        )
        assert boxes == [(0, 0, 80, 80), (80, 0, 160, 80)]
        ds_big = [("image", big[0][1])]
        for route in (f"{DS}/recognize", DS):  # DeepStack's face detection is the bare path
            ds = client.post(route, files=ds_big)
            assert ds.status_code == 200, ds.text
            found = sorted((p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in ds.json()["predictions"])
            assert found == [(0, 0, 80, 80), (80, 0, 160, 80)], route
