"""Commands on the project as a whole: the MLflow UI, a pipeline run, pushing and restoring
its state, and named recipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from denoise.cli.base import ParamsOption, _load, _user_errors, app
from denoise.core import locks
from denoise.core.config import Params, params_from_dict
from denoise.core.errors import DenoiseError, StoppedError
from denoise.core.locations import tracking_uri
from denoise.core.params_file import read_values, with_recipe


@app.command()
@_user_errors
def ui(
    params: ParamsOption = Path("params.yaml"),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the tracking store the pipeline logs to (local SQLite default),
    and print the link to the experiment's runs in the model-training view."""
    from denoise.tracking.runs import configure
    from denoise.tracking.server import check_server
    from denoise.tracking.views import experiment_link

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
    # One worker: one person's UI (MLflow starts four, whose first page under load failed);
    # open connections get 1 s when it stops, so Ctrl-C ends it at once. No job runner: its
    # eight processes serve GenAI jobs (trace roll-ups, scorers) this project never submits,
    # and slowed both the start and the stop.
    server = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    shutdown = ["--uvicorn-opts", "--timeout-graceful-shutdown 1"]
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    os.execv(mlflow, [str(mlflow), "ui", "--backend-store-uri", uri, *server, *shutdown])


@app.command()
@_user_errors
def run(
    context: typer.Context,
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
    deployment and a worker for it (`make serve`), and a DVC remote. The options other than
    --params are the flow's parameters of the same names (tests/test_consistency.py).
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
    # One run per tree, decided before anything is checked or changed: the flow's process
    # inherits the lock, and holds it on if this one is killed.
    with locks.pipeline_run(Path.cwd(), "denoise run") as descriptor:
        _run_flow(context, config, pull, push, branch, fan_out, descriptor)


def _run_flow(
    context: typer.Context,
    config: Params,
    pull: bool,
    push: bool,
    branch: str | None,
    fan_out: bool,
    lock: int | None,
) -> None:
    """The checks before the flow, the flow in a process of its own, and its table."""
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
    options = {name: value for name, value in context.params.items() if name != "params"}
    command = [sys.executable, "-m", "flows.pipeline", json.dumps(options)]
    if lock is not None:
        env[locks.RUN_LOCK_FD] = str(lock)
    passed = (lock,) if lock is not None else ()
    flow = subprocess.Popen(command, env=env, pass_fds=passed)
    stops: list[int] = []

    def forward(signum: int, frame: object) -> None:
        """A stop of `denoise run` stops the flow, which ends its stage and tracking run."""
        stops.append(signum)
        flow.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = flow.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stops:
        raise StoppedError(
            f"stopped by {signal.Signals(stops[0]).name}; the pipeline's tracking run ended KILLED"
        )
    if returncode == workspace.SERVICE_CHECK_EXIT:  # the Prefect API: line printed
        raise typer.Exit(1)
    if returncode != 0:
        raise DenoiseError(
            f"the pipeline failed (exit status {returncode}): remove the bad input, "
            "or return to the last commit's outputs with `denoise restore` (stages that passed "
            "recorded the bad input in dvc.lock)"
        )
    _report(config)


def _report(config: Params) -> None:
    """The end of a run: the headline table (best in bold), the champion against NLM and BM3D,
    where the results are, and what to run next."""
    from rich.console import Console
    from rich.table import Table

    from denoise.core.noise import level_name
    from denoise.evaluation.summary import champion_line, headline_table

    metrics_path, registry_path = Path(config.paths.metrics), Path(config.paths.registry)
    if not metrics_path.is_file():
        return
    metrics = json.loads(metrics_path.read_text())
    first = config.register.score_set  # the set scores are decided on, first
    metrics["sets"] = dict(sorted(metrics["sets"].items(), key=lambda item: item[0] != first))
    level = level_name("gaussian", config.noise.validation_sigma)
    order = [*config.evaluate.methods, *config.train.models]
    header, rows, best = headline_table(metrics, level, order)
    table = Table(title=f"{level}, every set (all levels: {config.paths.evaluation}/metrics.md)")
    for position, name in enumerate(header):
        table.add_column(name, justify="left" if position == 0 else "right")
    for row, cells in enumerate(rows):
        table.add_row(
            *(
                f"[bold]{cell}[/bold]" if (row, column) in best else cell
                for column, cell in enumerate(cells)
            )
        )
    console = Console(width=max(100, Console().width))
    console.print(table)
    decisions = []
    if registry_path.is_file():
        decisions = [
            decision
            for decision in json.loads(registry_path.read_text())["decisions"]
            if decision["registered_model"] == config.register.model_name
        ]
    typer.echo(champion_line(decisions, metrics, config.register.score_set, level))
    typer.echo(
        f"results: {config.paths.evaluation}/ (tables, triptychs), {config.paths.metrics}, "
        "and every run in MLflow (make ui)"
    )
    typer.echo(
        "next: denoise apply INPUT -o OUTPUT (the champion), make ui (compare runs), "
        "dvc exp run -S key=value (try a change)"
    )


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
