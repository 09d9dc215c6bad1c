"""Hostile and broken input, much of it generated: odd image shapes through the whole pipeline,
deep folder trees and symbolic-link loops, and file and person names with path separators,
``..``, NUL bytes, control characters, great length and SQL. Each gets a clear one-line error
or a correct result, never a traceback or a hang, and a failed operation leaves the gallery as
it was (people, faces, audit log and the database file's bytes)."""

from __future__ import annotations

import io
import json
import os
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_cli, save_png, tile_image
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceid.align import crop_faces
from faceid.batch import iter_image_files
from faceid.detect import Detection
from faceid.gallery import Gallery, normalise_name
from faceid.identify import identify
from faceid.images import read_image

FIXTURE_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
RED, GREEN, BLUE = (200, 40, 40), (40, 200, 40), (40, 40, 200)


def stored_name(name: str) -> str | None:
    """The name as the gallery would store it, or None where it is refused."""
    try:
        return normalise_name(name)
    except ValueError:
        return None


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def dump(path: Path):
    """Everything a failed operation must leave as it was."""
    with Gallery(path, create=False) as g:
        state = (g.people(), g.faces(), g.audit_log(), g.generation)
    return state, (path / "gallery.db").read_bytes()


@pytest.fixture
def base_gallery(tmp_path):
    """A gallery with ann (red) enrolled through the CLI, and a blue photo of no one."""
    photos = tmp_path / "photos"
    save_png(photos / "ann.png", tile_image([RED]))
    save_png(photos / "stranger.png", tile_image([BLUE]))
    result = fake_cli("enroll", "ann", photos / "ann.png", "--gallery", tmp_path / "g")
    assert result.exit_code == 0, result.output
    return tmp_path / "g"


# -- images of every shape through the whole pipeline ----------------------------------------------------

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif", "WEBP": ".webp"}
sides = st.one_of(st.integers(1, 3), st.integers(1, 300), st.sampled_from([39, 40, 41, 4999, 5000]))


@st.composite
def odd_images(draw):
    """An encoded image: extreme aspect ratios (1 x 5000), tiny (1 x 1) and tile-sized faces."""
    h, w = draw(sides), draw(sides)
    if h * w > 200_000:  # one long side, the other short
        h, w = (h, draw(st.integers(1, 40))) if draw(st.booleans()) else (draw(st.integers(1, 40)), w)
    fill = draw(st.sampled_from(["black", "noise", "tiles"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if fill == "black":
        pixels = np.zeros((h, w, 3), np.uint8)
    elif fill == "noise":
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[: min(h, 40) * (h >= 40), : (w // 40) * 40] = RED
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    if fmt == "WEBP" and max(h, w) > 16383:
        fmt = "PNG"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue(), (h, w), fmt


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(odd_images())
def test_any_shape_goes_through_the_whole_pipeline(tmp_path_factory, fake_pipeline, image):
    data, (h, w), fmt = image
    folder = tmp_path_factory.mktemp("shape")
    path = folder / f"odd{FORMATS[fmt]}"
    path.write_bytes(data)
    loaded = read_image(path)
    assert loaded.pixels.shape == (h, w, 3) and loaded.pixels.dtype == np.uint8
    faces = fake_pipeline.faces(loaded.pixels)
    assert all(f.embedding.shape == (128,) and np.isfinite(f.embedding).all() for f in faces)
    with Gallery(folder / "g") as g:
        results = list(identify([str(path)], g, fake_pipeline))
    assert len(results) == 1 and results[0].error is None
    assert (results[0].width, results[0].height) == (w, h)
    assert len(results[0].faces) == len(faces)


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1), (2, 3)])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_tiny_and_extreme_images_in_every_format(tmp_path, fake_pipeline, size, fmt):
    h, w = size
    path = tmp_path / f"x{FORMATS[fmt]}"
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(path, format=fmt)
    pixels = read_image(path).pixels
    assert pixels.shape == (h, w, 3)
    assert fake_pipeline.faces(pixels) == []


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a\x00\x00\x00\x00", b"BM" + b"\x00" * 60],
    ids=["empty", "png", "gif", "bmp"],
)
def test_zero_size_images_are_one_line_errors(base_gallery, tmp_path, data):
    (tmp_path / "zero.png").write_bytes(data)
    before = dump(base_gallery)
    result = fake_cli("identify", tmp_path / "zero.png", "--gallery", base_gallery)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert lines[0].startswith(f"faceid: error: {tmp_path / 'zero.png'}: ") and len(lines) == 2
    result = fake_cli("enroll", "zed", tmp_path / "zero.png", "--gallery", base_gallery)
    assert result.exit_code == 1 and dump(base_gallery) == before


@st.composite
def detections(draw, height: int, width: int):
    """Boxes anywhere in the image (at least 2 px, as the detector guarantees) and any finite landmarks."""
    x = draw(st.integers(0, width - 2))
    y = draw(st.integers(0, height - 2))
    w = draw(st.integers(2, width - x))
    h = draw(st.integers(2, height - y))
    coordinate = st.floats(-1e4, 1e4, allow_nan=False)
    landmarks = draw(
        st.one_of(
            st.lists(st.tuples(coordinate, coordinate), min_size=5, max_size=5),
            st.tuples(coordinate, coordinate).map(lambda p: [p] * 5),  # all five on one point
        )
    )
    return Detection((x, y, w, h), draw(st.floats(0, 1)), tuple(landmarks))


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(2, 400), st.integers(2, 400), st.sampled_from(["margin", "similarity"]))
def test_crops_of_any_box_and_landmarks(data, height, width, method):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    found = data.draw(st.lists(detections(height, width), max_size=3))
    crops = crop_faces(image, found, method=method)
    assert crops.shape == (len(found), 160, 160, 3) and crops.dtype == np.uint8


@pytest.mark.model
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 5000), (5000, 1), (24, 24), (25, 4000), (40, 1600), (100, 5000)])
def test_real_detector_on_tiny_and_extreme_shapes(real_pipeline, shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    found = real_pipeline.detect_many([image])
    assert len(found) == 1
    for d in found[0]:
        x, y, w, h = d.box
        assert x >= 0 and y >= 0 and x + w <= shape[1] and y + h <= shape[0]
    assert all(f.embedding.shape == (128,) for f in real_pipeline.faces(image))


# -- folders ---------------------------------------------------------------------------------------------


def _remove_tree(root: Path) -> None:
    """Delete a folder tree of any depth: ``shutil.rmtree`` (and so pytest's cleanup of its
    temporary folders) recurses on Python < 3.12 and fails on a tree 1,000 folders deep."""
    here = os.getcwd()
    os.chdir(root)
    names: list[str] = []
    try:
        while True:
            sub = None
            for entry in os.scandir("."):
                if entry.is_dir(follow_symlinks=False):
                    sub = entry.name
                    break
                os.unlink(entry.name)
            if sub is not None:
                os.chdir(sub)
                names.append(sub)
            elif names:
                os.chdir("..")
                os.rmdir(names.pop())
            else:
                break
    finally:
        os.chdir(here)
    os.rmdir(root)


@pytest.fixture
def deep_tree():
    """Makes ``root/d/d/.../d``, ``depth`` levels deep, and returns the bottom; deletes it afterwards."""
    made: list[Path] = []

    def make(root: Path, depth: int) -> Path:
        here = os.getcwd()
        root.mkdir(parents=True)
        made.append(root)
        os.chdir(root)  # relative steps: the full path may be longer than the system allows
        try:
            for _ in range(depth):
                os.mkdir("d")
                os.chdir("d")
            return Path(os.getcwd())
        finally:
            os.chdir(here)

    yield make
    for root in made:
        _remove_tree(root)


@pytest.mark.slow
def test_a_folder_tree_deeper_than_the_recursion_limit(base_gallery, tmp_path, deep_tree):
    bottom = deep_tree(tmp_path / "deep", 1100)  # os.walk recursed on Python < 3.12: RecursionError
    save_png(bottom / "ann.png", tile_image([RED]))
    assert list(iter_image_files([tmp_path / "deep"])) == [str(bottom / "ann.png")]
    result = fake_cli("identify", tmp_path / "deep", "--json", "--gallery", base_gallery)
    assert result.exit_code == 0 and '"name": "ann"' in result.stdout


def test_symlink_loops_terminate(base_gallery, tmp_path):
    folder = tmp_path / "loops"
    save_png(folder / "inner" / "ann.png", tile_image([RED]))
    os.symlink(folder, folder / "inner" / "back-to-top")  # a loop through a folder link
    os.symlink(folder / "inner", folder / "inner" / "self")
    os.symlink(folder / "b.jpg", folder / "a.jpg")  # a loop of file links
    os.symlink(folder / "a.jpg", folder / "b.jpg")
    os.symlink(folder / "nowhere.png", folder / "dangling.png")
    assert list(iter_image_files([folder])) == [str(folder / n) for n in ("a.jpg", "b.jpg", "dangling.png")] + [
        str(folder / "inner" / "ann.png")
    ]
    before = dump(base_gallery)
    result = fake_cli("identify", folder, "--gallery", base_gallery)
    assert result.exit_code == 1 and "ann" in result.stdout
    lines = error_lines(result)
    assert len(lines) == 4 and "symbolic links" in lines[0] and "no such file" in lines[2], lines
    result = fake_cli("identify", folder / "a.jpg", "--gallery", base_gallery)
    assert result.exit_code == 1 and len(error_lines(result)) == 2
    result = fake_cli("enroll", "loop", folder, "--gallery", base_gallery)  # ann's photo is already enrolled
    assert result.exit_code == 1 and dump(base_gallery) == before


@pytest.mark.slow
def test_enroll_folders_with_hostile_folder_names(base_gallery, tmp_path, deep_tree):
    root = tmp_path / "people"
    colours = iter([(10 + 16 * i, 120, 60) for i in range(10)])
    names = [
        "Robert'); DROP TABLE people;--",
        "x..y",
        "..hidden",
        "  spaced  ",
        "Zoë Ω 李",
        "%_*?[]",
        "line\nbreak",
        "a\u202eb",
    ]
    for name in names:
        save_png(root / name / "p.png", tile_image([next(colours)]))
    loop = root / "loop"
    save_png(loop / "p.png", tile_image([next(colours)]))
    os.symlink(root, loop / "up")  # not followed
    save_png(deep_tree(root / "deep", 1100) / "p.png", tile_image([next(colours)]))
    result = fake_cli("enroll", "--folders", root, "--gallery", base_gallery)
    assert result.exit_code == 1  # the control-character names fail, one line each; the rest go in
    failed = error_lines(result)
    assert len(failed) == 2 and all(line.startswith("failed") for line in failed), failed
    with Gallery(base_gallery) as g:
        enrolled = {p.name for p in g.people()}
    expected = {"Robert'); DROP TABLE people;--", "x..y", "spaced", "Zoë Ω 李", "%_*?[]", "loop", "deep"}
    assert enrolled == {"ann"} | expected  # "..hidden" starts with a dot: skipped like any hidden folder


# -- names -------------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "Robert'); DROP TABLE people;--",
    "' OR 1=1 --",
    "../../etc/passwd",
    "a/b\\c",
    "..",
    "%_*?",
    "x" * 200,
    "x" * 201,
    "x" * 100_000,
    "nul\x00byte",
    "new\nline",
    "bell\x07",
    "rtl\u202eoverride",
    "   ",
    "",
    "-dash",
    "Zoë 👩\u200d💻",
    "نیلوفر\u200cها",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:20]))
def test_hostile_person_names_through_the_cli(base_gallery, tmp_path, name):
    photo = tmp_path / "photos" / "stranger.png"
    before = dump(base_gallery)
    result = fake_cli("enroll", "--gallery", base_gallery, "--", name, photo)
    stored = stored_name(name)
    if stored is None:
        assert result.exit_code in (1, 2) and len(error_lines(result)) == 1, result.stderr
        assert dump(base_gallery) == before
        for args in (["rename", "--", "ann", name], ["remove", "--", name], ["rename", "--", name, "x"]):
            result = fake_cli(args[0], "--gallery", base_gallery, *args[1:])
            assert result.exit_code in (1, 2) and len(error_lines(result)) == 1
            assert dump(base_gallery) == before
        return
    assert result.exit_code == 0, result.stderr
    listed = fake_cli("people", "--json", "--gallery", base_gallery).stdout
    assert stored in [json.loads(line)["name"] for line in listed.splitlines()]
    assert fake_cli("rename", "--gallery", base_gallery, "--", name, "renamed").exit_code == 0
    assert fake_cli("rename", "--gallery", base_gallery, "--", "renamed", name).exit_code == 0
    assert fake_cli("remove", "--gallery", base_gallery, "--", name).exit_code == 0
    assert dump(base_gallery)[0][:2] == before[0][:2]  # people and faces as before; the audit grew


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(st.text(max_size=300))
def test_generated_person_names(base_gallery, tmp_path_factory, name):
    """Any text as a name: stored verbatim (normalised) or refused in one line, the gallery untouched."""
    work = tmp_path_factory.mktemp("names")
    gallery = work / "g"
    shutil.copytree(base_gallery, gallery)
    photo = base_gallery.parent / "photos" / "stranger.png"
    before = dump(gallery)
    result = fake_cli("enroll", "--gallery", gallery, "--", name, photo)
    stored = stored_name(name)
    if stored is None or stored.casefold() == "ann" and stored.isascii():
        assert result.exit_code != 0 and len(error_lines(result)) == 1, (name, result.stderr)
        assert dump(gallery) == before
    else:
        assert result.exit_code == 0, (name, result.stderr)
        with Gallery(gallery) as g:
            assert [f.person for f in g.faces()] == ["ann", stored]
        result = fake_cli("remove", "--gallery", gallery, "--", name)
        assert result.exit_code == 0
        with Gallery(gallery) as g:
            assert [p.name for p in g.people()] == ["ann"] and g.check() == []


def _file_name_chars():
    """Any character a POSIX file name may hold (no '/' and no NUL), favouring awkward ones."""
    return st.one_of(
        st.sampled_from(list(" .-_'\";%*?[]\\\n\t\r$`&|<>()!#~\u202e\u200dé李👩")),
        st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    )


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(st.text(_file_name_chars(), min_size=1, max_size=120), st.sampled_from([".png", ".jpg", ""]))
def test_generated_file_names(base_gallery, tmp_path_factory, stem, suffix):
    """Photos under any file name are read (or the name is refused by the OS before we get it)."""
    folder = tmp_path_factory.mktemp("files")
    name = stem + suffix
    assume(name not in (".", "..") and len(os.fsencode(name)) <= 255)  # names no file system takes
    path = folder / name
    Image.fromarray(tile_image([RED])).save(path, format="PNG")  # ann's photo, whatever the ending says
    result = fake_cli("identify", "--json", "--gallery", base_gallery, "--", path)
    assert result.exit_code == 0, (name, result.stderr)
    answer = json.loads(result.stdout)
    assert answer["image"] == str(path) and [f["name"] for f in answer["faces"]] == ["ann"]
    in_folder = fake_cli("identify", "--json", "--gallery", base_gallery, folder)
    taken = not name.startswith(".") and Path(name).suffix.lower() in (".png", ".jpg")
    assert in_folder.exit_code == (0 if taken else 1)  # a folder with no image names: "no photos found"
    assert in_folder.stdout.count("\n") == taken
    before = dump(base_gallery)
    result = fake_cli("enroll", "--gallery", base_gallery, "--", "someone", path)
    assert result.exit_code == 0 and "duplicate" in result.stdout  # the same photo as ann's
    assert dump(base_gallery) == before


@pytest.mark.parametrize(
    "args",
    [
        ["identify", "nul\x00byte.png"],
        ["identify", "--annotate", "o\x00ut", "{photo}"],
        ["enroll", "x", "a\x00.png"],
        ["enroll", "--folders", "no\x00pe"],
        ["identify", "{photo}", "--gallery", "g\x00allery"],
        ["identify", "x" * 300 + ".png"],
        ["identify", "/".join(["y" * 250] * 20) + ".png"],
        ["identify", "{tmp}/../../../../../../../etc/passwd"],
        ["identify", "/dev/null"],
        ["identify", "{tmp}"],  # a folder with no photos in it
        ["enroll", "x", "{tmp}/missing.png"],
        ["enroll", "--folders", "{photo}"],
        ["enroll", "--folders", "x" * 300],
        ["enroll", "x", "{photo}", "--gallery", "{photo}"],  # a gallery where a file is
        ["people", "--gallery", "{tmp}/nowhere"],
        ["identify", "-x.png"],  # read as an option: a usage error
    ],
    ids=lambda a: repr(" ".join(a)[:40]),
)
def test_hostile_paths_are_clear_errors(base_gallery, tmp_path, args):
    photo = tmp_path / "photos" / "ann.png"
    args = [a.format(photo=photo, tmp=tmp_path / "photos" / "empty") for a in args]
    (tmp_path / "photos" / "empty").mkdir(exist_ok=True)
    before = dump(base_gallery)
    if "--gallery" not in args:
        args += ["--gallery", str(base_gallery)]
    result = fake_cli(*args)
    assert result.exit_code in (1, 2)
    lines = error_lines(result)
    if result.exit_code == 1:  # faceid's own errors: one line each, then at most a summary line
        assert 1 <= len(lines) <= 2 and lines[0].startswith(("faceid: ", "failed ")), lines
    else:  # usage errors, from the argument parser
        assert "Invalid value" in result.stderr or "No such option" in result.stderr
    assert dump(base_gallery) == before


def test_printable_escapes_what_would_split_or_disguise_a_line():
    from faceid.cli import printable

    assert printable("a\nb\rc\x00d\x1be\u202ef\tg") == "a\\nb\\rc\\x00d\\x1be\\u202ef\tg"
    assert printable("Zoë 👩\u200d💻 李") == "Zoë 👩\u200d💻 李"
    assert all(c in string.printable or ord(c) > 127 for c in printable("".join(map(chr, range(160)))))
