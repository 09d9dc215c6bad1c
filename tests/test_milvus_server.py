"""What only a real Milvus server shows (the session's server: milvus==2.3.5 standalone, see
conftest.milvus_server): a removal that takes effect at once while the server erases in the
background, a server restart in the middle of a run, an unreachable server, a slow one (``--timeout``).
The behaviour suites (test_gallery.py, test_cli.py, test_unknown.py...) run on it through BACKENDS."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from conftest import KEY, fake_cli, milvus_server, needs_milvus_server, server_gallery, unit_vectors

from faceid.errors import GalleryError
from faceid.gallery import NewFace, open_gallery

pytestmark = needs_milvus_server


def faces(vectors, tag="x"):
    return [
        NewFace(v, f"{tag}{i:060d}"[-64:], (1, 2, 3, 4), 0.99, f"/photos/{tag}{i}.jpg") for i, v in enumerate(vectors)
    ]


def test_the_server_runs_in_its_own_namespace_or_on_loopback_only():
    server = milvus_server()
    sockets = server.listening()
    assert f":{server.port}" in sockets
    if server.namespace:  # every listener is in the server's own namespace: none on this host's ports
        assert server.host.startswith("10.211.") and "faceid-milvus-" in sockets
    else:
        assert server.host == "127.0.0.1"


def test_a_removal_takes_effect_at_once_and_its_erasure_is_pending_not_a_problem(tmp_path):
    rng = np.random.default_rng(31)
    ann, bob = unit_vectors(rng, 3), unit_vectors(rng, 2)
    address = server_gallery(tmp_path)
    with open_gallery(address) as g:
        g.add_faces("ann", faces(ann, "a"), embedding_key=KEY)
        bob_ids = g.add_faces("bob", faces(bob, "b"), embedding_key=KEY)
        g.remove("ann")
        # the removal waited for no flush: the collections await theirs, then their compactions start
        assert set(g.backend.rows.compacting()) <= {g.backend.rows.name("faces"), g.backend.rows.name("people")}
        # gone at once from every listing, search and export, before any compaction has finished
        assert [p.name for p in g.people()] == ["bob"] and "ann" not in g
        assert [f.id for f in g.faces()] == bob_ids and g.face_count == 2
        _, found = g.search(ann, k=5)
        assert set(found.ravel()) - {-1} <= set(bob_ids)
        assert g.check() == []
        first = g.compaction_pending
    result = fake_cli("gallery", "check", "--gallery", address)
    assert result.exit_code == 0, result.output
    assert "gallery is sound" in result.stdout and "problem" not in result.output
    assert all(note.startswith("pending: ") for note in result.stdout.splitlines()[:-1])
    with open_gallery(address, timeout=120) as g:  # the server finishes the compaction in its own time
        assert g.compact(wait=True), f"still compacting after 120 s (pending at first: {first})"
        assert not g.compaction_pending


def test_nothing_is_lost_when_the_server_restarts_in_the_middle_of_a_run(tmp_path):
    rng = np.random.default_rng(32)
    ann, bob = unit_vectors(rng, 3), unit_vectors(rng, 2)
    address = server_gallery(tmp_path)
    with open_gallery(address) as g:
        ann_ids = g.add_faces("ann", faces(ann, "a"), embedding_key=KEY)
    milvus_server().restart()
    with open_gallery(address) as g:  # the next command, as a user would run it
        assert [(p.name, p.faces) for p in g.people()] == [("ann", 3)]
        bob_ids = g.add_faces("bob", faces(bob, "b"), embedding_key=KEY)
        _, found = g.search(np.vstack([ann, bob]), 1)
        assert list(found[:, 0]) == ann_ids + bob_ids
        assert g.check() == []


def test_an_unreachable_server_is_one_line_naming_the_address():
    server = milvus_server()
    address = f"milvus://{server.host}:1/faces"  # the server's host, a port nothing listens on
    started = time.monotonic()
    result = fake_cli("--timeout", "2", "people", "--gallery", address)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"faceid: error: {address}: cannot reach Milvus at http://{server.host}:1")
    assert time.monotonic() - started < 30


def test_a_server_that_stops_answering_is_one_line_after_the_timeout(tmp_path):
    address = server_gallery(tmp_path)
    with open_gallery(address) as g:
        g.add_faces("ann", faces(unit_vectors(np.random.default_rng(33), 1)), embedding_key=KEY)
    server = milvus_server()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # alive, listening, answering nothing: a hung server
    try:
        started = time.monotonic()
        result = fake_cli("--timeout", "3", "people", "--gallery", address)
        took = time.monotonic() - started
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"faceid: error: {address}: "), result.stderr
    assert took < 30, f"--timeout 3 took {took:.1f} s"
    with open_gallery(address) as g:  # it answers again, with nothing lost
        assert [(p.name, p.faces) for p in g.people()] == [("ann", 1)]


def test_a_gallery_on_a_missing_server_is_not_reported_as_empty():
    with pytest.raises(GalleryError, match="cannot reach Milvus"):
        open_gallery(f"milvus://{milvus_server().host}:1/faces", timeout=2)


def test_a_gallery_opened_after_another_process_wrote_sees_the_write_at_once(tmp_path):
    """Reads wait for no time tick, yet see every write acknowledged before the open (the floor a new
    gallery takes from the server: faceid.gallery.milvus_session), here another process's."""
    import subprocess
    import sys

    address = server_gallery(tmp_path)
    with open_gallery(address) as g:
        g.add_faces("ann", faces(unit_vectors(np.random.default_rng(34), 1), "a"), embedding_key=KEY)
    writer = (
        "import sys, numpy as np\n"
        "from faceid.gallery import NewFace, open_gallery\n"
        "with open_gallery(sys.argv[1]) as g:\n"
        "    key = g.embedding_key\n"
        "    v = np.ones(key.dimension, np.float32) / np.sqrt(key.dimension)\n"
        "    for name in ('bob', 'cy', 'dee'):\n"
        "        face = NewFace(v, name.ljust(64, '0'), (1, 2, 3, 4), 0.99, '/p.jpg')\n"
        "        g.add_faces(name, [face], embedding_key=key)\n"
    )
    subprocess.run([sys.executable, "-c", writer, address], check=True, timeout=120)
    with open_gallery(address) as g:  # straight after the writer's last acknowledged write
        assert g.backend.rows.reads.floor > 0
        assert [p.name for p in g.people()] == ["ann", "bob", "cy", "dee"]
        assert g.face_count == 4
