"""The gallery on Milvus (through milvus-lite): what holds there as it does locally, and what the
design for a store without multi-row transactions guarantees, one test per guarantee (docs/backends.md,
"A gallery on Milvus"): an interrupted removal leaves orphans no search returns, finished on the
next open; an interrupted enrolment is reported and completed by enrolling again; a rename is one
write; removed rows are compacted out of the files; one process at a time; ids never reused
(the parametrised suites in test_gallery.py and test_cli.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, cli, fake_cli, gallery_address, needs_milvus, save_png, tile_image, unit_vectors

from faceid.errors import GalleryError
from faceid.gallery import NewFace, open_gallery
from faceid.gallery.location import MilvusLocation, gallery_location, parse_location

ROOT = Path(__file__).resolve().parent.parent


def faces(vectors, tag="x"):
    return [
        NewFace(v, f"{tag}{i:060d}"[-64:], (1, 2, 3, 4), 0.99, f"/photos/{tag}{i}.jpg") for i, v in enumerate(vectors)
    ]


# -- the address (no Milvus needed) -------------------------------------------------------------------


def test_addresses_are_parsed():
    server = parse_location("milvus://db.example.org:19530/faces_2")
    assert server == MilvusLocation(
        "milvus://db.example.org:19530/faces_2", "http://db.example.org:19530", "faces_2", False
    )
    assert parse_location("milvus://[::1]:19530/g").uri == "http://[::1]:19530"
    lite = parse_location("milvus-lite:some/where.db")
    assert isinstance(lite, MilvusLocation) and lite.lite and lite.uri == os.path.abspath("some/where.db")
    assert parse_location("photos/gallery") == Path("photos/gallery")
    assert parse_location(Path("milvus-lite.d")) == Path("milvus-lite.d")  # a folder that merely starts so


@pytest.mark.parametrize(
    "bad",
    [
        "milvus://localhost/faces",  # no port
        "milvus://localhost:19530",  # no name
        "milvus://localhost:19530/",
        "milvus://localhost:0/faces",
        "milvus://localhost:99999/faces",
        "milvus://localhost:19530/9lives",  # a collection name starts with a letter or _
        "milvus://localhost:19530/a-b",
        "milvus://localhost:19530/a/b",
        "milvus-lite:faces",  # milvus-lite wants a .db path
        "milvus-lite:",
        "milvus:/localhost:19530/faces",  # what a Path makes of milvus://
    ],
)
def test_bad_addresses_get_one_line_saying_the_form(bad):
    with pytest.raises(GalleryError) as caught:
        parse_location(bad)
    message = str(caught.value)
    assert message.startswith(bad) and "\n" not in message
    assert "milvus://HOST:PORT/NAME" in message or "milvus-lite:" in message or "NAME" in message


def test_the_environment_names_the_gallery(monkeypatch):
    monkeypatch.setenv("FACEID_GALLERY", "milvus://localhost:19530/faces")
    assert gallery_location() == parse_location("milvus://localhost:19530/faces")
    monkeypatch.delenv("FACEID_GALLERY")
    assert gallery_location() == Path("gallery")


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pymilvus" else real(name, *a))
    with pytest.raises(GalleryError) as caught:
        open_gallery(f"milvus-lite:{tmp_path / 'g.db'}")
    assert str(caught.value) == ("--gallery milvus-lite:... needs the milvus extra: pip install 'faceid[milvus]'")
    result = fake_cli("people", "--gallery", "milvus://localhost:19530/faces")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "faceid: error: --gallery milvus://... needs the milvus extra: pip install 'faceid[milvus]'"
    )
    assert not (tmp_path / "g.db").exists()


def test_importing_faceid_does_not_import_pymilvus():
    code = (
        "import sys, faceid, faceid.gallery, faceid.cli; print('pymilvus' in sys.modules, 'milvus_lite' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- guarantees on milvus-lite --------------------------------------------------------------------------


@pytest.fixture
def lite(tmp_path):
    return gallery_address("milvus-lite", tmp_path)


def _raw_faces(g) -> set[int]:
    """Face ids in the faces collection, orphans included (what search filters)."""
    return {int(r["id"]) for r in g.backend.rows.scan("faces", ["id"])}


@needs_milvus
def test_a_removal_interrupted_between_its_deletes_leaves_orphans_no_search_returns(lite, monkeypatch):
    rng = np.random.default_rng(1)
    ann, bob = unit_vectors(rng, 3), unit_vectors(rng, 2)
    with open_gallery(lite) as g:
        ann_ids = g.add_faces("ann", faces(ann, "a"), embedding_key=KEY)
        bob_ids = g.add_faces("bob", faces(bob, "b"), embedding_key=KEY)
        real_delete = g.backend.rows.client.delete

        def crash_at_the_faces(collection, **kwargs):
            if collection.endswith("_faces"):
                raise KeyboardInterrupt  # the process dies between the person's row and their faces
            return real_delete(collection, **kwargs)

        monkeypatch.setattr(g.backend.rows.client, "delete", crash_at_the_faces)
        with pytest.raises(KeyboardInterrupt):
            g.remove("ann")
        monkeypatch.setattr(g.backend.rows.client, "delete", real_delete)
        assert set(ann_ids) <= _raw_faces(g)  # the orphans are still stored...
        scores, found = g.search(ann, k=5)  # ...but no search returns them
        assert set(found.ravel()) - {-1} == set(bob_ids)
        assert (found[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
        assert g.face_owners(np.array(ann_ids)) == {}
        assert [p.name for p in g.people()] == ["bob"] and "ann" not in g and g.face_count == 2
        assert [f.id for f in g.faces()] == bob_ids
        assert any("belong to no person" in p for p in g.check())
    with open_gallery(lite) as g:  # the next open finishes the removal
        assert any("interrupted" in p for p in g.problems)
        assert _raw_faces(g) == set(bob_ids)
        assert g.check() == []
    with open_gallery(lite) as g:
        assert g.problems == []


@needs_milvus
def test_an_interrupted_enrolment_is_reported_and_enrolling_again_completes_it(lite, monkeypatch):
    rng = np.random.default_rng(2)
    vectors = unit_vectors(rng, 3)
    with open_gallery(lite) as g:
        real_insert = g.backend.rows.client.insert

        def crash_at_the_faces(collection, rows, **kwargs):
            if collection.endswith("_faces"):
                raise KeyboardInterrupt
            return real_insert(collection, rows, **kwargs)

        monkeypatch.setattr(g.backend.rows.client, "insert", crash_at_the_faces)
        with pytest.raises(KeyboardInterrupt):
            g.add_faces("ann", faces(vectors), embedding_key=KEY)
        monkeypatch.setattr(g.backend.rows.client, "insert", real_insert)
    with open_gallery(lite) as g:
        assert [(p.name, p.faces) for p in g.people()] == [("ann", 0)]
        (problem,) = g.check()
        assert "3 faces the audit log records as enrolled missing" in problem
        added = g.add_faces("ann", faces(vectors), embedding_key=KEY, skip_known_images=True)
        assert None not in added
        assert [(p.name, p.faces) for p in g.people()] == [("ann", 3)]
        _, found = g.search(vectors, 1)
        assert list(found[:, 0]) == added


@needs_milvus
def test_a_rename_is_one_write_and_touches_no_face(lite, monkeypatch):
    rng = np.random.default_rng(3)
    with open_gallery(lite) as g:
        g.add_faces("ann", faces(unit_vectors(rng, 4)), embedding_key=KEY)
        writes = []
        for method in ("insert", "upsert", "delete"):
            real = getattr(g.backend.rows.client, method)

            def record(collection, *args, _real=real, _method=method, **kwargs):
                writes.append((_method, collection.rsplit("_", 1)[-1]))
                return _real(collection, *args, **kwargs)

            monkeypatch.setattr(g.backend.rows.client, method, record)
        g.rename("ann", "Ann B.")
        assert [w for w in writes if w[1] in ("people", "faces")] == [("upsert", "people")]
        assert [f.person for f in g.faces()] == ["Ann B."] * 4


@needs_milvus
def test_removed_faces_are_compacted_out_of_the_files(lite):
    """Milvus deletes are tombstones; the removal compacts, so no file of the gallery keeps the rows."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    gone, kept = unit_vectors(rng, 3), unit_vectors(rng, 1)
    with open_gallery(lite) as g:
        gone_ids = g.add_faces("ann", faces(gone, "a"), embedding_key=KEY)
        g.add_faces("bob", faces(kept, "b"), embedding_key=KEY)
        g.search(gone, 1)
        g.remove("ann")
        folder = Path(g.backend.location.uri)
        files = [p for p in folder.rglob("*") if p.is_file()]
        for path in files:
            raw = path.read_bytes()
            assert not any(v.tobytes() in raw for v in gone), path
            assert b"/photos/a0.jpg" not in raw, path
            if path.suffix == ".parquet" and "faceid_faces" in path.parts and "data" in path.parts:
                ids = set(pq.read_table(path).column("id").to_pylist())
                assert ids.isdisjoint(gone_ids), path
        assert kept[0].tobytes() in b"".join(p.read_bytes() for p in files if "faces" in str(p))  # the test can see


@needs_milvus
def test_one_process_at_a_time_on_milvus_lite(lite, tmp_path):
    env = {**os.environ, "FACEID_TIMEOUT": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "faceid", "people", "--gallery", lite]
    with open_gallery(lite) as g:
        g.add_faces("ann", faces(unit_vectors(np.random.default_rng(5), 1)), embedding_key=KEY)
        busy = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert busy.returncode == 1
        assert busy.stderr.count("\n") == 1 and "one process at a time" in busy.stderr
        with open_gallery(lite) as again:  # a second handle in the same process shares its server
            assert "ann" in again
        assert "ann" in g  # and closing the second left the first working
    free = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert free.returncode == 0 and free.stdout.split()[0] == "ann"


@needs_milvus
def test_no_gallery_is_created_by_reading_commands(tmp_path):
    where = tmp_path / "none.db"
    result = fake_cli("people", "--gallery", f"milvus-lite:{where}")
    assert result.exit_code == 1 and "no gallery here" in result.stderr and not where.exists()


@needs_milvus
def test_settings_thumbnails_and_single_faces(lite):
    rng = np.random.default_rng(6)
    with open_gallery(lite) as g:
        (face,) = faces(unit_vectors(rng, 1))
        jpeg = b"\xff\xd8 a small jpeg \xff\xd9"
        (fid,) = g.add_faces(
            "ann", [NewFace(face.embedding, face.image_sha256, face.box, 0.9, thumbnail=jpeg)], embedding_key=KEY
        )
        (other,) = g.add_faces("ann", faces(unit_vectors(rng, 1), "o"), embedding_key=KEY)
        assert g.face_thumbnail(fid) == jpeg and g.face_thumbnail(other) is None
        assert g.face(fid).image_path is None and g.face(other).image_path == "/photos/o0.jpg"
        assert g.find_image(face.image_sha256) == ["ann"]
        g.set_setting("threshold", 0.61)
        g.set_setting("odd name 'é\"", {"a": [1]})
    with open_gallery(lite) as g:
        assert g.get_setting("threshold") == 0.61 and g.get_setting("odd name 'é\"") == {"a": [1]}
        assert g.remove_face(fid) == "ann"
        assert g.person("ann").faces == 1 and g.face_thumbnail(fid) is None
        assert g.face_count == 1 and len(g) == 1  # Milvus's count(*) leaves deleted rows out
        assert [e.action for e in g.audit_log()] == ["enroll", "enroll", "setting", "setting", "remove-face"]
        assert g.check() == []


@needs_milvus
def test_enroll_and_identify_through_the_cli_on_milvus_lite(lite, tmp_path):
    photos = tmp_path / "photos"
    for name, colour in (("ann", (200, 40, 40)), ("bob", (40, 200, 40))):
        save_png(photos / f"{name}.png", tile_image([colour]))
        result = fake_cli("enroll", name, photos / f"{name}.png", "--gallery", lite)
        assert result.exit_code == 0, result.output
    again = fake_cli("enroll", "ann", photos / "ann.png", "--gallery", lite)
    assert again.exit_code == 0 and "duplicate" in again.stdout
    result = fake_cli("identify", "--json", photos / "bob.png", photos / "ann.png", "--gallery", lite)
    assert result.exit_code == 0, result.output
    names = [[f["name"] for f in json.loads(line)["faces"]] for line in result.stdout.splitlines()]
    assert names == [["bob"], ["ann"]]
    assert fake_cli("gallery", "check", "--gallery", lite).stdout.strip() == "gallery is sound"
    people = fake_cli("people", "--json", "--gallery", lite).stdout.splitlines()
    assert [(json.loads(p)["name"], json.loads(p)["faces"]) for p in people] == [("ann", 1), ("bob", 1)]


@needs_milvus
@pytest.mark.parametrize(
    "test",
    [
        "test_enrol_identify_annotate_like_the_cli",
        "test_people_person_thumbnail_rename_remove",
        "test_keys_scopes_revocation_and_audit",
        "test_a_key_made_while_the_server_runs_is_required_at_once",
    ],
)
def test_the_server_on_milvus_lite(test, lite, tmp_path):
    """`faceid serve` on a milvus-lite gallery: the server's own tests of its routes, run against one."""
    pytest.importorskip("fastapi")
    import inspect

    import test_server

    with test_server.make_client(lite) as client:
        run = getattr(test_server, test)
        given = {"client": client, "gallery_dir": lite, "tmp_path": tmp_path}
        run(**{name: given[name] for name in inspect.signature(run).parameters})


@needs_milvus
def test_bench_part_measures_recall_against_exact(tmp_path):
    """FLAT is exact: recall 1 against numpy's brute force; the approximate kinds are measured, in milliseconds."""
    from faceid import bench
    from faceid.bench.milvus import milvus_figures

    figures = list(
        milvus_figures(
            [1000],
            queries=40,
            alone=5,
            synthetic_faces=bench.synthetic_faces,
            noisy=bench.noisy,
            figure=bench.figure,
            work=tmp_path,
            kinds=["FLAT", "HNSW"],
        )
    )
    assert [(f["index_type"], f["faces"]) for f in figures] == [("FLAT", 1000)] + [("HNSW", 1000)] * 3
    flat = figures[0]
    assert flat["recall_at_1_known"] == flat["recall_at_1_unknown"] == 1.0
    assert flat["top1_similarity_gap_known_max"] <= 1e-5
    for f in figures:
        assert 0.01 <= f["search_alone_ms_median"] <= f["search_alone_ms_p95"] < 10_000
        assert 0 <= f["recall_at_1_unknown"] <= 1 and f["batch"] == 40
    assert list(tmp_path.iterdir()) == []  # the milvus-lite folder is gone


@needs_milvus
def test_gallery_opens_every_kind_of_address(tmp_path, monkeypatch):
    """One class, whatever holds the gallery: ``Gallery(spec)`` is ``open_gallery(spec)``."""
    from faceid.gallery import Gallery
    from faceid.gallery.milvus import MilvusBackend

    monkeypatch.setenv("FACEID_GALLERY", f"milvus-lite:{tmp_path / 'env.db'}")
    with Gallery(f"milvus-lite:{tmp_path / 'faces.db'}") as g, Gallery() as h:
        assert isinstance(g.backend, MilvusBackend) and isinstance(h.backend, MilvusBackend)
        assert g.folder is None and str(g.path).endswith("faces.db") and str(h.path).endswith("env.db")


@needs_milvus
def test_an_unreachable_server_is_one_line_after_the_timeout():
    """The milvus:// path (a server) runs as far as connecting; no server runs here, so it must fail clearly."""
    result = fake_cli("--timeout", "1", "people", "--gallery", "milvus://127.0.0.1:1/faces")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "faceid: error: milvus://127.0.0.1:1/faces: cannot reach Milvus at http://127.0.0.1:1"
    )


@needs_milvus
def test_api_keys_are_kept_hashed_named_once_and_revoked(lite):
    from faceid.apikeys import ApiKeys

    token = fake_cli("keys", "create", "phone", "--gallery", lite).stdout.strip().splitlines()[-1]
    again = fake_cli("keys", "create", "PHONE", "--read-only", "--gallery", lite)
    assert again.exit_code == 1 and "a key named 'PHONE' exists already" in again.stderr
    reader = fake_cli("keys", "create", "dash", "--read-only", "--gallery", lite).stdout.strip().splitlines()[-1]
    listing = fake_cli("keys", "list", "--json", "--gallery", lite).stdout.splitlines()
    assert [(json.loads(k)["name"], json.loads(k)["scope"]) for k in listing] == [
        ("dash", "read-only"),
        ("phone", "admin"),
    ]
    with open_gallery(lite, create=False) as g:
        keys = ApiKeys(g)
        assert keys.count() == 2 and keys.check("fid_nope") is None
        assert keys.check(token).name == "phone" and keys.check(reader).scope == "read-only"
        keys.touch("phone")
        assert {k.name: k.last_used is not None for k in keys.list()} == {"dash": False, "phone": True}
        stored = " ".join(str(r["value"]) for r in g.backend.rows.query("meta", 'key like "apikey%"', ["value"]))
        assert hashlib.sha256(token.encode()).hexdigest() in stored and token not in stored  # the hash, not the key
    assert fake_cli("keys", "revoke", "Phone", "--gallery", lite).stdout.strip() == "revoked Phone"
    missing = fake_cli("keys", "revoke", "phone", "--gallery", lite)
    assert missing.exit_code == 1 and f"no key named 'phone' in {lite}" in missing.stderr
    with open_gallery(lite, create=False) as g:
        assert ApiKeys(g).check(token) is None and [k.name for k in ApiKeys(g).list()] == ["dash"]
        actions = [(e.action, e.detail) for e in g.audit_log() if e.action.startswith("key-")]
    assert actions == [
        ("key-create", {"key": "phone", "scope": "admin"}),
        ("key-create", {"key": "dash", "scope": "read-only"}),
        ("key-revoke", {"key": "Phone"}),
    ]


@needs_milvus
def test_forgotten_unknown_faces_are_compacted_out_of_the_files(lite):
    rng = np.random.default_rng(9)
    kept = unit_vectors(rng, 3)
    with open_gallery(lite) as g:
        photos = [
            NewFace(v, f"k{i}".ljust(64, "0"), (0, 0, 80, 80), 0.99, f"/photos/kept{i}.jpg") for i, v in enumerate(kept)
        ]
        assert g.unknown.keep(photos, embedding_key=KEY).added == 3
        assert g.unknown.forget() == 3 and g.unknown.count() == 0
        for path in (p for p in Path(g.backend.location.uri).rglob("*") if p.is_file()):
            raw = path.read_bytes()
            assert not any(v.tobytes() in raw for v in kept) and b"/photos/kept" not in raw, path
        assert g.check() == []


@needs_milvus
def test_migrating_a_milvus_gallery_into_a_folder_keeps_everything_but_the_model(lite, tmp_path):
    """`gallery migrate --to DIR` from milvus-lite: the same people, face ids, kept unknown faces, log, keys
    and chips in a local gallery of the new model; the Milvus gallery is not changed; in place is refused."""
    from test_migrate import NEW, OLD, OtherModel, maker

    from faceid.apikeys import ApiKeys
    from faceid.enroll import enroll
    from faceid.gallery import Gallery

    with open_gallery(lite) as g:
        for name, colour in (("Ann", (200, 30, 30)), ("Rob", (30, 200, 30))):
            enroll(g, name, [save_png(tmp_path / "photos" / f"{name}.png", tile_image([colour]))], maker(OLD))
        g.rename("Rob", "Bob")
        g.set_setting("threshold", 0.5)
        g.set_setting("odd name é", [1, 2])
        _, token = ApiKeys(g).create("phone")
        stranger = save_png(tmp_path / "stranger.png", tile_image([(30, 30, 200)]))
    assert fake_cli("identify", stranger, "--remember", "--gallery", lite).exit_code == 0
    with open_gallery(lite, create=False) as g:
        before = [(f.id, f.person, f.image_sha256) for f in g.face_sources()]
        people = [(p.id, p.name) for p in g.people()]
        log = [(e.id, e.action, e.person, e.detail) for e in g.audit_log()]
        chips = {f[0]: g.face_chip(f[0]) for f in before}
        _, _, old_vectors = g.embeddings()
    assert len(before) == 3 and before[-1][1] == "" and all(c is not None for c in chips.values())

    refused = cli("gallery", "migrate", "--model", "sface", "--gallery", lite, models=maker)
    assert refused.exit_code == 1 and "pass --to DIR" in refused.stderr
    out = cli("gallery", "migrate", "--model", "sface", "--to", tmp_path / "new", "--gallery", lite, models=maker)
    assert out.exit_code == 0, out.output
    assert "migrated 3 faces" in out.stdout and "3 from their chips" in out.stdout
    with Gallery(tmp_path / "new", create=False) as g:
        assert g.embedding_key == NEW and g.check() == []
        assert [(f.id, f.person, f.image_sha256) for f in g.face_sources()] == before
        assert [(p.id, p.name) for p in g.people()] == people
        assert [(e.id, e.action, e.person, e.detail) for e in g.audit_log()][: len(log)] == log
        assert g.audit_log()[-1].action == "migrate"
        assert {f[0]: g.face_chip(f[0]) for f in before} == chips
        assert g.get_setting("threshold") is None and g.get_setting("odd name é") == [1, 2]
        assert g.unknown.count() == 1
        assert ApiKeys(g).check(token).name == "phone"
        _, _, vectors = g.embeddings()
    with open_gallery(lite, create=False) as g:  # the Milvus gallery as it was
        assert g.embedding_key == OLD and np.array_equal(g.embeddings()[2], old_vectors)
    assert np.allclose(vectors[:2], old_vectors @ OtherModel(112).turn, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.db", "new", "photos", "stranger.png"]


@needs_milvus
def test_face_chips_are_kept_in_the_face_row_and_go_with_it(lite):
    """A chip round-trips whole (over several VARCHAR fields); one too large is not kept (its face then needs
    its photo to move to another model); kept unknown faces moved to a person keep theirs; removal takes it."""
    from faceid.chips import make_chip
    from faceid.detect import Detection
    from faceid.gallery.milvus_common import CHIP_FIELDS as _CHIP_FIELDS
    from faceid.gallery.milvus_common import TEXT as _TEXT

    rng = np.random.default_rng(3)
    face = Detection(
        (60, 60, 80, 90), 0.99, ((85.0, 95.0), (115.0, 95.0), (100.0, 110.0), (88.0, 125.0), (112.0, 125.0))
    )
    small = make_chip(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8), face)
    assert len(small.png) * 4 // 3 > _TEXT  # more than one field's worth: split over several
    huge = make_chip(
        rng.integers(0, 256, (700, 700, 3), dtype=np.uint8),
        Detection(
            (100, 100, 500, 500),
            0.99,
            tuple((float(300 + x), float(300 + y)) for x, y in ((-80, -60), (80, -60), (0, 0), (-60, 80), (60, 80))),
        ),
    )
    assert len(huge.png) * 4 // 3 > _TEXT * len(_CHIP_FIELDS)
    vectors = unit_vectors(rng, 4)
    new = [
        NewFace(v, f"c{i}".ljust(64, "0"), (60, 60, 80, 90), 0.99, f"/photos/c{i}.jpg", chip=c)
        for i, (v, c) in enumerate(zip(vectors, [small, huge, None, small]))
    ]
    with open_gallery(lite) as g:
        ids = g.add_faces("Ann", new[:3], embedding_key=KEY)
        assert g.face_chip(ids[0]) == small
        assert g.face_chip(ids[1]) is None and g.face_chip(ids[2]) is None  # too large; none given
        assert g.face_chip(999) is None
        [kept] = g.unknown.keep([new[3]], embedding_key=KEY).ids
        assert g.face_chip(kept) == small
        g.unknown.move([kept], "Ann")
        assert g.face_chip(kept) == small and g.faces("Ann")[-1].id == kept
        g.remove_face(ids[0])
        assert g.face_chip(ids[0]) is None and g.check() == []


def test_bench_lite_vs_server_says_why_it_skips(tmp_path, monkeypatch):
    """Without the milvus virtualenv, or without the Big Bang photos, the part is one figure saying why."""
    from faceid import bench
    from faceid.bench.milvus_server import server_figures

    monkeypatch.setenv("FACEID_MILVUS_PYTHON", str(tmp_path / "no-python"))
    (skipped,) = server_figures(tmp_path, tmp_path, tiny=True, figure=bench.figure)
    assert skipped["figure"] == "milvus_lite_vs_server" and ".venv-milvus" in skipped["skipped"]
    monkeypatch.setenv("FACEID_MILVUS_PYTHON", sys.executable)  # a Python, but no photos
    (skipped,) = server_figures(tmp_path, None, tiny=True, figure=bench.figure)
    assert "bigbang" in skipped["skipped"]
    assert list(tmp_path.iterdir()) == []  # no server started, nothing written
