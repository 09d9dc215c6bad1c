"""Face detection with MTCNN (mtcnn 1.0, weights inside its wheel).

The only module that reads mtcnn's dicts. Photos are resized for detection so that the smallest
face asked for is 20 px, MTCNN's own safe pyramid start, and the longer side is at most
``max_side``; boxes and landmarks are mapped back to the original pixels. Images of the same
size are detected together, which is several times faster per photo.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from faceid import _check
from faceid.errors import OptionError, PipelineError
from faceid.results import Detection  # re-exported: Detection lives on the ground floor

__all__ = ["Detection", "Detector"]

log = logging.getLogger(__name__)

_MTCNN_FACE = 20  # min_face_size passed to mtcnn: its pyramid is known to stay valid there
_MIN_SIDE = 24  # below this (after resizing) no face fits MTCNN's first network

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class Detector:
    """MTCNN over batches of images.

    Args:
        min_face_size: smallest face to find, in pixels of the original image.
        min_confidence: faces scored below this by MTCNN's last stage are dropped.
        max_side: longer side of the image that detection runs on; larger photos are downscaled.
        batch_size: how many same-sized images go into one MTCNN call.
        thresholds: MTCNN's per-stage thresholds (PNet, RNet, ONet).
    """

    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        min_confidence: float = 0.8,
        max_side: int = 1600,
        batch_size: int = 16,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
    ) -> None:
        owner = "Detector"
        self.min_face_size = _check.integer(owner, "min_face_size", min_face_size, low=4)
        self.min_confidence = _check.number(owner, "min_confidence", min_confidence, low=0.0, high=1.0)
        self.max_side = _check.integer(owner, "max_side", max_side, low=_MIN_SIDE)
        self.batch_size = _check.integer(owner, "batch_size", batch_size, low=1)
        if not isinstance(thresholds, (tuple, list)) or len(thresholds) != 3:
            raise OptionError(f"{owner}: thresholds must be three numbers (PNet, RNet, ONet), got {thresholds!r}")
        pnet, rnet, onet = (_check.number(owner, "thresholds", t, low=0.0, high=1.0) for t in thresholds)
        self.thresholds = (pnet, rnet, onet)
        self._mtcnn = None

    @property
    def settings(self) -> dict:
        return {
            "min_face_size": self.min_face_size,
            "min_confidence": self.min_confidence,
            "max_side": self.max_side,
            "thresholds": list(self.thresholds),
        }

    def _model(self):
        if self._mtcnn is None:
            self._mtcnn = _shared_mtcnn()
        return self._mtcnn

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, most confident first."""
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (same order), each list most confident first."""
        results: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for i, image in enumerate(images):
            scale = self._scale(image.shape[0], image.shape[1])
            small = _resize(image, scale)
            if min(small.shape[:2]) < _MIN_SIDE:
                continue
            groups[small.shape].append((i, small, scale))
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                # float32 in: mtcnn then normalises and crops in float32 rather than float64,
                # 16% less CPU per 250x250 photo, the same boxes (faceid bench, detection)
                raw = self._run([np.asarray(small, dtype=np.float32) for _, small, _ in chunk])
                for (i, _, scale), faces in zip(chunk, raw):
                    h, w = images[i].shape[:2]
                    results[i] = self._convert(faces, scale, w, h)
        return results

    def _scale(self, height: int, width: int) -> float:
        return min(_MTCNN_FACE / self.min_face_size, self.max_side / max(height, width))

    def _run(self, batch: list[np.ndarray]) -> list[list[dict]]:
        """mtcnn's faces for each image of ``batch`` (same-sized images).

        Raises:
            PipelineError: mtcnn raised a ValueError, or returned something other than one list of
                face dicts per image. Its empty pyramid is not one of these: faceid's PNet stage
                returns no boxes for it, and images below ``_MIN_SIDE`` are not run at all.
        """
        pnet, rnet, onet = self.thresholds
        size = "{}x{}".format(*batch[0].shape[1::-1])
        try:
            out = self._model().detect_faces(
                batch if len(batch) > 1 else batch[0],
                min_face_size=_MTCNN_FACE,
                threshold_pnet=pnet,
                threshold_rnet=rnet,
                threshold_onet=onet,
            )
        except ValueError as exc:
            log.error("MTCNN failed on %d %s image(s)", len(batch), size, exc_info=True)
            raise PipelineError(f"MTCNN failed on a {size} image: {exc}") from exc
        result = [out] if len(batch) == 1 else out
        problem = _malformed(result, len(batch))
        if problem:
            log.error(
                "MTCNN returned a result that does not fit a batch of %d %s image(s): %s", len(batch), size, problem
            )
            raise PipelineError(f"MTCNN returned a result that does not fit ({problem}) for a {size} image")
        return result

    def _convert(self, faces: list[dict], scale: float, width: int, height: int) -> list[Detection]:
        detections = []
        for face in faces:
            confidence = float(face["confidence"])
            if confidence < self.min_confidence:
                continue
            x, y, w, h = (float(v) / scale for v in face["box"])
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(width, round(x + w)), min(height, round(y + h))
            if x1 - x0 < 2 or y1 - y0 < 2 or max(w, h) < self.min_face_size:
                continue
            points = tuple(
                (float(face["keypoints"][k][0]) / scale, float(face["keypoints"][k][1]) / scale) for k in LANDMARKS
            )
            detections.append(Detection(box=(x0, y0, x1 - x0, y1 - y0), confidence=confidence, landmarks=points))
        detections.sort(key=lambda d: -d.confidence)
        return detections


def _malformed(result: object, images: int) -> str:
    """What is wrong with mtcnn's result for ``images`` images ("" if nothing): it must be one list
    of face dicts (box, confidence, keypoints) per image."""
    if not isinstance(result, list) or len(result) != images:
        got = (
            f"{type(result).__name__} of {len(result)}" if isinstance(result, (list, tuple)) else type(result).__name__
        )
        return f"expected a list of {images} face lists, got a {got}"
    for faces in result:
        if not isinstance(faces, list):
            return f"expected a list of faces per image, got a {type(faces).__name__}"
        for face in faces:
            if not isinstance(face, dict) or not {"box", "confidence", "keypoints"} <= face.keys():
                return f"a face without box, confidence and keypoints: {str(face)[:80]}"
            box, points = face["box"], face["keypoints"]
            if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
                return f"a face whose box is not 4 numbers: {str(face)[:80]}"
            if not isinstance(points, dict) or not set(LANDMARKS) <= points.keys():
                return f"a face without the five landmarks: {str(face)[:80]}"
    return ""


_MTCNN = None


def _shared_mtcnn():
    """One MTCNN per process: its three networks are stateless and take seconds to build.

    Two changes to how mtcnn 1.0 runs them, neither changing what they compute (detections
    agree to float rounding; ``faceid bench`` measures the gain):

    - each network is a ``tf.function`` over any image size, instead of an eager Keras call per
      pyramid level and stage, whose per-call overhead dominated small photos;
    - the image pyramid is resized with OpenCV's area interpolation instead of TensorFlow's
      (the same area average, equal within 4e-5 on [-1, 1] pixels, several times faster).
    """
    global _MTCNN
    if _MTCNN is None:
        from faceid._tf import quiet_tensorflow

        quiet_tensorflow("mtcnn")
        import tensorflow as tf
        from mtcnn import MTCNN
        from mtcnn.stages import StageONet, StageRNet

        mtcnn = MTCNN(stages=[_pnet_stage_class()(), StageRNet(), StageONet()], device="CPU:0")
        for stage in mtcnn.stages:
            stage._model = tf.function(
                stage._model, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], reduce_retracing=True
            )
        _MTCNN = mtcnn
    return _MTCNN


def _pnet_stage_class():
    """mtcnn's PNet stage with the pyramid resized by OpenCV (defined here so mtcnn loads only when used)."""
    from mtcnn.stages import StagePNet
    from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
    from mtcnn.utils.images import build_scale_pyramid

    class PNetStage(StagePNet):
        def __call__(
            self,
            images_normalized,
            images_oshapes,
            min_face_size=20,
            min_size=12,
            scale_factor=0.709,
            threshold_pnet=0.6,
            nms_pnet1=0.5,
            nms_pnet2=0.7,
            **kwargs,
        ):
            # As mtcnn.stages.stage_pnet.StagePNet.__call__, but for the resize of each level.
            scales_groups = [
                build_scale_pyramid(shape[1], shape[0], min_face_size=min_face_size, scale_factor=scale_factor)
                for shape in images_oshapes
            ]
            scales = scales_groups[int(np.argmax([x.shape[0] for x in scales_groups]))]
            batch = np.asarray(images_normalized)
            batch_size = batch.shape[0]
            outputs = [self._model(_area_resize(batch, scale)) for scale in scales]
            proposals = [generate_bounding_box(out[0], out[1], threshold_pnet) for out in outputs]
            upscaled = [upscale_bboxes(b, np.asarray([scale] * batch_size)) for b, scale in zip(proposals, scales)]
            per_scale = [
                smart_nms_from_bboxes(b, threshold=nms_pnet1, method="union", initial_sort=False) for b in upscaled
            ]
            bboxes = np.concatenate(per_scale, axis=0) if per_scale else np.empty((0, 6))
            bboxes = smart_nms_from_bboxes(bboxes, threshold=nms_pnet2, method="union", initial_sort=True)
            return resize_to_square(bboxes)

    return PNetStage


def _area_resize(batch: np.ndarray, scale: float) -> np.ndarray:
    """``(B, H, W, 3)`` images scaled by ``scale`` with area averaging, as float32.

    The size is truncated as ``tf.image.resize`` truncates mtcnn's float sizes.
    """
    import cv2

    height, width = (int(v) for v in np.asarray(batch.shape[1:3]) * scale)
    out = np.empty((batch.shape[0], height, width, 3), dtype=np.float32)
    for i, image in enumerate(batch):
        out[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return out


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-6:
        return image
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)
