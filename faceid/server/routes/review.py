"""Review of kept unknown faces (``faceid identify --remember``): their groups and the faces in no
group, naming a group, moving a face out of a group or a person, and the "Is this X?" suggestions
with their answers (what `faceid clusters`, `name`, `move` and `suggest` do)."""

from typing import Annotated, Optional

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from faceid.server.auth import Admin, Reader
from faceid.server.routes.people import FaceId, addressable, face_out
from faceid.server.schemas import (
    AnswerIn,
    ClusterNameIn,
    ClusterOut,
    MovedOut,
    MoveIn,
    NamedOut,
    RejectedOut,
    SuggestionOut,
)
from faceid.server.state import state_of

__all__ = ["router"]

GroupId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="A group's id: `cluster` in `GET /v1/clusters`.")]

router = APIRouter()


@router.get("/v1/clusters", response_model=list[ClusterOut], tags=["review"])
async def clusters(request: Request, caller: Reader):
    """The groups of kept unknown faces, largest first: who might each be? Then, if there are any,
    the kept faces in no group (yet), as one entry with `cluster` null (as `faceid clusters --json`)."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            groups = gallery.unknown.groups()
            loose = gallery.unknown.ungrouped()
        listed = [{"cluster": g.id, "size": g.size, "faces": [face_out(f) for f in g.faces]} for g in groups]
        if loose:
            listed.append({"cluster": None, "size": len(loose), "faces": [face_out(f) for f in loose]})
        return listed

    return await run_in_threadpool(read)


@router.post("/v1/clusters/{group_id}/name", response_model=NamedOut, tags=["review"])
async def name_cluster(request: Request, caller: Admin, group_id: GroupId, body: ClusterNameIn):
    """Name a group: its faces become the enrolled faces of that person (new or enrolled), at once
    used by identify. Faces moved out of that person before stay unknown (`kept_out`)."""
    state = state_of(request)
    person = addressable(body.name)

    def write():
        with state.use(caller) as gallery:
            named = gallery.unknown.name(group_id, person)
        return {
            "person": named.person,
            "faces": list(named.faces),
            "kept_out": list(named.kept_out),
            "new_person": named.new_person,
        }

    return await run_in_threadpool(write)


@router.post("/v1/faces/{face_id}/move", response_model=MovedOut, tags=["review"])
async def move_face(request: Request, caller: Admin, face_id: FaceId, body: MoveIn):
    """Move a face to a person, or with `{"name": null}` out of its group or person, back to
    unknown; the move is remembered (it is never grouped or named with them again)."""
    state = state_of(request)
    person = addressable(body.name) if body.name is not None else None

    def write():
        with state.use(caller) as gallery:
            moved = gallery.unknown.move([face_id], person)
        return {"moved": moved, "person": person}

    return await run_in_threadpool(write)


@router.get("/v1/suggestions", response_model=list[SuggestionOut], tags=["review"])
async def suggestions(
    request: Request,
    caller: Reader,
    name: Annotated[Optional[str], Query(max_length=1000, description="Only faces offered to this person.")] = None,
):
    """ "Is this X?": kept unknown faces whose best match among the enrolled faces is a person at or
    above the model's suggest bar, best first (as `faceid suggest [NAME]`); faces barred from that
    person (moved out of them, rejected, or from a photo of theirs) are not offered."""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            offers = gallery.unknown.suggestions(name)
        return [
            {
                "face": face_out(o.face),
                "person": o.person,
                "similarity": round(o.similarity, 4),
                "cluster": o.face.group,
            }
            for o in offers
        ]

    return await run_in_threadpool(read)


@router.post("/v1/suggestions/accept", response_model=MovedOut, tags=["review"])
async def accept_suggestion(request: Request, caller: Admin, body: AnswerIn):
    """Yes, these kept faces are `name`, an enrolled person: they become that person's enrolled
    faces (as `faceid suggest NAME --accept IDS`); the rest of their group is not barred from them."""
    state = state_of(request)
    person = addressable(body.name)

    def write():
        with state.use(caller) as gallery:
            moved = gallery.unknown.accept(body.faces, person)
        return {"moved": moved, "person": person}

    return await run_in_threadpool(write)


@router.post("/v1/suggestions/reject", response_model=RejectedOut, tags=["review"])
async def reject_suggestion(request: Request, caller: Admin, body: AnswerIn):
    """No, these faces are not `name`: remembered as a move out of them is, so they are never
    offered or named as them again (as `faceid suggest NAME --reject IDS`)."""
    state = state_of(request)
    person = addressable(body.name)

    def write():
        with state.use(caller) as gallery:
            rejected = gallery.unknown.reject(body.faces, person)
        return {"rejected": rejected, "person": person}

    return await run_in_threadpool(write)
