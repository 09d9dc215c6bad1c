"""Face chips: every model's crop can be made again from a face's chip (the same pixels, or one
level off in a few of them, where the chip was not shrunk); the gallery keeps one per enrolled
face and removes it with the face."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from conftest import save_png
from test_deletion import raw_files

from faceid.align import crop_faces
from faceid.chips import make_chip
from faceid.detect import Detection
from faceid.enroll import enroll
from faceid.gallery import Gallery
from faceid.gallery.chips import CHIP_FACE_SIDE, CHIP_MARGIN, FaceChip

CROPS = [("margin", 0.0, 160), ("margin", 0.1, 160), ("margin", CHIP_MARGIN, 160), ("arcface-112", 0.0, 112)]
CROPS += [("similarity", 0.0, 160), ("arcface-112", 0.0, 224)]


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(height, width, 3), dtype=np.uint8)


def tilted_face(x: float, y: float, side: float, angle: float = 0.0) -> Detection:
    """A face box at ``(x, y)`` of ``side`` pixels, its landmarks turned by ``angle`` degrees about its centre."""
    template = np.array([[0.31, 0.40], [0.69, 0.40], [0.5, 0.57], [0.33, 0.71], [0.67, 0.71]]) * side
    centre = np.array([side / 2, side / 2])
    turn = np.deg2rad(angle)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    points = (template - centre) @ rotation.T + centre + np.array([x, y])
    box = (round(x), round(y), round(side), round(side * 1.15))
    return Detection(box, 0.99, tuple((float(a), float(b)) for a, b in points))


@pytest.mark.parametrize(
    "detection",
    [
        tilted_face(120, 100, 90),  # in the middle of the photo
        tilted_face(150, 90, 80, angle=30),  # tilted: the similarity crops reach past the box's corners
        tilted_face(2, 3, 100, angle=-20),  # at the photo's corner: every crop is clipped or padded
        tilted_face(260, 180, 70),  # at the other corner
    ],
)
@pytest.mark.parametrize(("method", "margin", "size"), CROPS)
def test_every_crop_from_the_chip_is_the_crop_from_the_photo(detection, method, margin, size):
    photo = noise(260, 340)
    chip = make_chip(photo, detection)
    assert chip.scale == (1.0, 1.0)
    from_photo = crop_faces(photo, [detection], method=method, margin=margin, size=size)
    from_chip = crop_faces(chip.pixels(), [chip.detection()], method=method, margin=margin, size=size)
    if method == "margin":
        assert np.array_equal(from_photo, from_chip)
    else:  # the same warp with another origin: OpenCV's 1/32-pixel fixed point rounds a few values the other way
        difference = np.abs(from_photo.astype(int) - from_chip.astype(int))
        assert difference.max() <= 1 and np.count_nonzero(difference) < 0.005 * difference.size
    assert np.allclose(chip.photo_landmarks(), detection.landmark_array(), atol=1e-4)
    assert chip.pixels().shape[0] * chip.pixels().shape[1] < photo.shape[0] * photo.shape[1]


def test_a_large_face_is_shrunk_and_its_crops_stay_close():
    rng = np.random.default_rng(1)
    small = rng.integers(1, 256, size=(60, 80, 3), dtype=np.uint8)
    import cv2

    photo = cv2.resize(small, (1600, 1200), interpolation=cv2.INTER_LINEAR)  # smooth, like a photo
    detection = tilted_face(500, 300, 600, angle=10)
    chip = make_chip(photo, detection)
    assert max(chip.box[2], chip.box[3]) <= CHIP_FACE_SIDE + 1
    assert chip.scale[0] < 1.0 and np.allclose(chip.photo_landmarks(), detection.landmark_array(), atol=3)
    for method, margin, size in CROPS:
        a = crop_faces(photo, [detection], method=method, margin=margin, size=size).astype(float)
        b = crop_faces(chip.pixels(), [chip.detection()], method=method, margin=margin, size=size).astype(float)
        # resampling twice blurs (a few levels on average), but the crop is the same region: a crop
        # shifted by a tenth of the face would correlate far less
        assert np.abs(a - b).mean() < 8.0 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99, method


def test_geometry_round_trips():
    chip = make_chip(noise(100, 100), tilted_face(30, 20, 40))
    again = FaceChip.from_row(chip.png, chip.geometry())
    assert again == chip


def test_enrolment_keeps_a_chip_per_face_and_removal_leaves_none_behind(tmp_path, fake_pipeline):
    photos = []
    for i in range(3):
        pixels = noise(40, 40, seed=10 + i)
        pixels[14:26, 14:26] = (40 + 60 * i, 90, 150)  # the fake embedder reads the centre's colour
        photos.append(save_png(tmp_path / "photos" / f"p{i}.png", pixels))
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        assert [r.status for r in enroll(g, "Chip Person", photos, fake_pipeline)] == ["added"] * 3
        other = np.zeros((40, 80, 3), np.uint8)
        other[:, 40:] = noise(40, 40, 99)  # the face in the right tile: another chip geometry
        assert [r.status for r in enroll(g, "Other", [save_png(tmp_path / "o.png", other)], fake_pipeline)] == ["added"]
        faces = g.faces("Chip Person")
        chips = [g.face_chip(f.id) for f in faces]
        assert all(c is not None for c in chips)
        for chip in chips:
            assert chip is not None and chip.box == (0, 0, 40, 40)  # the fake detector's tile
        # the chip is the photo's pixels (the whole 40x40 photo: the crops reach past it)
        assert chips[0] is not None and np.array_equal(
            chips[0].pixels()[14:26, 14:26], np.full((12, 12, 3), (40, 90, 150))
        )
    # a chip's PNG is larger than a page, so SQLite splits it over overflow pages: look for slices of it
    traces = [[c.png[i : i + 32] for i in (60, len(c.png) // 2, len(c.png) - 60)] for c in chips if c]
    traces += [[c.geometry().encode()] for c in chips if c]
    files = raw_files(folder)
    for slices in traces:  # they were there (a slice across two pages is not found in one piece)
        assert sum(any(t in data for data in files.values()) for t in slices) >= min(2, len(slices))
    with Gallery(folder) as g:
        g.remove_face(faces[0].id)
        g.remove("Chip Person")
        assert g.face_chip(faces[1].id) is None
        assert g.face_chip(g.faces("Other")[0].id) is not None
    for trace in [t for slices in traces for t in slices]:
        for name, data in raw_files(folder).items():
            assert trace not in data, f"a removed face's chip is still in {name}"
    rows = sqlite3.connect(folder / "gallery.db").execute("SELECT COUNT(*) FROM face_chips").fetchone()
    assert rows == (1,)


def test_chips_never_reach_the_audit_log(tmp_path, fake_pipeline):
    photo = save_png(tmp_path / "a.png", noise(40, 40, 5))
    with Gallery(tmp_path / "g") as g:
        enroll(g, "A", [photo], fake_pipeline)
        chip = g.face_chip(g.faces()[0].id)
        log = repr([e for e in g.audit_log()])
    assert chip is not None and "landmarks" not in log and "png" not in log


def test_kept_unknown_faces_get_a_chip_too(tmp_path, fake_pipeline):
    from conftest import fake_cli, tile_image

    folder = tmp_path / "g"
    with Gallery(folder) as g:
        enroll(g, "Known", [save_png(tmp_path / "k.png", tile_image([(200, 30, 30)]))], fake_pipeline)
    big = np.kron(tile_image([(30, 30, 200)]), np.ones((3, 3, 1), np.uint8))  # strangers: nine fake 40 px faces
    photo = save_png(tmp_path / "stranger.png", big)
    result = fake_cli("identify", photo, "--remember", "--json", "--gallery", folder)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(folder / "gallery.db") as db:
        unknown = [r[0] for r in db.execute("SELECT id FROM faces WHERE person_id IS NULL")]
    assert unknown
    with Gallery(folder) as g:
        for face_id in unknown:
            chip = g.face_chip(face_id)
            assert chip is not None and chip.pixels().shape[2] == 3
