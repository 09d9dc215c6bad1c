"""Hostile requests of our own making (hypothesis) against the app served by uvicorn on loopback, with
fake models: extreme numbers in every numeric parameter, names in any script, malformed multipart
bodies and odd keys. No answer may be a 500 or a dropped connection, and every error is one JSON
line. A few hundred in the default suite; ``FACEID_STRESS=1`` (``make stress``) sends
FACEID_STRESS_REQUESTS of them (100,000 by default), as schemathesis's own fuzz runs beside it."""

from __future__ import annotations

import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow

from conftest import cli, tile_image  # noqa: E402
from test_server import RED, png  # noqa: E402
from test_server_door import fake_pipeline, running  # noqa: E402

STRESS = bool(os.environ.get("FACEID_STRESS"))
EXAMPLES = int(os.environ.get("FACEID_STRESS_REQUESTS", "100000")) if STRESS else 300
COUNT: dict = {"requests": 0, "by_status": {}}
PHOTO = png(tile_image([RED]))

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["1e309", "-1e309", "inf", "-inf", "nan", "NaN", "0x10", "1_000", " 1", "", "٣", "1e-400"]),
    st.text(max_size=12),
)
names = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["Zoë Ñandú 李", "می\u200cخواهم", "क्\u200dष", "..", ".", "a/b", "%2e%2e", "\u202eevil", "x" * 300]),
)


def quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@st.composite
def multipart(draw) -> tuple[str, bytes]:
    """A multipart body, often broken: boundaries that do not match, parts without headers or
    names, several file parts, a text field where a file goes, no end."""
    boundary = draw(st.sampled_from(["x", "faceid", "", "a" * 80, "é"]))
    declared = draw(st.sampled_from([boundary, "other", ""]))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["file", "text", "bare", "junk"]))
        body = draw(st.sampled_from([PHOTO, b"", b"not an image", PHOTO[: len(PHOTO) // 2]]))
        if kind == "file":
            filename = draw(st.one_of(st.just("a.png"), st.text(max_size=20)))
            head = f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        elif kind == "text":
            head = 'Content-Disposition: form-data; name="file"\r\n'
        elif kind == "bare":
            head = ""
        else:
            head = draw(st.text(max_size=60)) + "\r\n"
        parts.append(f"--{boundary}\r\n{head}\r\n".encode("utf-8", "replace") + body + b"\r\n")
    end = f"--{boundary}--\r\n".encode("utf-8", "replace") if draw(st.booleans()) else b""
    content_type = draw(
        st.sampled_from(
            [f"multipart/form-data; boundary={declared}", "multipart/form-data", "application/json", "text/plain", ""]
        )
    )
    return content_type, b"".join(parts) + end


@st.composite
def hostile(draw, key: str):
    """``(method, path, params, headers, body)`` of one hostile request."""
    route = draw(
        st.sampled_from(["identify", "enrol", "person", "rename", "face", "cluster", "suggest", "annotated", "other"])
    )
    params: dict = {}
    body = b""
    content_type = ""
    method = "GET"
    if route == "identify":
        method, path = "POST", "/v1/identify"
        params = {k: draw(numbers) for k in draw(st.sets(st.sampled_from(["threshold", "margin", "annotate"])))}
        content_type, body = draw(multipart())
    elif route == "enrol":
        method, path = "POST", f"/v1/people/{quoted(draw(names))}/faces"
        params = {k: draw(numbers) for k in draw(st.sets(st.sampled_from(["largest", "box"])))}
        if "box" in params and draw(st.booleans()):
            params["box"] = ",".join(draw(numbers) for _ in range(draw(st.integers(0, 5))))
        content_type, body = draw(multipart())
    elif route == "person":
        method = draw(st.sampled_from(["GET", "DELETE"]))
        path = f"/v1/people/{quoted(draw(names))}"
    elif route == "rename":
        method, path = "PATCH", f"/v1/people/{quoted(draw(names))}"
        content_type = "application/json"
        import json

        body = draw(
            st.one_of(
                names.map(lambda n: json.dumps({"name": n}).encode()),
                numbers.map(lambda n: ('{"name": ' + n + "}").encode()),
                st.binary(max_size=40),
            )
        )
    elif route == "face":
        method = draw(st.sampled_from(["GET", "DELETE"]))
        path = f"/v1/faces/{quoted(draw(numbers))}" + draw(st.sampled_from(["", "/thumbnail.jpg"]))
    elif route == "cluster":
        method = draw(st.sampled_from(["GET", "POST"]))
        path = f"/v1/clusters/{quoted(draw(numbers))}"
    elif route == "suggest":
        import json

        method, path = draw(
            st.sampled_from(
                [("GET", "/v1/suggestions"), ("POST", "/v1/suggestions/accept"), ("POST", "/v1/suggestions/reject")]
            )
        )
        if method == "GET":
            params = {"name": draw(names)} if draw(st.booleans()) else {}
        else:
            content_type = "application/json"
            ids = st.lists(st.one_of(numbers, st.integers(-(2**64), 2**64).map(str)), max_size=3)
            body = draw(
                st.one_of(
                    st.tuples(names, ids).map(
                        lambda t: ('{"name": ' + json.dumps(t[0]) + ', "faces": [' + ", ".join(t[1]) + "]}").encode()
                    ),
                    st.binary(max_size=40),
                )
            )
    elif route == "annotated":
        path = f"/v1/annotated/{quoted(draw(names))}.jpg"
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]))
        path = "/" + quoted(draw(names))
    headers = {"Authorization": f"Bearer {key}"}
    auth = draw(st.sampled_from(["good", "good", "good", "none", "wrong", "x-api-key", "odd"]))
    if auth == "none":
        headers = {}
    elif auth == "wrong":
        headers = {"Authorization": "Bearer fid_" + draw(st.text(alphabet="abcdef0123456789", max_size=40))}
    elif auth == "x-api-key":
        headers = {"x-api-key": key}
    elif auth == "odd":
        odd = draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
        headers = {"Authorization": odd.strip() or "x"}  # a client cannot send a header with spaces around it
    if content_type:
        headers["Content-Type"] = content_type
    return method, path, params, headers, body


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from faceid.server import Settings, create_app

    gallery = tmp_path_factory.mktemp("hostile") / "gallery"
    key = cli("keys", "create", "fuzz", "--gallery", gallery).stdout.strip().splitlines()[-1]
    settings = Settings(max_uploads=16, request_timeout=30, key_rate=1e6, key_burst=10**6, key_concurrency=16)
    app = create_app(gallery, pipeline=fake_pipeline(), settings=settings)
    with running(app) as url:
        import httpx

        with httpx.Client(base_url=url, timeout=30) as client:
            for name in ("Alice", "Bob"):
                r = client.post(
                    f"/v1/people/{name}/faces", files={"file": ("a.png", PHOTO)}, headers={"x-api-key": key}
                )
                assert r.status_code in (200, 409), r.text
            yield client, key
    print(f"\nhostile requests: {COUNT['requests']}, by status {dict(sorted(COUNT['by_status'].items()))}")  # noqa: T201


@pytest.mark.timeout(0 if STRESS else 900)  # a stress run takes as long as its count needs
def test_hostile_requests_get_a_4xx_in_one_line_never_a_500(served):
    client, key = served

    @given(request=hostile(key))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=not STRESS,
    )
    def check(request):
        method, path, params, headers, body = request
        raw = {k: v.encode("utf-8") for k, v in headers.items()}  # as bytes: non-ASCII goes on the wire as is
        response = client.request(method, path, params=params, headers=raw, content=body)
        COUNT["requests"] += 1
        if STRESS and COUNT["requests"] % 10_000 == 0:
            print(f"\nhostile requests so far: {COUNT}", flush=True)  # noqa: T201
        COUNT["by_status"][response.status_code] = COUNT["by_status"].get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, params, response.text[:300])
        if response.status_code >= 400:
            kind = response.headers.get("content-type", "")
            assert kind.startswith("application/json"), (path, kind)
            error = response.json()["error"]
            assert isinstance(error, str) and "\n" not in error and "Traceback" not in error, error
            if response.status_code == 401:
                assert response.headers["www-authenticate"] == 'Bearer realm="faceid"'

    check()
    assert COUNT["requests"] >= EXAMPLES
