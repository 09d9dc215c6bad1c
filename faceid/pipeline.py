"""Detection, alignment and embedding as one object that keeps its models loaded.

``Pipeline.key`` names everything that changes an embedding (model, crop method and margin,
mirror averaging); a gallery stores it with its first embedding and refuses others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceid.align import crop_faces
from faceid.detect import Detection, Detector
from faceid.embed import Embedder
from faceid.embed_onnx import OnnxEmbedder
from faceid.models import DEFAULT_MODEL, get_spec

__all__ = ["DEFAULT_ALIGN", "DEFAULT_MARGIN", "DEFAULT_MIRROR", "Face", "Pipeline", "make_embedder"]

#: Defaults chosen by measurement on LFW (README, "Choosing the defaults").
DEFAULT_ALIGN = "margin"
DEFAULT_MARGIN = 0.1
DEFAULT_MIRROR = False


@dataclass(frozen=True)
class Face:
    """A detected face and its ``(D,)`` float32 unit embedding."""

    detection: Detection
    embedding: np.ndarray = field(repr=False)


def make_embedder(model: str = DEFAULT_MODEL, *, mirror: bool = False, frozen: bool = False) -> Embedder | OnnxEmbedder:
    """The embedder the model's spec asks for: FaceNet's TensorFlow one or the onnxruntime one."""
    if get_spec(model).runtime == "onnxruntime":
        return OnnxEmbedder(model, mirror=mirror)
    return Embedder(model, mirror=mirror, frozen=frozen)


class Pipeline:
    """Find faces in images and embed them.

    Args:
        model: embedding model name (see ``faceid models list``); its spec says which runtime
            runs it (TensorFlow for FaceNet, onnxruntime for SFace and ArcFace).
        align: ``"margin"``, ``"similarity"`` or ``"arcface-112"`` (see :mod:`faceid.align`)
            [default: the model's own, ``spec.alignment``].
        margin: crop margin for ``"margin"``, a fraction of the box.
        mirror: average each face's embedding with its mirror image's.
        frozen: run FaceNet as a frozen graph from the start: a few seconds more to load, about
            25% faster per face; for long-lived processes (runs of 2,000+ photos switch to it anyway).
        detector, embedder: replace the MTCNN detector or the FaceNet embedder (tests use fakes);
            anything with the same methods will do.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        align: str | None = None,
        margin: float = DEFAULT_MARGIN,
        mirror: bool = DEFAULT_MIRROR,
        min_face_size: int = 20,
        frozen: bool = False,
        detector: Detector | None = None,
        embedder: Embedder | OnnxEmbedder | None = None,
    ) -> None:
        self.spec = get_spec(model)
        self.align = align if align is not None else self.spec.alignment
        self.margin = float(margin)
        self.mirror = bool(mirror)
        self.detector = detector if detector is not None else Detector(min_face_size=min_face_size)
        self.embedder = embedder if embedder is not None else make_embedder(model, mirror=mirror, frozen=frozen)

    @property
    def key(self) -> dict:
        """What made this pipeline's embeddings; galleries refuse to mix keys."""
        return {
            "model": self.spec.name,
            "dimension": self.spec.dimension,
            "align": self.align,
            "margin": self.margin if self.align == "margin" else None,
            "mirror": self.mirror,
        }

    def expect(self, images: int) -> None:
        """Told that a run of ``images`` photos is coming, so the embedder can prepare for it."""
        expect = getattr(self.embedder, "expect", None)
        if expect is not None:
            expect(images)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return self.detector.detect_many(images)

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """``(len(detections), D)`` float32 embeddings of the given faces of one image."""
        crops = crop_faces(image, detections, method=self.align, margin=self.margin, size=self.spec.input_size)
        return self.embedder.embed(crops)

    def faces_many(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Every face of every image, embedded in one batch across the images."""
        return self.embed_many(images, self.detect_many(images))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[list[Face]]:
        """Embed the given faces of each image, in one batch across the images."""
        crops = [
            crop_faces(image, found, method=self.align, margin=self.margin, size=self.spec.input_size)
            for image, found in zip(images, detections)
        ]
        size = self.spec.input_size
        stacked = np.concatenate(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
        vectors = self.embedder.embed(stacked)
        out, start = [], 0
        for found in detections:
            out.append([Face(d, vectors[start + j]) for j, d in enumerate(found)])
            start += len(found)
        return out

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face of one ``(H, W, 3)`` uint8 image, most confident first."""
        return self.faces_many([image])[0]
