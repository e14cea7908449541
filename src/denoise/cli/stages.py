"""One command per DVC stage (dvc.yaml runs `denoise <stage>`), and samples before them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from denoise.cli.base import ParamsOption, _load, _stage, _user_errors, app


@app.command()
@_user_errors
def preflight(params: ParamsOption = Path("params.yaml")) -> None:
    """Check params, raw inputs and the tracking server before any stage deletes an output."""
    config = _stage(params)
    from denoise.stages import preflight as stage

    summary = stage.run(config)
    for path in summary.removed:
        typer.echo(f"removed {path} (left by a killed stage)")
    for run_id in summary.abandoned_runs:
        typer.echo(f"MLflow run {run_id}: its process is gone; ended FAILED")
    typer.echo(f"preflight: {', '.join(stage.CHECKS)} ({summary.sources} source(s))")


@app.command()
@_user_errors
def samples(params: ParamsOption = Path("params.yaml")) -> None:
    """Put the sample videos (Debian opencv-doc, or a synthetic fallback) in paths.raw."""
    from denoise.stages import samples as stage

    config = _load(params)
    summary = stage.run(config)
    for name in summary.copied:
        typer.echo(f"copied {name} -> {config.paths.raw}/")
    for name in summary.present:
        typer.echo(f"present {config.paths.raw}/{name}")
    if summary.missing:
        typer.echo(
            f"not found: {', '.join(summary.missing)} (install Debian's opencv-doc: "
            "apt-get install opencv-doc)",
            err=True,
        )
    for folder, content in summary.stills.items():
        typer.echo(f"{config.paths.raw}/{folder}: {content}")
    if summary.synthetic:
        typer.echo(
            f"SYNTHETIC sample video {config.paths.raw}/{summary.synthetic}: rendered "
            "objects on a canvas, used because no real sample video was found",
            err=True,
        )


@app.command()
@_user_errors
def extract(params: ParamsOption = Path("params.yaml")) -> None:
    """Decode the videos and image folders in paths.raw into frame shards, a manifest, splits."""
    config = _stage(params)
    from denoise.stages import extract as stage

    summary = stage.run(config)
    counts = ", ".join(f"{split} {count}" for split, count in summary.frames_per_split.items())
    typer.echo(f"extracted {summary.num_sources} source(s): {counts} frames")
    noisy = [name for name, role in summary.roles.items() if role == "noisy"]
    if noisy:
        typer.echo(f"noisy sources (never clean targets): {', '.join(noisy)}")
    for note in summary.notes:
        typer.echo(f"note: {note}")


@app.command()
@_user_errors
def noise(params: ParamsOption = Path("params.yaml")) -> None:
    """Write the fixed noisy evaluation sets (float32, unclipped, fixed seed)."""
    config = _stage(params)
    from denoise.stages import noise as stage

    summary = stage.run(config)
    sets = ", ".join(f"{name} {count}" for name, count in summary.images_per_set.items())
    typer.echo(f"evaluation sets: {sets} images at {', '.join(summary.levels)}")


@app.command()
@_user_errors
def validate(params: ParamsOption = Path("params.yaml")) -> None:
    """Check frames and evaluation sets with Great Expectations; write the report (Data Docs)."""
    config = _stage(params)
    from denoise.stages import validate as stage

    summary = stage.run(config)
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for suite in summary.suites:
        typer.echo(f"{suite.name}: {len(suite.outcomes)} expectations met on {suite.rows} rows")
    typer.echo(f"report: {summary.report}")


@app.command()
@_user_errors
def init(params: ParamsOption = Path("params.yaml")) -> None:
    """Resolve each model's starting weights (init_from) into paths.init, for train."""
    config = _stage(params)
    from denoise.stages import init as stage

    summary = stage.run(config)
    for name, source in summary.sources.items():
        typer.echo(f"{name}: starts from {source['resolved']}")
    if not summary.sources:
        typer.echo("every model starts from scratch (no init_from)")


@app.command()
@_user_errors
def train(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Train this model of train.models alone.", show_default="all of them"
        ),
    ] = None,
) -> None:
    """Train the models of params.train.models on streamed noisy patches (train@<model>)."""
    config = _stage(params)
    from denoise.stages import train as stage

    summary = stage.run(config, model)
    for name, info in summary.models.items():
        typer.echo(
            f"{name}: {info['parameters']:,} parameters, {info['epochs']} epochs, "
            f"best val PSNR {info['val_psnr']:.2f} dB, {info['train_seconds']:.0f} s"
        )


@app.command()
@_user_errors
def evaluate(params: ParamsOption = Path("params.yaml")) -> None:
    """Score the noisy input, classical baselines and trained models; print the table.

    In a terminal; under DVC or the flow one line says where it is (`denoise run` ends with
    its own)."""
    config = _stage(params)
    from denoise.stages import evaluate as stage

    summary = stage.run(config)
    if sys.stdout.isatty():
        typer.echo(summary.table)
    else:
        sets = [*summary.metrics["sets"], *summary.metrics.get("clip_sets", {})]
        typer.echo(
            f"evaluate: {len(sets)} sets scored ({', '.join(sets)}); tables in "
            f"{config.paths.evaluation}/metrics.md"
        )


@app.command()
@_user_errors
def register(params: ParamsOption = Path("params.yaml")) -> None:
    """Register every trained model in MLflow; move `champion` only to a better model."""
    config = _stage(params)
    from denoise.stages import register as stage

    summary = stage.run(config)
    for decision in summary.decisions:
        typer.echo(
            f"{decision.registered_model} v{decision.version} ({decision.model}): "
            f"{decision.score:.2f} dB -> {decision.alias or 'rejected'} ({decision.reason})"
            + (f"; holds {decision.holds}" if decision.holds else "")
        )
