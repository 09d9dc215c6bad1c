"""Kept unknown faces in the gallery (``gallery.unknown``): kept but never matched, grouped under
the constraints the user gave (one photo = different people; a face moved out never drifts back;
named faces are not regrouped), named, moved, merged and forgotten, with the index kept in step
in place and nothing of a forgotten face left in the gallery's files; and the v1 -> v2 upgrade."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, unit_vectors
from test_deletion import assert_gone, raw_files, traces

from faceid.cluster import keep_filters
from faceid.errors import FaceNotFoundError, GroupNotFoundError, InvalidNameError, PersonNotFoundError
from faceid.gallery import Gallery, NewFace

DIM = KEY.dimension


def looks_like(centre: np.ndarray, n: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """``n`` unit faces around ``centre``: pairwise cosine about ``1 / (1 + noise**2)`` (0.8)."""
    rng = np.random.default_rng(seed)
    v = centre[None, :] + noise * rng.normal(size=(n, len(centre))).astype(np.float32) / np.sqrt(len(centre))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def faces_of(tag: str, vectors: np.ndarray, *, photo: str | None = None, size: int = 80) -> list[NewFace]:
    """One face per photo (or all in ``photo``), boxes apart, with a thumbnail."""
    return [
        NewFace(
            v,
            (photo or f"{tag}-{i}").ljust(64, "0"),
            (10 + 100 * i, 10, size, size),
            0.99,
            f"/photos/{tag}-{i}-secret.jpg",
            thumbnail=b"\xff\xd8JPEG-" + f"{tag}-{i}".encode(),
        )
        for i, v in enumerate(vectors)
    ]


@pytest.fixture
def gallery(any_gallery):
    """The tests of the loop that use only the API run on both backends (local, milvus-lite)."""
    return any_gallery


@pytest.fixture
def three_people():
    """Faces of three strangers A (6 faces), B (4), C (3), one photo each, interleaved."""
    centres = unit_vectors(7, 3)
    a = faces_of("a", looks_like(centres[0], 6, 1))
    b = faces_of("b", looks_like(centres[1], 4, 2))
    c = faces_of("c", looks_like(centres[2], 3, 3))
    return centres, a, b, c


def partition(g: Gallery) -> list[list[str]]:
    """The groups as sorted lists of photo hashes' tags (first char ... '-' index)."""
    return sorted(sorted(f.image_sha256.rstrip("0") for f in grp.faces) for grp in g.unknown.groups())


def test_kept_faces_are_stored_grouped_and_never_matched(gallery, three_people):
    centres, a, b, c = three_people
    kept = gallery.unknown.keep(a + b + c, embedding_key=KEY)
    assert kept.added == 13 and kept.filtered == 0 and kept.duplicates == 0
    assert list(kept.ids) == list(range(1, 14))
    groups = gallery.unknown.groups()
    assert [grp.size for grp in groups] == [6, 4, 3]  # biggest first
    assert {f.image_sha256[0] for f in groups[0].faces} == {"a"}
    face = groups[2].faces[0]
    assert face.image_path == "/photos/c-0-secret.jpg" and face.box == (10, 10, 80, 80) and face.confidence == 0.99
    assert gallery.face_thumbnail(face.id) == b"\xff\xd8JPEG-c-0"
    # never matched: not enrolled, not in the index, not counted
    assert gallery.embedding_key == KEY and len(gallery) == 0 and gallery.face_count == 0
    scores, ids = gallery.search(centres, 3)
    assert (ids == -1).all()
    assert gallery.check() == []
    # the same photos again: nothing new, the ids of the faces already kept
    again = gallery.unknown.keep(a[:2], embedding_key=KEY)
    assert again.added == 0 and again.duplicates == 2 and again.ids == kept.ids[:2]


def test_small_and_unsure_faces_are_not_kept(gallery):
    vectors = unit_vectors(1, 3)
    faces = faces_of("s", vectors[:1], size=39) + faces_of("t", vectors[1:2]) + faces_of("u", vectors[2:])
    faces[2] = NewFace(faces[2].embedding, faces[2].image_sha256, faces[2].box, 0.8, faces[2].image_path)
    kept = gallery.unknown.keep(faces, embedding_key=KEY)
    assert kept.filtered == 2 and kept.added == 1 and kept.ids[0] is None and kept.ids[2] is None
    assert gallery.unknown.count() == 1
    # each face not kept says why, in the model's own numbers
    size, confidence = keep_filters(KEY)
    assert kept.reasons == (f"face 39 px, below {size:.0f} px", None, f"confidence 0.80 below {confidence:.2f}")
    again = gallery.unknown.keep(faces, embedding_key=KEY)
    assert again.before == (False, True, False) and again.reasons == kept.reasons


def test_faces_of_one_photo_are_never_grouped_together(gallery):
    """Cannot-link: twins in one photo (nearly the same embedding) stay apart, by grouping and by attach."""
    centre = unit_vectors(3, 1)[0]
    v = looks_like(centre, 6, 4, noise=0.2)
    gallery.unknown.keep(faces_of("twin", v[:2], photo="family"), embedding_key=KEY)
    assert gallery.unknown.groups() == []  # two faces, one photo: no group
    gallery.unknown.keep(faces_of("solo", v[2:4]), embedding_key=KEY)
    groups = gallery.unknown.groups()
    for grp in groups:
        assert len({f.image_sha256 for f in grp.faces}) == grp.size
    gallery.unknown.regroup()
    for grp in gallery.unknown.groups():
        assert len({f.image_sha256 for f in grp.faces}) == grp.size


def test_new_faces_attach_to_existing_groups_and_form_new_ones(gallery, three_people):
    centres, a, b, c = three_people
    gallery.unknown.keep(a[:4] + b[:3], embedding_key=KEY)
    before = {grp.id: grp.size for grp in gallery.unknown.groups()}
    assert sorted(before.values()) == [3, 4]
    kept = gallery.unknown.keep(a[4:] + b[3:] + c, embedding_key=KEY)
    after = {grp.id: grp.size for grp in gallery.unknown.groups()}
    assert {g: after[g] for g in before} == {g: before[g] + (2 if before[g] == 4 else 1) for g in before}
    new = set(after) - set(before)
    assert len(new) == 1 and after[new.pop()] == 3 and min(after) == min(before)  # C: a new group, new id
    assert kept.added == 6


def test_regroup_is_deterministic_and_ids_are_never_reused(tmp_path, three_people):
    centres, a, b, c = three_people
    parts = []
    for name in ("one", "two"):
        with Gallery(tmp_path / name) as g:
            g.unknown.keep(c + a + b, embedding_key=KEY, group=False)
            g.unknown.regroup()
            first = partition(g)
            ids = {grp.id for grp in g.unknown.groups()}
            g.unknown.regroup()
            assert partition(g) == first
            assert not ids & {grp.id for grp in g.unknown.groups()}  # new ids: an old one names nothing
            parts.append(first)
            with pytest.raises(GroupNotFoundError):
                g.unknown.name(min(ids), "Someone")
    assert parts[0] == parts[1] and sorted(map(len, parts[0])) == [3, 4, 6]


def test_naming_a_group_enrols_it_and_the_next_search_finds_the_person(tmp_path, three_people):
    centres, a, b, c = three_people
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        g.search(centres[:1], 1)  # an index (file) exists before the naming: it is updated in place
        g.unknown.keep(a + b + c, embedding_key=KEY)
        biggest = g.unknown.groups()[0]
        named = g.unknown.name(biggest.id, "Aunt Rosa")
        assert named.new_person and named.kept_out == () and set(named.faces) == {f.id for f in biggest.faces}
        assert [(p.name, p.faces) for p in g.people()] == [("Aunt Rosa", 6)]
        assert {f.id for f in g.faces("Aunt Rosa")} == set(named.faces)  # same ids, same rows
        _, ids = g.search(looks_like(centres[0], 1, 99), 1)
        assert g.face_owners(ids) == {int(ids[0, 0]): "Aunt Rosa"}
        assert [grp.size for grp in g.unknown.groups()] == [4, 3]  # named faces are not grouped again
        g.unknown.regroup()
        assert [grp.size for grp in g.unknown.groups()] == [4, 3]
        # a second group joins the existing person
        second = g.unknown.groups()[1]
        joined = g.unknown.name(second.id, "aunt rosa")
        assert not joined.new_person and g.person("Aunt Rosa").faces == 9
        assert g.check() == [] and g.problems == []
        entries = [e.action for e in g.audit_log()]
        assert entries.count("name") == 2 and "keep" in entries
    with Gallery(folder) as g:  # another process: loads the index file and brings it up to date
        _, ids = g.search(looks_like(centres[2], 1, 98), 1)
        assert g.face_owners(ids) == {int(ids[0, 0]): "Aunt Rosa"}
        assert g.check() == [] and g.problems == []


def test_a_face_moved_out_of_a_group_never_drifts_back(gallery, three_people):
    centres, a, b, c = three_people
    gallery.unknown.keep(a + b, embedding_key=KEY)
    group = gallery.unknown.groups()[0]
    wrong = group.faces[0].id
    assert gallery.unknown.move([wrong], None) == [wrong]
    assert wrong in {f.id for f in gallery.unknown.ungrouped()}
    assert wrong not in {f.id for f in gallery.unknown.group(group.id).faces}
    gallery.unknown.update_groups()  # attach would put it straight back
    gallery.unknown.keep(faces_of("a2", looks_like(centres[0], 2, 5)), embedding_key=KEY)
    gallery.unknown.regroup()
    for grp in gallery.unknown.groups():
        ids = {f.id for f in grp.faces}
        assert not (wrong in ids and ids & ({f.id for f in group.faces} - {wrong}))
    # naming the group it left into a person does not take it either
    home = next(grp for grp in gallery.unknown.groups() if group.faces[1].id in {f.id for f in grp.faces})
    gallery.unknown.name(home.id, "A")
    assert wrong not in {f.id for f in gallery.faces("A")}


def test_a_face_moved_out_of_a_person_is_not_named_as_them_again(gallery, three_people):
    centres, a, b, c = three_people
    gallery.add_faces("A", a[:3], embedding_key=KEY)
    enrolled = [f.id for f in gallery.faces("A")]
    assert gallery.unknown.move([enrolled[0]], None) == [enrolled[0]]
    assert gallery.person("A").faces == 2
    _, ids = gallery.search(np.stack([a[0].embedding]), 5)
    assert enrolled[0] not in ids  # left the index at once
    gallery.unknown.keep(a[3:], embedding_key=KEY)
    gallery.unknown.regroup()
    group = next(grp for grp in gallery.unknown.groups() if enrolled[0] in {f.id for f in grp.faces})
    named = gallery.unknown.name(group.id, "A")
    assert named.kept_out == (enrolled[0],) and enrolled[0] not in named.faces
    assert enrolled[0] in {f.id for f in gallery.unknown.ungrouped()}
    # an explicit move overrides it
    gallery.unknown.move([enrolled[0]], "A")
    assert gallery.person("A").faces == 6 and gallery.unknown.count() == 0
    assert gallery.check() == []


def test_move_between_people_and_errors(gallery, three_people):
    centres, a, b, c = three_people
    gallery.add_faces("A", a[:2], embedding_key=KEY)
    gallery.add_faces("B", b[:1], embedding_key=KEY)
    ids = [f.id for f in gallery.faces("A")]
    assert gallery.unknown.move([ids[1]], "Uncle Tom") == [ids[1]]
    assert gallery.face_owners(np.array(ids)) == {ids[0]: "A", ids[1]: "Uncle Tom"}
    assert gallery.unknown.move([ids[1]], "Uncle Tom") == []  # already theirs
    with pytest.raises(FaceNotFoundError):
        gallery.unknown.move([ids[0], 999], None)
    with pytest.raises(InvalidNameError):
        gallery.unknown.move([ids[0]], "\n")
    assert gallery.face_owners(np.array(ids)) == {ids[0]: "A", ids[1]: "Uncle Tom"}  # nothing half-done
    assert gallery.check() == []


def test_merge_two_people_into_one(gallery, three_people):
    centres, a, b, c = three_people
    gallery.add_faces("Rosa", a[:2], embedding_key=KEY)
    gallery.add_faces("Aunt Rosa", a[2:4], embedding_key=KEY)
    out = gallery.faces("Rosa")[0].id
    gallery.unknown.move([out], None)  # moved out of Rosa: stays out of the merged person
    assert gallery.unknown.merge("Rosa", "Aunt Rosa") == 1
    assert [(p.name, p.faces) for p in gallery.people()] == [("Aunt Rosa", 3)]
    gallery.unknown.keep(a[4:], embedding_key=KEY)
    gallery.unknown.regroup()
    group = next(grp for grp in gallery.unknown.groups() if out in {f.id for f in grp.faces})
    assert gallery.unknown.name(group.id, "Aunt Rosa").kept_out == (out,)
    with pytest.raises(PersonNotFoundError):
        gallery.unknown.merge("Nobody", "Aunt Rosa")
    with pytest.raises(InvalidNameError):
        gallery.unknown.merge("Aunt Rosa", "aunt rosa")
    assert gallery.check() == []


def test_forget_leaves_nothing_of_the_faces_in_the_gallery_files(tmp_path, three_people):
    centres, a, b, c = three_people
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        g.add_faces("B", b, embedding_key=KEY)
        g.unknown.keep(a + c, embedding_key=KEY)
        g.search(centres, 2)
        files = raw_files(folder)
        assert all(any(t in data for data in files.values()) for t in traces(a))  # it was all there
        assert g.unknown.forget(older_than=timedelta(days=30)) == 0  # kept just now
        assert g.unknown.forget() == 9
        assert g.unknown.count() == 0 and g.unknown.groups() == [] and g.person("B").faces == 4
        assert g.check() == []
    assert_gone(folder, a + c)
    for face in a + c:
        assert face.thumbnail is not None
        assert all(face.thumbnail not in data for data in raw_files(folder).values())


# -- the upgrade from schema 1 ----------------------------------------------------------------------------

V1_FACES = """CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL, image_path TEXT, image_sha256 TEXT NOT NULL, box TEXT NOT NULL,
    confidence REAL NOT NULL, model TEXT NOT NULL, created_at TEXT NOT NULL
)"""


def make_v1(folder: Path, faces: list[NewFace]) -> None:
    """A gallery as faceid with schema 1 wrote it: enrolled faces with thumbnails and an index file."""
    with Gallery(folder) as g:
        g.add_faces("A", faces, embedding_key=KEY)
        g.search(faces[0].embedding[None, :], 1)
    db = sqlite3.connect(folder / "gallery.db", isolation_level=None)
    db.executescript(
        "PRAGMA foreign_keys = OFF; BEGIN;"
        f"{V1_FACES.replace('TABLE faces', 'TABLE faces_old')};"
        "INSERT INTO faces_old SELECT id, person_id, embedding, image_path, image_sha256, box, confidence, model, "
        "created_at FROM faces; DROP TABLE faces; ALTER TABLE faces_old RENAME TO faces;"
        "CREATE INDEX faces_person ON faces(person_id); CREATE INDEX faces_image ON faces(image_sha256);"
        "DROP TABLE face_exclusions; UPDATE meta SET value = '1' WHERE key = 'schema'; COMMIT;"
    )
    db.close()


def test_a_v1_gallery_is_upgraded_in_place_keeping_everything(tmp_path, three_people):
    centres, a, b, c = three_people
    folder = tmp_path / "g"
    make_v1(folder, a[:3])
    before = sqlite3.connect(folder / "gallery.db")
    rows = before.execute("SELECT * FROM faces ORDER BY id").fetchall()
    thumbs = before.execute("SELECT * FROM face_thumbnails ORDER BY face_id").fetchall()
    before.close()
    with Gallery(folder) as g:
        assert g.backend.store.schema == 2
        assert g.check() == [] and g.problems == []  # the index file is still valid: no face changed
        after = g.backend.db.execute(
            "SELECT id, person_id, embedding, image_path, image_sha256, box, confidence, model, created_at "
            "FROM faces ORDER BY id"
        ).fetchall()
        assert (
            after == rows
            and g.backend.db.execute("SELECT * FROM face_thumbnails ORDER BY face_id").fetchall() == thumbs
        )
        assert g.audit_log()[-1].action == "upgrade"
        g.unknown.keep(a[3:], embedding_key=KEY)  # and it takes unknown faces now
        assert g.unknown.count() == 3 and g.person("A").faces == 3


def test_a_failed_upgrade_leaves_the_v1_gallery_as_it_was(tmp_path, three_people, monkeypatch):
    centres, a, b, c = three_people
    folder = tmp_path / "g"
    make_v1(folder, a[:2])
    original = (folder / "gallery.db").read_bytes()
    from faceid.gallery import store

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-upgrade")

    monkeypatch.setattr(store.audit, "record", boom)  # the last step before COMMIT
    with pytest.raises(RuntimeError):
        Gallery(folder)
    monkeypatch.undo()
    db = sqlite3.connect(folder / "gallery.db")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("1",)
    assert db.execute("SELECT COUNT(*) FROM faces").fetchone() == (2,)
    assert db.execute("SELECT COUNT(*) FROM face_thumbnails").fetchone() == (2,)
    db.close()
    assert len((folder / "gallery.db").read_bytes()) == len(original)
    with Gallery(folder) as g:  # the next open upgrades it
        assert g.backend.store.schema == 2 and g.person("A").faces == 2 and g.check() == []


# -- the real models on real photos ------------------------------------------------------------------------


@pytest.mark.model
def test_real_samples_remember_group_name_identify(gallery, real_pipeline):
    """The committed samples: Obama and Biden alone and together, Hopper, the astronaut; from an
    empty gallery every face is kept, no group mixes two people or two faces of one photo, and a
    named group names that person in the next identification."""
    from conftest import SAMPLES

    from faceid.identify import KNOWN, identify

    photos = sorted((SAMPLES / "people").rglob("*.jpg")) + sorted((SAMPLES / "photos").glob("*.jpg"))
    results = list(identify(photos, gallery, real_pipeline, remember=True))
    kept = [f.kept_as for r in results for f in r.faces]
    assert len(kept) == 6 and None not in kept and gallery.embedding_key == real_pipeline.key
    who = {}  # face id -> person, from the photo (one face) or the position (the pair: Obama left)
    for r in results:
        stem = Path(r.image).stem
        for i, f in enumerate(sorted(r.faces, key=lambda f: f.detection.box[0])):
            who[f.kept_as] = ["obama", "biden"][i] if stem == "obama_and_biden" else stem
    groups = gallery.unknown.groups()
    for grp in groups:
        assert len({who[f.id] for f in grp.faces}) == 1, [who[f.id] for f in grp.faces]
        assert len({f.image_sha256 for f in grp.faces}) == grp.size
    assert {frozenset(who[f.id] for f in grp.faces) for grp in groups} == {frozenset({"obama"}), frozenset({"biden"})}
    obama = next(grp for grp in groups if who[grp.faces[0].id] == "obama")
    gallery.unknown.name(obama.id, "Barack Obama")
    (again,) = identify([SAMPLES / "photos" / "obama_and_biden.jpg"], gallery, real_pipeline, remember=True)
    left, right = sorted(again.faces, key=lambda f: f.detection.box[0])
    assert (left.status, left.name, left.kept_as) == (KNOWN, "Barack Obama", None)
    assert right.status != KNOWN and right.kept_as is not None  # Biden: still unknown, kept once
    assert gallery.unknown.count() == 4 and gallery.check() == []


@pytest.mark.model
@pytest.mark.shared
def test_real_big_bang_cast_and_portraits_group_purely(data, gallery, real_pipeline):
    """Seven portraits and the cast photo of the same seven: the groups are pure, the cast photo's
    faces are never together, and most people find their pair."""
    import json

    from faceid.identify import identify

    truth = json.loads((data / "bigbang" / "ground_truth.json").read_text())
    photos = [data / "bigbang" / p for p in truth["gallery"].values()] + [data / "bigbang" / "group" / "cast.jpg"]
    results = list(identify(photos, gallery, real_pipeline, remember=True))
    who = {}
    for name, r in zip(list(truth["gallery"]) + [None], results):
        faces = sorted(r.faces, key=lambda f: f.detection.box[0])
        names = [name] if name else truth["probes"]["group/cast.jpg"]
        assert len(faces) == len(names)
        who.update({f.kept_as: n for f, n in zip(faces, names)})
    groups = gallery.unknown.groups()
    for grp in groups:
        assert len({who[f.id] for f in grp.faces}) == 1 and len({f.image_sha256 for f in grp.faces}) == grp.size
    assert sum(grp.size == 2 for grp in groups) >= 4, [[who[f.id] for f in g.faces] for g in groups]


def test_a_v1_gallery_that_cannot_be_upgraded_still_reads(tmp_path, three_people, monkeypatch):
    """Read-only (here: the upgrade refused as SQLite refuses a read-only file): read as version 1."""
    centres, a, b, c = three_people
    folder = tmp_path / "g"
    make_v1(folder, a[:2])
    from faceid.errors import GalleryError
    from faceid.gallery import store

    def readonly(db):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store, "migrate", readonly)
    with Gallery(folder) as g:
        assert g.backend.store.schema == 1 and g.person("A").faces == 2 and g.check() == []
        _, ids = g.search(np.stack([a[0].embedding]), 1)
        assert g.face_owners(ids) == {int(ids[0, 0]): "A"}
        assert g.unknown.groups() == [] and g.unknown.count() == 0
        with pytest.raises(GalleryError, match="could not be upgraded"):
            g.unknown.keep(b, embedding_key=KEY)
