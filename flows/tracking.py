"""The MLflow parent run of a pipeline run, as the flow's tasks: opened after the checks,
closed with what each stage did.

Prefect wiring only: the runs themselves are denoise.tracking.runs'. Neither task is retried
by Prefect: MLflow's client retries transient errors within params.yaml's
services.retry_seconds, and the preflight stage has checked the server.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from prefect import runtime, task
from prefect.cache_policies import NO_CACHE

from denoise.core.config import load_params
from denoise.tracking.runs import close_pipeline_run, configure, open_pipeline_run
from denoise.tracking.views import pipeline_run_name
from flows.stages import read_stages, status_of


@task(name="open-tracking-run", cache_policy=NO_CACHE)
def open_tracking_run(root: Path) -> str:
    """The MLflow parent run of this pipeline run."""
    with contextlib.chdir(root):
        params = load_params("params.yaml")
        flow_run = runtime.flow_run.id or ""
        return open_pipeline_run(params, tags={"prefect.flow_run_id": str(flow_run)})


@task(name="close-tracking-run", cache_policy=NO_CACHE)
def close_tracking_run(
    root: Path,
    run_id: str,
    results: list[dict[str, Any]],
    failed: str | None,
    stopped: bool = False,
) -> str:
    """Record which stages ran, were skipped, failed or were stopped, end the run (KILLED when
    stopped, FAILED when a stage failed); return its UI link.

    A stopped flow calls it directly (close_tracking_run.fn): Prefect starts no task in a flow
    run that is being cancelled, and the run would stay RUNNING.
    """
    with contextlib.chdir(root):
        params = load_params("params.yaml")
        configure(params)
        statuses = {result["stage"]: status_of(result) for result in results}
        if failed is not None:
            statuses[failed] = "stopped" if stopped else "failed"
        status = "KILLED" if stopped else "FAILED" if failed else "FINISHED"
        return close_pipeline_run(run_id, statuses, status, _run_name(params, statuses, failed))


def _run_name(params: Any, statuses: dict[str, str], failed: str | None) -> str:
    """What this pipeline run did, as its MLflow run's name."""
    if "auto-scheduled" in (runtime.flow_run.tags or []):  # Prefect's scheduler's runs
        trigger = "scheduled"
    else:
        trigger = "deployment" if runtime.deployment.id else "by hand"
    per_model = read_stages(Path.cwd()).per_model
    trained = sum(
        1 for stage, done in statuses.items() if stage.startswith(f"{per_model}@") and done == "ran"
    )
    registry_path = Path(params.paths.registry)
    registry = None
    if statuses.get("register") == "ran" and registry_path.is_file():
        registry = json.loads(registry_path.read_text())
    name = pipeline_run_name(trigger, trained, registry)
    return f"{name}, {statuses[failed]} at {failed}" if failed else name
