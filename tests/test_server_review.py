"""The review routes beyond groups, in-process with fake models: the faces in no group beside the
groups, and the "Is this X?" suggestions with their Accept and Reject answers (the rule of
`faceid suggest`), auth scopes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from conftest import KEY, cli  # noqa: E402
from test_server import error_of, make_client  # noqa: E402


def like(centre: np.ndarray, similarity: float, seed: int) -> np.ndarray:
    """A unit vector at cosine ``similarity`` to unit ``centre``."""
    other = np.random.default_rng(seed).normal(size=len(centre))
    other -= other @ centre * centre
    other /= np.linalg.norm(other)
    return (similarity * centre + np.sqrt(1 - similarity**2) * other).astype(np.float32)


def face(vector, photo: str):
    from faceid.gallery import NewFace

    return NewFace(vector, photo.ljust(64, "0"), (0, 0, 90, 90), 0.99, f"/photos/{photo}.jpg", thumbnail=b"\xff\xd8x")


@pytest.fixture
def rosa(gallery_dir):
    """Rosa enrolled with one face; kept: b and c look like her (above the suggest bar), d not."""
    from faceid.gallery import Gallery
    from faceid.thresholds import GROUPING

    centre = np.random.default_rng(5).normal(size=KEY.dimension)
    centre /= np.linalg.norm(centre)
    bar = GROUPING[KEY].suggest
    with Gallery(gallery_dir) as g:
        g.add_faces("Rosa", [face(centre.astype(np.float32), "a")], embedding_key=KEY)
        kept = g.unknown.keep(
            [
                face(like(centre, bar + 0.2, 1), "b"),
                face(like(centre, bar + 0.1, 2), "c"),
                face(like(centre, bar - 0.2, 3), "d"),
            ],
            embedding_key=KEY,
        )
    return kept.ids, bar


def test_clusters_list_the_faces_in_no_group_last_with_cluster_null(gallery_dir, rosa):
    (b, c, d), _ = rosa
    with make_client(gallery_dir) as client:
        listed = client.get("/v1/clusters").json()
    loose = [entry for entry in listed if entry["cluster"] is None]
    assert len(loose) == 1 and listed[-1] is loose[0]  # one entry, after the groups
    assert loose[0]["size"] == len(loose[0]["faces"])
    grouped = {f["id"] for entry in listed if entry["cluster"] is not None for f in entry["faces"]}
    assert {f["id"] for f in loose[0]["faces"]} | grouped == {b, c, d}
    assert not {f["id"] for f in loose[0]["faces"]} & grouped
    assert all(f["thumbnail"] == f"/v1/faces/{f['id']}/thumbnail" for f in loose[0]["faces"])
    assert all("/" not in f["image"] for f in loose[0]["faces"])  # the file name, never a server path


def test_suggestions_accept_and_reject_as_faceid_suggest(gallery_dir, rosa):
    from faceid.gallery import Gallery

    (b, c, d), bar = rosa
    with make_client(gallery_dir) as client:
        offers = client.get("/v1/suggestions").json()
        assert [(o["face"]["id"], o["person"]) for o in offers] == [(b, "Rosa"), (c, "Rosa")]  # best first
        assert offers[0]["similarity"] == pytest.approx(bar + 0.2, abs=1e-3)
        assert offers[0]["face"]["thumbnail"] == f"/v1/faces/{b}/thumbnail" and "cluster" in offers[0]
        assert client.get("/v1/suggestions", params={"name": "Rosa"}).json() == offers

        r = client.post("/v1/suggestions/reject", json={"name": "Rosa", "faces": [b]})
        assert r.status_code == 200 and r.json() == {"rejected": [b], "person": "Rosa"}
        r = client.post("/v1/suggestions/accept", json={"name": "Rosa", "faces": [c]})
        assert r.status_code == 200 and r.json() == {"moved": [c], "person": "Rosa"}
        assert client.get("/v1/suggestions").json() == []  # one rejected (remembered), one accepted
        rosa_faces = {f["id"] for f in client.get("/v1/people/Rosa").json()["faces"]}
        assert c in rosa_faces and b not in rosa_faces
    with Gallery(gallery_dir) as g:  # remembered in the gallery, as `move` out is: never offered again
        assert g.unknown.suggestions() == [] and b in {f.id for f in g.unknown.ungrouped()} | {
            f.id for grp in g.unknown.groups() for f in grp.faces
        }  # b is still a kept unknown face, only no longer offered to Rosa
        assert "reject" in [e.action for e in g.audit_log()]
        assert g.check() == []


def test_suggestion_answers_refuse_bad_input_in_one_line(gallery_dir, rosa):
    (b, c, d), _ = rosa
    with make_client(gallery_dir) as client:
        assert "nobody" in error_of(client.get("/v1/suggestions", params={"name": "Nobody"}), 404).lower()
        assert (
            "nobody"
            in error_of(client.post("/v1/suggestions/reject", json={"name": "Nobody", "faces": [b]}), 404).lower()
        )
        assert "999999" in error_of(
            client.post("/v1/suggestions/reject", json={"name": "Rosa", "faces": [999999]}), 404
        )
        for body in (
            {},
            {"name": "Rosa"},
            {"name": "Rosa", "faces": []},
            {"name": "Rosa", "faces": [-1]},
            {"name": "Rosa", "faces": [2**63]},
            {"name": "Rosa", "faces": "1"},
            {"faces": [b]},
        ):
            for answer in ("accept", "reject"):
                error_of(client.post(f"/v1/suggestions/{answer}", json=body), 400)
        assert "cannot be used in a URL path" in error_of(
            client.post("/v1/suggestions/accept", json={"name": "..", "faces": [b]}), 400
        )
        assert (
            "nobody"
            in error_of(client.post("/v1/suggestions/accept", json={"name": "Nobody", "faces": [b]}), 404).lower()
        )
        rosas = [f["id"] for f in client.get("/v1/people/Rosa").json()["faces"]]
        assert "kept unknown face" in error_of(
            client.post("/v1/suggestions/accept", json={"name": "Rosa", "faces": rosas}), 404
        )
        r = client.post("/v1/suggestions/accept", content=b"{not json", headers={"Content-Type": "application/json"})
        error_of(r, 400)
        assert len(client.get("/v1/suggestions").json()) == 2  # nothing changed


def test_a_read_only_key_sees_suggestions_but_cannot_answer_them(gallery_dir, rosa):
    (b, c, d), _ = rosa
    admin = cli("keys", "create", "admin", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    reader = cli("keys", "create", "reader", "--read-only", "--gallery", gallery_dir).stdout.strip().splitlines()[-1]
    with make_client(gallery_dir) as client:
        assert client.get("/v1/suggestions").status_code == 401  # keys exist: no key, no answer
        as_reader = {"Authorization": f"Bearer {reader}"}
        assert len(client.get("/v1/suggestions", headers=as_reader).json()) == 2
        assert client.get("/v1/clusters", headers=as_reader).status_code == 200
        for answer in ("accept", "reject"):
            error_of(
                client.post(f"/v1/suggestions/{answer}", json={"name": "Rosa", "faces": [b]}, headers=as_reader), 403
            )
            error_of(client.post(f"/v1/suggestions/{answer}", json={"name": "Rosa", "faces": [b]}), 401)
        as_admin = {"Authorization": f"Bearer {admin}"}
        r = client.post("/v1/suggestions/reject", json={"name": "Rosa", "faces": [b]}, headers=as_admin)
        assert r.status_code == 200
        assert [o["face"]["id"] for o in client.get("/v1/suggestions", headers=as_reader).json()] == [c]
