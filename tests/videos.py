"""Small synthetic videos for the video tests: frames of coloured tiles (the fake detector's faces),
written losslessly (FFV1 in Matroska) so that the fake embedder sees exactly the colours drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RED, BLUE = (200, 30, 30), (30, 60, 220)
TILE = 40


def tile_frame(tiles: dict[tuple[int, int], tuple[int, int, int]], width: int = 240, height: int = 120) -> np.ndarray:
    """An RGB frame with a ``TILE`` square of each colour at each (column, row) grid cell."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for (col, row), colour in tiles.items():
        frame[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = colour
    return frame


def write_video(path: Path, frames, fps: float = 10.0, fourcc: str = "FFV1") -> Path:
    """Write RGB ``frames`` as a video (lossless FFV1 by default) and return the path."""
    import cv2

    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


def two_people_clip(path: Path, seconds: float = 3.0, fps: float = 10.0) -> Path:
    """RED walks right one tile every second for the whole clip; BLUE appears at 1 s, stays in place."""
    frames = []
    for i in range(int(seconds * fps)):
        t = i / fps
        tiles = {(int(t), 0): RED}
        if t >= 1.0:
            tiles[(4, 2)] = BLUE
        frames.append(tile_frame(tiles))
    return write_video(path, frames, fps)
