"""Review of kept unknown faces (``faceid identify --remember``): their groups, naming a group,
and moving a face out of a group or a person (what `faceid clusters`, `name` and `move` do)."""

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from faceid.server.auth import Admin, Reader
from faceid.server.routes.people import FaceId, addressable, face_out
from faceid.server.schemas import ClusterNameIn, ClusterOut, MovedOut, MoveIn, NamedOut
from faceid.server.state import state_of

__all__ = ["router"]

GroupId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="A group's id: `cluster` in `GET /v1/clusters`.")]

router = APIRouter()


@router.get("/v1/clusters", response_model=list[ClusterOut], tags=["review"])
async def clusters(request: Request, caller: Reader):
    """The groups of kept unknown faces, largest first: who might each be?"""
    state = state_of(request)

    def read():
        with state.use() as gallery:
            groups = gallery.unknown.groups()
        return [{"cluster": g.id, "size": g.size, "faces": [face_out(f) for f in g.faces]} for g in groups]

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
