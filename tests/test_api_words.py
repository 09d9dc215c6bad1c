"""Every bad input a 4xx in the API's own words: no server paths, no command-line flags, no Python
internals; numbers bounded where they are parsed; security headers on every answer; HEIC read."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("fastapi")

from conftest import tile_image  # noqa: E402
from test_server import GREEN, RED, enrol, error_of, files, make_client, png  # noqa: E402


@pytest.fixture
def client(gallery_dir):
    with make_client(gallery_dir) as c:
        yield c


INTERNALS = ("UploadFile", "<class", "JSON decode", "Traceback", "pydantic", "Value error", "--largest")


def plain(message: str, gallery_dir) -> str:
    assert str(gallery_dir) not in message, message
    for word in INTERNALS:
        assert word not in message, message
    return message


@pytest.mark.parametrize(
    "params",
    [
        {"box": "1e309,0,10,10"},
        {"box": "inf,0,10,10"},
        {"box": "0,0,nan,10"},
        {"box": "0,0,-5,10"},
        {"box": "1,2,3"},
        {"box": "99999999999999999999999,0,10,10"},
    ],
)
def test_enrolment_box_out_of_range_is_a_400(client, gallery_dir, params):
    r = client.post("/v1/people/Bob/faces", files=files(("a.png", png(tile_image([RED])))), params=params)
    assert "box" in plain(error_of(r, 400), gallery_dir)
    r = client.get("/healthz")  # and the connection is still good
    assert r.status_code == 200


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "99999999999999999999999", "x"])
def test_identify_numbers_out_of_range_are_400s(client, gallery_dir, value):
    for name in ("threshold", "margin"):
        r = client.post("/v1/identify", files=files(("a.png", png(tile_image([RED])))), params={name: value})
        assert plain(error_of(r, 400), gallery_dir).startswith(name)


def test_two_files_where_one_is_expected_is_a_400(client):
    image = png(tile_image([RED]))
    r = client.post("/v1/identify", files=files(("a.png", image), ("b.png", image)))
    assert error_of(r, 400) == "send one image in 'file'; this request has 2"


def test_errors_speak_the_apis_words(client, gallery_dir):
    enrol(client, "Alice", RED)
    cases = [
        (client.post("/v1/identify", data={"file": "hello"}), 400, "expected a file"),
        (client.post("/v1/identify"), 400, "file: missing"),
        (client.patch("/v1/people/Alice", content=b"{nope", headers={"content-type": "application/json"}), 400, "JSON"),
        (client.patch("/v1/people/Alice", json=[1]), 400, "JSON object"),
        (client.get("/v1/people/Nobody"), 404, "no person named 'Nobody'"),
        (client.delete("/v1/faces/99999"), 404, "no face with id 99999"),
        (client.get("/v1/nothing-here"), 404, "no such path"),
        (client.put("/v1/people"), 405, "not a method"),
        (
            client.post("/v1/people/Bob/faces", files=files(("two.png", png(tile_image([RED, GREEN]))))),
            422,
            "largest=true",
        ),
    ]
    for response, status, words in cases:
        assert words in plain(error_of(response, status), gallery_dir)


def test_security_headers_on_every_answer(client):
    for path in ("/", "/healthz", "/v1/people", "/static/app.js", "/v1/nothing"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_a_heic_photo_is_identified_like_any_other(client):
    pillow_heif = pytest.importorskip("pillow_heif")
    enrol(client, "Alice", RED)
    pixels = np.ascontiguousarray(tile_image([RED]))
    heif = pillow_heif.from_bytes(mode="RGB", size=(pixels.shape[1], pixels.shape[0]), data=pixels.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, quality=100)
    r = client.post("/v1/identify", files=files(("phone.heic", buffer.getvalue())))
    assert r.status_code == 200, r.text
    assert [f["name"] for f in r.json()["faces"]] == ["Alice"]
