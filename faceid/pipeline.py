"""Detection, alignment and embedding as one object that keeps its models loaded.

``Pipeline.key`` (an :class:`~faceid.embedding_key.EmbeddingKey`) names everything that changes an
embedding (model and weights, crop method and crop margin, mirror averaging); a gallery stores it
with its first embedding and refuses others, and :meth:`Pipeline.from_key` rebuilds the pipeline
that made a gallery's embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from faceid import _check
from faceid.align import crop_faces
from faceid.detect import Detection, Detector
from faceid.detectors import FaceDetector, detector_name, make_detector
from faceid.embed import Embedder
from faceid.embed_onnx import ONNX_RUNTIMES, OnnxEmbedder
from faceid.embedding_key import DEFAULT_ALIGN, DEFAULT_CROP_MARGIN, DEFAULT_MIRROR, EmbeddingKey
from faceid.errors import OptionError
from faceid.models import ModelSpec, get_spec
from faceid.results import Face  # re-exported: Face lives on the ground floor

__all__ = ["DEFAULT_ALIGN", "DEFAULT_CROP_MARGIN", "DEFAULT_MIRROR", "Face", "Pipeline", "make_embedder"]


def make_embedder(model: str | None = None, *, mirror: bool = False, frozen: bool = False) -> Embedder | OnnxEmbedder:
    """The embedder the model's spec asks for (default: :data:`faceid.registry.DEFAULT_MODEL`): FaceNet's
    TensorFlow one or the ONNX one (OpenCV's DNN module or onnxruntime)."""
    model = model or _default_model()
    if get_spec(model).runtime in ONNX_RUNTIMES:
        return OnnxEmbedder(model, mirror=mirror)
    return Embedder(model, mirror=mirror, frozen=frozen)


class Pipeline:
    """Find faces in images and embed them.

    Args:
        model: embedding model name (see ``faceid models list``); its spec says which runtime
            runs it (TensorFlow for FaceNet, OpenCV's DNN module for SFace, onnxruntime for ArcFace) [default:
            :data:`faceid.registry.DEFAULT_MODEL`, read when the pipeline is made].
        align: ``"margin"``, ``"similarity"`` or ``"arcface-112"`` (see :mod:`faceid.align`)
            [default: the model's own, ``spec.alignment``].
        crop_margin: for ``"margin"``, how far the crop extends past the detected box, a fraction of
            the box (not the decision margin of :mod:`faceid.identify`).
        mirror: average each face's embedding with its mirror image's.
        frozen: run FaceNet as a frozen graph from the start: a few seconds more to load, about
            25% faster per face; for long-lived processes (runs of 2,000+ photos switch to it anyway).
        detector: ``"mtcnn"`` (the default) or ``"yunet"`` (see :mod:`faceid.detectors`), or a
            detector object (tests use fakes).
        embedder: replace the model's embedder (tests use fakes); for both, anything with the
            same methods will do (an embedder's ``dimension``, ``input_size``
            and ``mirror``, where it has them, must agree with ``model`` and ``mirror``).

    Raises:
        EmbeddingKeyError: an unknown crop method, or a crop margin outside 0-1 (checked by the key).
        OptionError: another option is out of range or of the wrong kind.
        ModelError: ``model`` is not a registered model.

    Every option is checked here, not on the first image.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        align: str | None = None,
        crop_margin: float = DEFAULT_CROP_MARGIN,
        mirror: bool = DEFAULT_MIRROR,
        min_face_size: int = 20,
        frozen: bool = False,
        detector: str | FaceDetector | Detector | None = None,
        embedder: Embedder | OnnxEmbedder | None = None,
    ) -> None:
        model = model or _default_model()
        self.spec = get_spec(model)
        _check.boolean("Pipeline", "mirror", mirror)  # before the key, which would take bool("no")
        _check.boolean("Pipeline", "frozen", frozen)
        _check.integer("Pipeline", "min_face_size", min_face_size, low=4)
        if detector is None or isinstance(detector, str):
            detector = make_detector(detector, min_face_size=min_face_size)
        #: ``"mtcnn"`` or ``"yunet"``: the detector whose landmarks align this pipeline's faces.
        self.detector_name = detector_name(detector)
        self.detector = detector
        self.key = EmbeddingKey.for_model(
            model, align=align, crop_margin=crop_margin, mirror=mirror, detector=self.detector_name
        )
        self.align = self.key.align
        self.crop_margin = self.key.crop_margin if self.key.crop_margin is not None else DEFAULT_CROP_MARGIN
        self.mirror = self.key.mirror
        self.embedder = embedder if embedder is not None else make_embedder(model, mirror=self.mirror, frozen=frozen)
        _check_embedder(self.embedder, self.spec, self.mirror)

    @classmethod
    def from_key(cls, key: EmbeddingKey | None, **options) -> Pipeline:
        """The pipeline that makes embeddings of ``key`` (faceid's defaults for ``None``, a new gallery).

        ``options`` are the other keyword arguments of :class:`Pipeline` (``frozen``, ``detector``, ...).
        The detector is the key's; a detector object given in ``options`` (a test's fake) stands in
        for it, and a detector name that contradicts the key is refused.

        Raises:
            OptionError: ``detector`` names another detector than the key's.
        """
        if key is None:
            return cls(**options)
        margin = key.crop_margin if key.crop_margin is not None else DEFAULT_CROP_MARGIN
        detector = options.pop("detector", None)
        if isinstance(detector, str) and detector != key.detector:
            raise OptionError(
                f"these embeddings were aligned with {key.detector}'s landmarks; --detector {detector} contradicts "
                f"them (leave --detector out, or use a new gallery)"
            )
        pipeline = cls(
            key.model,
            align=key.align,
            crop_margin=margin,
            mirror=key.mirror,
            detector=key.detector if detector is None else detector,
            **options,
        )
        if pipeline.key != key and pipeline.key.detector != key.detector and not isinstance(detector, str):
            pipeline.key = replace(pipeline.key, detector=key.detector)  # a fake stands in for the key's detector
            pipeline.detector_name = key.detector
        return pipeline

    def expect(self, images: int) -> None:
        """Told that a run of ``images`` photos is coming, so the embedder can prepare for it."""
        expect = getattr(self.embedder, "expect", None)
        if expect is not None:
            expect(images)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image; an image where none is found is tried again padded (a tight face
        crop: :mod:`faceid.tight`)."""
        from faceid.tight import detect_padded

        return detect_padded(self.detector, images)

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """``(len(detections), D)`` float32 embeddings of the given faces of one image."""
        crops = crop_faces(image, detections, method=self.align, margin=self.crop_margin, size=self.spec.input_size)
        return self.embedder.embed(crops)

    def faces_many(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Every face of every image, embedded in one batch across the images."""
        return self.embed_many(images, self.detect_many(images))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[list[Face]]:
        """Embed the given faces of each image, in one batch across the images."""
        crops = [
            crop_faces(image, found, method=self.align, margin=self.crop_margin, size=self.spec.input_size)
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


def _default_model() -> str:
    """The model of new galleries, read when it is needed: one constant decides it."""
    from faceid import registry

    return registry.DEFAULT_MODEL


def _check_embedder(embedder: object, spec: ModelSpec, mirror: bool) -> None:
    """Refuse an embedder whose vectors would not be what the pipeline's key says."""
    for name, wanted in (("dimension", spec.dimension), ("input_size", spec.input_size), ("mirror", mirror)):
        got = getattr(embedder, name, wanted)
        if got != wanted:
            raise OptionError(
                f"Pipeline: the embedder's {name} is {got!r}, but model {spec.name} with these options needs {wanted!r}"
            )
