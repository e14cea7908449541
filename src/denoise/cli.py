"""The `denoise` command line: one command per pipeline stage, plus run and model-summary.

Each stage command loads params.yaml and calls the stage module's run(params); heavy modules
(TensorFlow) are imported inside the commands that need them, so light stages start fast.

Over 400 lines: fourteen commands, each a thin wrapper that parses options, calls one module
and prints its summary; the file is the reference of what the command line offers, and its
logic lives in the modules the commands call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from denoise.core import lifeline, runtime
from denoise.core.architectures import ARCHITECTURES
from denoise.core.atomic import is_disk_full
from denoise.core.config import Params, default_params, load_params, params_from_dict
from denoise.core.errors import DenoiseError, StoppedError
from denoise.core.locations import tracking_uri
from denoise.core.params_file import read_values, with_recipe
from denoise.tracking.server import tracking_error

app = typer.Typer(
    help="Turn raw video into trained, versioned denoising models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file (params.yaml).")
]
Command = TypeVar("Command", bound=Callable[..., Any])


# Keras re-raises an error from inside a layer's call with this preamble and the arguments.
_KERAS_WRAPPED = "Exception encountered when calling"


def _user_errors(command: Command) -> Command:
    """Turn a DenoiseError, a stop (StoppedError), a tracking server that stopped answering or
    a full disk into one line on standard error and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (DenoiseError, StoppedError) as error:
            message = str(error)
            if message.startswith(_KERAS_WRAPPED):  # raised inside a layer's call: unwrap
                message = message.split("\n\n")[1]
        except Exception as error:
            tracking = tracking_error(error)
            if tracking is not None:
                message = str(tracking)
            elif is_disk_full(error):
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                message = f"no space left on the device ({reason}); free space and run again"
            else:
                raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main() -> None:
    """Set TensorFlow's CPU options; quiet its and FFmpeg's C++ chatter unless asked for.

    Decoding problems still reach the user, as one `error:` line from the extract stage.
    """
    runtime.configure()
    # Past the file-size limit (ulimit -f) a write fails with EFBIG, handled as a full disk,
    # instead of the signal killing the process mid-write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _load(params_path: Path) -> Params:
    return load_params(params_path)


def _stage(params_path: Path) -> Params:
    """A pipeline stage's params; from here on the stage stops when the `dvc` (or flow) that
    started it ends, and ends its MLflow runs FAILED on SIGTERM."""
    lifeline.watch()
    return _load(params_path)


@app.command()
@_user_errors
def preflight(params: ParamsOption = Path("params.yaml")) -> None:
    """Check params, raw inputs and the tracking server before any stage deletes an output."""
    from denoise.stages import preflight as stage

    summary = stage.run(_stage(params))
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
    from denoise.stages import extract as stage

    summary = stage.run(_stage(params))
    counts = ", ".join(f"{split} {count}" for split, count in summary.frames_per_split.items())
    typer.echo(f"extracted {summary.num_sources} source(s): {counts} frames")


@app.command()
@_user_errors
def noise(params: ParamsOption = Path("params.yaml")) -> None:
    """Write the fixed noisy evaluation sets (float32, unclipped, fixed seed)."""
    from denoise.stages import noise as stage

    summary = stage.run(_stage(params))
    sets = ", ".join(f"{name} {count}" for name, count in summary.images_per_set.items())
    typer.echo(f"evaluation sets: {sets} images at {', '.join(summary.levels)}")


@app.command()
@_user_errors
def validate(params: ParamsOption = Path("params.yaml")) -> None:
    """Check frames and evaluation sets with Great Expectations; write the report (Data Docs)."""
    from denoise.stages import validate as stage

    summary = stage.run(_stage(params))
    for suite in summary.suites:
        typer.echo(f"{suite.name}: {len(suite.outcomes)} expectations met on {suite.rows} rows")
    typer.echo(f"report: {summary.report}")


@app.command()
@_user_errors
def init(params: ParamsOption = Path("params.yaml")) -> None:
    """Resolve each model's starting weights (init_from) into paths.init, for train."""
    from denoise.stages import init as stage

    summary = stage.run(_stage(params))
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
        typer.Option("--model", help="Train this model of train.models alone [default: all]."),
    ] = None,
) -> None:
    """Train the models of params.train.models on streamed noisy patches (train@<model>)."""
    from denoise.stages import train as stage

    summary = stage.run(_stage(params), model)
    for name, info in summary.models.items():
        typer.echo(
            f"{name}: {info['parameters']:,} parameters, {info['epochs']} epochs, "
            f"best val PSNR {info['val_psnr']:.2f} dB, {info['train_seconds']:.0f} s"
        )


@app.command()
@_user_errors
def evaluate(params: ParamsOption = Path("params.yaml")) -> None:
    """Score the noisy input, classical baselines and trained models; print the table."""
    from denoise.stages import evaluate as stage

    summary = stage.run(_stage(params))
    typer.echo(summary.table)


@app.command()
@_user_errors
def register(params: ParamsOption = Path("params.yaml")) -> None:
    """Register every trained model in MLflow; move `champion` only to a better model."""
    from denoise.stages import register as stage

    summary = stage.run(_stage(params))
    for decision in summary.decisions:
        typer.echo(
            f"{decision.registered_model} v{decision.version} ({decision.model}): "
            f"{decision.score:.2f} dB -> {decision.alias or 'rejected'} ({decision.reason})"
            + (f"; holds {decision.holds}" if decision.holds else "")
        )


@app.command()
@_user_errors
def ui(
    params: ParamsOption = Path("params.yaml"),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the tracking store the pipeline logs to (local SQLite default),
    and print the link to the experiment's runs in the model-training view."""
    from denoise.tracking.runs import configure, experiment_link
    from denoise.tracking.server import check_server

    config = _load(params)
    uri = tracking_uri(config)
    if uri.startswith("http"):
        check_server(config)
        typer.echo(
            f"MLFLOW_TRACKING_URI is a server: open {experiment_link(uri, configure(config))}"
        )
        return
    experiment = configure(config)  # creates the store and experiment on first use
    link = experiment_link(f"http://127.0.0.1:{port}", experiment)
    typer.echo(f"MLflow UI on {link} ({uri}); Ctrl-C stops it")
    mlflow = Path(sys.executable).with_name("mlflow")
    os.execv(
        mlflow,
        [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
    )


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
            "shipped with denoise) [default: images: models:/<register.model_name>@champion, or "
            "the shipped model while none is registered; videos: "
            "models:/<register.video_model_name>@champion, or the image model frame by frame].",
        ),
    ] = None,
    tile: Annotated[
        int | None, typer.Option("--tile", help="Largest tile side [default: apply.tile_size].")
    ] = None,
    self_ensemble: Annotated[
        bool | None,
        typer.Option(
            "--self-ensemble/--no-self-ensemble",
            help="Average over 8 flips and quarter turns (8 model calls per tile) "
            "[default: apply.self_ensemble].",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="float32, or bfloat16 (mixed: faster on CPUs with native bf16 and on GPUs) "
            "[default: apply.precision].",
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
    }
    overrides = {key: value for key, value in options.items() if value is not None}
    try:
        config = dataclasses.replace(config, apply=dataclasses.replace(config.apply, **overrides))
    except DenoiseError as error:  # a ConfigError naming apply's key (--tile or --precision)
        bad_precision = str(error).startswith("precision")
        flag = f"--precision {precision}" if bad_precision else f"--tile {tile}"
        raise DenoiseError(f"{flag}: apply.{error}") from None
    summary = stage.run(config, inputs, output, model)
    for applied in summary.outputs:
        size = f"{applied.width}x{applied.height}"
        if applied.fps is not None:
            size += f", {applied.frames} frames, {applied.video}"
        typer.echo(f"{applied.source} -> {applied.output} ({size})")
        if applied.note:
            typer.echo(f"note: {applied.note}", err=True)
    typer.echo(f"model: {summary.model_uri}")
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


@app.command()
@_user_errors
def run(
    params: ParamsOption = Path("params.yaml"),
    pull: Annotated[bool, typer.Option("--pull", help="dvc pull before the stages.")] = False,
    push: Annotated[bool, typer.Option("--push", help="dvc push after the stages.")] = False,
    branch: Annotated[
        str | None, typer.Option("--branch", help="git checkout this branch first.")
    ] = None,
    results_branch: Annotated[
        str | None,
        typer.Option("--results-branch", help="commit dvc.lock and reports to this branch."),
    ] = None,
    fan_out: Annotated[
        bool,
        typer.Option(
            "--fan-out",
            help="Train each model as a run of the train-model deployment on the pool.",
        ),
    ] = False,
) -> None:
    """Run the Prefect flow `denoise-pipeline` (each task one DVC stage), print the table.

    DVC skips stages whose inputs did not change. With no PREFECT_API_URL set, Prefect runs
    the flow against a temporary local server. --fan-out needs a server with the train-model
    deployment and a worker for it (`make serve`), and a DVC remote.
    """
    config = _load(params)
    if params.resolve() != Path("params.yaml").resolve():
        raise DenoiseError(
            f"{params}: DVC stages read ./params.yaml; run from the project "
            "root, or change values with `dvc exp run -S key=value`"
        )
    for required in (".dvc", "flows"):
        if not Path(required).is_dir():
            raise DenoiseError(f"{Path.cwd()}: no {required}/ here; run from the project root")
    # Before the flow starts: the DVC remote answers, and (unless a pull or another branch
    # brings them) the raw inputs open; the flow's process checks the Prefect API before its
    # first task, and its preflight stage checks again.
    from denoise import workspace
    from denoise.stages import preflight as checks

    if fan_out and not os.environ.get("PREFECT_API_URL"):
        raise DenoiseError(
            "--fan-out runs each model on a work pool: set PREFECT_API_URL to a Prefect server "
            "with the train-model deployment and a worker (make serve)"
        )
    for transfer, wanted in (("pull", pull), ("push", push or fan_out)):
        if wanted:
            workspace.check_dvc_remote(Path.cwd(), transfer, config.services)
    checks.check(config, sources=not (pull or branch))
    env = {
        # The temporary server migrates its database on first start: slow on a small machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        # No telemetry: it needs the network, and it races the first start's migrations.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **os.environ,
    }
    command = [sys.executable, "-m", "flows.pipeline"]
    command += ["--pull"] * pull + ["--push"] * push
    command += ["--branch", branch] if branch else []
    command += ["--results-branch", results_branch] if results_branch else []
    command += ["--fan-out"] * fan_out
    completed = subprocess.run(command, check=False, env=env)
    if completed.returncode == workspace.SERVICE_CHECK_EXIT:  # the Prefect API: line printed
        raise typer.Exit(1)
    if completed.returncode != 0:
        raise DenoiseError(
            f"the pipeline failed (exit status {completed.returncode}): remove the bad input, "
            "or return to the last commit's outputs with `denoise restore` (stages that passed "
            "recorded the bad input in dvc.lock)"
        )
    table = Path(config.paths.evaluation) / "metrics.md"
    if table.is_file():
        typer.echo(table.read_text())


@app.command()
@_user_errors
def push(
    remote: Annotated[
        str | None, typer.Option("--remote", "-r", help="DVC remote (default: the default).")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """`dvc push --run-cache`, with the objects the run cache needs that DVC does not send.

    A clone or worker that pulls the run cache (`dvc pull --run-cache`) then restores every
    stage that ran here with the same code, params and inputs instead of running it.
    """
    from denoise import workspace

    pushed = workspace.push(Path.cwd(), _load(params).services, remote)
    if pushed.output:
        typer.echo(pushed.output)
    typer.echo(f"run cache: {pushed.sent} more objects sent")
    if pushed.missing:
        typer.echo(
            f"run cache: {pushed.missing} objects of older runs are no longer in the local cache "
            "(dvc gc); those runs cannot be restored elsewhere"
        )


@app.command()
@_user_errors
def restore(params: ParamsOption = Path("params.yaml")) -> None:
    """Return the tree to the last commit's pipeline state after a failed or killed run.

    Puts back dvc.lock, the .dvc files, the reports git keeps and the outputs DVC caches
    (fetched from the remote when the cache lacks one); leaves params.yaml and code as they are.
    """
    from denoise import workspace

    summary = workspace.restore(Path.cwd(), _load(params))
    typer.echo(f"restored {', '.join(summary.restored)} and the cached outputs from HEAD")
    for path in summary.set_aside:
        typer.echo(f"set aside {path}: the last commit does not hold it (move it back to use it)")
    if summary.corrupt:
        typer.echo(f"corrupt DVC cache entries dropped: {', '.join(summary.corrupt)}")
    if summary.refetched:
        typer.echo("fetched missing or corrupt cache entries from the DVC remote")
    if summary.edited:
        typer.echo(
            f"still edited (left as they are; `dvc status` shows their stages): "
            f"{', '.join(summary.edited)}"
        )


@app.command()
@_user_errors
def recipe(
    name: Annotated[str, typer.Argument(help="A recipe of params.yaml `recipes`.")],
    queue: Annotated[
        bool, typer.Option("--queue", help="Queue the experiment (dvc queue start runs it).")
    ] = False,
) -> None:
    """Run a named recipe: build its still folders, then `dvc exp run -n NAME -S ...`.

    A recipe is a named set of params (a profile and what a profile cannot hold, such as
    extract.train_only), so every reported model comes from one command.
    """
    from denoise.stages import samples

    values = read_values("params.yaml")
    config = params_from_dict(with_recipe(values, name))
    for folder, content in samples.build_stills(config).items():
        typer.echo(f"{config.paths.raw}/{folder}: {content}")
    dvc = str(Path(sys.executable).with_name("dvc"))
    # DVC reads each -S value as YAML: write it in YAML's one-line (flow) form.
    flow = {
        key: yaml.safe_dump(value, default_flow_style=True)
        for key, value in values["recipes"][name].items()
    }
    settings = [f"{key}={text.removesuffix('...' + chr(10)).strip()}" for key, text in flow.items()]
    if not Path(config.paths.raw).is_dir():
        raise DenoiseError(
            f"recipe {name}: {config.paths.raw} is missing; run `denoise samples` (make samples) "
            "or put your videos there first"
        )
    added = subprocess.run([dvc, "add", "--quiet", config.paths.raw], check=False)
    if added.returncode != 0:
        raise DenoiseError(f"recipe {name}: dvc add {config.paths.raw} failed")
    command = [dvc, "exp", "run", "-n", name, *(["--queue"] * queue)]
    command += [part for setting in settings for part in ("-S", setting)]
    typer.echo(" ".join(["dvc", *command[1:]]))
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise DenoiseError(
            f"recipe {name}: dvc exp run failed (exit status {completed.returncode})"
        )
