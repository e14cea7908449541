"""End to end through the real chain: `denoise run` -> `dvc repro` -> `denoise <stage>`.

Builds a real git + DVC repository in a temporary folder with the project's dvc.yaml, DVC
config (default remote beside the working tree), a tiny params.yaml and a 12-frame 32x32
video tracked by DVC. The tests run in order and share that repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, write_tiny_video
from repository import build_repository, sh
from repository import commit as _commit

pytestmark = pytest.mark.slow
STAGES = list(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"])


def _lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _out_hash(root: Path, stage: str, index: int = 0) -> str:
    return _lock(root)[stage]["outs"][index]["md5"]


def _ran(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in result.stdout]


def _local_runs(root: Path, filter_string: str = "") -> list:  # type: ignore[type-arg]
    """Runs in the repository's local default MLflow store."""
    from mlflow.tracking import MlflowClient

    database = root / "mlflow" / "mlflow.db"
    assert database.is_file(), "the local default store is <root>/mlflow/mlflow.db"
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("denoise")
    return list(client.search_runs([experiment.experiment_id], filter_string))


def _clone(source: Path, target: Path) -> Path:
    sh("git", "clone", "-q", str(source), str(target), cwd=source.parent)
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the repository, its clones, the default remote (../denoise-dvc-remote
    from each working tree) and the Prefect home of the flow's ephemeral runs.

    MLflow runs go to the local default store of each repository (<root>/mlflow/).
    """
    folder = tmp_path_factory.mktemp("workspace")
    settings = {
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    previous = {name: os.environ.get(name) for name in [*settings, "MLFLOW_TRACKING_URI"]}
    os.environ.update(settings)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield folder
    for name, value in previous.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


_READ_PREFECT = """
import asyncio, json
from prefect.client.orchestration import get_client

async def main():
    async with get_client() as client:
        flows = await client.read_flow_runs()
        tasks = await client.read_task_runs()
        artifacts = await client.read_artifacts()
    tasks = sorted(tasks, key=lambda run: run.start_time or run.created)
    print(json.dumps({
        "flows": [[run.name, run.state.type.value] for run in flows],
        "tasks": [[run.name, run.state.type.value] for run in tasks],
        "artifacts": [[artifact.key, artifact.data] for artifact in artifacts],
    }))

asyncio.run(main())
"""


def _prefect_record(cwd: Path) -> dict:
    """Flow runs, task runs (by start time) and artifacts stored by the ephemeral runs."""
    return json.loads(sh(sys.executable, "-c", _READ_PREFECT, cwd=cwd).stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def repository(workspace: Path) -> Path:
    return build_repository(workspace / "repo")


def test_run_executes_every_stage_and_prints_the_table(repository: Path, workspace: Path) -> None:
    result = sh("denoise", "run", "--push", cwd=repository)
    assert _ran(result) == STAGES
    record = _prefect_record(repository)
    assert [state for _, state in record["flows"]] == ["COMPLETED"]
    stage_runs = [run for run in record["tasks"] if run[0] in STAGES]
    assert stage_runs == [[stage, "COMPLETED"] for stage in STAGES], record["tasks"]
    ((key, markdown),) = record["artifacts"]
    assert key == "denoise-metrics" and "| paper_cae |" in markdown
    assert "| paper_cae |" in result.stdout and "| nlm |" in result.stdout
    metrics = json.loads((repository / "reports" / "metrics.json").read_text())
    assert set(metrics["sets"]) == {"test", "photographs"}
    assert list(_lock(repository)) == STAGES
    assert (repository / "reports" / "psnr_per_sigma" / "test" / "paper_cae.csv").is_file()
    # The flow's MLflow parent run, in the local default store, links from the artifact.
    (parent,) = [
        run for run in _local_runs(repository) if "mlflow.parentRunId" not in run.data.tags
    ]
    assert parent.info.status == "FINISHED"
    assert {stage: parent.data.tags[f"denoise.stage.{stage}"] for stage in STAGES} == {
        stage: "ran" for stage in STAGES
    }
    assert parent.info.run_id in markdown
    registry = json.loads((repository / "reports" / "registry.json").read_text())
    assert {decision["model"] for decision in registry["decisions"]} == {"paper_cae", "dense_ae"}
    assert [decision["alias"] for decision in registry["decisions"]].count("champion") == 1
    _commit(repository, "first run")


def test_second_run_skips_everything_quickly(repository: Path) -> None:
    status = sh("dvc", "status", cwd=repository)
    assert "Data and pipelines are up to date" in status.stdout
    start = time.perf_counter()
    result = sh("dvc", "repro", cwd=repository)
    assert time.perf_counter() - start < 20
    assert _ran(result) == []
    assert sh("git", "status", "--porcelain", cwd=repository).stdout == ""


def test_plots_and_metrics_are_declared(repository: Path) -> None:
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repository).stdout)
    assert "reports/metrics.json" in json.dumps(shown)
    plots = sh("dvc", "plots", "show", "--json", cwd=repository).stdout
    assert "val_psnr" in plots and "psnr_per_sigma" in plots


def test_push_then_pull_in_a_fresh_clone_recomputes_nothing(
    repository: Path, workspace: Path
) -> None:
    clone = _clone(repository, workspace / "pulled")
    sh("dvc", "pull", cwd=clone)
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=clone).stdout
    assert (clone / "models" / "paper_cae.keras").is_file()
    assert (clone / "data" / "evalsets" / "test" / "gaussian-25.npy").is_file()
    assert _ran(sh("dvc", "repro", cwd=clone)) == []
    # The flow's pull task in a second fresh clone: everything arrives, every stage is skipped.
    second = _clone(repository, workspace / "pulled-by-flow")
    result = sh("denoise", "run", "--pull", cwd=second)
    assert _ran(result) == [] and "| paper_cae |" in result.stdout
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=second).stdout


def test_forced_runs_in_two_fresh_clones_agree(repository: Path, workspace: Path) -> None:
    metrics = []
    for name in ("clone-a", "clone-b"):
        clone = _clone(repository, workspace / name)
        sh("dvc", "pull", "data/raw.dvc", cwd=clone)
        assert _ran(sh("dvc", "repro", "--force", cwd=clone)) == STAGES
        for stage in ("extract", "noise"):
            assert _out_hash(clone, stage) == _out_hash(repository, stage), stage
        metrics.append(json.loads((clone / "reports" / "metrics.json").read_text()))
    for set_name, set_metrics in metrics[0]["sets"].items():
        for level, methods in set_metrics["levels"].items():
            for method, result in methods.items():
                other = metrics[1]["sets"][set_name]["levels"][level][method]["psnr"]
                assert abs(result["psnr"] - other) <= 0.05, (set_name, level, method)


def test_changing_a_noise_parameter_skips_extract(repository: Path) -> None:
    params = yaml.safe_load((repository / "params.yaml").read_text())
    params["noise"]["train"]["sigma_max"] = 40.0
    (repository / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = sh("dvc", "repro", cwd=repository)
    assert "Stage 'extract' didn't change, skipping" in result.stdout
    # The evaluation sets come out identical, so validate is skipped too.
    assert _ran(result) == [stage for stage in STAGES if stage not in ("extract", "validate")]
    _commit(repository, "sigma_max 40")


def test_new_video_reruns_extract_and_joins_the_manifest(repository: Path) -> None:
    import pandas as pd

    write_tiny_video(repository / "data" / "raw" / "second.avi", num_frames=8, seed=3)
    sh("dvc", "add", "-q", "data/raw", cwd=repository)
    result = sh("dvc", "repro", cwd=repository)
    assert _ran(result) == STAGES
    manifest = pd.read_parquet(repository / "data" / "frames" / "manifest.parquet")
    assert set(manifest["video"]) == {"tiny.avi", "second.avi"}
    _commit(repository, "second video")


def test_failed_stage_keeps_last_good_outputs_restorable(repository: Path) -> None:
    lock = _lock(repository)
    (repository / "data" / "raw" / "broken.mp4").write_bytes(b"\x00" * 1000)
    result = sh("denoise", "run", cwd=repository, check=False)
    assert result.returncode == 1
    assert "broken.mp4: not a video OpenCV can read" in result.stderr
    assert "git checkout data/raw.dvc && dvc checkout" in result.stderr
    assert _lock(repository) == lock, "a failed run records nothing"
    sh("git", "checkout", "data/raw.dvc", cwd=repository)
    sh("dvc", "checkout", cwd=repository)
    assert not (repository / "data" / "raw" / "broken.mp4").exists()
    # Up to date: every output's content hash matches dvc.lock again.
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=repository).stdout
    assert (repository / "data" / "frames" / "manifest.parquet").is_file()
    assert (repository / "models" / "paper_cae.keras").is_file()


def test_parameter_sweeps_with_experiments_and_the_queue(repository: Path) -> None:
    sh("dvc", "exp", "run", "-S", "train.profiles.quick.epochs=1", cwd=repository)
    for sigma in (0.5, 2.0):
        sh("dvc", "exp", "run", "--queue", "-S", f"evaluate.blur_sigma={sigma}", cwd=repository)
    sh("dvc", "queue", "start", "-j", "2", cwd=repository)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status", cwd=repository).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Failed" not in status, status
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repository).stdout)
    values = json.dumps(shown)
    for needle in ('"epochs": 1', '"blur_sigma": 0.5', '"blur_sigma": 2.0'):
        assert needle in values, needle
    # Queued experiments run in copies under .dvc/tmp/exps but log to the repository's store.
    experiments = {run.data.tags.get("dvc.experiment") for run in _local_runs(repository)}
    assert len(experiments - {None}) >= 2, experiments


def test_bad_data_stops_the_run_at_validate_and_the_last_good_state_returns(
    repository: Path,
) -> None:
    """A dead camera's video: extract and noise run, validate fails naming the expectation,
    nothing downstream runs, and git + DVC bring back the last good outputs and report."""
    from conftest import write_dark_camera_video

    # Start from the last commit (the sweeps above leave an experiment in the workspace); run
    # alone, this test first records a good run.
    sh("git", "checkout", "-q", "--", ".", cwd=repository)
    sh("dvc", "checkout", "--force", cwd=repository, check=False)
    sh("dvc", "repro", cwd=repository)
    if sh("git", "status", "--porcelain", cwd=repository).stdout:
        _commit(repository, "good run")
    lock = _lock(repository)
    registry = repository / "reports" / "registry.json"
    champion = registry.read_text() if registry.is_file() else None
    report = repository / "reports" / "validation"

    write_dark_camera_video(repository / "data" / "raw" / "dead-camera.avi")
    result = sh("denoise", "run", cwd=repository, check=False)
    assert result.returncode == 1
    assert "Running stage 'validate'" in result.stdout
    for stage in ("train", "evaluate", "register"):
        assert f"Running stage '{stage}'" not in result.stdout, stage
    assert "error: validation failed" in result.stderr
    assert "frames: expect_column_values_to_be_between('mean') in [0.02, 0.98]" in result.stderr
    assert "e.g. dead-camera.avi#0: 0.0" in result.stderr
    assert "git checkout dvc.lock && git checkout data/raw.dvc && dvc checkout --force" in (
        result.stderr
    )
    # The report says why; the stages after validate recorded nothing.
    assert json.loads((report / "results.json").read_text())["success"] is False
    assert (report / "index.html").is_file()
    failed_lock = _lock(repository)
    assert failed_lock["extract"] != lock["extract"], "extract passed and recorded the new video"
    for stage in lock:
        if stage not in ("extract", "noise"):
            assert failed_lock[stage] == lock[stage], stage

    sh("git", "checkout", "dvc.lock", cwd=repository)
    sh("git", "checkout", "data/raw.dvc", cwd=repository)
    sh("dvc", "checkout", "--force", cwd=repository)
    assert not (repository / "data" / "raw" / "dead-camera.avi").exists()
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=repository).stdout
    assert json.loads((report / "results.json").read_text())["success"] is True
    assert (repository / "models" / "paper_cae.keras").is_file()
    if champion is not None:
        assert registry.read_text() == champion, "the registered champion stays as it was"
