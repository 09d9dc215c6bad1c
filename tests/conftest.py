"""Shared fixtures: temporary galleries, the committed sample photos, ../shared/data when present,
fakes for the detector and embedder (most tests run without TensorFlow), and the real pipeline
for tests marked ``model``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from faceid.detect import Detection
from faceid.embedding_key import EmbeddingKey

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "faceid" / "samples"


def shared_data() -> Path | None:
    """``$FACEID_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("FACEID_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if (path / "README.md").is_file() else None


@pytest.fixture(scope="session")
def data() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("../shared/data is not here (set FACEID_DATA to the evaluation data folder)")
    return path


@pytest.fixture(scope="session")
def optional_data() -> Path | None:
    """The evaluation data folder if present, else ``None`` (for tests that also work without it)."""
    return shared_data()


@pytest.fixture
def gallery_dir(tmp_path: Path) -> Path:
    return tmp_path / "gallery"


@pytest.fixture
def gallery(gallery_dir: Path):
    from faceid.gallery import Gallery

    with Gallery(gallery_dir) as g:
        yield g


# -- both gallery backends ---------------------------------------------------------------------------


def milvus_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pymilvus", "milvus_lite"))


#: for tests that need milvus-lite (the ``milvus`` extra, which `make setup` and CI install)
needs_milvus = pytest.mark.skipif(
    not milvus_installed(), reason="the milvus extra is not installed: pip install 'faceid[milvus]'"
)

# -- a real Milvus server: the milvus==2.3.5 wheel's standalone binary, in .venv-milvus -------------


def milvus_server_python() -> Path | None:
    """The milvus virtualenv's Python (``make milvus-server`` makes it), or None."""
    from faceid.milvus_standalone import milvus_python

    return milvus_python(ROOT)


#: for tests against a real Milvus server; deselect them with -m "not milvus_server"
needs_milvus_server = [
    pytest.mark.milvus_server,
    pytest.mark.skipif(
        not milvus_installed() or milvus_server_python() is None,
        reason="no Milvus server here: `make milvus-server` installs milvus==2.3.5 in .venv-milvus",
    ),
]

_server = None  # the session's server, started on first use, stopped by pytest_sessionfinish
_server_names: list[str] = []  # galleries made on it by the running test, dropped after it


def milvus_server():
    """The session's Milvus server (a fresh data folder, a network namespace of its own where one
    can be made), started the first time a test asks for it; its listening sockets go to the log."""
    global _server
    if _server is None:
        import sys
        import tempfile

        from faceid.milvus_standalone import StandaloneMilvus

        python = milvus_server_python()
        if python is None:
            pytest.skip("no Milvus server here: `make milvus-server` installs milvus==2.3.5 in .venv-milvus")
        folder = Path(tempfile.mkdtemp(prefix="faceid-milvus-server-"))
        server = StandaloneMilvus(folder, python)
        try:
            server.start()
        except BaseException:
            server.close()
            raise
        _server = server
        print(f"\nMilvus {server.version} standalone at {server.uri}, data in {folder}", file=sys.__stderr__)
        print(server.listening(), file=sys.__stderr__)
    return _server


#: Every server variant runs by default (CI runs them all: 75 tests in about 10 minutes at load 2). With
#: FACEID_MILVUS_SERVER_SUITES=reduced only these run on the server, by file (``None``: all of the file's
#: server variants; a tuple, only those tests): what reaches the server the way a user does, each
#: command once, in about half the time. Timed with `pytest --durations`: docs/milvus-server.md.
SERVER_REDUCED: dict[str, tuple[str, ...] | None] = {
    "test_gallery_contract.py": None,
    "test_milvus_server.py": None,
    "test_milvus_round_trips.py": None,
    "test_interrupted.py": (  # Milvus's crash suite: kills through an enrolment (a keep is the same code)
        "test_an_enrolment_killed_at_every_write_is_completed_or_rolled_back",
        "test_faces_of_a_half_written_enrolment_are_taken_out_with_the_person_it_made",
    ),
    "test_cli.py": ("test_people_rename_remove_log", "test_errors_are_one_line_and_exit_1"),
    "test_unknown_cli.py": ("test_the_review_loop_from_an_empty_gallery",),
}


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("FACEID_MILVUS_SERVER_SUITES", "all") != "reduced":
        return
    later = pytest.mark.skip(
        reason="FACEID_MILVUS_SERVER_SUITES=reduced: this test's Milvus-server variant is not in it"
    )
    for item in items:
        if not item.get_closest_marker("milvus_server"):
            continue
        chosen = SERVER_REDUCED.get(item.path.name, ())
        if chosen is not None and getattr(item, "originalname", item.name) not in chosen:
            item.add_marker(later)


def pytest_sessionfinish(session, exitstatus) -> None:
    global _server
    if _server is not None:
        import shutil

        server, _server = _server, None
        server.close()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def server_gallery(folder: Path) -> str:
    """A new gallery on the session's server, named after ``folder`` (dropped after the test)."""
    name = "t" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    _server_names.append(name)
    return milvus_server().gallery(name)


@pytest.fixture(autouse=True)
def _drop_server_galleries():
    """Drop the collections of the galleries a test made on the server, so they do not pile up."""
    yield
    if _server_names and _server is not None and _server.pid is not None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=_server.uri, timeout=30)
        try:
            for collection in client.list_collections():
                if collection.split("_", 1)[0] in _server_names:
                    client.drop_collection(collection)
        finally:
            client.close()
    _server_names.clear()


#: the gallery backends every behaviour test runs against
BACKENDS = [
    "local",
    pytest.param("milvus-lite", marks=needs_milvus),
    pytest.param("milvus-server", marks=needs_milvus_server),
]


def gallery_address(backend: str, folder: Path) -> str:
    """Where a gallery of ``backend`` lives inside ``folder``: what ``--gallery`` and ``open_gallery`` take."""
    if backend == "milvus-server":
        return server_gallery(folder)
    return str(folder / "gallery") if backend == "local" else f"milvus-lite:{folder / 'gallery.db'}"


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def gallery_spec(backend: str, tmp_path: Path) -> str:
    """A new gallery's address, once for each backend (a folder; ``milvus-lite:...db``)."""
    return gallery_address(backend, tmp_path)


@pytest.fixture
def any_gallery(gallery_spec: str):
    """An open, empty gallery, once for each backend: the behaviour tests that hold for both."""
    from faceid.gallery import open_gallery

    with open_gallery(gallery_spec) as g:
        yield g


# -- fakes ------------------------------------------------------------------------------------------


class FakeDetector:
    """Finds one face per uniform-coloured tile: images are made by :func:`tile_image`.

    A tile of colour (0, 0, 0) is background. Each non-background tile is one face.
    """

    settings = {"fake": True}

    def __init__(self, tile: int = 40) -> None:
        self.tile = tile
        self.calls = 0

    def detect_many(self, images):
        self.calls += 1
        return [self.detect(image) for image in images]

    def detect(self, image):
        out = []
        t = self.tile
        for y in range(0, image.shape[0] - t + 1, t):
            for x in range(0, image.shape[1] - t + 1, t):
                patch = image[y : y + t, x : x + t]
                if patch.max() > 0:
                    lm = ((x + 12, y + 15), (x + 28, y + 15), (x + 20, y + 22), (x + 14, y + 30), (x + 26, y + 30))
                    out.append(Detection((x, y, t, t), 0.99, tuple((float(a), float(b)) for a, b in lm)))
        return out


class FakeEmbedder:
    """Embeds a crop by the colour at its centre: the same colour is the same person.

    The vector is a random unit vector seeded by the (quantised) colour, so different colours
    give nearly orthogonal vectors and the same colour the same vector.
    """

    def __init__(self, dimension: int = 128) -> None:
        self.dimension = dimension  # no input_size: it embeds the crops of any model
        self.calls = 0

    def embed(self, crops):
        self.calls += 1
        rows = []
        for crop in crops:
            h, w = crop.shape[:2]
            centre = crop[h * 2 // 5 : h * 3 // 5, w * 2 // 5 : w * 3 // 5]
            colour = tuple(int(c) // 16 for c in centre.reshape(-1, 3).mean(axis=0).round())
            seed = int(hashlib.sha256(repr(colour).encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).normal(size=self.dimension).astype(np.float32)
            rows.append(v)
        out = np.array(rows, dtype=np.float32).reshape(len(crops), self.dimension)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def tile_image(colours, tile: int = 40) -> np.ndarray:
    """An image with one uniform tile per colour, left to right (one fake 'face' each)."""
    image = np.zeros((tile, tile * max(1, len(colours)), 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        image[:, i * tile : (i + 1) * tile] = colour
    return image


def save_png(path: Path, pixels: np.ndarray) -> Path:
    """``pixels`` as a PNG file (lossless) at ``path``, whatever its name ends with."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def make_fake_pipeline(key=None):
    """:meth:`Pipeline.from_key <faceid.pipeline.Pipeline.from_key>` with the fake detector and embedder.

    The pipeline maker to hand the CLI (its context object, see ``faceid.cli._common.new_pipeline``), or
    to call for a library function's ``pipeline`` argument; ``key`` an ``EmbeddingKey`` or None.
    """
    from faceid.pipeline import Pipeline

    return Pipeline.from_key(key, detector=FakeDetector(), embedder=FakeEmbedder())


@pytest.fixture
def fake_pipeline():
    return make_fake_pipeline()


# -- the command line -------------------------------------------------------------------------------


def cli(*args, models=None):
    """Run the CLI in-process; fail the test on a traceback, return the result.

    ``models``: the pipeline maker the commands use (None: ``Pipeline.from_key``, the real models).
    """
    from typer.testing import CliRunner

    from faceid.cli import app

    result = CliRunner().invoke(app, [os.fspath(a) if isinstance(a, Path) else a for a in args], obj=models)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    return result


def fake_cli(*args):
    """Run the CLI in-process with the fake models (see :func:`cli`)."""
    return cli(*args, models=make_fake_pipeline)


# -- embeddings ---------------------------------------------------------------------------------------

#: The embedding key of faceid's default model and settings: the key of tests that add vectors
#: straight to a gallery.
KEY = EmbeddingKey.for_model()


def unit_vectors(seed, n: int, dimension: int = KEY.dimension) -> np.ndarray:
    """``(n, dimension)`` float32 random unit rows; the same for the same seed (an int or a Generator)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    v = rng.normal(size=(n, dimension)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- the real models ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_pipeline():
    """The MTCNN + FaceNet pipeline (named: SFace is the default of new galleries), loaded once per test session."""
    from faceid.errors import ModelNotFoundError
    from faceid.models import FACENET, locate
    from faceid.pipeline import Pipeline

    try:
        locate(FACENET)
    except ModelNotFoundError as exc:
        pytest.skip(f"FaceNet weights are not installed ({exc})")
    return Pipeline(FACENET)
