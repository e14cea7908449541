"""The `denoise-pipeline` flow: one task per DVC stage, in dvc.yaml order.

Prefect wiring only. Each stage task runs `dvc repro --single-item <stage>`, so DVC decides
from content hashes whether the stage must run, records every run in dvc.lock, and the stage
itself runs `denoise <stage>`; the stages and their order are dvc.yaml's. Run it with
`denoise run` (or `python -m flows.pipeline`, main() below); with no PREFECT_API_URL set,
Prefect starts a temporary local server for the run (ephemeral mode).

On a worker (the `scheduled-retrain` deployment in prefect.yaml, docs/orchestration.md) the flow
also checks out the configured branch, `dvc pull`s before the stages, `dvc push`es after them and
commits dvc.lock with the git-tracked reports to a results branch, never to the source branch.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL
from prefect.tasks import exponential_backoff

from denoise import results_branch as branches
from denoise import workspace
from denoise.core import lifeline, locks, services
from denoise.core.config import Services, load_params
from denoise.core.errors import ServiceError, StoppedError, UnreachableError
from denoise.core.markdown import markdown_table
from denoise.serving.load import ALREADY_CHAMPION
from denoise.tracking.runs import PARENT_RUN_ENV
from flows import fanout
from flows.stages import (
    DESCRIBED,
    StageFailed,
    deleted_outputs,
    read_stages,
    run_dvc,
    status_of,
)
from flows.tracking import close_tracking_run, open_tracking_run

ARTIFACT_KEY = "denoise-metrics"
FLOW_NAME = "denoise-pipeline"
# Emitted when the register stage moved the champion alias (flows/alerts.py alerts on it).
CHAMPION_EVENT = "denoise.champion.moved"


def _changed(stage: str, root: Path) -> bool:
    """Whether DVC will run the stage: `dvc status --json` reports it (changed deps, params,
    outs or command, or always_changed)."""
    status, output = run_dvc(["status", "--json", stage], root, echo=None)
    if status != 0:
        raise StageFailed(f"dvc status {stage} failed: {output.strip()[-500:]}")
    return stage in json.loads(output.strip().splitlines()[-1] or "{}")


@task(name="track-raw-data", cache_policy=NO_CACHE)
def track_raw_data(root: Path, raw: str) -> None:
    """Record the raw videos in <raw>.dvc, as `dvc repro` does before it runs the stages."""
    status, output = run_dvc(["add", "--quiet", raw], root)
    if status != 0:
        raise StageFailed(f"dvc add {raw} failed: {output.strip()}")


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def run_stage(
    stage: str, root: Path, tracking_run_id: str | None, pull: bool = False
) -> dict[str, Any]:
    """Run one DVC stage; DVC skips it when its inputs did not change.

    A stage that runs logs its MLflow child runs under tracking_run_id (None: the preflight
    stage, which runs before the tracking run opens and logs no run). pull: fetch what the
    stage needs from the DVC remote, and the outputs of a run the pulled run cache holds
    (`dvc repro --pull`), so such a stage is restored instead of run.
    """
    logger = get_run_logger()
    ran = _changed(stage, root)
    env = {PARENT_RUN_ENV: tracking_run_id} if tracking_run_id else {}
    # The stage's output goes to the task's log line by line: on the console as it comes, and
    # to the Prefect API, where the UI shows it beside the task.
    arguments = ["repro", "--single-item", *(["--pull"] if pull else []), stage]
    status, output = run_dvc(arguments, root, env, lambda line: logger.info(line.rstrip()))
    if status != 0:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        last = output.strip().splitlines()[-1:] or ["no output"]
        message = f"stage {stage} failed (dvc repro exit status {status}): {(errors or last)[-1]}"
        logger.error(message)
        raise StageFailed(message)
    # DVC found the same run in its run cache (pulled from a remote): outputs checked out.
    restored = ran and "is cached - skipping run" in output
    result = {"stage": stage, "ran": ran and not restored, "restored": restored}
    logger.info("stage %s %s", stage, DESCRIBED[status_of(result)])
    return result


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: only a service that did not answer is worth trying again; a
    refusal (DVC's, a remote that is not there, a failed stage, bad params) fails the same way
    every time."""
    error = state.data if isinstance(state.data, BaseException) else None
    return isinstance(error, UnreachableError | ConnectionError | TimeoutError)


@task(
    name="dvc-transfer",
    task_run_name="dvc-{command}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def dvc_transfer(command: str, root: Path) -> None:
    """`dvc pull` or `dvc push`, with the run cache (`denoise push`), after a check of the
    remote: an unreachable remote is retried with backoff, DVC's refusal is not."""
    services = load_params(root / "params.yaml").services
    if command == "push":
        pushed = workspace.push(root, services)
        get_run_logger().info("%s\nrun cache: %d more objects sent", pushed.output, pushed.sent)
        return
    # A local remote that a first run has not pushed to yet has nothing to pull.
    workspace.check_dvc_remote(root, "pull", services, empty_ok=True)
    status, output = run_dvc(["pull", "--run-cache", "--allow-missing"], root)
    if status != 0:
        raise StageFailed(f"dvc {command} failed: {workspace.dvc_cause(output)}")


@task(
    name="git-transfer",
    task_run_name="git-{command}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    cache_policy=NO_CACHE,
)
def git_transfer(command: str, root: Path, branch: str | None = None) -> None:
    """`git fetch` the remote's branches or `git push` one: network, so retried."""
    branches.transfer(command, root, branch)


@task(name="git-checkout", cache_policy=NO_CACHE)
def checkout_branch(branch: str, root: Path) -> str:
    """Put the working tree on branch (fast-forwarded to the remote's); a refusal is final."""
    commit = branches.checkout(branch, root)
    get_run_logger().info("working tree at %s %s", branch, commit[:12])
    return commit


@task(name="commit-results", cache_policy=NO_CACHE)
def commit_results(branch: str, root: Path) -> str | None:
    """Commit the run's lineage to the results branch, never touching the checked-out one."""
    commit = branches.commit_results(branch, root)
    if commit is None:
        get_run_logger().info("results branch %s already holds this lineage", branch)
    else:
        get_run_logger().info("committed %s to %s", commit[:12], branch)
    return commit


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(
    root: Path, evaluation: str, results: list[dict[str, Any]], tracking_link: str
) -> None:
    """A markdown artifact with the stages that ran, the MLflow run and the metrics table."""
    table_path = root / evaluation / "metrics.md"
    table = table_path.read_text() if table_path.is_file() else "(no metrics table)"
    stages = markdown_table(
        ["stage", "status"],
        [[result["stage"], DESCRIBED[status_of(result)]] for result in results],
    )
    markdown = f"## denoise pipeline\n\nMLflow run: {tracking_link}\n\n{stages}\n\n{table}"
    create_markdown_artifact(
        markdown=markdown,
        key=ARTIFACT_KEY,
        description="Stages run and metrics of the denoise pipeline",
    )


def champion_moves(decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{registered model: the decision that last moved its champion alias} among the register
    stage's decisions; a version that was the champion already, or that an earlier run
    decided, moved nothing."""
    moved: dict[str, dict[str, Any]] = {}
    for entry in decisions:
        if entry.get("earlier"):
            continue
        if entry.get("alias") == "champion" and entry.get("reason") != ALREADY_CHAMPION:
            moved[str(entry["registered_model"])] = entry
    return moved


@task(name="announce-champion", cache_policy=NO_CACHE)
def announce_champion(registry: Path) -> list[dict[str, Any]]:
    """Emit CHAMPION_EVENT for each registered model (the image models', the video models')
    whose champion alias the register stage that just ran moved (its decisions are in
    registry, reports/registry.json); return those decisions."""
    moved = champion_moves(json.loads(registry.read_text()).get("decisions", []))
    for name, decision in moved.items():
        emit_event(
            event=CHAMPION_EVENT,
            resource={
                "prefect.resource.id": f"denoise.registered-model.{name}",
                "prefect.resource.name": name,
            },
            payload={
                "version": decision["version"],
                "model": decision["model"],
                "score": decision["score"],
                "previous_version": decision["champion_version"],
                "reason": decision["reason"],
            },
        )
        get_run_logger().info("champion of %s moved to version %s", name, decision["version"])
    return list(moved.values())


@flow(name=FLOW_NAME, log_prints=True)
def denoise_pipeline(
    root: str = ".",
    pull: bool = False,
    push: bool = False,
    branch: str | None = None,
    results_branch: str | None = None,
    fan_out: bool = False,
) -> list[dict]:
    """Reproduce the pipeline in the DVC project at `root`, stage by stage.

    branch: check it out (fetched first when the clone has a remote) before anything else.
    results_branch: commit the lineage there afterwards (pushed when there is a remote).
    fan_out: train each model in a flow run of its own on the work pool (flows/fanout.py).
    One flow run per working tree: another running in it (`denoise run`, a worker's) is a
    BusyError naming it, before anything changes.
    """
    project = Path(root).resolve()
    with locks.pipeline_run(project, f"the {FLOW_NAME} flow"):
        return _reproduce(project, pull, push, branch, results_branch, fan_out)


def _reproduce(
    project: Path,
    pull: bool,
    push: bool,
    branch: str | None,
    results_branch: str | None,
    fan_out: bool,
) -> list[dict]:
    """The flow's body, holding the tree's pipeline lock."""
    if results_branch is not None:
        branches.check_results_branch(project, branch, results_branch)
    if branch is not None:
        if branches.has_remote(project):
            git_transfer("fetch", project)
        checkout_branch(branch, project)
    params = load_params(project / "params.yaml")
    if pull:
        # Inputs already in the tree (`make serve` copies the sample videos) are recorded and
        # cached first, as they would be after the pull: DVC never has to overwrite them.
        if any((project / params.paths.raw).glob("*")):
            track_raw_data(project, params.paths.raw)
        dvc_transfer("pull", project)
    track_raw_data(project, params.paths.raw)
    stages = read_stages(project)
    first, *rest = stages.expand(params.train.models)
    results: list[dict[str, Any]] = [run_stage(first, project, None, pull)]
    tracking_run_id = open_tracking_run(project)
    trains = [stage for stage in rest if stage.startswith(f"{stages.per_model}@")]
    for stage in rest:
        try:
            if fan_out and stage == trains[0]:
                train_on_the_pool(project, trains, tracking_run_id)
            # Fanned out: the jobs' runs come back from the run cache.
            restore = pull or (fan_out and stage in trains)
            results.append(run_stage(stage, project, tracking_run_id, restore))
            if stage == "register" and results[-1]["ran"]:
                announce_champion(project / params.paths.registry)
        except BaseException as error:  # a stop is no Exception: SIGTERM, Ctrl-C, a cancel
            if isinstance(error, Exception):
                close_tracking_run(project, tracking_run_id, results, failed=stage)
                raise
            close_tracking_run.fn(project, tracking_run_id, results, failed=stage, stopped=True)
            deleted = deleted_outputs(project, stage)
            if deleted:
                get_run_logger().warning(
                    "stage %s stopped; DVC had deleted its outputs %s as it started: "
                    "`dvc checkout %s` restores those of its last run, `denoise restore` the "
                    "last commit's state",
                    stage,
                    ", ".join(deleted),
                    stage,
                )
            raise
    tracking_link = close_tracking_run(project, tracking_run_id, results, failed=None)
    if push:
        dvc_transfer("push", project)
    if results_branch is not None:
        commit_results(results_branch, project)
        if branches.has_remote(project):
            git_transfer("push", project, results_branch)
    publish_report(project, params.paths.evaluation, results, tracking_link)
    return results


def train_on_the_pool(root: Path, stages: list[str], tracking_run_id: str | None) -> None:
    """Run each train@<model> stage that must run in a job of its own on the pool, all at
    once (flows/fanout.py); raise the first failure once every job has ended."""
    pending = [stage for stage in stages if _changed(stage, root)]
    if not pending:
        return
    job = fanout.job_parameters(root, tracking_run_id)
    dvc_transfer("push", root)
    futures = [fanout.train_on_pool.submit(stage, job) for stage in pending]
    for future in futures:
        future.wait()
    for future in futures:
        future.result()


def check_prefect(settings: Services) -> None:
    """Raise ServiceError unless the configured Prefect API answers (none configured: Prefect
    starts a temporary local server, nothing to check)."""
    url = PREFECT_API_URL.value()
    if not url:
        return
    auth = PREFECT_API_AUTH_STRING.value()
    headers = {}
    if auth:
        headers["Authorization"] = f"Basic {base64.b64encode(auth.encode()).decode()}"
    services.check(
        services.Service(
            name="Prefect API",
            url=url,
            # /health answers without the auth string; /admin/version checks it.
            health_path="/admin/version",
            fix="start the Prefect server (make serve), or unset PREFECT_API_URL to run on a "
            "temporary local server",
            credentials_fix="set PREFECT_API_AUTH_STRING to the server's auth string",
            headers=headers,
        ),
        settings,
    )


def main() -> None:
    """`python -m flows.pipeline ['{"pull": true, ...}']`: the flow, called with the keyword
    arguments in the JSON object (none: its defaults). `denoise run` passes its options so: the
    flow's signature is their one definition, as it is for the deployments (prefect.yaml)."""
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # Stops with the `denoise run` that started it (kill -9 included), and on SIGTERM: the
    # stage running ends, and the tracking run ends KILLED.
    lifeline.watch()
    try:  # before the flow: an unreachable API would fail its first call only after retries
        check_prefect(load_params(Path(options.get("root", ".")) / "params.yaml").services)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(workspace.SERVICE_CHECK_EXIT)
    try:
        denoise_pipeline(**options)
    except StoppedError as error:  # its stage and tracking run have ended: one line, no trace
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
