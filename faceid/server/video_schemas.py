"""The response shape of a video on ``POST /v1/identify``: the object ``faceid identify VIDEO --json`` prints."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

__all__ = ["TrackOut", "VideoOut"]


class TrackOut(BaseModel):
    """One person's appearance, followed across sampled frames and decided once."""

    track: int = Field(description="The track's number in the video (1, 2, ... in order of first appearance).")
    name: Optional[str] = Field(description="The person, for known tracks only.")
    status: str = Field(description="known, unknown or ambiguous.")
    similarity: float = Field(description="Cosine similarity of the decided (or else the closest) person.")
    first: float = Field(description="Seconds from the start: the first sampled frame it is on.")
    last: float = Field(description="Seconds from the start: the last sampled frame it is on.")
    frames: int = Field(description="Sampled frames it is on.")
    box: list[int] = Field(description="[x, y, width, height] of the face on its best frame.")
    best_frame: float = Field(description="Seconds from the start of that best frame.")
    kept: Optional[str] = Field(None, description="With remember=true: kept, or why not.")
    kept_as: Optional[int] = Field(None, description="With remember=true: the id of the kept unknown face.")


class VideoOut(BaseModel):
    """Every track of an uploaded video (an unreadable video is a 422, never an object with ``error`` set)."""

    video: str = Field(description="The upload's file name.")
    duration: float = Field(description="Seconds of video read.")
    fps: float = Field(description="The video's own frame rate.")
    frames_read: int
    tracks: list[TrackOut]
    error: Optional[str]
