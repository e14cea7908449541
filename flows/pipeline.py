"""The `denoise-pipeline` flow: one task per DVC stage, in dvc.yaml order.

Prefect wiring only. Each stage task runs `dvc repro --single-item <stage>`, so DVC decides
from content hashes whether the stage must run, records every run in dvc.lock, and the stage
itself runs `denoise <stage>`. Run it with `denoise run` or `python -m flows.pipeline`; with no
PREFECT_API_URL set, Prefect starts a temporary local server for the run (ephemeral mode).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from denoise.config import load_params

# The stages of dvc.yaml, in order (tests/test_consistency.py keeps the two in step).
STAGES = ("extract", "noise", "train", "evaluate")
ARTIFACT_KEY = "denoise-metrics"


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero: bad input or a bug, so retrying would not help."""


def _dvc(arguments: list[str], root: Path) -> tuple[int, str]:
    """Run DVC in root, echoing its output live; return the exit status and the output."""
    # Stages call `denoise`, which lives beside this interpreter (the project's environment).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dvc")), *arguments],
        cwd=root,
        env={**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return process.wait(), "".join(lines)


@task(name="track-raw-data", cache_policy=NO_CACHE)
def track_raw_data(root: Path, raw: str) -> None:
    """Record the raw videos in <raw>.dvc, as `dvc repro` does before it runs the stages."""
    status, output = _dvc(["add", "--quiet", raw], root)
    if status != 0:
        raise StageFailed(f"dvc add {raw} failed: {output.strip()}")


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def run_stage(stage: str, root: Path) -> dict[str, Any]:
    """Run one DVC stage; DVC skips it when its inputs did not change."""
    status, output = _dvc(["repro", "--single-item", stage], root)
    if status != 0:
        raise StageFailed(f"stage {stage} failed (dvc repro exit status {status})")
    ran = f"Running stage '{stage}'" in output
    get_run_logger().info("stage %s %s", stage, "ran" if ran else "skipped: inputs unchanged")
    return {"stage": stage, "ran": ran}


@task(
    name="dvc-transfer",
    task_run_name="dvc-{command}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    cache_policy=NO_CACHE,
)
def dvc_transfer(command: str, root: Path) -> None:
    """`dvc pull` or `dvc push`: they touch the network, so they retry with backoff."""
    arguments = ["pull", "--allow-missing"] if command == "pull" else ["push"]
    status, output = _dvc(arguments, root)
    if status != 0:
        raise RuntimeError(f"dvc {command} failed: {output.strip()[-500:]}")


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(root: Path, evaluation: str, results: list[dict[str, Any]]) -> None:
    """A markdown artifact with the stages that ran and the metrics table."""
    table_path = root / evaluation / "metrics.md"
    table = table_path.read_text() if table_path.is_file() else "(no metrics table)"
    stages = "\n".join(
        f"| {result['stage']} | {'ran' if result['ran'] else 'skipped (unchanged)'} |"
        for result in results
    )
    markdown = f"## denoise pipeline\n\n| stage | status |\n|---|---|\n{stages}\n\n{table}"
    create_markdown_artifact(
        markdown=markdown,
        key=ARTIFACT_KEY,
        description="Stages run and metrics of the denoise pipeline",
    )


@flow(name="denoise-pipeline", log_prints=True)
def denoise_pipeline(root: str = ".", pull: bool = False, push: bool = False) -> list[dict]:
    """Reproduce the pipeline in the DVC project at `root`, stage by stage."""
    project = Path(root).resolve()
    params = load_params(project / "params.yaml")
    if pull:
        dvc_transfer("pull", project)
    track_raw_data(project, params.paths.raw)
    results = [run_stage(stage, project) for stage in STAGES]
    if push:
        dvc_transfer("push", project)
    publish_report(project, params.paths.evaluation, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the denoise-pipeline flow.")
    parser.add_argument("--root", default=".", help="the DVC project (default: here)")
    parser.add_argument("--pull", action="store_true", help="dvc pull before the stages")
    parser.add_argument("--push", action="store_true", help="dvc push after the stages")
    arguments = parser.parse_args()
    denoise_pipeline(root=arguments.root, pull=arguments.pull, push=arguments.push)


if __name__ == "__main__":
    main()
