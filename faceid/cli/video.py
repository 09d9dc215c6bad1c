"""Videos and streams on the command line: the video half of ``identify``, ``watch``, ``eval video``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import GalleryOpt, app, cli_errors, err, eval_app, new_pipeline, opened_gallery, say
from faceid.cli.measure import CacheOpt, DataOpt, ModelOpt
from faceid.errors import FaceIDError

__all__ = ["identify_videos", "watch"]


def identify_videos(
    ctx: typer.Context,
    gallery,
    videos: list[str],
    *,
    fps: float | None,
    threshold: float | None,
    margin: float | None,
    annotate: Path | None,
    remember: bool,
    as_json: bool,
) -> int:
    """Identify each video, print it (text or one JSON object each); return how many failed."""
    from faceid.thresholds import decision_params
    from faceid.video import DEFAULT_FPS, identify_video

    pipeline = new_pipeline(ctx, gallery.embedding_key)
    params = decision_params(gallery, threshold=threshold, margin=margin)
    failed = 0
    for video in videos:
        result = identify_video(
            video,
            gallery,
            pipeline,
            fps=fps or DEFAULT_FPS,
            params=params,
            remember=remember,
            annotate_dir=annotate,
        )
        failed += result.error is not None
        if as_json:
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            _print_video(result, params)
    return failed


def _print_video(result, params) -> None:
    if result.error:
        err(f"faceid: error: {result.error}")
        return
    tracks = result.tracks
    head = (
        f"{result.video}: {result.duration:.1f} s at {result.fps:.2f} fps, {result.frames_read} frames read, "
        f"{result.sampled} sampled; {len(tracks)} track{'s' if len(tracks) != 1 else ''} "
        f"(threshold {params.threshold:.3f}, {params.source})"
    )
    say(head + (f" -> {result.annotated}" if result.annotated else ""))
    if result.failed_frames:
        err(f"faceid: {result.video}: the face pipeline failed on {result.failed_frames} sampled frames (see the log)")
    for t in tracks:
        who = t.name if t.status == "known" else t.status
        kept = f"  {t.kept}" + (f" as face {t.kept_as}" if t.kept_as is not None else "") if t.kept else ""
        say(
            f"  track {t.track:<3} {who:20} similarity {t.similarity:.3f}  {t.first:6.2f}-{t.last:6.2f} s  "
            f"{t.frames} frames  box {list(t.box)}{kept}"
        )


@app.command()
def watch(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A video file, an rtsp:// or http(s):// (MJPEG) stream, or a camera number.")
    ],
    fps: Annotated[float, typer.Option(help="Frames looked at per second.", min=0.1, max=60)] = 3.0,
    webhook: Annotated[Optional[str], typer.Option("--webhook", help="POST each event as JSON to this URL.")] = None,
    mqtt: Annotated[
        Optional[str],
        typer.Option(
            "--mqtt", help="Publish each event to mqtt://[user:pass@]host[:port][/topic] (default topic faceid/events)."
        ),
    ] = None,
    snapshots: Annotated[
        Optional[Path],
        typer.Option("--snapshots", help="Write each event's face as a JPEG into DIR (its path is in the event)."),
    ] = None,
    remember: Annotated[
        bool,
        typer.Option("--remember", help="Keep each unknown track's best face for grouping (see `faceid clusters`)."),
    ] = False,
    loop: Annotated[bool, typer.Option("--loop", help="Read a file source again and again (for soak tests).")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Watch a camera or stream: one JSON line per track start and end, until SIGINT or SIGTERM.

    A dropped stream is reopened with back-off (1 s doubling to 30 s); its open tracks end first.
    """
    from faceid.video.watch import watch as run

    stop = threading.Event()

    def stopping(signum, frame) -> None:  # the current frame ends, open tracks end, events flushed
        stop.set()

    previous = {s: signal.signal(s, stopping) for s in (signal.SIGINT, signal.SIGTERM)}
    sinks: list = []
    try:
        with cli_errors(), opened_gallery(gallery, create=remember) as g:
            from faceid.video.sinks import MqttSink, WebhookSink

            if webhook:
                sinks.append(WebhookSink(webhook))
            if mqtt:
                sinks.append(MqttSink(mqtt))

            def emit(event) -> None:
                typer.echo(json.dumps(event.to_json(), ensure_ascii=False))
                sys.stdout.flush()
                for sink in sinks:
                    sink(event)

            pipeline = new_pipeline(ctx, g.embedding_key)
            stats = run(
                source,
                g,
                pipeline,
                on_event=emit,
                stop=stop,
                fps=fps,
                remember=remember,
                snapshots=snapshots,
                loop=loop,
            )
    finally:
        for sink in sinks:
            sink.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    failures = sum(getattr(s, "failures", 0) for s in sinks)
    err(
        f"faceid: watched {source}: {stats.sampled} frames looked at, {stats.events} events, "
        f"{stats.connects} connection{'s' if stats.connects != 1 else ''}"
        + (f", {failures} event deliveries failed" if failures else "")
    )


@eval_app.command("video")
def eval_video(
    ctx: typer.Context,
    data: DataOpt,
    frames: Annotated[str, typer.Option(help="Photos per synthetic track, comma-separated: one line each.")] = "2,3,4",
    people: Annotated[Optional[int], typer.Option(help="Use a random subset of this many people of each kind.")] = None,
    model: ModelOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Track decisions (pooled, voted) against per-frame ones at the same false-name rate: LFW people as
    synthetic tracks (one JSON line per track length; docs/video.md)."""
    from faceid.cache import EmbeddingCache
    from faceid.embedding_key import EmbeddingKey
    from faceid.eval.video import evaluate_tracks

    try:
        lengths = [int(v) for v in frames.split(",") if v.strip()]
    except ValueError:
        err(f"faceid: error: --frames takes comma-separated integers, got {frames!r}")
        raise typer.Exit(2) from None
    if not lengths or min(lengths) < 1:
        err("faceid: error: --frames needs track lengths of at least 1")
        raise typer.Exit(2)
    with cli_errors():
        store = EmbeddingCache(cache)
        pipeline = new_pipeline(ctx, EmbeddingKey.for_model(model))  # the model's own crop and options
        for k in lengths:
            try:
                report = evaluate_tracks(data, pipeline, frames=k, cache=store, max_people=people)
            except OSError as exc:
                raise FaceIDError(f"{data}: not an LFW folder ({exc})") from None
            typer.echo(json.dumps(report.to_json()))


@eval_app.command("trackers")
def eval_trackers(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--data", help="The shared data folder (holding lfw/ and video/).", show_default=False)
    ],
    scenes: Annotated[int, typer.Option(help="Synthetic scenes per speed.")] = 100,
    people: Annotated[int, typer.Option(help="LFW people to draw the synthetic walkers from.")] = 150,
    clips: Annotated[bool, typer.Option(help="Also run the sample clips (real models, slower).")] = True,
    tracker: Annotated[
        Optional[list[str]],
        typer.Option(help="Trackers to compare (faceid, bytetrack, bytetrack-per-sample); repeatable. Default: both."),
    ] = None,
    model: ModelOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Our tracker against ByteTrack: ID switches and fragments on LFW people as synthetic walkers,
    names and wrong names on the sample clips (one JSON line per tracker and condition; docs/video.md)."""
    import tempfile

    from faceid.bench import _common as common
    from faceid.cache import EmbeddingCache
    from faceid.embedding_key import EmbeddingKey
    from faceid.eval.trackers import TRACKERS, clip_figures, lfw_faces, synthetic_figures
    from faceid.video.bytetrack import bytetrack_available
    from faceid.video.decision import link_threshold

    names = list(tracker or TRACKERS)
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        err(f"faceid: error: --tracker takes {', '.join(TRACKERS)}, got {', '.join(unknown)}")
        raise typer.Exit(2)
    if not bytetrack_available() and any(n.startswith("bytetrack") for n in names):
        err("faceid: ByteTrack left out: the 'trackers' package is not installed (see faceid/video/bytetrack.py)")
        names = [n for n in names if not n.startswith("bytetrack")]
    with cli_errors():
        pipeline = new_pipeline(ctx, EmbeddingKey.for_model(model))
        try:
            faces = lfw_faces(data / "lfw", pipeline, people=people, cache=EmbeddingCache(cache))
        except OSError as exc:
            raise FaceIDError(f"{data}: no LFW folder in it ({exc})") from None
        for figure in synthetic_figures(faces, link_threshold(pipeline.key), trackers=names, scenes=scenes):
            typer.echo(json.dumps({**figure, "model": pipeline.key.model, "load": common.load()}))
        if clips:
            with tempfile.TemporaryDirectory() as work:
                for figure in clip_figures(data, Path(work), pipeline, trackers=names, load=common.load):
                    typer.echo(json.dumps(figure))
