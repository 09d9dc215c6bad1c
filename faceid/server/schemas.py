"""The API's response shapes (they keep ``/openapi.json`` true: FastAPI checks every answer against them)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, Field

__all__ = [
    "CandidateOut",
    "EnrollOut",
    "EnrollResultOut",
    "ErrorOut",
    "FaceOut",
    "HealthOut",
    "LoadingOut",
    "IdentifyOut",
    "PersonDetailOut",
    "PersonFaceOut",
    "PersonOut",
    "RemovedFaceOut",
    "RemovedOut",
    "RenameIn",
]


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in one line.")
    results: Optional[list[EnrollResultOut]] = Field(
        None, description="Enrolment: the report, when every photo failed."
    )


class LoadingOut(BaseModel):
    status: str = Field("loading", description="The models are still loading.")


class HealthOut(BaseModel):
    status: str
    auth: bool = Field(description="Whether requests need an API key.")
    model: Optional[str] = Field(None, description="The embedding model in use.")
    batches: int = Field(0, description="Detection + embedding batches run since the start.")
    batched_images: int = Field(0, description="Images those batches held (over batches: the mean batch size).")


class CandidateOut(BaseModel):
    name: str
    similarity: float


class FaceOut(BaseModel):
    box: list[int] = Field(description="[x, y, width, height] in pixels of the image as displayed.")
    confidence: float
    name: Optional[str]
    similarity: float
    score: float
    status: str = Field(description="known, unknown or ambiguous.")
    landmarks: list[list[float]]
    candidates: list[CandidateOut]
    kept_as: Optional[int] = Field(None, description="With remember=true: the id of the kept unknown face.")


class IdentifyOut(BaseModel):
    """The same object one line of ``faceid identify --json`` prints."""

    annotated: Optional[str] = Field(description="URL of the annotated JPEG (with annotate=true).")
    image: str
    faces: list[FaceOut]
    error: Optional[str]
    threshold: float
    margin: float
    beta: float
    threshold_source: str
    width: Optional[int]
    height: Optional[int]


class EnrollResultOut(BaseModel):
    """One photo of an enrolment: the same object one line of ``faceid enroll --json`` prints."""

    image: str
    person: str
    status: str = Field(description="added, duplicate or failed.")
    message: str
    face_id: Optional[int]
    box: Optional[list[int]]
    new_person: bool = Field(False, description="The person did not exist before (else person is the stored name).")


class EnrollOut(BaseModel):
    person: str = Field(description="The stored person the faces went to (a name differing only in case is them).")
    new_person: bool = Field(False, description="The person was created by this enrolment.")
    results: list[EnrollResultOut]


class PersonOut(BaseModel):
    name: str
    faces: int


class PersonFaceOut(BaseModel):
    """A face as ``faceid faces --json`` lists it (``image``: the photo's file name only, never a
    path on the server), with the URL of its thumbnail."""

    id: int
    box: list[int]
    image: Optional[str] = Field(description="File name of the photo the face came from.")
    created_at: str
    thumbnail: str = Field(description="URL of a small JPEG of the face.")


class PersonDetailOut(BaseModel):
    name: str
    created_at: str
    faces: list[PersonFaceOut]


class RenameIn(BaseModel):
    name: str = Field(description="The new name.", max_length=1000)


class RemovedOut(BaseModel):
    removed: str
    faces: int


class RemovedFaceOut(BaseModel):
    removed: int
    person: str


class ClusterOut(BaseModel):
    """A group of kept unknown faces that look like one person, or (``cluster`` null, listed last)
    the kept faces in no group: the object a line of ``faceid clusters --json`` prints (``cluster``,
    ``size``, ``faces``)."""

    cluster: Optional[int] = Field(description="The group's id; null for the faces in no group.")
    size: int = Field(description="How many faces it holds.")
    faces: list[PersonFaceOut]


class ClusterNameIn(BaseModel):
    name: str = Field(description="Who the group's faces are: a new or an enrolled person.", max_length=1000)


class NamedOut(BaseModel):
    person: str
    faces: list[int] = Field(description="The faces that became the person's.")
    kept_out: list[int] = Field(
        description="Faces left unknown: moved out of this person before, or from a photo of theirs."
    )
    new_person: bool


class MoveIn(BaseModel):
    name: Optional[str] = Field(
        description="The person to move the face to (created if new), or null: back to unknown, in no group.",
        max_length=1000,
    )


class MovedOut(BaseModel):
    moved: list[int]
    person: Optional[str]


class SuggestionOut(BaseModel):
    """ "Is this ``person``?": a kept unknown face whose best match among the enrolled faces is
    ``person``, at or above the model's suggest bar (what a line of ``faceid suggest --json`` says)."""

    face: PersonFaceOut
    person: str
    similarity: float = Field(description="Cosine similarity of the face to its best match, the person's face.")
    cluster: Optional[int] = Field(description="The face's group, null if it is in no group.")


class AnswerIn(BaseModel):
    name: str = Field(
        description="The person offered: the faces are (accept) or are not (reject) them.", max_length=1000
    )
    faces: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(
        description="Ids of kept unknown faces.", min_length=1, max_length=10_000
    )


class RejectedOut(BaseModel):
    rejected: list[int] = Field(description="The faces, never offered or named as the person again.")
    person: str


ErrorOut.model_rebuild()
