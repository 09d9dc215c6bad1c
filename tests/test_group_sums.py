"""The cache of group sums (:mod:`faceid.gallery.groupsums`) and the incremental grouping step
that uses it: attach reads only the new faces and the cached sums, and a cached row is never
anything but the sum of its group's faces as they are, after naming, moving, merging,
forgetting, regrouping, a change no faceid code made, a rolled-back transaction and a
stale or damaged row."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import KEY, unit_vectors
from test_unknown import faces_of, looks_like, partition

from faceid.gallery import Gallery, groupsums, sqlite_grouping

DIM = KEY.dimension


@pytest.fixture
def people5():
    """Five strangers with 4 faces each (one photo per face), and 2 more faces of each to arrive later."""
    centres = unit_vectors(11, 5)
    first, later = [], []
    for p, centre in enumerate(centres):
        v = looks_like(centre, 6, 100 + p)
        first += faces_of(f"p{p}", v[:4])
        later += faces_of(f"q{p}", v[4:])
    return centres, first, later


def cached(g: Gallery) -> dict[int, int]:
    """Group id -> cached size."""
    return dict(g.backend.db.execute("SELECT group_id, size FROM group_sums").fetchall())


def assert_true(g: Gallery) -> None:
    assert groupsums.wrong_rows(g.backend.db, DIM) == []


def test_grouping_fills_the_cache_and_attach_uses_it(gallery, people5):
    centres, first, later = people5
    gallery.unknown.keep(first, embedding_key=KEY)
    groups = {grp.id: grp.size for grp in gallery.unknown.groups()}
    assert sorted(groups.values()) == [4] * 5
    assert cached(gallery) == groups  # written by the grouping, in its transaction
    assert_true(gallery)
    gallery.unknown.keep(later, embedding_key=KEY)
    grown = {grp.id: grp.size for grp in gallery.unknown.groups()}
    assert grown == {g: 6 for g in groups}  # every later face joined its person's group
    assert cached(gallery) == grown  # the joined groups' rows were written again
    assert_true(gallery)


def test_a_missing_or_damaged_row_is_summed_again_and_the_result_is_the_same(tmp_path, people5):
    centres, first, later = people5
    results = []
    for how in ("kept", "dropped", "damaged"):
        with Gallery(tmp_path / how) as g:
            g.unknown.keep(first, embedding_key=KEY)
            if how == "dropped":
                g.backend.db.execute("DELETE FROM group_sums")
            elif how == "damaged":  # a row of the wrong length is not trusted
                g.backend.db.execute("UPDATE group_sums SET sum = x'00'")
            g.unknown.keep(later, embedding_key=KEY)
            results.append(partition(g))
            assert sorted(cached(g).values()) == [6] * 5  # summed from the faces and written back
            assert_true(g)
    assert results[0] == results[1] == results[2]


def test_every_change_to_a_groups_faces_drops_its_row(gallery, people5, tmp_path):
    """The triggers: whatever changes a group's faces (faceid's operations, or another program)."""
    centres, first, later = people5
    gallery.unknown.keep(first + later, embedding_key=KEY)
    groups = gallery.unknown.groups()
    assert len(cached(gallery)) == 5
    # naming: the group's row goes (its faces are a person's now)
    gallery.unknown.name(groups[0].id, "Ann")
    assert groups[0].id not in cached(gallery)
    assert_true(gallery)
    # moving one face out of a group, to nobody and to a person
    gallery.unknown.move([groups[1].faces[0].id], None)
    gallery.unknown.move([groups[2].faces[0].id], "Bob")
    assert groups[1].id not in cached(gallery) and groups[2].id not in cached(gallery)
    assert_true(gallery)
    # forgetting some kept faces
    gallery.unknown.forget(face_ids=[groups[3].faces[0].id])
    assert groups[3].id not in cached(gallery)
    assert_true(gallery)
    # regrouping: new groups, new ids, new rows only
    gallery.unknown.regroup()
    assert set(cached(gallery)) == {grp.id for grp in gallery.unknown.groups()}
    assert not set(cached(gallery)) & {grp.id for grp in groups}
    assert_true(gallery)
    # merging people touches no group: rows stay, and stay true
    gallery.unknown.update_groups(leftovers=True)
    gallery.unknown.keep(faces_of("z", looks_like(centres[1], 2, 7)), embedding_key=KEY)
    before = cached(gallery)
    gallery.unknown.merge("Bob", "Ann")
    assert cached(gallery) == before
    assert_true(gallery)
    # another program changing faces directly: a membership, an embedding, a deletion
    gallery.close()
    db = sqlite3.connect(tmp_path / "gallery" / "gallery.db", isolation_level=None)
    rows = dict(db.execute("SELECT group_id, size FROM group_sums").fetchall())
    assert rows
    one, two = sorted(rows)[:2]
    db.execute("UPDATE faces SET embedding = embedding WHERE group_id = ?", (one,))
    (face,) = db.execute("SELECT id FROM faces WHERE group_id = ? LIMIT 1", (two,)).fetchone()
    db.execute("UPDATE faces SET group_id = NULL WHERE id = ?", (face,))
    assert dict(db.execute("SELECT group_id, size FROM group_sums").fetchall()).keys() == rows.keys() - {one, two}
    db.close()
    with Gallery(tmp_path / "gallery") as g:
        assert_true(g)


def test_a_rolled_back_change_leaves_the_cache_as_it_was(gallery, people5, monkeypatch):
    centres, first, later = people5
    gallery.unknown.keep(first, embedding_key=KEY)
    group = gallery.unknown.groups()[0]
    before = gallery.backend.db.execute("SELECT * FROM group_sums ORDER BY group_id").fetchall()
    from faceid.gallery import audit

    def boom(*args, **kwargs):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(audit, "record", boom)  # the last step of naming, before COMMIT
    with pytest.raises(RuntimeError):
        gallery.unknown.name(group.id, "Ann")
    monkeypatch.undo()
    assert gallery.backend.db.execute("SELECT * FROM group_sums ORDER BY group_id").fetchall() == before
    assert gallery.unknown.group(group.id).size == 4
    assert_true(gallery)


def test_triggers_lost_with_a_rebuilt_faces_table_empty_the_cache_when_recreated(tmp_path, people5):
    centres, first, later = people5
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        g.unknown.keep(first, embedding_key=KEY)
        assert len(cached(g)) == 5
    db = sqlite3.connect(folder / "gallery.db", isolation_level=None)
    db.execute("DROP TRIGGER group_sums_update")  # as a rebuild of the faces table would
    db.execute("UPDATE faces SET group_id = NULL WHERE id = 1")  # unseen by the cache
    db.close()
    with Gallery(folder) as g:
        assert groupsums.exists(g.backend.db) and cached(g) == {}
        g.unknown.keep(later, embedding_key=KEY)
        assert_true(g)


def test_attach_reads_only_the_new_faces_and_leftovers_wait_until_enough(gallery, people5, monkeypatch):
    centres, first, later = people5
    monkeypatch.setattr(sqlite_grouping, "LEFTOVERS_ALWAYS", 2)
    gallery.unknown.keep(first, embedding_key=KEY)
    assert gallery.backend.store.meta("grouping:left") == "0"
    reads = []
    real = sqlite_grouping._read

    def counting(db, where, args, dimension):
        out = real(db, where, args, dimension)
        reads.append(len(out[0]))
        return out

    monkeypatch.setattr(sqlite_grouping, "_read", counting)
    # three strangers (one photo each): they attach nowhere; 3 ungrouped > 2, grew 3 >= max(2, 0): grouped
    strangers = unit_vectors(12, 3)
    gallery.unknown.keep(faces_of("s", strangers), embedding_key=KEY)
    assert reads == [3, 3]  # the new faces, then the leftovers (only these three)
    assert gallery.unknown.count() - len(gallery.unknown.ungrouped()) == 20
    reads.clear()
    # two faces of people 0 and 1: read alone and attached, no leftover grouping (3 left, grew 0)
    update = gallery.unknown.keep(later[:1] + later[2:3], embedding_key=KEY)
    assert update.added == 2 and reads == [2]
    assert gallery.unknown.count() - len(gallery.unknown.ungrouped()) == 22
    reads.clear()
    # one more stranger: 4 ungrouped, grew 1 < 2: the leftovers wait ...
    gallery.unknown.keep(faces_of("t", unit_vectors(13, 1)), embedding_key=KEY)
    assert reads == [1]
    reads.clear()
    # ... unless asked
    gallery.unknown.update_groups(leftovers=True)
    assert reads == [4] and gallery.backend.store.meta("grouping:left") == "4"
    assert_true(gallery)
