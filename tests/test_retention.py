"""The bound on kept unknown faces (faceid gallery retention) and faceid gallery stats, with fake models:
the oldest forgotten first, securely, at once and after every keep."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from conftest import cli  # noqa: E402
from test_compat import enrol_three, kept_count, upload  # noqa: E402
from test_server import make_client  # noqa: E402

STRANGERS = [(120, 120, 0), (0, 120, 120), (120, 0, 120), (60, 60, 60)]


def keep_strangers(client, colours) -> list[int]:
    ids = []
    for i, colour in enumerate(colours):
        r = client.post("/v1/identify", params={"remember": "true"}, files=upload([colour], f"cam{i}.png"))
        ids.append(r.json()["faces"][0]["kept_as"])
    return ids


def test_max_faces_forgets_the_oldest_first(gallery_dir):
    with make_client(gallery_dir) as client:
        enrol_three(client)
        ids = keep_strangers(client, STRANGERS)
    assert kept_count(gallery_dir) == 4
    out = cli("gallery", "retention", "--max-faces", "2", "--gallery", gallery_dir)
    assert out.exit_code == 0 and "2 kept faces forgotten now" in out.stdout
    from faceid.gallery import open_gallery

    with open_gallery(gallery_dir) as g:
        left = sorted(f.id for grp in g.unknown.groups() for f in grp.faces) + [f.id for f in g.unknown.ungrouped()]
    assert sorted(left) == sorted(ids[2:])  # the two newest stay
    with make_client(gallery_dir) as client:  # and after every keep
        keep_strangers(client, [(200, 200, 200)])
    assert kept_count(gallery_dir) == 2


def test_days_and_off(gallery_dir):
    with make_client(gallery_dir) as client:
        enrol_three(client)
        keep_strangers(client, STRANGERS[:2])
    assert "retention" in cli("gallery", "retention", "--gallery", gallery_dir).stdout
    out = cli("gallery", "retention", "--days", "0.000000001", "--gallery", gallery_dir)
    assert "2 kept faces forgotten now" in out.stdout and kept_count(gallery_dir) == 0
    assert cli("gallery", "retention", "--days", "0", "--gallery", gallery_dir).exit_code == 1
    cli("gallery", "retention", "--off", "--gallery", gallery_dir)
    with make_client(gallery_dir) as client:
        keep_strangers(client, STRANGERS[2:])
    assert kept_count(gallery_dir) == 2


def test_stats(gallery_dir):
    with make_client(gallery_dir) as client:
        enrol_three(client)
        keep_strangers(client, [STRANGERS[0]])
    cli("gallery", "retention", "--max-faces", "100", "--gallery", gallery_dir)
    s = json.loads(cli("gallery", "stats", "--json", "--gallery", gallery_dir).stdout.strip().splitlines()[-1])
    assert (s["people"], s["faces"], s["kept_unknown"]) == (3, 3, 1)
    assert s["disk_bytes"] > 0 and s["retention"] == {"days": None, "max_faces": 100}
    text = cli("gallery", "stats", "--gallery", gallery_dir).stdout
    assert "kept unknown:   1 faces" in text and "at most 100 faces" in text
