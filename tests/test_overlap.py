"""``process`` with detection beside embedding (the default) gives exactly what the sequential run
gives: the same outcomes in the same order, the same errors, the same boxes and embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, make_fake_pipeline, save_png, tile_image

from faceid.batch import iter_image_files, process


def _outcomes(sources, pipeline, *, overlap: bool, batch_size: int) -> list[tuple]:
    out = []
    for item in process(sources, pipeline, batch_size=batch_size, overlap=overlap):
        faces = [(f.detection, f.embedding) for f in item.faces]
        out.append((item.source, item.image is not None, item.error, faces))
    return out


def _assert_same(a: list[tuple], b: list[tuple], *, atol: float = 0.0) -> None:
    assert [(s, read, error) for s, read, error, _ in a] == [(s, read, error) for s, read, error, _ in b]
    for (source, _, _, faces_a), (_, _, _, faces_b) in zip(a, b):
        assert [d for d, _ in faces_a] == [d for d, _ in faces_b], source
        for (_, va), (_, vb) in zip(faces_a, faces_b):
            np.testing.assert_allclose(va, vb, rtol=0, atol=atol, err_msg=source)


def _mixed_folder(tmp_path: Path) -> list[str]:
    """Tiled images (the fake detector's faces), unreadable files and one without a face."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(23):
        colours = [tuple(int(c) for c in rng.integers(0, 255, 3)) for _ in range(1 + i % 3)]
        paths.append(str(save_png(tmp_path / f"p{i:02d}.png", tile_image(colours))))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths.insert(5, str(tmp_path / "broken.jpg"))
    paths.insert(11, str(tmp_path / "missing.png"))
    paths.insert(17, str(save_png(tmp_path / "blank.png", np.full((40, 40, 3), 9, np.uint8))))
    return paths


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_overlapped_run_equals_the_sequential_one(tmp_path, batch_size):
    paths = _mixed_folder(tmp_path)
    pipeline = make_fake_pipeline()
    sequential = _outcomes(paths, pipeline, overlap=False, batch_size=batch_size)
    overlapped = _outcomes(paths, pipeline, overlap=True, batch_size=batch_size)
    _assert_same(sequential, overlapped)
    assert sum(error is not None for _, _, error, _ in overlapped) == 2
    assert sum(len(faces) for *_, faces in overlapped) == sum(1 + i % 3 for i in range(23)) + 1  # blank.png: one tile


def test_a_bug_in_the_detection_thread_stops_the_run(tmp_path):
    """A programming error in the detection stage (run in its own thread) reaches the caller."""
    paths = _mixed_folder(tmp_path)
    pipeline = make_fake_pipeline()

    def broken(images):
        raise TypeError("a bug")

    pipeline.detector.detect_many = broken  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="a bug"):
        list(process(paths, pipeline, batch_size=4))


def test_stopping_early_leaves_no_thread_running(tmp_path):
    import threading

    paths = _mixed_folder(tmp_path)
    run = process(paths, make_fake_pipeline(), batch_size=2)
    next(run)
    run.close()
    assert not [t for t in threading.enumerate() if t.name.startswith(("faceid-detect", "faceid-decode"))]


def _real_photos(data: Path | None) -> list[str]:
    photos = sorted(iter_image_files([SAMPLES]))
    if data is not None and (data / "lfw").is_dir():  # LFW: the first 40 photos of sorted folders
        photos += sorted(iter_image_files([data / "lfw"]))[:40]
    return photos


@pytest.mark.model
@pytest.mark.parametrize("model", ["facenet-20170512-110547", "sface"])
def test_overlap_gives_the_same_faces_with_the_real_models(model, optional_data, tmp_path):
    from faceid import models
    from faceid.errors import ModelNotFoundError
    from faceid.pipeline import Pipeline

    try:
        models.locate(model)
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    photos = _real_photos(optional_data)
    photos.insert(3, str(tmp_path / "broken.jpg"))
    pipeline = Pipeline(model)
    sequential = _outcomes(photos, pipeline, overlap=False, batch_size=16)
    overlapped = _outcomes(photos, pipeline, overlap=True, batch_size=16)
    _assert_same(sequential, overlapped, atol=1e-6)
    assert sum(error is not None for _, _, error, _ in overlapped) == 1
    assert sum(len(faces) for *_, faces in overlapped) >= len(photos) - 1
