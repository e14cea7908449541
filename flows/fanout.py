"""Training on the pool: each train@<model> stage as a flow run of its own.

With `fan_out`, the pipeline flow pushes what the stages before training wrote (`denoise push`),
then starts one run of the `train-model` deployment (flow `denoise-train-model`) for each model
whose stage must run, all at once. The work pool decides how many train together: a process
worker's `--limit` on this machine, one Kubernetes Job with one GPU each on a cluster. A job:

1. clones the repository at the pipeline's commit into a folder of its own, and writes the
   pipeline's params.yaml, dvc.yaml, dvc.lock and preflight report into it, so it reproduces
   exactly the pipeline's stage, uncommitted params included;
2. pulls the outputs of the stages before training from the pipeline's DVC remote;
3. runs `dvc repro --pull --single-item train@<model>` (a run the remote's run cache already
   holds is restored, not trained again), logging to the pipeline's MLflow run;
4. pushes its outputs with their run-cache entry (`denoise push`), and removes its clone.

The pipeline then runs each `train@<model>` stage itself with `--pull`: DVC finds the job's run
in the run cache and checks its outputs out, so dvc.lock records every model's lineage as if it
had trained there, and evaluate and register go on as before.

The DVC remote carries the data both ways, not a shared folder: a Kubernetes Job shares no disk
with the flow that started it, and the run cache already keys a stage's outputs by its inputs
(the same path serves a team's clones, docs/team.md). The cost is moving the training data to
each job and each model back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from denoise import results_branch as branches
from denoise import workspace
from denoise.core.config import load_params
from denoise.core.locations import tracking_uri
from denoise.tracking.runs import PARENT_RUN_ENV
from flows.stages import StageFailed, read_stages, run_dvc

JOB_FLOW = "denoise-train-model"
DEPLOYMENT = f"{JOB_FLOW}/train-model"
# Where jobs make their clones (default: the system's temporary folder).
JOBS_DIR_ENV = "DENOISE_JOBS_DIR"
# Committed code the jobs run: an edit here would make a job's stage differ from the pipeline's.
CODE = ("src", "flows")


def _default_remote(root: Path) -> str:
    """The URL of the project's default DVC remote, absolute (DVC resolves local paths)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote")
        if not name:
            raise StageFailed("fan-out moves data through a DVC remote: set a default one")
        return str(repo.config["remote"][name]["url"])


def job_parameters(root: Path, tracking_run_id: str | None) -> dict[str, Any]:
    """What every job of this pipeline run is given: where the code is, the files that make
    its workspace the pipeline's, the DVC remote and the MLflow run to log under."""
    edited = branches.git(["status", "--porcelain", "--untracked-files=no", "--", *CODE], root)
    if edited:
        raise StageFailed(
            f"fan-out trains the committed code; commit or stash these first: {edited.split()}"
        )
    revision = branches.git(["rev-parse", "HEAD"], root)
    # Jobs clone from origin when it holds the commit (a Job on another machine), else from
    # this working tree (a worker on this machine).
    source = str(root)
    if branches.git(["branch", "--remotes", "--contains", revision], root):
        source = branches.git(["remote", "get-url", "origin"], root)
    params = load_params(root / "params.yaml")
    files = ["params.yaml", "dvc.yaml", "dvc.lock", params.paths.preflight]
    return {
        "source": source,
        "revision": revision,
        "files": {name: (root / name).read_text() for name in files},
        "remote": _default_remote(root),
        "tracking_uri": tracking_uri(params, root),
        "parent_run_id": tracking_run_id,
    }


@task(name="train-on-pool", task_run_name="{stage} on the pool", cache_policy=NO_CACHE)
def train_on_pool(stage: str, job: dict[str, Any]) -> str:
    """Run the train-model deployment for stage (<per-model stage>@<model>) and wait for it;
    its flow run's id."""
    run = run_deployment(
        DEPLOYMENT,
        parameters={"model": stage.split("@", 1)[1], **job},
        flow_run_name=stage,
        poll_interval=2,
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "no state"
        message = run.state.message if run.state else ""
        raise StageFailed(f"{stage} on the pool ended {state}: {message}")
    return str(run.id)


@flow(name=JOB_FLOW, log_prints=True)
def train_model(
    model: str,
    source: str,
    revision: str,
    files: dict[str, str],
    remote: str,
    tracking_uri: str,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Reproduce the stage train@<model> of a pipeline run in a clone of its own, and push its
    outputs and run-cache entry to the DVC remote."""
    logger = get_run_logger()
    with tempfile.TemporaryDirectory(
        prefix=f"denoise-job-{model}-", dir=os.environ.get(JOBS_DIR_ENV) or None
    ) as folder:
        clone = Path(folder) / "repo"
        branches.git(["clone", "--quiet", "--no-checkout", source, str(clone)], Path(folder))
        branches.git(["checkout", "--quiet", revision], clone)
        for name, text in files.items():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_text(text)

        def dvc(*arguments: str, env: dict[str, str] | None = None) -> str:
            status, output = run_dvc(
                list(arguments), clone, env, lambda line: logger.info(line.rstrip())
            )
            if status != 0:
                errors = [line for line in output.splitlines() if line.startswith("error: ")]
                last = (errors or output.strip().splitlines() or ["no output"])[-1]
                raise StageFailed(f"dvc {arguments[0]} in the {model} job failed: {last}")
            return output

        dvc("remote", "add", "--local", "--default", "--force", "pipeline", remote)
        # The outputs of the stages before training; the checks' report (not cached) came with
        # the job's files.
        stages = read_stages(clone)
        dvc("pull", *stages.before_training())
        env = {"MLFLOW_TRACKING_URI": tracking_uri}
        if parent_run_id:
            env[PARENT_RUN_ENV] = parent_run_id
        output = dvc("repro", "--pull", "--single-item", f"{stages.per_model}@{model}", env=env)
        with contextlib.chdir(clone):  # DVC's run cache reads stages relative to the cwd
            pushed = workspace.push(clone, load_params(clone / "params.yaml").services)
        logger.info("%s\nrun cache: %d more objects sent", pushed.output, pushed.sent)
    return {"model": model, "restored": "is cached - skipping run" in output}
