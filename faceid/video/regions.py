"""Detection only around the faces being tracked: the cheap detection of the samples between two
full ones (:class:`faceid.video.engine.TrackEngine`, ``full_every``).

Around each tracked face's last box, a square region three of its sides wide is cut out (black
past the frame's edge) and scaled so the face is :data:`FACE_PX` pixels: every region is then a
120x120 image, all searched in one batch by the detector, which finds faces from half that size
up in them, and the boxes are mapped back. A face new to the picture is found at the next full detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceid.results import Detection

__all__ = ["FACE_PX", "detect_near"]

#: A tracked face is scaled to this many pixels for its region's detection: MTCNN's smallest
#: face is 20 px, so the face may shrink to half its last size (moving away) and still be found.
FACE_PX = 40.0


def detect_near(detector, pixels: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]) -> list[Detection]:
    """The faces ``detector`` finds in the regions around ``boxes`` (``(x, y, w, h)``), in the
    frame's pixels; one detection where regions overlap on the same face."""
    import cv2

    from faceid.tight import map_back
    from faceid.video.tracker import box_iou

    height, width = pixels.shape[:2]
    side_px = round(3 * FACE_PX)
    crops, placements = [], []
    for x, y, w, h in boxes:
        side = max(w, h, 1)
        x0, y0 = round(x + w / 2 - 1.5 * side), round(y + h / 2 - 1.5 * side)
        x1, y1 = x0 + 3 * side, y0 + 3 * side
        crop = pixels[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            continue
        # the part outside the frame is black, so every region is the same square: one batch
        crop = cv2.copyMakeBorder(
            crop, max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width), cv2.BORDER_CONSTANT
        )
        scale = side_px / crop.shape[1]
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crops.append(np.ascontiguousarray(cv2.resize(crop, (side_px, side_px), interpolation=interpolation)))
        placements.append((scale, x0, y0))
    found: list[Detection] = []
    for faces, (scale, x0, y0) in zip(detector.detect_many(crops) if crops else [], placements):
        for d in faces:
            mapped = map_back(d, scale, -x0, -y0, width, height)
            if mapped is not None and all(box_iou(mapped.box, f.box) < 0.5 for f in found):
                found.append(mapped)
    return found
