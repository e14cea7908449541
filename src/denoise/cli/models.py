"""Commands on models: apply a denoiser to images and videos, summarise an architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from denoise.cli.base import ParamsOption, _load, _user_errors, app
from denoise.core.architectures import ARCHITECTURES
from denoise.core.config import default_params
from denoise.core.errors import DenoiseError


@app.command()
@_user_errors
def apply(
    inputs: Annotated[
        list[Path], typer.Argument(help="Images, videos, or folders of them (not recursive).")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Output folder (created), or a file name for one input."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="models:/NAME@ALIAS, runs:/ID/model, a .keras file, or `pretrained` (the model "
            "shipped with denoise).",
            show_default="the champion: the shipped model while none is registered; videos: the "
            "video champion, else the image model frame by frame",
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option("--tile", help="Largest tile side.", show_default="apply.tile_size"),
    ] = None,
    self_ensemble: Annotated[
        bool | None,
        typer.Option(
            "--self-ensemble/--no-self-ensemble",
            help="Average over 8 flips and quarter turns (8 model calls per tile).",
            show_default="apply.self_ensemble",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="The keras backend's: float32, or bfloat16 (mixed: faster on CPUs with native "
            "bf16 and on GPUs). OpenVINO takes bfloat16 where the CPU has it.",
            show_default="apply.precision",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="keras, openvino (a converted copy, kept; bfloat16 where the CPU has it; the "
            "`fast` extra), or auto (openvino where installed).",
            show_default="apply.backend",
        ),
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Denoise images and videos at full resolution with tiled inference.

    A temporal (video) model denoises each frame from the window of frames around it, the ends
    reflected, holding only a window in memory. Videos come out at the source's size, frame
    rate and frame count; images at their bit
    depth where the format keeps it (16-bit PNG and TIFF), else 8-bit. Greyscale stays
    greyscale (three neighbouring pixels go in as one RGB pixel, in six packings averaged: about
    twice the time); an alpha channel is copied through unchanged. An output that cannot be
    written is reported before the model loads.
    """
    import dataclasses

    from denoise.serving import apply as stage

    # Outside the project (no ./params.yaml), the defaults serve: apply needs no data paths.
    default = params == Path("params.yaml") and not params.exists()
    config = default_params() if default else _load(params)
    options: dict[str, Any] = {
        "tile_size": tile,
        "self_ensemble": self_ensemble,
        "precision": precision,
        "backend": backend,
    }
    overrides = {key: value for key, value in options.items() if value is not None}
    try:
        config = dataclasses.replace(config, apply=dataclasses.replace(config.apply, **overrides))
    except DenoiseError as error:  # a ConfigError naming apply's key (--tile or --precision)
        flags = {"precision": f"--precision {precision}", "backend": f"--backend {backend}"}
        flag = flags.get(str(error).split(":")[0], f"--tile {tile}")
        raise DenoiseError(f"{flag}: apply.{error}") from None
    summary = stage.run(config, inputs, output, model)
    for applied in summary.outputs:
        size = f"{applied.width}x{applied.height}"
        if applied.fps is not None:
            size += f", {applied.frames} frames, {applied.video}"
        typer.echo(f"{applied.source} -> {applied.output} ({size})")
        if applied.note:
            typer.echo(f"note: {applied.note}", err=True)
    typer.echo(f"model: {summary.model_uri} ({summary.backend})")
    if summary.video_model_uri not in (None, summary.model_uri):
        typer.echo(f"video model: {summary.video_model_uri}")


@app.command("model-summary")
@_user_errors
def model_summary(
    name: Annotated[
        str,
        typer.Argument(help=f"Architecture ({', '.join(ARCHITECTURES)}) or train.variants name."),
    ],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Print the Keras summary of a model at the configured frame size, and its multiply-adds
    per pixel (what "similar compute" compares)."""
    from denoise.models.build import build_model, multiply_adds_per_pixel

    config = _load(params)
    known = [*ARCHITECTURES, *config.train.variants]
    if name not in known:
        raise DenoiseError(f"unknown model {name!r} (known: {', '.join(known)})")
    size = config.extract.size
    model = build_model(name, config.train, input_size=size)
    model.summary(print_fn=lambda line, **_: typer.echo(line))
    typer.echo(f"multiply-adds per pixel (convolutions): {multiply_adds_per_pixel(model):,.0f}")
