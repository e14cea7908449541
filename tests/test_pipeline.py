"""End to end through the real chain: `denoise run` -> `dvc repro` -> `denoise <stage>`.

Builds a real git + DVC repository in a temporary folder with the project's dvc.yaml, DVC
config (default remote beside the working tree), a tiny params.yaml and a 12-frame 32x32
video tracked by DVC, runs the whole pipeline once through the flow, pushes and commits. Every
test starts from that state; a test that changes anything works in a clone of its own, so the
tests pass alone and in any order. Which stages ran comes from DVC's own API (what
Repo.reproduce returns) or the flow's report, never from DVC's log text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import write_tiny_video
from repository import STAGES, build_repository, sh
from repository import commit as _commit
from test_no_change import HEAVY, imported_by

pytestmark = pytest.mark.slow
ALWAYS_RUN = ["preflight", "init"]  # always_changed: checks anew; resolves starting weights anew

_REPRODUCE = """
import json, sys
from dvc.repo import Repo

force = "--force" in sys.argv
targets = [argument for argument in sys.argv[1:] if argument != "--force"] or None
ran = Repo(".").reproduce(targets, force=force)
print(json.dumps([stage.addressing for stage in ran if not stage.is_data_source]))
"""

_READ_PREFECT = """
import asyncio, json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

async def main():
    async with get_client() as client:
        flows = await client.read_flow_runs()
        tasks = await client.read_task_runs()
        artifacts = await client.read_artifacts()
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id for run in flows]))
        )
    tasks = sorted(tasks, key=lambda run: run.start_time or run.created)
    print(json.dumps({
        "flows": [[run.name, run.state.type.value] for run in flows],
        "tasks": [[run.name, run.state.type.value] for run in tasks],
        "artifacts": [[artifact.key, artifact.data] for artifact in artifacts],
        "logs": [log.message for log in logs],
    }))

asyncio.run(main())
"""


@dataclasses.dataclass(frozen=True)
class FirstRun:
    root: Path
    stdout: str
    stderr: str
    prefect: dict  # type: ignore[type-arg]


def _lock(root: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _out_hash(root: Path, stage: str, index: int = 0) -> str:
    return str(_lock(root)[stage]["outs"][index]["md5"])


def _reproduce(root: Path, *targets: str, force: bool = False) -> list[str]:
    """`dvc repro [TARGET ...]` through DVC's API: the stages that ran."""
    result = sh(sys.executable, "-c", _REPRODUCE, *targets, *(["--force"] * force), cwd=root)
    ran: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return ran


def _changed(root: Path) -> set[str]:
    """The stages `dvc status --json` reports as changed."""
    output = sh("dvc", "status", "--json", cwd=root).stdout.strip()
    return set(json.loads(output.splitlines()[-1] if output else "{}"))


def _prefect_env(root: Path) -> dict[str, str]:
    """A Prefect home of the clone's own: its flow runs, tasks, artifacts and logs alone."""
    return {"PREFECT_HOME": str(root.parent / f"{root.name}-prefect-home")}


def _run(root: Path, *arguments: str, check: bool = True):  # type: ignore[no-untyped-def]
    return sh("denoise", "run", *arguments, cwd=root, check=check, env=_prefect_env(root))


def _prefect_record(root: Path) -> dict:  # type: ignore[type-arg]
    """Flow runs, task runs (by start time), artifacts and logs of the clone's flow runs."""
    result = sh(sys.executable, "-c", _READ_PREFECT, cwd=root, env=_prefect_env(root))
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _statuses(markdown: str) -> dict[str, str]:
    """The flow report's `| stage | status |` rows."""
    rows = [line.split("|")[1:3] for line in markdown.splitlines() if line.startswith("| ")]
    return {stage.strip(): status.strip() for stage, status in rows if stage.strip() in STAGES}


def _local_runs(root: Path, filter_string: str = "") -> list:  # type: ignore[type-arg]
    """Runs in the repository's local default MLflow store."""
    from mlflow.tracking import MlflowClient

    database = root / "mlflow" / "mlflow.db"
    assert database.is_file(), "the local default store is <root>/mlflow/mlflow.db"
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("denoise")
    return list(client.search_runs([experiment.experiment_id], filter_string))


def _clone(source: Path, target: Path, pull: bool = True) -> Path:
    """A fresh clone of the first run's commit, with its data pulled from the DVC remote."""
    sh("git", "clone", "-q", str(source), str(target), cwd=source.parent)
    if pull:
        sh("dvc", "pull", cwd=target)
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the repository, its clones and the default remote
    (../denoise-dvc-remote from each working tree). MLflow runs go to the local default store of
    each repository (<root>/mlflow/)."""
    folder = tmp_path_factory.mktemp("workspace")
    settings = {
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


@pytest.fixture(scope="module")
def first_run(workspace: Path) -> FirstRun:
    """The repository after `denoise run --push`, committed."""
    root = build_repository(workspace / "repo")
    result = _run(root, "--push")
    record = _prefect_record(root)
    _commit(root, "first run")
    return FirstRun(root, result.stdout, result.stderr, record)


def test_run_executes_every_stage_and_prints_the_table(first_run: FirstRun) -> None:
    root, record = first_run.root, first_run.prefect
    assert [state for _, state in record["flows"]] == ["COMPLETED"]
    stage_runs = [run for run in record["tasks"] if run[0] in STAGES]
    assert stage_runs == [[stage, "COMPLETED"] for stage in STAGES], record["tasks"]
    ((key, markdown),) = record["artifacts"]
    assert key == "denoise-metrics" and "| paper_cae |" in markdown
    assert _statuses(markdown) == {stage: "ran" for stage in STAGES}
    # The run ends with one table and the lines saying who is champion, where the results
    # are and what to run next; the stage's own table is not printed a second time.
    rows = [line for line in first_run.stdout.splitlines() if line.startswith("│ paper_cae ")]
    assert len(rows) == 1 and "│ nlm " in first_run.stdout, first_run.stdout
    assert "champion: denoise v" in first_run.stdout and "next: denoise apply" in first_run.stdout
    assert "| paper_cae |" not in first_run.stdout + first_run.stderr
    # A quiet terminal: no TensorFlow or absl start-up lines, no DVC git hints.
    for chatter in ("absl::InitializeLog", "oneDNN custom operations", "To track the changes"):
        assert chatter not in first_run.stdout + first_run.stderr, chatter
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(metrics["sets"]) == {"test", "photographs"}
    assert list(_lock(root)) == STAGES
    assert (root / "reports" / "psnr_per_sigma" / "test" / "paper_cae.csv").is_file()
    # The flow's MLflow parent run, in the local default store, links from the artifact.
    (parent,) = [run for run in _local_runs(root) if "mlflow.parentRunId" not in run.data.tags]
    assert parent.info.status == "FINISHED"
    tags = {stage: parent.data.tags[f"denoise.stage.{stage.replace('@', '/')}"] for stage in STAGES}
    assert tags == {stage: "ran" for stage in STAGES}
    assert parent.info.run_id in markdown
    registry = json.loads((root / "reports" / "registry.json").read_text())
    assert {decision["model"] for decision in registry["decisions"]} == {"paper_cae", "dense_ae"}
    assert [decision["alias"] for decision in registry["decisions"]].count("champion") == 1


def test_a_second_run_reruns_only_the_init_stage(first_run: FirstRun, workspace: Path) -> None:
    """In a fresh clone that pulled what `denoise run --push` pushed: every output is there,
    and nothing is computed again but the checks."""
    clone = _clone(first_run.root, workspace / "again")
    assert _changed(clone) == set(ALWAYS_RUN)
    assert (clone / "models" / "paper_cae.keras").is_file()
    assert (clone / "data" / "evalsets" / "test" / "gaussian-25.npy").is_file()
    assert _reproduce(clone) == ALWAYS_RUN
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""
    assert _changed(clone) == set(ALWAYS_RUN)
    # They saw nothing changed without loading TensorFlow or MLflow: the no-op loop is fast.
    for stage in ALWAYS_RUN:
        heavy = imported_by(clone, stage) & set(HEAVY)
        assert not heavy, f"denoise {stage} imported {heavy} with nothing changed"
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""


def test_plots_and_metrics_are_declared(first_run: FirstRun) -> None:
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=first_run.root).stdout)
    assert "reports/summary.json" in json.dumps(shown)
    assert "reports/metrics.json" not in json.dumps(shown)  # every score: an output, not a metric
    # The default view stays readable: one short table.
    table = sh("dvc", "metrics", "show", cwd=first_run.root).stdout
    assert "champion" in table and max(map(len, table.splitlines())) <= 120, table
    plots = sh("dvc", "plots", "show", "--json", cwd=first_run.root).stdout
    assert "val_psnr" in plots and "psnr_per_sigma" in plots


def test_dvc_plots_render_in_a_browser_with_no_network(first_run: FirstRun, tmp_path: Path) -> None:
    """.dvc/config's page template carries Vega itself: DVC's own loads it from a CDN, and
    offline showed a blank page."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; make test does)")
    output = tmp_path / "plots"
    sh("dvc", "plots", "show", "-o", str(output), cwd=first_run.root)
    page = (output / "index.html").read_text()
    assert "cdn.jsdelivr" not in page
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (output / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # vega-embed draws each plot on a canvas once Vega has run.
    assert dom.count("<canvas") >= 2, dom[-2000:]


def test_push_then_pull_in_a_fresh_clone_recomputes_nothing(
    first_run: FirstRun, workspace: Path
) -> None:
    """The flow's pull task in a fresh clone without dvc.lock: it brings the run cache that
    `denoise run --push` sent (denoise push), so every stage that ran in the first run is
    restored with its outputs, and none runs again. (`dvc pull` of the pushed outputs into a
    fresh clone: the second run's test.)"""
    second = _clone(first_run.root, workspace / "pulled-run-cache", pull=False)
    sh("git", "rm", "-q", "dvc.lock", cwd=second)
    result = _run(second, "--pull")
    assert "champion: denoise v" in result.stdout
    ((_, markdown),) = _prefect_record(second)["artifacts"]
    assert _statuses(markdown) == {
        stage: "ran" if stage in ALWAYS_RUN else "restored (run cache)" for stage in STAGES
    }
    assert _lock(second) == _lock(first_run.root)
    assert _changed(second) == set(ALWAYS_RUN)


def test_a_forced_run_in_a_fresh_clone_reproduces_the_first_run(
    first_run: FirstRun, workspace: Path
) -> None:
    """Every stage again from the raw video alone: the same data, the same scores."""
    clone = _clone(first_run.root, workspace / "forced", pull=False)
    sh("dvc", "pull", "data/raw.dvc", cwd=clone)
    assert _reproduce(clone, force=True) == STAGES
    for stage in ("extract", "noise"):
        assert _out_hash(clone, stage) == _out_hash(first_run.root, stage), stage
    metrics = [
        json.loads((root / "reports" / "metrics.json").read_text())
        for root in (first_run.root, clone)
    ]
    for set_name, set_metrics in metrics[0]["sets"].items():
        for level, methods in set_metrics["levels"].items():
            for method, result in methods.items():
                other = metrics[1]["sets"][set_name]["levels"][level][method]["psnr"]
                assert abs(result["psnr"] - other) <= 0.05, (set_name, level, method)


def test_changing_one_model_s_settings_makes_its_training_alone_stale(
    first_run: FirstRun, workspace: Path
) -> None:
    """train@<model> depends on that model's settings alone (through init's <model>.json):
    after a change to dense_ae's architecture, init makes dense_ae's training stale, not
    paper_cae's (evaluate reads the whole train section)."""
    clone = _clone(first_run.root, workspace / "one-model")
    assert sh("dvc", "stage", "list", "--name-only", cwd=clone).stdout.split() == STAGES
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["architectures"]["dense_ae"]["hidden"] = 48
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _reproduce(clone, "init") == ALWAYS_RUN
    assert _changed(clone) == {*ALWAYS_RUN, "train@dense_ae", "evaluate"}


def test_changing_a_noise_parameter_skips_extract(first_run: FirstRun, workspace: Path) -> None:
    clone = _clone(first_run.root, workspace / "sigma-max")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["noise"]["train"]["sigma_max"] = 40.0
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Up to the models' inputs: the evaluation sets come out identical, so validate is skipped
    # too; init writes each model's new training noise, which makes its training stale.
    assert _reproduce(clone, "validate", "init") == ["preflight", "noise", "init"]
    trainings = {stage for stage in STAGES if stage.startswith("train@")}
    assert _changed(clone) == {*ALWAYS_RUN, *trainings, "register"}


def test_new_video_reruns_extract_and_joins_the_manifest(
    first_run: FirstRun, workspace: Path
) -> None:
    """Up to validate; DVC's status then names every stage after it as changed (training and
    scoring the whole chain is the forced run's test)."""
    import pandas as pd

    clone = _clone(first_run.root, workspace / "second-video")
    write_tiny_video(clone / "data" / "raw" / "second.avi", num_frames=8, seed=3)
    sh("dvc", "add", "-q", "data/raw", cwd=clone)
    assert _reproduce(clone, "validate") == ["preflight", "extract", "noise", "validate"]
    manifest = pd.read_parquet(clone / "data" / "frames" / "manifest.parquet")
    assert set(manifest["video"]) == {"tiny.avi", "second.avi"}
    ran = ("extract", "noise", "validate")
    assert _changed(clone) == {stage for stage in STAGES if stage not in ran}


def test_a_corrupt_video_stops_the_run_before_any_stage_and_restore_sets_it_aside(
    first_run: FirstRun, workspace: Path
) -> None:
    clone = _clone(first_run.root, workspace / "broken")
    lock = _lock(clone)
    (clone / "data" / "raw" / "broken.mp4").write_bytes(b"\x00" * 1000)
    result = _run(clone, check=False)
    assert result.returncode == 1
    # The check before the flow starts names it; no stage ran.
    assert "error: data/raw/broken.mp4: not a video OpenCV can read" in result.stderr
    assert _lock(clone) == lock, "a failed run records nothing"
    restored = sh("denoise", "restore", cwd=clone)
    assert not (clone / "data" / "raw" / "broken.mp4").exists()
    assert "set aside data/raw-set-aside/broken.mp4" in restored.stdout, "moved, not deleted"
    assert (clone / "data" / "raw-set-aside" / "broken.mp4").read_bytes() == b"\x00" * 1000
    # Up to date: every output's content hash matches dvc.lock again.
    assert _changed(clone) == set(ALWAYS_RUN)
    assert (clone / "data" / "frames" / "manifest.parquet").is_file()
    assert (clone / "models" / "paper_cae.keras").is_file()


def _finished_experiments(root: Path) -> int:
    """Experiments DVC has finished and committed: refs/exps/<baseline>/<name> (a git call,
    not a DVC process of a second or more of CPU)."""
    refs = sh("git", "for-each-ref", "--format=%(refname)", "refs/exps", cwd=root).stdout
    return sum(
        1 for ref in refs.split() if re.fullmatch(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/.+", ref)
    )


def _run_queue(root: Path, experiments: int, seconds: float = 600) -> str:
    """`dvc queue start -j 2`, then wait until the queued experiments finished or DVC says none
    is queued or running (a failure: asked every 30 s); `dvc queue status` at the end."""
    sh("dvc", "queue", "start", "-j", "2", cwd=root)
    deadline = time.monotonic() + seconds
    asked = time.monotonic()
    while _finished_experiments(root) < experiments and time.monotonic() < deadline:
        if time.monotonic() - asked > 30:
            status = sh("dvc", "queue", "status", cwd=root).stdout
            if "Queued" not in status and "Running" not in status:
                break
            asked = time.monotonic()
        time.sleep(2)
    return sh("dvc", "queue", "status", cwd=root).stdout


def test_parameter_sweeps_with_experiments_and_the_queue(
    first_run: FirstRun, workspace: Path
) -> None:
    """Two queued points run in parallel (`dvc exp run` of one point: the recipe test). They
    sweep a register setting, so that each runs the register stage alone: no model trains
    again and no evaluation is scored again."""
    clone = _clone(first_run.root, workspace / "sweeps")
    for margin in (0.5, 2.0):
        setting = f"register.promotion_margin_db={margin}"
        sh("dvc", "exp", "run", "--queue", "-S", setting, cwd=clone)
    status = _run_queue(clone, experiments=2)
    assert "Failed" not in status, status
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout)
    values = json.dumps(shown)
    for needle in ('"promotion_margin_db": 0.5', '"promotion_margin_db": 2.0'):
        assert needle in values, needle
    # Queued experiments run in copies under .dvc/tmp/exps but log to the repository's store.
    experiments = {run.data.tags.get("dvc.experiment") for run in _local_runs(clone)}
    assert len(experiments - {None}) >= 2, experiments


def test_bad_data_stops_the_run_at_validate_and_the_last_good_state_returns(
    first_run: FirstRun, workspace: Path
) -> None:
    """A dead camera's video: extract and noise run, validate fails naming the expectation in
    the flow run's logs, nothing downstream runs, and `denoise restore` brings back the last
    good outputs and report."""
    from conftest import write_dark_camera_video

    clone = _clone(first_run.root, workspace / "dead-camera")
    lock = _lock(clone)
    registry = (clone / "reports" / "registry.json").read_text()
    report = clone / "reports" / "validation"

    write_dark_camera_video(clone / "data" / "raw" / "dead-camera.avi")
    result = _run(clone, check=False)
    assert result.returncode == 1
    expectation = "frames: expect_column_values_to_be_between('mean') in [0.02, 0.98]"
    assert "error: validation failed" in result.stderr
    assert expectation in result.stderr
    assert "e.g. dead-camera.avi#0: 0.0" in result.stderr
    assert "`denoise restore`" in result.stderr
    # Read back through the Prefect API: the validate task failed with the one-line message,
    # which the flow run's logs hold; no task after it ran.
    record = _prefect_record(clone)
    stage_runs = dict(run for run in record["tasks"] if run[0] in STAGES)
    assert stage_runs["validate"] == "FAILED"
    assert not set(STAGES[STAGES.index("validate") + 1 :]) & set(stage_runs)
    failure = [message for message in record["logs"] if "stage validate failed" in message]
    assert failure and "error: validation failed" in failure[0] and expectation in failure[0]
    # The report says why; the stages after validate recorded nothing.
    assert json.loads((report / "results.json").read_text())["success"] is False
    assert (report / "index.html").is_file()
    failed_lock = _lock(clone)
    assert failed_lock["extract"] != lock["extract"], "extract passed and recorded the new video"
    for stage in lock:
        if stage not in ("extract", "noise"):
            assert failed_lock[stage] == lock[stage], stage

    sh("denoise", "restore", cwd=clone)
    assert not (clone / "data" / "raw" / "dead-camera.avi").exists()
    assert (clone / "data" / "raw-set-aside" / "dead-camera.avi").is_file()
    assert _changed(clone) == set(ALWAYS_RUN)
    assert json.loads((report / "results.json").read_text())["success"] is True
    assert (clone / "models" / "paper_cae.keras").is_file()
    assert (clone / "reports" / "registry.json").read_text() == registry


def test_a_recipe_runs_as_one_named_experiment(first_run: FirstRun, workspace: Path) -> None:
    """`denoise recipe NAME`: one command for a named set of params, as a DVC experiment."""
    clone = _clone(first_run.root, workspace / "recipe")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    # Register settings alone, so that the register stage alone runs again (the sweep test
    # likewise).
    params["recipes"] = {
        "strict": {"register.promotion_margin_db": 2.0, "register.clean_guard_db": 0.25}
    }
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _commit(clone, "a recipe")
    result = sh("denoise", "recipe", "strict", cwd=clone)
    assert (
        "exp run -n strict -S register.promotion_margin_db=2.0 -S register.clean_guard_db=0.25"
        in result.stdout
    )
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout)
    experiments = [
        experiment
        for commit in shown
        for experiment in commit.get("experiments") or []
        if experiment.get("name") == "strict"
    ]
    assert len(experiments) == 1, json.dumps(shown)[:2000]
    values = json.dumps(experiments[0])
    assert '"promotion_margin_db": 2.0' in values and '"clean_guard_db": 0.25' in values
    unknown = sh("denoise", "recipe", "absent", cwd=clone, check=False)
    assert unknown.returncode == 1
    assert "error: recipes: no recipe 'absent' (known: strict)" in unknown.stderr
