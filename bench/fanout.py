"""The fan-out's speed-up: wall time of training two models as train-model jobs, with one and
with two jobs at a time.

Usage:  .venv/bin/python bench/fanout.py [--epochs 6] [--steps-per-epoch 40] [--out <dir>]

For each job limit (1, then 2): a fresh tiny project (the tests' 32x32 video and tiny params,
tests/repository.py, training paper_cae and dense_ae), `infra/serve.sh` with
DENOISE_MODEL_JOBS at the limit, and the pipeline flow with fan_out. Every job is pinned to
one thread (OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS = 1), so two
jobs can use two cores. Reported per limit: the training phase's wall time (first job's start
to last job's end, from the Prefect API), each job's own time, and the whole flow run's. The
ratio is two jobs' training phase over one job's. Prints a markdown table and writes
OUT/fanout.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_ROOT), str(PROJECT_ROOT / "tests")]  # flows/, tests/ helpers

from conftest import tiny_params
from report import machine
from repository import BIN, build_repository, without_bm3d

from denoise.core.markdown import markdown_table
from denoise.training.settings import with_active

ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served(root: Path, jobs: int) -> Iterator[dict[str, str]]:
    """infra/serve.sh in root with `jobs` train-model jobs at a time; the clients' env."""
    port = _free_port()
    env = {
        **os.environ,
        **ONE_THREAD,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(root.parent / f"prefect-home-{jobs}"),
        "DENOISE_PREFECT_PORT": str(port),
        "DENOISE_MODEL_JOBS": str(jobs),
        "DENOISE_JOBS_DIR": str(root.parent),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    env.pop("PREFECT_API_URL", None)
    log = root.parent / f"serve-{jobs}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["infra/serve.sh"],
            cwd=root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while log.read_text().count("Worker '") < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve.sh did not start two workers: {log}")
            time.sleep(1)
        yield {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _job_runs(env: dict[str, str]) -> list[dict[str, float]]:
    """Start and end (s since the epoch) of the train-model flow runs on the server."""
    code = """
import json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train-model"]))
    )
print(json.dumps([
    {"name": run.name, "state": run.state.type.value,
     "start": run.start_time.timestamp(), "end": run.end_time.timestamp()}
    for run in runs
]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def measure(folder: Path, jobs: int, epochs: int, steps: int) -> dict[str, Any]:
    params = tiny_params(folder / "repo")
    train = with_active(params.train, epochs=epochs, steps_per_epoch=steps)
    root = build_repository(folder / "repo", without_bm3d(dataclasses.replace(params, train=train)))
    with served(root, jobs) as env:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "flows.pipeline", '{"fan_out": true}'],
            cwd=root,
            env=env,
            check=True,
        )
        flow_seconds = time.monotonic() - started
        runs = _job_runs(env)
    assert len(runs) == 2 and all(run["state"] == "COMPLETED" for run in runs), runs
    return {
        "jobs_at_once": jobs,
        "training_seconds": max(run["end"] for run in runs) - min(run["start"] for run in runs),
        "job_seconds": {run["name"]: run["end"] - run["start"] for run in runs},
        "flow_seconds": flow_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    arguments = parser.parse_args()
    results = []
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"denoise-fanout-{jobs}-") as folder:
            results.append(measure(Path(folder), jobs, arguments.epochs, arguments.steps_per_epoch))
    ratio = results[1]["training_seconds"] / results[0]["training_seconds"]
    where = machine()
    lines = [
        f"Fan-out of 2 tiny models ({arguments.epochs} x {arguments.steps_per_epoch} steps), "
        f"one thread per job, {where}",
        "",
    ]
    header = ["jobs at once", "training phase (s)", "each job (s)", "flow run (s)"]
    rows = [
        [
            result["jobs_at_once"],
            f"{result['training_seconds']:.0f}",
            ", ".join(f"{seconds:.0f}" for seconds in result["job_seconds"].values()),
            f"{result['flow_seconds']:.0f}",
        ]
        for result in results
    ]
    lines += [
        markdown_table(header, rows),
        "",
        f"ratio (2 at once / 1 at once, training phase): {ratio:.2f}",
    ]
    print("\n".join(lines))
    arguments.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": where, "results": results, "ratio": ratio, **vars(arguments)}
    (arguments.out / "fanout.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
