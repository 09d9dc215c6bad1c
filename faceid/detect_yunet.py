"""Face detection with YuNet (OpenCV Zoo, 2023mar) on OpenCV's ``cv2.FaceDetectorYN``.

The same contract as :class:`faceid.detect.Detector` (MTCNN): ``(H, W, 3)`` uint8 RGB images in,
:class:`~faceid.detect.Detection` lists out, most confident first, with the five landmarks in
MTCNN's order (left eye, right eye, nose, left and right mouth corner, left and right as seen in
the image; YuNet's own order is the same). No TensorFlow is imported: YuNet runs on OpenCV alone.

The network's input size is set per image (``setInputSize``), so a photo is detected at about its
own size: downscaled only when its longer side exceeds ``max_side``; enlarged when it is smaller
than ``min_side`` (640 px, YuNet's training input size: on a small photo's faces, such as LFW's
250 px ones, its five points are markedly less precise, which cost open-set accuracy;
docs/detectors.md), and when faces smaller than YuNet finds at a photo's own size (15 px) are
asked for (``min_face_size``), as MTCNN's detector enlarges photos for faces under its 20 px.
OpenCV's detector keeps per-call state, so each thread has its own (one per verified file version
and settings), as SFace's OpenCV embedder does; the server's batch workers can detect at the same time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from faceid import _check
from faceid.detect import Detection
from faceid.errors import ModelError, PipelineError

__all__ = ["YUNET", "YuNetDetector"]

log = logging.getLogger(__name__)

#: The registry name of YuNet's weight file (``faceid models pull yunet``).
YUNET = "yunet"

_MIN_SIDE = 16  # below this (after resizing) YuNet's first stride-8 features hold no face
#: The smallest face side (px) YuNet finds in a photo at its own size (``faceid bench --only
#: detectors``, ``smallest_face_px``); photos are enlarged when smaller faces are asked for.
_YUNET_FACE = 15
#: Photos with a shorter longer side are enlarged to it before detection: YuNet was trained on
#: 640x640 inputs, and on LFW's 250x250 photos (faces about 100 px) its points sit 0.102 eye
#: distances from MTCNN's on average, 0.072 when the photo is enlarged to 640 px first (600 LFW
#: photos; docs/detectors.md, "YuNet's landmarks").
MIN_SIDE = 640
_NETS = threading.local()


class YuNetDetector:
    """YuNet over images, one OpenCV detector per thread.

    Args:
        min_face_size: smallest face kept, in pixels of the original image (the longer box side).
        min_confidence: YuNet's score below which a face is dropped. 0.8, chosen on 500 LFW photos
            and the awkward photos (every LFW face kept, which 0.9, OpenCV Zoo's demo value, does not;
            no false face, which 0.7 does not: the highest non-face scores 0.74); checked on other
            photos by ``faceid bench --only detectors`` (docs/detectors.md).
        max_side: longer side of the image that detection runs on; larger photos are downscaled.
        min_side: photos whose longer side is shorter are enlarged to it first (landmark
            precision on small photos; :data:`MIN_SIDE`); ``max_side`` wins where they disagree.
        nms_threshold: boxes overlapping a better one by more than this IoU are suppressed.
        top_k: candidates kept before non-maximum suppression.

    Raises:
        OptionError: an option is out of range or of the wrong kind.
    """

    name = YUNET

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        min_confidence: float = 0.8,
        max_side: int = 1600,
        min_side: int = MIN_SIDE,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        owner = "YuNetDetector"
        self.min_face_size = _check.integer(owner, "min_face_size", min_face_size, low=4)
        self.min_confidence = _check.number(owner, "min_confidence", min_confidence, low=0.0, high=1.0)
        self.max_side = _check.integer(owner, "max_side", max_side, low=_MIN_SIDE)
        self.min_side = _check.integer(owner, "min_side", min_side, low=1)
        self.nms_threshold = _check.number(owner, "nms_threshold", nms_threshold, low=0.0, high=1.0)
        self.top_k = _check.integer(owner, "top_k", top_k, low=1)

    @property
    def settings(self) -> dict:
        return {
            "detector": YUNET,
            "min_face_size": self.min_face_size,
            "min_confidence": self.min_confidence,
            "max_side": self.max_side,
            "min_side": self.min_side,
            "nms_threshold": self.nms_threshold,
            "top_k": self.top_k,
        }

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, most confident first."""
        height, width = image.shape[:2]
        longer = max(height, width)
        scale = min(max(1.0, _YUNET_FACE / self.min_face_size, self.min_side / longer), self.max_side / longer)
        small = _resize(image, scale)
        if min(small.shape[:2]) < _MIN_SIDE:
            return []
        rows = self._run(np.ascontiguousarray(small[..., ::-1]))  # OpenCV's detector takes BGR
        return self._convert(rows, scale, width, height)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (same order), each list most confident first.

        YuNet's OpenCV detector takes one image a call; the images are detected one after another
        (threads with a detector each run in parallel: see the module docstring).
        """
        return [self.detect(image) for image in images]

    def _detector(self):
        """This thread's OpenCV detector on the verified file (loaded on the thread's first call)."""
        from faceid.models import locate

        path = locate(YUNET)  # verifies the SHA-256 once per file version
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, self.min_confidence, self.nms_threshold, self.top_k)
        nets = _NETS.__dict__.setdefault("nets", {})
        if key not in nets:
            import cv2

            # OpenCV 5 warns on stderr at every creation that its new graph engine ignores the
            # detector's (default) target: true, harmless, and not the user's business
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                nets[key] = cv2.FaceDetectorYN.create(
                    str(path), "", (320, 320), self.min_confidence, self.nms_threshold, self.top_k
                )
            except cv2.error as exc:
                raise ModelError(f"{path}: OpenCV cannot load it as a YuNet face detector ({_reason(exc)})") from None
            finally:
                cv2.utils.logging.setLogLevel(level)
            log.info("loaded YuNet from %s with OpenCV %s", path, cv2.__version__)
        return nets[key]

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's ``(N, 15)`` rows for one BGR image: box, five landmarks, score.

        Raises:
            PipelineError: OpenCV failed on the image.
        """
        import cv2

        detector = self._detector()
        height, width = bgr.shape[:2]
        try:
            detector.setInputSize((width, height))
            _, faces = detector.detect(bgr)
        except cv2.error as exc:
            log.error("YuNet failed on a %dx%d image", width, height, exc_info=True)
            raise PipelineError(f"YuNet failed on a {width}x{height} image: {_reason(exc)}") from None
        if faces is None:
            return np.zeros((0, 15), dtype=np.float32)
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim != 2 or faces.shape[1] != 15:
            raise PipelineError(f"YuNet returned rows of shape {faces.shape} for a {width}x{height} image, not (N, 15)")
        return faces

    def _convert(self, rows: np.ndarray, scale: float, width: int, height: int) -> list[Detection]:
        detections = []
        for row in rows:
            confidence = float(row[14])
            if confidence < self.min_confidence:
                continue
            x, y, w, h = (float(v) / scale for v in row[:4])
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(width, round(x + w)), min(height, round(y + h))
            if x1 - x0 < 2 or y1 - y0 < 2 or max(w, h) < self.min_face_size:
                continue
            points = tuple((float(row[4 + 2 * k]) / scale, float(row[5 + 2 * k]) / scale) for k in range(5))
            detections.append(
                Detection(box=(x0, y0, x1 - x0, y1 - y0), confidence=min(1.0, confidence), landmarks=points)
            )
        detections.sort(key=lambda d: -d.confidence)
        return detections


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-6:
        return image
    import cv2

    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)


def _reason(exc: Exception) -> str:
    """The last line of an OpenCV error (its first lines are the C++ file and function)."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
