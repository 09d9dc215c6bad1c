"""Unknown faces, their groups and corrections: ``clusters``, ``name``, ``faces``, ``move``,
``merge``, ``forget``; and ``log`` (registered here, after them, to keep ``faceid --help``'s order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    MAX_ID,
    GalleryOpt,
    JsonOpt,
    app,
    cli_errors,
    err,
    opened_gallery,
    say,
)

# -- unknown faces: groups, naming, corrections --------------------------------------------------------


@app.command()
def clusters(
    sheet: Annotated[
        Optional[Path], typer.Option("--sheet", help="Write one contact-sheet PNG per group into DIR.")
    ] = None,
    regroup: Annotated[bool, typer.Option("--regroup", help="Group every kept unknown face again first.")] = False,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Groups of kept unknown faces that look like one person, biggest first, then the faces in no group."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        if regroup:
            g.unknown.regroup()
        groups = g.unknown.groups()
        ungrouped = g.unknown.ungrouped()
        loose = len(ungrouped)
        listed: list[tuple[int | None, list]] = [(grp.id, list(grp.faces)) for grp in groups]
        if ungrouped:
            listed.append((None, ungrouped))
        written = []
        if sheet is not None:
            from faceid.sheets import write_sheets

            written = write_sheets([(gid, [f.id for f in faces]) for gid, faces in listed], g.face_thumbnail, sheet)
    for gid, faces in listed:
        if as_json:
            rows = [{"id": f.id, "image": f.image_path, "box": list(f.box)} for f in faces]
            typer.echo(json.dumps({"cluster": gid, "size": len(faces), "faces": rows}, ensure_ascii=False))
        else:
            head = "no group" if gid is None else f"cluster {gid}"
            say(f"{head}\t{len(faces)} faces\t{' '.join(str(f.id) for f in faces)}")
    if not as_json:
        if not groups:
            err("no groups of unknown faces (keep some with `faceid identify --remember`)")
        err(f"{len(groups)} groups; {loose} kept faces in no group" + (f"; sheets in {sheet}" if written else ""))


@app.command("name")
def name_group(
    group: Annotated[int, typer.Argument(min=0, max=MAX_ID, help="Group id (from `faceid clusters`).")],
    name: Annotated[str, typer.Argument(help="Who they are: a new person, or one enrolled already.")],
    gallery: GalleryOpt = None,
) -> None:
    """Name a group of unknown faces: its faces become that person's enrolled faces."""
    if not 0 < group < 2**63:
        err(f"faceid: error: no group {group} (group ids are from 1 to {2**63 - 1})")
        raise typer.Exit(1)
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        named = g.unknown.name(group, name)
    if not named.faces:
        err(
            f"faceid: group {group} left as it is: each of its {len(named.kept_out)} faces was moved out of "
            f"{named.person} before, or is from a photo that has {named.person} already"
        )
        raise typer.Exit(1)
    who = f"{named.person} (new)" if named.new_person else named.person
    say(f"named group {group} {who}: {len(named.faces)} faces")
    if named.kept_out:
        ids = " ".join(str(i) for i in named.kept_out)
        err(f"faceid: faces {ids} stay unknown: moved out of {named.person} before, or from a photo of theirs")


@app.command("faces")
def list_faces(
    name: Annotated[str, typer.Argument(help="The person.")], gallery: GalleryOpt = None, as_json: JsonOpt = False
) -> None:
    """A person's faces: id, source image, box."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        faces = g.faces(name)
    for f in faces:
        if as_json:
            row = {
                "id": f.id,
                "person": f.person,
                "image": f.image_path,
                "box": list(f.box),
                "created_at": f.created_at,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            say(f"{f.id}\t{f.image_path or '-'}\t{list(f.box)}")


@app.command()
def move(
    items: Annotated[list[str], typer.Argument(help="Face ids, then the person's name (unless --unknown).")],
    unknown: Annotated[bool, typer.Option("--unknown", help="Move the faces back to unknown.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Move faces to a person (created if new), or back to unknown: the move is remembered."""
    ids_text, target = (items, None) if unknown else (items[:-1], items[-1])
    try:
        ids = [int(i) for i in ids_text]
    except ValueError:
        err(f"faceid: error: face ids are numbers, got {' '.join(ids_text)!r}; the name goes last")
        raise typer.Exit(2) from None
    if any(not 0 <= i <= MAX_ID for i in ids):
        err(f"faceid: error: face ids are from 0 to {MAX_ID}, got {' '.join(ids_text)[:200]!r}")
        raise typer.Exit(2)
    if not ids:
        err("faceid: error: give face ids, then a name or --unknown")
        raise typer.Exit(2)
    too_big = [i for i in ids if not 0 < i < 2**63]
    if too_big:
        err(f"faceid: error: no face with id {too_big[0]} (face ids are from 1 to {2**63 - 1})")
        raise typer.Exit(1)
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        new_person = target is not None and not _is_enrolled(g, target)
        moved = g.unknown.move(ids, target)
    where = target if target is not None else "unknown"
    made = f" (a new person: {target} was nobody yet)" if new_person and moved else ""
    say(f"moved {len(moved)} faces to {where}{made}")


def _is_enrolled(g, name: str) -> bool:
    """Whether ``name`` is a person of ``g`` already (names are unique regardless of case)."""
    from faceid.gallery.records import normalise_name

    wanted = normalise_name(name).casefold()
    return any(p.name.casefold() == wanted for p in g.people())


@app.command()
def merge(
    source: Annotated[str, typer.Argument(help="The person to merge away.")],
    target: Annotated[str, typer.Argument(help="The person who keeps every face.")],
    gallery: GalleryOpt = None,
) -> None:
    """Merge two people who are one: SOURCE's faces become TARGET's."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        count = g.unknown.merge(source, target)
    say(f"merged {source} into {target} ({count} faces)")


@app.command()
def forget(
    unknown: Annotated[bool, typer.Option("--unknown", help="Forget kept unknown faces (required).")] = False,
    older_than: Annotated[
        Optional[str], typer.Option("--older-than", help="Only faces kept longer ago than this: 30d, 12h, 2w.")
    ] = None,
    gallery: GalleryOpt = None,
) -> None:
    """Delete kept unknown faces, securely as `remove` does."""
    if not unknown:
        err("faceid: error: say what to forget: --unknown (enrolled people go with `faceid remove`)")
        raise typer.Exit(2)
    age = None
    if older_than is not None:
        age = _duration(older_than)
        if age is None:
            err(f"faceid: error: --older-than takes a number and d, h, m or w (30d, 12h), got {older_than!r}")
            raise typer.Exit(2)
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        count = g.unknown.forget(age)
    say(f"forgot {count} unknown faces")


def _duration(text: str):
    """``30d``, ``12h``, ``45m``, ``2w`` as a timedelta; ``None`` if it is not one."""
    from datetime import timedelta

    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        return None
    if unit not in units or not value >= 0 or value > 1e5:
        return None
    return timedelta(**{units[unit]: value})


@app.command("log")
def audit_log(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Show the gallery's audit log: enrolments, renames, removals (never embeddings)."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        entries = g.audit_log()
    for e in entries:
        if as_json:
            typer.echo(
                json.dumps(
                    {"at": e.at, "user": e.user, "action": e.action, "person": e.person, "detail": e.detail},
                    ensure_ascii=False,
                )
            )
        else:
            say(f"{e.at}  {e.user:10} {e.action:8} {e.person or '-'}  {json.dumps(e.detail, ensure_ascii=False)}")


@app.command()
def suggest(
    name: Annotated[Optional[str], typer.Argument(help="Only faces offered to this person [default: anyone].")] = None,
    accept: Annotated[
        Optional[str], typer.Option("--accept", help="Comma-separated face ids that are NAME: moved to them.")
    ] = None,
    reject: Annotated[
        Optional[str], typer.Option("--reject", help="Comma-separated face ids that are not NAME: never offered again.")
    ] = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Kept unknown faces whose best match is an enrolled person above the model's suggest bar ("Is this NAME?")."""
    answers = {}
    for option, text in (("--accept", accept), ("--reject", reject)):
        if text is None:
            continue
        try:
            answers[option] = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            err(f"faceid: error: {option} takes comma-separated face ids, got {text!r}")
            raise typer.Exit(2) from None
        if name is None:
            err(f"faceid: error: {option} needs the person's NAME")
            raise typer.Exit(2)
        if any(not 0 < i < 2**63 for i in answers[option]):
            err(f"faceid: error: face ids are from 1 to {2**63 - 1}, got {text!r}")
            raise typer.Exit(1)
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        if answers:
            assert name is not None
            if answers.get("--accept"):
                moved = g.unknown.accept(answers["--accept"], name)
                say(f"accepted: moved {len(moved)} faces to {name}")
            if answers.get("--reject"):
                rejected = g.unknown.reject(answers["--reject"], name)
                say(f"rejected: faces {' '.join(map(str, rejected))} are not {name} (remembered)")
            return
        offers = g.unknown.suggestions(name)
    for o in offers:
        if as_json:
            row = {
                "face": o.face.id,
                "person": o.person,
                "similarity": round(o.similarity, 4),
                "image": o.face.image_path,
                "box": list(o.face.box),
                "cluster": o.face.group,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            say(f"face {o.face.id}\tis this {o.person}?\tsimilarity {o.similarity:.3f}\t{o.face.image_path or '-'}")
    if not as_json and not offers:
        err("no suggestions: no kept face looks enough like an enrolled person")
