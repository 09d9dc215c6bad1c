"""A property-based fuzz of the whole API from its own OpenAPI schema (schemathesis), against the
app served by uvicorn on 127.0.0.1 with fake models: no request may get a 500, and every answer
must match the schema (status codes, content types, bodies).

A few hundred requests in the default suite; FACEID_STRESS=1 (``make stress``) sends thousands.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow  # hundreds of requests through uvicorn
schemathesis = pytest.importorskip("schemathesis")

from conftest import FakeDetector, FakeEmbedder, tile_image  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

STRESS = bool(os.environ.get("FACEID_STRESS"))
EXAMPLES = 400 if STRESS else 25  # per operation; 11 operations
SENT: dict = {"requests": 0, "by_status": {}}
KEY: dict = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    import uvicorn

    from faceid.pipeline import Pipeline
    from faceid.server import Settings, create_app

    gallery = tmp_path_factory.mktemp("fuzz") / "gallery"
    app = create_app(
        gallery,
        pipeline=Pipeline(detector=FakeDetector(), embedder=FakeEmbedder()),
        settings=Settings(max_uploads=64, request_timeout=30, key_rate=1e6, key_burst=10**6, key_concurrency=64),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    url = f"http://127.0.0.1:{port}"
    from faceid.apikeys import ApiKeys
    from faceid.gallery import Gallery

    with Gallery(gallery) as g:  # with a key: the fuzz also checks that requests without it are refused
        _, KEY["token"] = ApiKeys(g).create("fuzz")
    auth = {"Authorization": f"Bearer {KEY['token']}"}
    # someone to find, rename and remove, so those routes do more than answer 404
    import io

    import requests
    from PIL import Image

    for i, name in enumerate(["Alice", "Bob", "Carol"]):
        buffer = io.BytesIO()
        Image.fromarray(tile_image([(60 * i + 60, 20, 200 - 50 * i)])).save(buffer, format="PNG")
        r = requests.post(
            f"{url}/v1/people/{name}/faces", files={"file": (f"{name}.png", buffer.getvalue())}, headers=auth
        )
        assert r.status_code == 200, r.text
    yield schemathesis.openapi.from_url(f"{url}/openapi.json")
    server.should_exit = True
    thread.join(30)
    print(f"\nschemathesis: {SENT['requests']} requests, by status {dict(sorted(SENT['by_status'].items()))}")


def test_api_never_fails_and_keeps_its_schema(api_schema):
    from hypothesis import given
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not STRESS)
        def check(case):
            # Uploads made from the schema are random bytes, not photos: refusing them (415/422) is
            # right, so "valid data must be accepted" does not apply; every other check does.
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY['token']}"}, excluded_checks=[positive_data_acceptance]
            )
            SENT["requests"] += 1
            SENT["by_status"][response.status_code] = SENT["by_status"].get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text
            content_type = response.headers.get("content-type") or [""]
            assert content_type[0].split(";")[0] in ("application/json", "image/jpeg"), content_type

        check()
    assert SENT["requests"] >= len(operations) * min(EXAMPLES, 5)
