"""The REST API in-process (FastAPI's TestClient) with fake models: every route, every error status,
auth scopes, limits, hostile images, and concurrent writers with nothing lost."""

from __future__ import annotations

import io
import sqlite3
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from conftest import FakeDetector, FakeEmbedder, cli, fake_cli, save_png, tile_image  # noqa: E402

RED, GREEN, BLUE, GREY = (200, 0, 0), (0, 200, 0), (0, 0, 200), (120, 120, 120)


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def bomb_png(side: int = 60_000) -> bytes:
    """A tiny PNG that declares a huge image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def fake_pipeline():
    from faceid.pipeline import Pipeline

    return Pipeline(detector=FakeDetector(), embedder=FakeEmbedder())


def make_client(gallery_dir: Path, **settings):
    from fastapi.testclient import TestClient

    from faceid.server import Settings, create_app

    app = create_app(gallery_dir, pipeline=fake_pipeline(), settings=Settings(**settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(gallery_dir):
    with make_client(gallery_dir) as c:
        yield c


def files(*items):
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def enrol(client, name, colour, filename="a.png", **params):
    return client.post(f"/v1/people/{name}/faces", files=files((filename, png(tile_image([colour])))), params=params)


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "results"} and isinstance(body["error"], str), body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


# -- routes -----------------------------------------------------------------------------------------


def test_healthz_once_models_are_loaded(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["auth"] is False  # loopback, no keys yet


def test_enrol_identify_annotate_like_the_cli(client, gallery_dir, tmp_path):
    r = enrol(client, "Alice", RED)
    assert r.status_code == 200
    [entry] = r.json()["results"]
    assert entry["status"] == "added" and entry["image"] == "a.png"
    assert entry["message"] == "a.png: face at [0, 0, 40, 40]"
    assert enrol(client, "Bob", GREEN, "b.png").json()["results"][0]["status"] == "added"

    group = tile_image([GREEN, BLUE, RED])
    r = client.post("/v1/identify", files=files(("group.png", png(group))), params={"annotate": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    named = [(f["status"], f["name"]) for f in body["faces"]]
    assert named == [("known", "Bob"), ("unknown", None), ("known", "Alice")]
    assert body["width"] == 120 and body["height"] == 40 and body["error"] is None
    jpg = client.get(body["annotated"])
    assert jpg.status_code == 200 and jpg.headers["content-type"] == "image/jpeg" and jpg.content[:2] == b"\xff\xd8"

    # The same object one line of `faceid identify --json` prints (bar the annotated file's place).
    import json

    path = save_png(tmp_path / "group.png", group)
    out = fake_cli("identify", path, "--json", "--gallery", gallery_dir)
    line = json.loads(out.stdout.splitlines()[0])
    api = {**body, "annotated": None, "image": line["image"]}
    assert api == line


def test_people_person_thumbnail_rename_remove(client):
    enrol(client, "Alice", RED)
    assert enrol(client, "Alice", RED, "again.png").json()["results"][0]["status"] == "duplicate"  # same bytes
    client.post("/v1/people/Alice/faces", files=files(("second.jpg", jpeg(tile_image([(204, 4, 4)])))))
    assert client.get("/v1/people").json() == [{"name": "Alice", "faces": 2}]
    person = client.get("/v1/people/Alice").json()
    assert [f["image"] for f in person["faces"]] == ["a.png", "second.jpg"]
    thumb = client.get(person["faces"][0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    from PIL import Image

    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 128

    assert client.patch("/v1/people/Alice", json={"name": "Alicia"}).json() == {"name": "Alicia", "faces": 2}
    first = person["faces"][0]["id"]
    assert client.delete(f"/v1/faces/{first}").json() == {"removed": first, "person": "Alicia"}
    error_of(client.get(f"/v1/faces/{first}/thumbnail"), 404)
    assert client.get("/v1/people").json() == [{"name": "Alicia", "faces": 1}]
    assert client.delete("/v1/people/Alicia").json() == {"removed": "Alicia", "faces": 1}
    assert client.get("/v1/people").json() == []
    gallery = client.app.state.faceid.gallery
    assert gallery.check() == []  # the audit log agrees with what is left


def test_a_removed_face_is_gone_from_the_index_in_every_process(client, gallery_dir):
    from faceid.gallery import Gallery

    enrol(client, "Alice", RED)
    client.post("/v1/people/Alice/faces", files=files(("second.jpg", jpeg(tile_image([(204, 4, 4)])))))
    first, second = (f["id"] for f in client.get("/v1/people/Alice").json()["faces"])
    with Gallery(gallery_dir) as other:  # another process's view, with its own index
        other.search(np.ones((1, 128), np.float32) / np.sqrt(128), 2)
    assert client.delete(f"/v1/faces/{first}").status_code == 200
    with Gallery(gallery_dir) as other:
        _, ids = other.search(np.ones((1, 128), np.float32) / np.sqrt(128), 5)
        assert first not in ids and second in ids
        assert other.check() == []


def test_duplicate_photo_and_several_faces_as_the_cli_words_them(client):
    enrol(client, "Alice", RED)
    r = enrol(client, "Bob", RED, "same.png")
    assert r.status_code == 200  # as the CLI: a duplicate is reported, not a failure
    assert r.json()["results"][0]["message"] == "same.png: already enrolled for Alice; not added again"
    two = png(tile_image([GREEN, BLUE]))
    r = client.post("/v1/people/Bob/faces", files=files(("two.png", two)))
    # the API's own parameter, not the command line's flag
    assert "two.png: 2 faces found; crop the photo to one face, or pass largest=true" in error_of(r, 422)
    r = client.post("/v1/people/Bob/faces", files=files(("two.png", two)), params={"box": "40,0,40,40"})
    assert r.status_code == 200 and r.json()["results"][0]["box"] == [40, 0, 40, 40]
    # several photos: one report entry each, the good one added
    r = client.post(
        "/v1/people/Carol/faces", files=files(("ok.png", png(tile_image([GREY]))), ("bad.png", b"not an image"))
    )
    assert r.status_code == 200
    assert [e["status"] for e in r.json()["results"]] == ["added", "failed"]
    assert r.json()["results"][1]["message"] == "bad.png: not an image, or a format Pillow cannot read"


# -- errors -----------------------------------------------------------------------------------------


def test_every_error_is_one_json_line_with_the_right_status(client):
    enrol(client, "Alice", RED)
    enrol(client, "Bob", GREEN)
    error_of(client.post("/v1/identify"), 400)  # no file
    error_of(client.post("/v1/identify", params={"threshold": "nan"}, files=files(("a.png", b"x"))), 400)
    error_of(client.patch("/v1/people/Alice", content=b"{not json", headers={"content-type": "application/json"}), 400)
    error_of(client.patch("/v1/people/Alice", json={"name": "a\nb"}), 400)
    error_of(client.get("/v1/people/Nobody"), 404)
    error_of(client.delete("/v1/faces/999"), 404)
    error_of(client.get("/v1/faces/999/thumbnail"), 404)
    error_of(client.get(f"/v1/faces/{2**70}/thumbnail"), 400)  # too large for SQLite (found by the fuzz)
    error_of(client.delete("/v1/faces/-1"), 400)
    error_of(client.get("/v1/nothing-here"), 404)
    error_of(client.patch("/v1/people/Alice", json={"name": "bob"}), 409)  # taken (names ignore ASCII case)
    assert "not an image" in error_of(client.post("/v1/identify", files=files(("t.txt", b"hello"))), 415)
    assert "decompression bomb" in error_of(client.post("/v1/identify", files=files(("bomb.png", bomb_png()))), 413)
    cut = jpeg(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    msg = error_of(client.post("/v1/identify", files=files(("cut.jpg", cut[: len(cut) // 2]))), 422)
    assert msg.startswith("cut.jpg: cannot decode") and "truncated" in msg
    error_of(client.post("/v1/people/%20/faces", files=files(("a.png", png(tile_image([BLUE]))))), 400)
    error_of(client.post("/v1/people/Zed/faces", files=files(("none.png", png(tile_image([(0, 0, 0)]))))), 422)


def test_body_and_pixel_limits(gallery_dir):
    with make_client(gallery_dir, max_body_bytes=50_000, max_pixels=10_000) as c:
        big = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        assert "request body" in error_of(c.post("/v1/identify", files=files(("big.png", png(big)))), 413)
        wide = png(tile_image([RED] * 8))  # 320 x 40 = 12,800 pixels > 10,000
        too_many = error_of(c.post("/v1/identify", files=files(("w.png", wide))), 413)
        assert "more than the 10000 faceid decodes" in too_many
        assert c.post("/v1/identify", files=files(("ok.png", png(tile_image([RED]))))).status_code == 200


def test_too_many_files_in_one_enrolment(gallery_dir):
    with make_client(gallery_dir, max_files=2) as c:
        three = [(f"{i}.png", png(tile_image([(10 * i + 40, 0, 0)]))) for i in range(3)]
        error_of(c.post("/v1/people/A/faces", files=files(*three)), 400)


# -- auth -------------------------------------------------------------------------------------------


def test_keys_scopes_revocation_and_audit(gallery_dir):
    out = cli("keys", "create", "phone-app", "--gallery", gallery_dir)
    admin_key = out.stdout.strip().splitlines()[-1]
    reader_key = cli("keys", "create", "dash", "--read-only", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    assert admin_key.startswith("fid_") and admin_key != reader_key
    # stored hashed, never in clear (in every file of the gallery: a folder, or a milvus-lite .db folder)
    for path in _gallery_files(gallery_dir):
        raw = path.read_bytes()
        assert admin_key.encode() not in raw and reader_key.encode() not in raw, path
    listing = cli("keys", "list", "--gallery", gallery_dir).stdout
    assert "phone-app\tadmin" in listing and "dash\tread-only" in listing and admin_key not in listing

    with make_client(gallery_dir) as c:
        assert c.get("/healthz").json()["auth"] is True
        assert "API key" in error_of(c.get("/v1/people"), 401)
        assert "unknown" in error_of(c.get("/v1/people", headers={"Authorization": "Bearer fid_nope"}), 401)
        admin = {"Authorization": f"Bearer {admin_key}"}
        reader = {"Authorization": f"Bearer {reader_key}"}
        body = files(("a.png", png(tile_image([RED]))))
        assert "read-only" in error_of(c.post("/v1/people/Alice/faces", files=body, headers=reader), 403)
        assert c.post("/v1/people/Alice/faces", files=body, headers=admin).status_code == 200
        assert c.get("/v1/people", headers=reader).status_code == 200
        # the page asks which key it holds, to offer only what that key may do
        assert c.get("/v1/key", headers=reader).json() == {"key": "dash", "scope": "read-only"}
        assert c.get("/v1/key", headers=admin).json() == {"key": "phone-app", "scope": "admin"}
        error_of(c.get("/v1/key"), 401)
        assert c.post("/v1/identify", files=body, headers=reader).status_code == 200
        error_of(c.delete("/v1/people/Alice", headers=reader), 403)
        error_of(c.patch("/v1/people/Alice", json={"name": "B"}, headers=reader), 403)
        # revoked in another process: refused at the next request, without a restart
        assert "revoked dash" in cli("keys", "revoke", "dash", "--gallery", gallery_dir).stdout
        error_of(c.get("/v1/people", headers=reader), 401)
        entries = c.app.state.faceid.gallery.audit_log()
    enrolment = [e for e in entries if e.action == "enroll"]
    assert enrolment and enrolment[-1].user == "key:phone-app"
    assert [e.action for e in entries if e.action.startswith("key-")] == ["key-create", "key-create", "key-revoke"]
    assert all(admin_key not in str(e.detail) for e in entries)
    from faceid.apikeys import ApiKeys
    from faceid.gallery import open_gallery

    with open_gallery(gallery_dir, create=False) as g:
        used = {k.name: k.last_used for k in ApiKeys(g).list()}
    assert set(used) == {"phone-app"} and used["phone-app"] is not None


def test_without_keys_the_page_is_told_it_may_do_everything(client):
    assert client.get("/v1/key").json() == {"key": None, "scope": "admin"}


def _gallery_files(gallery) -> list[Path]:
    """Every file a gallery keeps (its folder, or milvus-lite's ``.db`` folder)."""
    where = Path(str(gallery).removeprefix("milvus-lite:"))
    files = [p for p in where.rglob("*") if p.is_file()] if where.is_dir() else [where]
    assert files, where
    return files


def test_no_auth_only_when_asked(gallery_dir):
    cli("keys", "create", "k", "--gallery", gallery_dir)
    with make_client(gallery_dir, auth=False) as c:  # --insecure-no-auth
        assert c.get("/v1/people").status_code == 200
    with make_client(gallery_dir, loopback=False) as c:
        error_of(c.get("/v1/people"), 401)


def test_serve_refuses_a_network_address_without_keys(gallery_dir):
    out = cli("serve", "--gallery", gallery_dir, "--host", "0.0.0.0", "--port", "1")
    assert out.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in out.stderr


# -- the gallery underneath -------------------------------------------------------------------------


def test_changes_by_the_cli_are_seen_without_a_restart(client, gallery_dir, tmp_path):
    enrol(client, "Alice", RED)
    photo = save_png(tmp_path / "bob" / "bob.png", tile_image([GREEN]))
    assert fake_cli("enroll", "Bob", photo, "--gallery", gallery_dir).exit_code == 0
    r = client.post("/v1/identify", files=files(("g.png", png(tile_image([GREEN, RED])))))
    assert [f["name"] for f in r.json()["faces"]] == ["Bob", "Alice"]
    assert cli("remove", "Alice", "--gallery", gallery_dir).exit_code == 0
    r = client.post("/v1/identify", files=files(("g.png", png(tile_image([GREEN, RED])))))
    assert [f["status"] for f in r.json()["faces"]] == ["known", "unknown"]
    assert client.get("/v1/people").json() == [{"name": "Bob", "faces": 1}]


def test_concurrent_enrol_identify_remove_lose_nothing(gallery_dir):
    with make_client(gallery_dir, max_uploads=32) as client:
        _concurrent(client)


def _concurrent(client):
    colours = [(16 * (i + 2), 255 - 16 * i, 40 + 8 * i) for i in range(8)]
    errors: list[str] = []

    def enrol_one(i):
        r = enrol(client, f"P{i}", colours[i], f"p{i}.png")
        if r.status_code != 200:
            errors.append(r.text)

    def identify_some():
        for _ in range(5):
            r = client.post("/v1/identify", files=files(("g.png", png(tile_image(colours[:4])))))
            if r.status_code != 200:
                errors.append(r.text)

    enrol(client, "Gone", GREY)
    threads = [threading.Thread(target=enrol_one, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=identify_some) for _ in range(3)]
    threads.append(threading.Thread(target=lambda: client.delete("/v1/people/Gone")))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.get("/v1/people").json() == [{"name": f"P{i}", "faces": 1} for i in range(8)]
    r = client.post("/v1/identify", files=files(("g.png", png(tile_image(colours)))))
    assert [f["name"] for f in r.json()["faces"]] == [f"P{i}" for i in range(8)]
    assert client.app.state.faceid.gallery.check() == []


def test_identify_requests_that_arrive_together_are_batched(gallery_dir):
    """While one batch runs (a slow detector: 1 s), the requests that arrive meanwhile wait and
    then share the next batch: 6 requests take 2 or 3 batches, not 6."""
    from fastapi.testclient import TestClient

    from faceid.pipeline import Pipeline
    from faceid.server import Settings, create_app

    class OneSecondDetector(FakeDetector):
        def detect_many(self, images):
            time.sleep(1.0)
            return super().detect_many(images)

    pipeline = Pipeline(detector=OneSecondDetector(), embedder=FakeEmbedder())
    with TestClient(create_app(gallery_dir, pipeline=pipeline, settings=Settings(batch_wait_ms=50))) as c:
        batcher = c.app.state.faceid.batcher
        before = batcher.batches
        results = []

        def one(colour):
            r = c.post("/v1/identify", files=files(("x.png", png(tile_image([colour])))))
            results.append(r.status_code)

        threads = [threading.Thread(target=one, args=((40 * i + 40, 0, 0),)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 6
        assert batcher.images == 6 and batcher.batches - before <= 3  # requests shared batches


def test_two_batch_workers_run_two_batches_at_once_and_stop_cleanly():
    """With workers=2, a second batch starts while the first still runs (a detector that waits
    until two calls are inside it), every job gets its own faces, and stop() ends both threads."""
    from faceid.pipeline import Pipeline
    from faceid.server.batching import Batcher

    inside = threading.Barrier(2, timeout=10)

    class MeetingDetector(FakeDetector):
        def detect_many(self, images):
            inside.wait()  # raises BrokenBarrierError if the two batches never overlap
            return super().detect_many(images)

    batcher = Batcher(Pipeline(detector=MeetingDetector(), embedder=FakeEmbedder()), wait=0, max_batch=1, workers=2)
    images = [tile_image([(40 * i + 40, 0, 0)]) for i in range(2)]
    futures = [batcher.submit([image]) for image in images]
    found = [f.result(timeout=20) for f in futures]
    assert [len(faces[0]) for faces in found] == [1, 1] and batcher.batches == 2
    assert not np.allclose(found[0][0][0].embedding, found[1][0][0].embedding)
    batcher.stop(timeout=10)
    assert not any(t.is_alive() for t in batcher._threads)
    with pytest.raises(Exception, match="stopping"):
        batcher.submit([images[0]]).result(timeout=5)


def test_removed_faces_leave_no_thumbnail_behind(client, gallery_dir):
    r = enrol(client, "Alice", RED)
    face = r.json()["results"][0]["face_id"]
    thumb = client.get(f"/v1/faces/{face}/thumbnail").content
    client.delete("/v1/people/Alice")
    assert client.app.state.faceid.compactor.wait_idle(30)  # gallery.db's rewrite, in the background
    client.app.state.faceid.gallery.close()
    assert thumb not in (gallery_dir / "gallery.db").read_bytes()
    rows = sqlite3.connect(gallery_dir / "gallery.db").execute("SELECT COUNT(*) FROM face_thumbnails").fetchone()
    assert rows == (0,)


class SlowDetector(FakeDetector):
    def detect_many(self, images):
        import time

        time.sleep(0.3)
        return super().detect_many(images)


def test_uploads_beyond_the_limit_wait_their_turn(gallery_dir):
    """More uploads than slots: the excess waits (within the request's time) instead of a 503."""
    from fastapi.testclient import TestClient

    from faceid.pipeline import Pipeline
    from faceid.server import Settings, create_app

    pipeline = Pipeline(detector=SlowDetector(), embedder=FakeEmbedder())
    settings = Settings(max_uploads=2, batch_wait_ms=0, max_batch=1)
    app = create_app(gallery_dir, pipeline=pipeline, settings=settings)
    statuses: list[int] = []
    with TestClient(app, raise_server_exceptions=False) as c:

        def one():
            r = c.post("/v1/identify", files=files(("x.png", png(tile_image([RED])))))
            statuses.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 6
        assert c.get("/v1/people").status_code == 200  # reads are not uploads


def test_an_upload_that_cannot_get_a_slot_in_time_gets_503_with_retry_after(gallery_dir):
    from fastapi.testclient import TestClient

    from faceid.pipeline import Pipeline
    from faceid.server import Settings, create_app

    class TwoSecondDetector(FakeDetector):
        def detect_many(self, images):
            time.sleep(2.0)
            return super().detect_many(images)

    pipeline = Pipeline(detector=TwoSecondDetector(), embedder=FakeEmbedder())
    settings = Settings(max_uploads=1, batch_wait_ms=0, max_batch=1, request_timeout=4.0)
    answers: list[tuple[int, str, str]] = []
    with TestClient(create_app(gallery_dir, pipeline=pipeline, settings=settings), raise_server_exceptions=False) as c:

        def one():
            r = c.post("/v1/identify", files=files(("x.png", png(tile_image([RED])))))
            answers.append((r.status_code, r.headers.get("retry-after", ""), r.json().get("error") or ""))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = sorted(a[0] for a in answers)
    assert statuses[0] == 200 and statuses[-1] == 503, answers  # the first served; those that never got a slot refused
    busy = [a for a in answers if "busy" in a[2]]
    assert busy and all(a[0] == 503 and a[1] == "1" for a in busy), answers


# -- the real models ----------------------------------------------------------------------------------


@pytest.mark.model
def test_real_models_through_the_api_answer_as_the_cli(real_pipeline, gallery_dir):
    import json

    from conftest import SAMPLES
    from fastapi.testclient import TestClient

    from faceid.server import create_app

    with TestClient(create_app(gallery_dir, pipeline=real_pipeline)) as c:
        for folder in sorted((SAMPLES / "people").iterdir()):
            photos = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
            r = c.post(f"/v1/people/{folder.name}/faces", files=files(*photos))
            assert r.status_code == 200 and {e["status"] for e in r.json()["results"]} == {"added"}, r.text
        group = SAMPLES / "photos" / "obama_and_biden.jpg"
        r = c.post("/v1/identify", files=files((group.name, group.read_bytes())))
        assert r.status_code == 200
        api = r.json()
    assert [f["name"] for f in api["faces"]] == ["barack_obama", "joe_biden"]
    out = cli("identify", group, "--json", "--gallery", gallery_dir)
    line = json.loads(out.stdout.splitlines()[0])
    assert {**api, "image": line["image"]} == line  # the same object, number for number


def test_a_key_made_while_the_server_runs_is_required_at_once(client, gallery_dir):
    assert client.get("/v1/people").status_code == 200  # loopback, no keys yet: open
    key = cli("keys", "create", "late", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    error_of(client.get("/v1/people"), 401)
    assert client.get("/v1/people", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/healthz").json()["auth"] is True


def test_docs_and_schema_are_served_without_the_internet(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/identify", "/v1/people", "/v1/people/{name}", "/v1/people/{name}/faces"} <= set(schema["paths"])
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text and "http://" not in page.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    index = client.get("/")
    assert index.status_code == 200 and "https://" not in index.text and "http://" not in index.text


class PickyDetector(FakeDetector):
    """Fails on images whose first pixel is pure blue: a PipelineError (a bad image), or a TypeError (a bug)."""

    def __init__(self, failure: type[Exception]) -> None:
        super().__init__()
        self.failure = failure

    def detect_many(self, images):
        if any(tuple(image[0, 0]) == (0, 0, 255) for image in images):
            raise self.failure("the detector's answer does not fit")
        return super().detect_many(images)


@pytest.mark.parametrize("failure", ["image", "bug"])
def test_a_pipeline_failure_is_named_never_called_no_face(gallery_dir, failure):
    from fastapi.testclient import TestClient

    from faceid.errors import PipelineError
    from faceid.pipeline import Pipeline
    from faceid.server import create_app

    kind = PipelineError if failure == "image" else TypeError
    pipeline = Pipeline(detector=PickyDetector(kind), embedder=FakeEmbedder())
    with TestClient(create_app(gallery_dir, pipeline=pipeline), raise_server_exceptions=False) as c:
        bad = files(("blue.png", png(tile_image([(0, 0, 255)]))))
        r = c.post("/v1/identify", files=bad)
        if failure == "image":
            assert error_of(r, 422).startswith("blue.png: the face pipeline failed on it: the detector's answer")
            r = c.post("/v1/people/Al/faces", files=[*bad, *files(("ok.png", png(tile_image([RED]))))])
            assert [e["status"] for e in r.json()["results"]] == ["failed", "added"]
            assert r.json()["results"][0]["message"].startswith("blue.png: the face pipeline failed on it")
        else:  # a bug: a 500 in one line, not a bad photo, not "no face"
            assert "internal error (TypeError)" in error_of(r, 500)
        assert c.post("/v1/identify", files=files(("ok.png", png(tile_image([RED]))))).status_code == 200


@pytest.mark.parametrize("name", ["AC/DC", "100% Bob", "who? #1", "a/../b", "/lead/", "x/faces", "Zoë & co."])
def test_names_that_break_url_paths_reach_their_person(client, name):
    from urllib.parse import quote

    path = f"/v1/people/{quote(name, safe='')}"  # as the page encodes it (encodeURIComponent)
    r = client.post(path + "/faces", files=files(("a.png", png(tile_image([RED])))))
    assert r.status_code == 200, r.text
    assert r.json()["person"] == name
    assert client.get("/v1/people").json() == [{"name": name, "faces": 1}]
    person = client.get(path)
    assert person.status_code == 200, person.text
    assert person.json()["name"] == name and len(person.json()["faces"]) == 1
    assert client.patch(path, json={"name": name + " 2"}).json() == {"name": name + " 2", "faces": 1}
    renamed = f"/v1/people/{quote(name + ' 2', safe='')}"
    assert client.delete(renamed).json() == {"removed": name + " 2", "faces": 1}
    assert client.get("/v1/people").json() == []
    error_of(client.get(renamed), 404)


def test_a_name_no_url_can_reach_is_refused(client):
    photo = files(("a.png", png(tile_image([RED]))))
    for name in ("..", "."):
        raw = name.replace(".", "%2E")  # a raw client may send it; a browser folds the segment away
        assert "cannot be used in a URL path" in error_of(client.post(f"/v1/people/{raw}/faces", files=photo), 400)
        assert enrol(client, "x", RED).status_code == 200
        assert "cannot be used in a URL path" in error_of(client.patch("/v1/people/x", json={"name": name}), 400)
        assert client.delete("/v1/people/x").status_code == 200
    assert enrol(client, "...", RED).json()["person"] == "..."  # three dots are no path segment


def test_a_removal_answers_before_the_database_rewrite_which_follows_in_the_background(client, gallery_dir):
    from conftest import unit_vectors
    from test_deletion import assert_gone, person_faces

    from faceid.gallery import Gallery

    state = client.app.state.faceid
    assert enrol(client, "Alice", RED).status_code == 200
    with Gallery(gallery_dir) as g:
        faces = person_faces("gone", unit_vectors(7, 3, g.dimension))
        g.add_faces("Gone", faces, embedding_key=g.embedding_key)
    rewrites = state.compactor.rewrites
    from faceid.gallery.sqlite import SqliteBackend

    compact = SqliteBackend.compact
    started, release = threading.Event(), threading.Event()

    def slow_compact(self, *, wait):  # the background rewrite, held until the answer is in
        if threading.current_thread().name == "faceid-compactor":
            started.set()
            release.wait(30)
        return compact(self, wait=wait)

    SqliteBackend.compact = slow_compact  # type: ignore[method-assign]
    try:
        r = client.delete("/v1/people/Gone")
        assert r.status_code == 200 and r.json() == {"removed": "Gone", "faces": 3}
        assert started.wait(30)  # the rewrite runs after the answer, on its own connection
        with state.use() as g:
            assert "Gone" not in g and g.compaction_pending  # the removal is in effect; the rewrite due
    finally:
        release.set()
        SqliteBackend.compact = compact  # type: ignore[method-assign]
    assert state.compactor.wait_idle(30) and state.compactor.rewrites == rewrites + 1
    with Gallery(gallery_dir) as g:
        assert not g.compaction_pending
    client.app.state.faceid.gallery.close()
    assert_gone(gallery_dir, faces)


def test_review_kept_unknown_faces_name_a_group_and_take_a_wrong_face_out(client, gallery_dir):
    from conftest import KEY, unit_vectors
    from test_unknown import faces_of, looks_like

    from faceid.gallery import Gallery

    centres = unit_vectors(7, 2)
    a, b = faces_of("a", looks_like(centres[0], 4, 1)), faces_of("b", looks_like(centres[1], 3, 2))
    with Gallery(gallery_dir) as g:  # as `faceid identify --remember` in another process
        g.unknown.keep(a + b, embedding_key=KEY)
    groups = client.get("/v1/clusters").json()
    assert sorted(len(g["faces"]) for g in groups) == [3, 4]
    assert all(g["size"] == len(g["faces"]) for g in groups)  # the fields of `faceid clusters --json`
    big = max(groups, key=lambda g: len(g["faces"]))
    wrong = big["faces"][0]
    thumb = client.get(wrong["thumbnail"])  # a kept face's thumbnail, as an enrolled one's
    assert thumb.status_code == 200 and thumb.content.startswith(b"\xff\xd8JPEG-a-")

    # take a wrong face out of the group: it goes back to unknown, in no group, and stays out
    assert client.post(f"/v1/faces/{wrong['id']}/move", json={"name": None}).json() == {
        "moved": [wrong["id"]],
        "person": None,
    }
    regrouped = {g["cluster"]: [f["id"] for f in g["faces"]] for g in client.get("/v1/clusters").json()}
    assert wrong["id"] not in regrouped[big["cluster"]] and len(regrouped[big["cluster"]]) == 3

    # name the group (a name with a '/' too): its faces are the person's, and identify uses them
    r = client.post(f"/v1/clusters/{big['cluster']}/name", json={"name": "AC/DC"})
    assert r.status_code == 200, r.text
    named = sorted(regrouped[big["cluster"]])
    assert r.json() == {"person": "AC/DC", "faces": named, "kept_out": [], "new_person": True}
    assert len(client.get("/v1/people/AC%2FDC").json()["faces"]) == 3
    left = client.get("/v1/clusters").json()  # the other group, then the face taken out, in no group
    assert [(g["cluster"] is None, len(g["faces"])) for g in left] == [(False, 3), (True, 1)]
    assert left[-1]["faces"][0]["id"] == wrong["id"]

    # the errors, in the API's words
    assert "no group" in error_of(client.post(f"/v1/clusters/{big['cluster']}/name", json={"name": "X"}), 404).lower()
    error_of(client.post("/v1/faces/999999/move", json={"name": None}), 404)
    assert "cannot be used in a URL path" in error_of(
        client.post(f"/v1/faces/{wrong['id']}/move", json={"name": ".."}), 400
    )
    error_of(client.post("/v1/clusters/1/name", json={}), 400)
    error_of(client.post("/v1/clusters/-1/name", json={"name": "X"}), 400)
    with Gallery(gallery_dir) as g:
        assert g.check() == []
