"""Measuring: ``calibrate``, ``eval`` (LFW verification, open set, grouping) and ``bench``."""

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
    app,
    check_detector,
    cli_errors,
    err,
    eval_app,
    finite,
    new_pipeline,
    opened_gallery,
    progress_bar,
)
from faceid.errors import FaceIDError


@app.command()
def calibrate(
    ctx: typer.Context,
    enrolled: Annotated[Path, typer.Argument(help="Photos to enrol: one subfolder per person.")],
    probes: Annotated[Path, typer.Argument(help="Other photos of the same people, same layout.")],
    strangers: Annotated[Path, typer.Argument(help="Photos of people who are not enrolled.")],
    fpir: Annotated[float, typer.Option(callback=finite, help="Target share of strangers wrongly named.")] = 0.01,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the result, do not store the threshold.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Embedding model, for a new gallery.")] = None,
    detector: DetectorOpt = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pick the threshold for a target false-identification rate from your own photos, and store it."""
    from faceid.batch import iter_image_files
    from faceid.calibrate import calibrate as run
    from faceid.enroll import enrolment_key

    with cli_errors(), opened_gallery(gallery) as g:
        total = len(list(iter_image_files([enrolled, probes, strangers])))
        pipeline = new_pipeline(ctx, enrolment_key(g, model=model, detector=check_detector(detector)))
        with progress_bar(total, "calibrating", not quiet and not as_json) as tick:
            report = run(g, enrolled, probes, strangers, pipeline, target_fpir=fpir, store=not dry_run, progress=tick)
    for warning in report.warnings:
        err(f"faceid: warning: {warning}")
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    typer.echo(f"{report.probes} probe faces of enrolled people, {report.strangers} stranger faces")
    typer.echo(f"{'threshold':>10} {'strangers named':>16} {'people named right':>19} {'named wrong':>12}")
    for row in report.table:
        mark = "  <- chosen" if row["threshold"] == report.threshold else ""
        typer.echo(f"{row['threshold']:>10.4f} {row['fpir']:>16.2%} {row['dir']:>19.2%} {row['wrong']:>12.2%}{mark}")
    verb = "stored in the gallery" if report.stored else "not stored (--dry-run)"
    typer.echo(f"threshold {report.threshold:.4f} for FPIR <= {report.target_fpir:g}: {verb}")


# -- evaluation ------------------------------------------------------------------------------------

DataOpt = Annotated[
    Path, typer.Option("--data", help="LFW folder holding lfw-deepfunneled/ and protocol/.", show_default=False)
]
AlignOpt = Annotated[
    Optional[str], typer.Option(help="Crop method: margin, similarity or arcface-112 [default: the model's].")
]
MarginOpt = Annotated[
    Optional[float], typer.Option("--crop-margin", callback=finite, help="Crop margin, a fraction of the box.")
]
MirrorOpt = Annotated[Optional[bool], typer.Option("--mirror/--no-mirror", help="Average with the mirror image.")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", help="Embedding model (see `faceid models list`) [default: faceid's].")
]


def _eval_pipeline(
    ctx: typer.Context,
    align: str | None,
    crop_margin: float | None,
    mirror: bool | None,
    model: str | None = None,
    detector: str | None = None,
):
    from faceid.embedding_key import DEFAULT_CROP_MARGIN, DEFAULT_MIRROR, EmbeddingKey

    key = EmbeddingKey.for_model(
        model,
        align=align,
        crop_margin=DEFAULT_CROP_MARGIN if crop_margin is None else crop_margin,
        mirror=DEFAULT_MIRROR if mirror is None else mirror,
        detector=check_detector(detector),
    )
    return new_pipeline(ctx, key)


CacheOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--cache", envvar="FACEID_CACHE", help="Embedding cache file [default: ~/.cache/faceid/embeddings.db]."
    ),
]


@eval_app.command("lfw")
def eval_lfw(
    ctx: typer.Context,
    data: DataOpt,
    folds: Annotated[Optional[str], typer.Option(help="Comma-separated folds to use (1-10) [default: all].")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write roc.png and similarities.png here.")] = None,
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    align: AlignOpt = None,
    crop_margin: MarginOpt = None,
    mirror: MirrorOpt = None,
    cache: CacheOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute every embedding.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """LFW verification: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2 and 1e-3 (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.eval.verification import evaluate_lfw

    with cli_errors():
        chosen = _folds(folds)
        store = None if no_cache else EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, align, crop_margin, mirror, model, detector)
        with progress_bar(_lfw_image_count(data, chosen), "embedding LFW", not quiet) as tick:
            report = evaluate_lfw(data, pipeline, cache=store, folds=chosen, plots=plots, progress=tick)
    typer.echo(json.dumps(report.to_json()))
    _eval_failures(report)


@eval_app.command("verify")
def eval_verify(
    ctx: typer.Context,
    data: DataOpt,
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The 1:1 thresholds at FMR 1e-2/1e-3/1e-4, measured on LFW people outside pairs.txt and
    reported on pairs.txt: accuracy, FMR, FNMR (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.eval.verify import evaluate_verify, image_count

    with cli_errors():
        total = image_count(data)
        store = EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, None, None, None, model, detector)
        with progress_bar(total, "embedding LFW", not quiet) as tick:
            report = evaluate_verify(data, pipeline, cache=store, progress=tick)
    typer.echo(json.dumps(report.to_json()))
    for message in report.errors:
        err(f"faceid: error: {message}")
    if report.errors:
        err(f"faceid: {len(report.errors)} images unreadable or failed; the figures count them")
        raise typer.Exit(1)


def _folds(text: str | None) -> list[int] | None:
    """``--folds 1,3`` as 0-based fold numbers."""
    if not text:
        return None
    try:
        chosen = [int(f) for f in text.split(",")]
    except ValueError:
        raise FaceIDError(f"--folds takes comma-separated fold numbers 1-10, got {text!r}") from None
    if not all(1 <= f <= 10 for f in chosen):
        raise FaceIDError(f"--folds takes fold numbers 1-10, got {text!r}")
    return [f - 1 for f in chosen]


def _eval_failures(report) -> None:
    """After an evaluation's JSON: one stderr line per image that could not be read or that the
    pipeline failed on, and a non-zero exit if there was any (the figures count them, see docs/accuracy.md)."""
    for message in report.errors:
        err(f"faceid: error: {message}")
    if report.unreadable or report.failed:
        err(f"faceid: {report.unreadable} images unreadable and {report.failed} failed; the figures count them")
        raise typer.Exit(1)


@eval_app.command("lfw-openset")
def eval_lfw_openset(
    ctx: typer.Context,
    data: DataOpt,
    enrol: Annotated[
        int, typer.Option(min=1, max=10**6, help="Enrol each known person with up to this many of their first images.")
    ] = 1,
    people: Annotated[
        Optional[int], typer.Option(min=1, max=10**9, help="Use a random subset of this many enrolled people.")
    ] = None,
    strangers: Annotated[
        Optional[int], typer.Option(min=1, max=10**9, help="Use a random subset of this many unknown people.")
    ] = None,
    sizes: Annotated[
        bool, typer.Option("--sizes", help="Measure the 1%-FPIR threshold per gallery size instead.")
    ] = False,
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    align: AlignOpt = None,
    crop_margin: MarginOpt = None,
    mirror: MirrorOpt = None,
    beta: Annotated[
        Optional[float], typer.Option(callback=finite, help="Weight of the runner-up in the decision score.")
    ] = None,
    migrate_from: Annotated[
        Optional[str],
        typer.Option(
            "--migrate-from",
            help="Enrol the gallery with this model, then move it to --model with `gallery migrate` (from chips).",
        ),
    ] = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """LFW open-set identification: rank-1, DIR at FPIR 1% and 0.1% (one JSON line)."""
    from faceid.cache import EmbeddingCache
    from faceid.eval.lfw import lfw_people
    from faceid.eval.openset import evaluate_openset
    from faceid.eval.sizes import threshold_by_size

    with cli_errors():
        try:
            total = sum(len(v) for v in lfw_people(data).values())
        except OSError as exc:
            raise FaceIDError(f"{data}: not an LFW folder ({exc})") from None
        store = EmbeddingCache(cache)
        pipeline = _eval_pipeline(ctx, align, crop_margin, mirror, model, detector)
        source = None
        if migrate_from is not None:
            if sizes:
                raise FaceIDError("--migrate-from does not go with --sizes")
            from faceid.embedding_key import EmbeddingKey

            source = new_pipeline(ctx, EmbeddingKey.for_model(migrate_from))
        with progress_bar(total if people is None else 0, "embedding LFW", not quiet) as tick:
            if sizes:
                for row in threshold_by_size(data, pipeline, cache=store, progress=tick):
                    typer.echo(json.dumps(row))
                return
            report = evaluate_openset(
                data,
                pipeline,
                enrol=enrol,
                cache=store,
                max_people=people,
                max_strangers=strangers,
                beta=beta,
                progress=tick,
                migrate_from=source,
            )
    typer.echo(json.dumps(report.to_json()))
    _eval_failures(report)


@eval_app.command("cluster")
def eval_cluster(
    ctx: typer.Context,
    data: DataOpt,
    subset: Annotated[
        str, typer.Option(help="People to group: all, A-M (where the settings were chosen) or N-Z.")
    ] = "all",
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also run the baselines (about a minute).")
    ] = True,
    filters: Annotated[
        bool,
        typer.Option(
            "--filters", help="Instead: measure minimum face size and confidence for keeping (one line per row)."
        ),
    ] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep", help="Instead: each impostor-rate rule of a grid on A-M, N-Z and all (one line per rule)."
        ),
    ] = False,
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """LFW grouping: every face kept as unknown and grouped with the model's numbers; pairwise and
    BCubed precision, recall, F, groups, faces left ungrouped, seconds (one JSON line), plus
    baselines, and the numbers the impostor-rate rule derives for the model on LFW A-M (what
    faceid.thresholds.GROUPING stores) and on N-Z (the check)."""
    from faceid.cache import EmbeddingCache
    from faceid.eval.grouping import (
        BASELINES,
        KEEP_RULE_SIZE,
        chosen_filter,
        evaluate_attach,
        evaluate_grouping,
        filter_table,
        grouping_settings,
        lfw_detections,
        lfw_faces,
        sweep_rules,
    )
    from faceid.eval.lfw import lfw_people

    with cli_errors():
        try:
            total = sum(len(v) for v in lfw_people(data).values())
        except OSError as exc:
            raise FaceIDError(f"{data}: not an LFW folder ({exc})") from None
        if subset.lower() != "all" and subset.upper() not in ("A-M", "N-Z"):
            raise FaceIDError(f"--subset takes all, A-M or N-Z, got {subset!r}")
        pipeline = _eval_pipeline(ctx, None, None, None, model, detector)
        if filters:
            with progress_bar(total, "embedding LFW", not quiet) as tick:
                detections = lfw_detections(data, pipeline, cache=EmbeddingCache(cache), progress=tick)
            rows = filter_table(detections, _filter_params(pipeline.key))
            for row in [*rows, chosen_filter(rows, KEEP_RULE_SIZE)]:
                typer.echo(json.dumps(row))
            _cluster_errors(detections.errors)
            return
        with progress_bar(total, "embedding LFW", not quiet) as tick:
            faces = lfw_faces(data, pipeline, cache=EmbeddingCache(cache), progress=tick)
        if sweep:
            for row in sweep_rules(faces):
                typer.echo(json.dumps({**row, "model": pipeline.key.model}))
            _cluster_errors(faces.errors)
            return
        settings = grouping_settings(faces, pipeline.key)
        reports = evaluate_grouping(
            faces, params=settings.params, baselines=BASELINES if baselines else (), subset=subset
        )
        incremental = evaluate_attach(faces, params=settings.params) if subset.lower() == "all" else None
    first, *rest = [r.to_json() for r in reports]
    line = {
        **first,
        "subset": subset,
        "model": pipeline.key.model,
        "params": {
            "threshold": settings.params.threshold,
            "floor": settings.params.floor,
            "margin": settings.params.margin,
            "source": settings.source,
        },
        "derived_on_a_m": settings.derived.to_json(),
        "derived_on_n_z": settings.check.to_json(),
        "left_out_no_face": faces.left_out,
        "errors": len(faces.errors),
        "attach": incremental,
        "baselines": rest,
    }
    typer.echo(json.dumps(line))
    _cluster_errors(faces.errors)


def _filter_params(key):
    """The grouping settings of ``key`` for the keep-filter table (the old defaults if none are measured)."""
    from faceid.cluster import GroupingParams, params_for
    from faceid.errors import UncalibratedError

    try:
        return params_for(key)
    except UncalibratedError:
        return GroupingParams()


def _cluster_errors(errors: dict[str, str]) -> None:
    """After the figures: one stderr line per image that could not be read or that the pipeline
    failed on (left out of the figures), and a non-zero exit if there was any."""
    for path, message in errors.items():
        err(f"faceid: error: {path}: {message}")
    if errors:
        err(f"faceid: {len(errors)} images could not be used; the figures leave them out")
        raise typer.Exit(1)


def _lfw_image_count(data: Path, folds) -> int:
    from faceid.eval.lfw import read_pairs

    try:
        pairs, _, fold = read_pairs(data)
    except (OSError, ValueError) as exc:
        raise FaceIDError(f"{data}: not an LFW folder with protocol/pairs.txt ({exc})") from None
    return len({p for (pair, k) in zip(pairs, fold) if folds is None or k in folds for p in pair})


# -- benchmark -------------------------------------------------------------------------------------


@app.command()
def bench(
    data: Annotated[
        Optional[Path],
        typer.Option(help="Evaluation data folder with lfw/ and bigbang/ [default: $FACEID_DATA or ../shared/data]."),
    ] = None,
    images: Annotated[
        int, typer.Option(min=1, max=10**9, help="LFW photos for the command-line comparison and the Ray figures.")
    ] = 500,
    sizes: Annotated[str, typer.Option(help="Gallery sizes for the index figures, comma-separated.")] = (
        "10000,100000,1000000"
    ),
    only: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated parts: machine, embedding, detection, identify, cli, coldstart, detectors, "
            "gallery, cluster, unknown, serve, big-photos, milvus, ray, video [default: all]."
        ),
    ] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A quick run that checks every part works.")] = False,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="Embedding model(s) that the identify and cli parts measure, comma-separated; several run "
            "alternately in the cli part [default: the default model]."
        ),
    ] = None,
    detector: Annotated[
        Optional[str],
        typer.Option(
            "--detector",
            help="Face detector(s) that the identify, cli and coldstart parts measure, comma-separated "
            "(mtcnn,yunet: side by side in one run) [default: mtcnn].",
        ),
    ] = None,
) -> None:
    """Measure speed side by side in one run (against face_recognition too, if installed): one JSON line per figure."""
    from faceid import bench as benchmark
    from faceid import models

    parts = [p.strip() for p in only.split(",") if p.strip()] if only else list(benchmark.PARTS)
    try:
        counts = [int(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        err(f"faceid: error: --sizes takes comma-separated integers, got {sizes!r}")
        raise typer.Exit(2) from None
    if tiny:
        images, counts = min(images, 3), [1000, 2000]
    chosen: list[str | None] = [m.strip() for m in model.split(",") if m.strip()] if model else [None]
    with cli_errors():
        for name in chosen:
            if name is not None:
                models.get_spec(name)  # an unknown model: one line, before anything runs
        finders = [check_detector(d.strip()) for d in detector.split(",") if d.strip()] if detector else [None]
        try:
            for figure in benchmark.run(
                parts,
                data=data or benchmark.default_data(),
                images=images,
                sizes=counts,
                tiny=tiny,
                models=chosen,
                detectors=finders,
            ):
                typer.echo(json.dumps(figure))
        except ValueError as exc:
            err(f"faceid: error: {exc}")
            raise typer.Exit(2) from None
