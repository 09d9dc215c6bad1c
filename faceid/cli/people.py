"""Enrolment, identification and the enrolled people: ``enroll``, ``identify``, ``people``,
``rename``, ``remove``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    DetectorOpt,
    GalleryOpt,
    JsonOpt,
    QuietOpt,
    RayAddressOpt,
    RayOpt,
    RayWorkersOpt,
    app,
    check_detector,
    cli_errors,
    err,
    finite,
    new_pipeline,
    opened_gallery,
    print_identification,
    progress_bar,
    ray_runner,
    say,
    why_not_kept,
)
from faceid.errors import FaceIDError

# -- enrolment -------------------------------------------------------------------------------------


@app.command()
def enroll(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="The person's name (free text).", show_default=False)] = None,
    photos: Annotated[Optional[list[Path]], typer.Argument(help="Photos (or folders of photos) of them.")] = None,
    folders: Annotated[
        Optional[Path],
        typer.Option("--folders", help="Enrol everyone in DIR: one subfolder per person, named after them."),
    ] = None,
    largest: Annotated[bool, typer.Option("--largest", help="In photos with several faces, take the largest.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Embedding model, for a new gallery.")] = None,
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror", help="For a new gallery: also embed each face's mirror image (more accurate, slower)."
        ),
    ] = False,
    detector: DetectorOpt = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Enrol a person from photos, or everyone in a folder of per-person folders."""
    from faceid.batch import iter_image_files
    from faceid.enroll import enroll as enroll_person
    from faceid.enroll import enroll_folders, enrolment_key, people_folders

    if folders is None and (name is None or not photos):
        err("faceid: error: give a NAME and PHOTOS, or --folders DIR")
        raise typer.Exit(2)
    if folders is not None and (name is not None or photos):
        err("faceid: error: --folders takes no NAME or PHOTOS")
        raise typer.Exit(2)
    if name is not None:
        from faceid.gallery import normalise_name

        with cli_errors():  # before a gallery is created for nothing
            normalise_name(name)
    with cli_errors(), opened_gallery(gallery) as g:
        key = enrolment_key(g, model=model, mirror=mirror or None, detector=check_detector(detector))
        pipeline = new_pipeline(ctx, key)
        with ray_runner(ctx, ray, ray_address, ray_workers, keep_pixels=True) as runner:
            if folders is not None:
                total = sum(len(list(iter_image_files([f]))) for _, f in people_folders(folders))
                with progress_bar(total, "enrolling", not quiet and not as_json) as tick:
                    results = enroll_folders(g, folders, pipeline, largest=largest, progress=tick, runner=runner)
            else:
                assert name is not None and photos  # checked above
                total = len(list(iter_image_files(photos)))
                with progress_bar(total, f"enrolling {name}", not quiet and not as_json) as tick:
                    results = enroll_person(g, name, photos, pipeline, largest=largest, progress=tick, runner=runner)
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_json(), ensure_ascii=False))
        else:
            line = f"{r.status:9} {r.person}: {r.message}"
            (say if r.ok else err)(line)
    if not results:
        err("faceid: error: no photos found")
    if not results or not all(r.ok for r in results):
        raise typer.Exit(1)


# -- identification --------------------------------------------------------------------------------


@app.command()
def identify(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Photos, videos, and folders of them.")],
    annotate: Annotated[
        Optional[Path],
        typer.Option(
            "--annotate", help="Write a copy of each photo or video with every face boxed and named into DIR."
        ),
    ] = None,
    fps: Annotated[
        Optional[float],
        typer.Option(
            "--fps", min=0.1, max=120, help="Video frames looked at per second [default: 3].", show_default=False
        ),
    ] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            min=-1.0,
            max=1.0,
            callback=finite,
            help="Decision score a match needs [default: the gallery's calibrated value, else measured].",
        ),
    ] = None,
    margin: Annotated[
        Optional[float],
        typer.Option(min=0.0, max=2.0, callback=finite, help="How far the best person must lead the next."),
    ] = None,
    remember: Annotated[
        bool,
        typer.Option(
            "--remember",
            help="Keep the unknown faces (with a thumbnail) and group them: see `faceid clusters`. "
            "Creates the gallery if there is none.",
        ),
    ] = False,
    detector: DetectorOpt = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Find every face and name it, or say unknown / ambiguous; in a video, name each person once per track."""
    from faceid.cli.video import identify_videos
    from faceid.enroll import enrolment_key
    from faceid.identify import identify as run
    from faceid.video.reader import split_media

    with cli_errors(), opened_gallery(gallery, create=remember) as g:
        sources, videos = split_media(inputs)
        if not sources and not videos:
            raise FaceIDError("no photos or videos found (folders are searched for .jpg, .png, .mp4, ... files)")
        # the gallery's detector; a --detector that contradicts it is refused
        key = g.embedding_key if detector is None else enrolment_key(g, detector=check_detector(detector))
        pipeline = new_pipeline(ctx, key)
        failed = kept = again = 0
        not_kept: list[str] = []
        with (
            ray_runner(ctx, ray, ray_address, ray_workers, keep_pixels=annotate is not None or remember) as runner,
            progress_bar(len(sources), "identifying", not quiet and not as_json) as tick,
        ):
            for result in run(
                sources,
                g,
                pipeline,
                threshold=threshold,
                margin=margin,
                annotate_dir=annotate,
                on_done=tick,
                runner=runner,
                remember=remember,
            ):
                failed += result.error is not None
                kept += sum(f.kept_as is not None and not f.kept_before for f in result.faces)
                again += sum(f.kept_before for f in result.faces)
                not_kept += [f.not_kept for f in result.faces if f.not_kept]
                if as_json:
                    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
                else:
                    print_identification(result)
        if videos:
            failed += identify_videos(
                ctx,
                g,
                videos,
                fps=fps,
                threshold=threshold,
                margin=margin,
                annotate=annotate,
                remember=remember,
                as_json=as_json,
            )
        if remember and not as_json:
            groups = len(g.unknown.groups())
            err(
                f"faceid: {kept} unknown faces kept, {again} already kept, {len(not_kept)} not kept"
                f"{why_not_kept(not_kept)}; {groups} groups of unknown faces (see `faceid clusters`)"
            )
    if failed:
        total = len(sources) + len(videos)
        err(f"faceid: {failed} of {total} inputs failed (unreadable, or the face pipeline failed on them)")
        raise typer.Exit(1)


# -- gallery management ----------------------------------------------------------------------------


@app.command()
def people(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled people."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        everyone = g.people()
    for p in everyone:
        if as_json:
            typer.echo(json.dumps({"name": p.name, "faces": p.faces, "created_at": p.created_at}, ensure_ascii=False))
        else:
            say(f"{p.name}\t{p.faces} face{'s' if p.faces != 1 else ''}")
    if not as_json and not everyone:
        err("no one is enrolled")


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="Current name.")],
    new: Annotated[str, typer.Argument(help="New name.")],
    gallery: GalleryOpt = None,
) -> None:
    """Rename a person; their faces stay enrolled."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        g.rename(old, new)
    say(f"renamed {old} -> {new}")


@app.command()
def remove(name: Annotated[str, typer.Argument(help="Person to remove.")], gallery: GalleryOpt = None) -> None:
    """Remove a person and every face of theirs (overwritten, not just unlinked)."""
    with cli_errors(), opened_gallery(gallery, create=False) as g:
        count = g.remove(name)
    say(f"removed {name} ({count} face{'s' if count != 1 else ''})")
