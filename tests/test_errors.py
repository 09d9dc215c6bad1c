"""The error tree: every class in faceid/errors.py and drawn in its docstring, raised where the
condition is found, and answered by class (the server's status), never by the message's words."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import numpy as np
import pytest

import faceid.errors as errors
from faceid.errors import FaceIDError

PACKAGE = Path(errors.__file__).resolve().parent


def error_classes() -> list[type[FaceIDError]]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_error_class_is_in_errors_py_and_its_tree():
    """No module defines an exception over a faceid error class but errors.py."""
    names = set(errors.__all__)
    assert all(issubclass(c, FaceIDError) for c in error_classes())
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & names:
                    elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert elsewhere == []
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or "")) | {"FaceIDError"}
    assert drawn == names


def test_the_tree_as_drawn_is_the_tree_of_the_classes():
    """Each class drawn under another is its subclass (the docstring does not lie)."""
    parents: dict[int, str] = {0: "FaceIDError"}
    for line in (errors.__doc__ or "").splitlines():
        found = re.search(r"[├└]── (\w+)", line)
        if not found:
            continue
        depth = found.start() // 4  # four characters a level, the first under FaceIDError
        parents[depth] = found.group(1)
        assert issubclass(getattr(errors, found.group(1)), getattr(errors, parents[depth - 1])), line


def test_moved_classes_are_still_where_they_were():
    from faceid import apikeys, distributed, migrate

    assert apikeys.KeyExistsError is errors.KeyExistsError
    assert apikeys.KeyNotFoundError is errors.KeyNotFoundError
    assert migrate.MigrationError is errors.MigrationError
    assert distributed.RayUnavailableError is errors.RayUnavailableError
    assert errors.MigrationError("m", [1]).unmigrated == [1]


#: What the server answers for each class (most specific class first in the server's table).
STATUS = {
    "ImageTooLargeError": 413,
    "UnsupportedImageError": 415,
    "ImageError": 422,
    "VideoError": 422,
    "PipelineError": 422,
    "FaceCountError": 422,
    "PersonNotFoundError": 404,
    "FaceNotFoundError": 404,
    "GroupNotFoundError": 404,
    "KeyNotFoundError": 404,
    "NameTakenError": 409,
    "KeyExistsError": 409,
    "ModelMismatchError": 409,
    "InvalidNameError": 400,
    "OptionError": 400,
    "GalleryBusyError": 503,
    "UncalibratedError": 409,  # the gallery's model has no measured threshold (a 1:1 call on FaceNet without a table)
}


@pytest.mark.parametrize("name", sorted(errors.__all__))
def test_each_error_class_maps_to_its_status(name):
    pytest.importorskip("fastapi")
    from faceid.server.errors import status_of

    kind = getattr(errors, name)
    args = ("a message", 2) if kind is errors.FaceCountError else ("a message",)
    assert status_of(kind(*args)) == STATUS.get(name, 500)


def test_the_status_is_the_class_s_not_the_words():
    pytest.importorskip("fastapi")
    from faceid.server.errors import status_of

    assert status_of(errors.InvalidNameError("'x' is already enrolled")) == 400  # the words say 409: the class 400
    assert status_of(errors.NameTakenError("taken")) == 409
    assert status_of(errors.ImageError("image is 9x9 = 81 pixels, more than the 1 faceid decodes")) == 422
    assert status_of(errors.ImageTooLargeError("big")) == 413
    assert status_of(errors.UnsupportedImageError("odd")) == 415
    assert status_of(ValueError("not an image")) == 500


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_raise_the_subclass_where_the_condition_is_found(tmp_path, monkeypatch):
    from faceid import images

    with pytest.raises(errors.UnsupportedImageError, match=r"^x\.txt: not an image"):
        images.read_image(b"plain text", name="x.txt")
    with pytest.raises(errors.ImageTooLargeError, match=r"^big\.png: image is 100x100 = 10000 pixels, more than"):
        images.read_image(png(100, 100), name="big.png", max_pixels=9999)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10)
    path = tmp_path / "long.png"
    path.write_bytes(png(4, 4))
    with pytest.raises(errors.ImageTooLargeError, match="bytes, more than the 10 faceid reads"):
        images.read_image(path)
    with pytest.raises(errors.ImageError) as caught:  # neither too large nor unsupported: the parent class
        images.read_image(tmp_path / "missing.png")
    assert type(caught.value) is errors.ImageError


def test_renaming_onto_someone_else_is_name_taken(any_gallery):
    """On each backend."""
    from conftest import KEY, unit_vectors

    from faceid.gallery import NewFace

    for name, seed in (("Ann", 1), ("Bo", 2)):
        any_gallery.add_faces(
            name, [NewFace(unit_vectors(seed, 1)[0], f"sha{seed}", (0, 0, 9, 9), 0.9)], embedding_key=KEY
        )
    with pytest.raises(errors.NameTakenError, match="'Bo' is already enrolled"):
        any_gallery.rename("Ann", "Bo")
    assert [p.name for p in any_gallery.people()] == ["Ann", "Bo"]


@pytest.mark.parametrize("name", sorted(errors.__all__))
def test_the_command_line_says_each_error_in_one_line(name, gallery_dir, monkeypatch):
    from conftest import fake_cli

    from faceid.gallery import Gallery

    Gallery(gallery_dir).close()
    kind = getattr(errors, name)
    args = (
        ("what went wrong, and how to fix it", 2)
        if kind is errors.FaceCountError
        else ("what went wrong, and how to fix it",)
    )

    def fail(self):
        raise kind(*args)

    monkeypatch.setattr(Gallery, "people", fail)
    result = fake_cli("people", "--gallery", gallery_dir)
    assert result.exit_code == 1
    assert result.stderr == "faceid: error: what went wrong, and how to fix it\n"


def test_models_list_says_missing_or_bad_by_the_class_not_the_words(monkeypatch):
    import json

    from conftest import cli

    from faceid import models

    def locate(name):
        if name == models.DEFAULT_MODEL:
            raise errors.ModelNotFoundError(f"{name}: no weights here")  # no "not found" in the words
        raise errors.ModelIntegrityError(f"{name}: a file was not found where its checksum says")

    monkeypatch.setattr(models, "locate", locate)
    rows = {r["name"]: r["state"] for r in map(json.loads, cli("models", "list", "--json").stdout.splitlines())}
    assert rows.pop(models.DEFAULT_MODEL).startswith("missing: ")
    assert rows and all(state.startswith("bad: ") for state in rows.values())
