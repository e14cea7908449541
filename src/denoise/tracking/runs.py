"""MLflow at the stages' edges: the pipeline's parent run, stage runs, lineage tags.

The Prefect flow (`denoise run`) owns one MLflow parent run per pipeline run and hands its id
to the stage processes in DENOISE_MLFLOW_PARENT_RUN_ID; each stage that DVC does not skip logs
its child runs under it, and the flow records which stages ran, were skipped or failed. A bare
`dvc repro` has no such owner: each stage that runs logs a flat run of its own, tagged with the
stage and the git commit.

The local default store is SQLite plus an artifact folder under the repository root, found
through the git common directory so that git worktrees and DVC's temporary experiment copies
(.dvc/tmp/exps/...) all log to the one store; MLFLOW_TRACKING_URI points it at a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from denoise.core import lifeline, locks, services
from denoise.core.config import Params, params_to_dict
from denoise.core.errors import StoppedError
from denoise.core.locations import tracking_uri
from denoise.tracking import store
from denoise.tracking.lineage import git_output, lineage_tags
from denoise.tracking.views import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    VIEW,
    VIEW_TAG,
    relocate_artifacts,
    run_link,
)

PARENT_RUN_ENV = "DENOISE_MLFLOW_PARENT_RUN_ID"
STAGE_TAG = "denoise.stage"
STAGE_STATUS_TAG = "denoise.stage.{stage}"
# The process that opened a run: the next pipeline start ends its runs FAILED if it is gone.
HOST_TAG, PID_TAG, PID_START_TAG = "denoise.host", "denoise.pid", "denoise.pid_start"
FAILURE_TAG = "denoise.failure"


def _process_tags() -> dict[str, str]:
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PID_START_TAG: lifeline.start_time(),
    }


def fail_abandoned_runs(params: Params) -> list[str]:
    """End FAILED every RUNNING run whose process on this host is gone (killed or crashed),
    tagged with why; return their ids. Runs opened on other hosts are left alone."""
    host = socket.gethostname()
    try:  # usually none is RUNNING here: tell without loading MLflow (seconds)
        uri = tracking_uri(params)
        if not store.has_running_runs(uri, params.tracking.experiment, HOST_TAG, host):
            return []
    except store.Unknown:
        pass
    from mlflow.tracking import MlflowClient

    experiment_id = configure(params)
    client = MlflowClient()
    abandoned = []
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
    ):
        tags = run.data.tags
        pid = int(tags.get(PID_TAG, "0") or 0)
        if pid and lifeline.alive(pid, tags.get(PID_START_TAG, "")):
            continue
        client.set_tag(
            run.info.run_id,
            FAILURE_TAG,
            f"process {pid} on {host} ended without closing the run (killed or crashed); "
            "closed by the next pipeline start",
        )
        client.set_terminated(run.info.run_id, status="FAILED")
        abandoned.append(str(run.info.run_id))
    return abandoned


def configure(params: Params, root: Path | None = None) -> str:
    """Point MLflow at the store and the experiment (created on first use); return its id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(params, root)
    # MLflow retries a failed request 7 times over about 4 minutes by default: bound it, by
    # params.yaml alone (a stage's processes inherit the variables, with the same params).
    retries, backoff = services.retry_schedule(params.services)
    for name, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", backoff),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 0),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", max(1, round(params.services.timeout_seconds))),
    ):
        os.environ[name] = str(int(value))
    artifact_location = None
    first_use: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if uri.startswith("sqlite:///"):
        # Without a server, MLflow would put artifacts in ./mlruns of whatever folder runs it.
        database = Path(uri.removeprefix("sqlite:///"))
        (database.parent / "artifacts").mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "artifacts").as_uri()
        # Processes that open a new store at once (`dvc queue start -j 2`) would each create
        # its tables and the experiment: one at a time.
        first_use = locks.waiting(f"{database}.lock")
    mlflow.set_tracking_uri(uri)
    # A failed write to a SQLite store is raised to the caller (one line from the CLI); MLflow
    # would also log it with its traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    with first_use:
        client = MlflowClient()
        experiment = client.get_experiment_by_name(params.tracking.experiment)
        tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, VIEW_TAG: VIEW}
        experiment_id: str
        if experiment is None:
            experiment_id = client.create_experiment(
                params.tracking.experiment, artifact_location=artifact_location, tags=tags
            )
        else:
            experiment_id = str(experiment.experiment_id)
            for key, wanted in tags.items():
                if experiment.tags.get(key) != wanted:
                    client.set_experiment_tag(experiment_id, key, wanted)
            recorded = experiment.artifact_location
            # The repository moved or was copied: its store names the old folder beside it. A
            # location of the user's choosing (not such a folder) is left alone.
            ours = f"/{Path(params.tracking.local_store).name}/artifacts"
            moved = recorded.startswith("file://") and recorded.endswith(ours)
            if artifact_location and recorded != artifact_location and moved:
                database = Path(uri.removeprefix("sqlite:///"))
                relocate_artifacts(database, recorded, artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"epochs": 10}} -> {"train.epochs": "10"}; lists stay whole."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def run_params(params: Params) -> dict[str, str]:
    """Every params.yaml value, flattened, plus the active training profile's settings under
    train.active.* so runs of different profiles compare in one column of the UI."""
    active = {"train": {"active": dataclasses.asdict(params.train.active)}}
    return {**flatten(params_to_dict(params)), **flatten(active)}


def open_pipeline_run(
    params: Params, tags: dict[str, str] | None = None, name: str = "pipeline"
) -> str:
    """Start the parent run of one pipeline run, log every parameter; return its id.

    The run stays RUNNING: whoever opened it (the flow, or a stage of a bare `dvc repro`)
    sets its final status.
    """
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    experiment_id = configure(params)
    client = MlflowClient()
    commit = git_output("rev-parse", "--short", "HEAD")
    run = client.create_run(
        experiment_id,
        run_name=f"{name}: {commit or 'no commit'}",
        tags={**lineage_tags(params), **_process_tags(), **(tags or {})},
    )
    flat = run_params(params)
    client.log_batch(run.info.run_id, params=[Param(key, value) for key, value in flat.items()])
    return str(run.info.run_id)


def _pipeline_parent(params: Params, stage: str) -> tuple[str, bool]:
    """The run a stage logs under, and whether this process owns it (sets its status).

    Under the flow, the flow's parent run (PARENT_RUN_ENV). A bare `dvc repro` has no such
    run: each stage that runs opens a flat run of its own, named and tagged with the stage and
    tagged with the commit, under which its child runs nest.
    """
    given = os.environ.get(PARENT_RUN_ENV)
    if given:
        return given, False
    return open_pipeline_run(params, tags={STAGE_TAG: stage}, name=stage), True


def record_stages(run_id: str, statuses: dict[str, str]) -> None:
    """Tag the parent run with each stage's status: ran, skipped or failed. A foreach stage's
    name, train@<model>, is tagged as train/<model> (MLflow keys allow no "@")."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for stage, status in statuses.items():
        client.set_tag(run_id, STAGE_STATUS_TAG.format(stage=stage.replace("@", "/")), status)


def close_pipeline_run(
    run_id: str, statuses: dict[str, str], status: str, name: str | None = None
) -> str:
    """Tag each stage's status on the parent run, end it with status (and name it for what it
    did); return its UI link."""
    from mlflow.tracking import MlflowClient

    record_stages(run_id, statuses)
    client = MlflowClient()
    if name:
        client.update_run(run_id, name=name)
    client.set_terminated(run_id, status=status)
    return run_link(run_id)


# A stop (SIGTERM, Ctrl-C, a cancel, the lifeline when the process that started the stage
# ended) ends a run KILLED; an error, FAILED.
STOPS = (StoppedError, KeyboardInterrupt)


@contextlib.contextmanager
def _run(**arguments: Any) -> Iterator[Any]:
    """mlflow.start_run, which ends the run FAILED on any exception; KILLED on a stop."""
    import mlflow

    with mlflow.start_run(**arguments) as run:
        try:
            yield run
        except STOPS:
            mlflow.end_run("KILLED")
            raise


def _log_metrics_now(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    """metrics on a run at step 0, in one request, without reopening it."""
    import time

    from mlflow.entities import Metric

    if metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])


class StageTracker:
    """What a stage's run() uses to log: child runs under the pipeline's parent run."""

    def __init__(self, params: Params, stage: str, parent_run_id: str) -> None:
        self.params, self.stage, self.parent_run_id = params, stage, parent_run_id

    @contextlib.contextmanager
    def child(
        self, run_name: str, tags: dict[str, str] | None = None, system_metrics: bool = False
    ) -> Iterator[str]:
        """A new child run with every parameter and the lineage tags; yields its id.

        system_metrics: sample CPU, memory, disk, network and GPU use into the run (system/*
        metrics) every params.tracking.system_metrics_seconds, unless that is 0.
        """
        import mlflow
        from mlflow.system_metrics import (
            set_system_metrics_samples_before_logging,
            set_system_metrics_sampling_interval,
        )

        seconds = self.params.tracking.system_metrics_seconds
        sample = system_metrics and seconds > 0
        if sample:
            set_system_metrics_sampling_interval(seconds)
            set_system_metrics_samples_before_logging(1)
        with _run(
            run_name=run_name,
            parent_run_id=self.parent_run_id,
            tags={
                STAGE_TAG: self.stage,
                **lineage_tags(self.params),
                **_process_tags(),
                **(tags or {}),
            },
            log_system_metrics=sample,
        ) as run:
            mlflow.log_params(run_params(self.params))
            yield str(run.info.run_id)

    @contextlib.contextmanager
    def resume(self, run_id: str) -> Iterator[str]:
        """Log more to an existing run (a model's training run, from a later stage)."""
        with _run(run_id=run_id):
            yield run_id

    def log_later(
        self,
        run_id: str,
        metrics: dict[str, float],
        data: dict[str, dict[str, Any]] | None = None,
        files: list[tuple[Path, str]] | None = None,
    ) -> None:
        """Results of a finished run (a model's training run) logged to it without reopening
        it, so its status and duration stay its own work. data: artifact file -> JSON dict;
        files: (local file, artifact folder)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        _log_metrics_now(client, run_id, metrics)
        for artifact_file, values in (data or {}).items():
            client.log_dict(run_id, values, artifact_file)
        for local, artifact_path in files or []:
            client.log_artifact(run_id, str(local), artifact_path)

    def log_to_parent(
        self,
        summary: dict[str, Any] | None = None,
        texts: dict[str, str] | None = None,
        folders: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Artifacts and metrics on the pipeline's parent run, leaving its status to whoever
        owns it.

        summary goes to stages/<stage>.json; texts maps artifact file -> text; folders maps a
        local folder -> its artifact path; metrics show as the runs table's columns.
        """
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        _log_metrics_now(client, self.parent_run_id, metrics or {})
        if summary is not None:
            client.log_dict(self.parent_run_id, summary, f"stages/{self.stage}.json")
        for artifact_file, text in (texts or {}).items():
            client.log_text(self.parent_run_id, text, artifact_file)
        for folder, artifact_path in (folders or {}).items():
            client.log_artifacts(self.parent_run_id, folder, artifact_path)


@contextlib.contextmanager
def stage(params: Params, name: str) -> Iterator[StageTracker]:
    """Track one stage: find or open the parent run, record on it whether the stage ran."""
    from mlflow.tracking import MlflowClient

    configure(params)
    parent_run_id, owned = _pipeline_parent(params, name)
    client = MlflowClient()
    record_stages(parent_run_id, {name: "running"})
    try:
        yield StageTracker(params, name, parent_run_id)
    except BaseException as error:
        stopped = isinstance(error, STOPS)
        record_stages(parent_run_id, {name: "stopped" if stopped else "failed"})
        if owned:
            client.set_terminated(parent_run_id, status="KILLED" if stopped else "FAILED")
        raise
    record_stages(parent_run_id, {name: "ran"})
    if owned:
        client.set_terminated(parent_run_id, status="FINISHED")
