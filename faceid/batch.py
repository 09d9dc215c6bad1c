"""Run the pipeline over many image files: decode ahead in threads, detect and embed in batches,
reuse cached results, and keep going past files that cannot be read."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from faceid.cache import EmbeddingCache
from faceid.errors import FaceIDError, ImageError
from faceid.images import IMAGE_SUFFIXES, LoadedImage, read_image
from faceid.pipeline import Face, Pipeline

__all__ = ["Processed", "iter_image_files", "process"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processed:
    """One input's outcome: the decoded image and its faces, or an error message."""

    source: str
    image: LoadedImage | None
    faces: list[Face] = field(default_factory=list)
    error: str | None = None


def iter_image_files(inputs: Iterable[str | os.PathLike], *, recursive: bool = True) -> Iterator[str]:
    """Expand files and folders into image file paths, in sorted order.

    Folders are walked depth first without recursion (any depth) and without following symbolic
    links to folders, so a link loop cannot hang it; a folder that cannot be listed is logged and
    skipped. Only names with an image ending are taken from folders; a file named directly is
    always taken, so that a bad one is reported rather than skipped.
    """
    for item in inputs:
        path = Path(item)
        try:
            is_dir = path.is_dir()
        except (OSError, ValueError):  # a name too long, say: reading it will report why
            is_dir = False
        if is_dir:
            yield from _walk(str(path), recursive)
        else:
            yield str(path)


def _walk(top: str, recursive: bool) -> Iterator[str]:
    """Image files under ``top``: a folder's files (sorted), then each subfolder's (sorted), like ``os.walk``."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                    continue
                if entry.is_symlink() and entry.is_dir():  # a link to a folder: not followed
                    continue
            except OSError:  # a link loop or a vanished entry: reading it reports why
                pass
            if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith("."):
                yield entry.path
        if recursive:
            stack.extend(reversed(subfolders))


def _detector_settings(pipeline: Pipeline) -> dict:
    return {"detector": getattr(pipeline.detector, "settings", repr(pipeline.detector))}


def _settings(pipeline: Pipeline) -> dict:
    return {"pipeline": pipeline.key.to_json(), **_detector_settings(pipeline)}


def process(
    sources: Sequence[str | os.PathLike],
    pipeline: Pipeline,
    *,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    on_done: Callable[[Processed], None] | None = None,
) -> Iterator[Processed]:
    """Yield a :class:`Processed` for every source, in order.

    Decoding of the next batch runs in threads while the current batch is detected and embedded.
    """
    key = EmbeddingCache.key_of(_settings(pipeline)) if cache is not None else ""
    detector_key = EmbeddingCache.key_of(_detector_settings(pipeline)) if cache is not None else ""
    names = [os.fspath(s) for s in sources]
    pipeline.expect(len(names))
    batches = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(_load, n) for n in batches[0]] if batches else []
        for b in range(len(batches)):
            loaded = [f.result() for f in pending]
            pending = [pool.submit(_load, n) for n in batches[b + 1]] if b + 1 < len(batches) else []
            for item in _run_batch(loaded, pipeline, cache, key, detector_key):
                if on_done is not None:
                    on_done(item)
                yield item


def _load(name: str) -> Processed:
    try:
        return Processed(name, read_image(name))
    except ImageError as exc:
        return Processed(name, None, error=str(exc))


def _run_batch(
    loaded: list[Processed], pipeline: Pipeline, cache: EmbeddingCache | None, key: str, detector_key: str = ""
) -> list[Processed]:
    out: list[Processed] = list(loaded)  # unreadable ones stay as they are
    todo: list[tuple[int, LoadedImage]] = []
    for i, item in enumerate(loaded):
        if item.image is None:
            continue
        cached = cache.get(item.image.sha256, key) if cache is not None else None
        if cached is not None:
            out[i] = Processed(item.source, item.image, cached)
        else:
            todo.append((i, item.image))
    if not todo:
        return out
    try:
        found: list[list[Face] | None] = list(
            _detect_and_embed(pipeline, [image for _, image in todo], cache, detector_key)
        )
    except FaceIDError:
        raise
    except Exception:  # one odd image must not sink the batch: run them one by one
        found = [_faces_or_none(pipeline, image, loaded[i].source) for i, image in todo]
    fresh = []
    for (i, image), faces in zip(todo, found):
        if faces is None:
            out[i] = Processed(loaded[i].source, image, error=f"{loaded[i].source}: the face pipeline failed on it")
        else:
            out[i] = Processed(loaded[i].source, image, faces)
            fresh.append((image.sha256, faces))
    if cache is not None and fresh:
        cache.put_many(fresh, key)
    return out


def _detect_and_embed(
    pipeline: Pipeline, images: list[LoadedImage], cache: EmbeddingCache | None, detector_key: str
) -> list[list[Face]]:
    """Faces of each image, reusing cached detections where a cache has them."""
    known = [cache.get_detections(image.sha256, detector_key) if cache is not None else None for image in images]
    missing = [i for i, found in enumerate(known) if found is None]
    if missing:
        fresh = pipeline.detect_many([images[i].pixels for i in missing])
        for i, found in zip(missing, fresh):
            known[i] = found
        if cache is not None:
            cache.put_detections([(images[i].sha256, known[i] or []) for i in missing], detector_key)
    return pipeline.embed_many([image.pixels for image in images], [found or [] for found in known])


def _faces_or_none(pipeline: Pipeline, image: LoadedImage, source: str) -> list[Face] | None:
    try:
        return pipeline.faces(image.pixels)
    except FaceIDError:
        raise
    except Exception:
        log.exception("face pipeline failed on %s", source)
        return None
