"""Where runs go (repository root, local store) and the pure promotion rule."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import PROJECT_ROOT
from servers import free_port, wait_http

from denoise.core.config import load_params
from denoise.core.errors import StoppedError
from denoise.core.locations import repository_root, tracking_uri
from denoise.serving.load import CHALLENGER, CHAMPION
from denoise.tracking.aliases import decide, should_promote
from denoise.tracking.runs import PARENT_RUN_ENV, flatten, stage
from denoise.tracking.views import model_run_name, pipeline_run_name


def _git(*arguments: str, cwd: Path) -> None:
    subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "expected"),
    [
        (30.0, None, 0.05, True),  # no champion yet
        (30.0, 29.9, 0.05, True),
        (30.0, 29.96, 0.05, False),  # better, but not by the margin
        (29.0, 30.0, 0.0, False),
        (30.0, 30.0, 0.0, True),  # ties promote only with a zero margin
        (float("nan"), None, 0.0, False),
        (float("inf"), 30.0, 0.0, False),
    ],
)
def test_should_promote(
    candidate: float, champion: float | None, margin: float, expected: bool
) -> None:
    assert should_promote(candidate, champion, margin) is expected


def test_decide_aliases() -> None:
    assert decide(30.0, True, "1", None, None, 0.05) == (CHAMPION, "first champion")
    assert decide(30.0, True, "2", "1", 29.0, 0.05)[0] == CHAMPION
    alias, reason = decide(29.0, True, "2", "1", 30.0, 0.05)
    assert alias == CHALLENGER and "-1.000 dB against champion v1" in reason
    # The results gate wins over any score: never promoted, and no alias at all.
    assert decide(99.0, False, "2", "1", 30.0, 0.05)[0] is None
    assert decide(99.0, False, "1", None, None, 0.05)[0] is None
    # Registering the same training run again keeps its alias.
    assert decide(30.0, True, "1", "1", None, 0.05) == (CHAMPION, "already the champion")


def test_runs_are_named_for_what_they_did() -> None:
    assert model_run_name("paper_cae", "") == "paper_cae: from scratch"
    started = "models:/denoise@champion (version 3)"
    assert model_run_name("drunet_light", started) == "drunet_light: fine-tune from v3"
    shipped = "pretrained (drunet_light.keras)"
    assert (
        model_run_name("drunet_light", shipped) == "drunet_light: fine-tune from the shipped model"
    )
    moved = {"decisions": [{"holds": "champion", "version": "5", "earlier": False}]}
    assert pipeline_run_name("scheduled", 3, moved) == "pipeline: scheduled, 3 trained, champion v5"
    kept = {"decisions": [{"holds": "challenger", "version": "6", "champion_version": "5"}]}
    assert pipeline_run_name("by hand", 1, kept) == "pipeline: by hand, 1 trained, champion v5 kept"
    assert pipeline_run_name("by hand", 0, None) == "pipeline: by hand, 0 trained"


def test_flatten_nested_params() -> None:
    assert flatten({"seed": 0, "train": {"epochs": 3, "models": ["a", "b"]}}) == {
        "seed": "0",
        "train.epochs": "3",
        "train.models": "['a', 'b']",
    }


def test_repository_root_is_shared_by_worktrees_and_dvc_experiment_copies(tmp_path: Path) -> None:
    main = tmp_path / "project"
    main.mkdir()
    _git("init", "-q", cwd=main)
    (main / "file").write_text("x")
    _git("add", "file", cwd=main)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=main)
    (main / "sub").mkdir()
    assert repository_root(main / "sub") == main
    _git("worktree", "add", "-q", str(tmp_path / "tree"), cwd=main)
    assert repository_root(tmp_path / "tree") == main
    # DVC runs queued experiments in a fresh git repository under .dvc/tmp/exps/.
    copy = main / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    _git("init", "-q", cwd=copy)
    assert repository_root(copy) == main


def test_local_default_is_sqlite_under_the_repository_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    expected = PROJECT_ROOT / params.tracking.local_store / "mlflow.db"
    assert tracking_uri(params, PROJECT_ROOT) == f"sqlite:///{expected}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(params, PROJECT_ROOT) == "http://127.0.0.1:5999"


_OPEN_STORE = """
import sys, time
from pathlib import Path
from denoise.core.config import load_params
from denoise.core.errors import StoppedError
from denoise.tracking.runs import configure
import mlflow  # imported before the start signal: the processes then open the store together

Path(sys.argv[3]).touch()  # ready
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
print(configure(load_params(Path(sys.argv[2]))))
"""


def test_processes_that_open_a_new_local_store_at_once_share_one_experiment(
    tmp_path: Path,
) -> None:
    """`dvc queue start -j 2` in a fresh clone: its experiments create the SQLite store and the
    experiment on first use at the same moment; each must succeed, with one experiment."""
    store = tmp_path / "store" / "mlflow.db"
    go = tmp_path / "go"
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    ready = [tmp_path / f"ready-{index}" for index in range(3)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _OPEN_STORE,
                str(go),
                str(PROJECT_ROOT / "params.yaml"),
                str(flag),
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 300  # the imports, on a loaded machine
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        assert all(process.poll() is None for process in processes)
        time.sleep(0.1)
    go.touch()
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], results
    assert len({stdout.strip().splitlines()[-1] for stdout, _ in results}) == 1, results


_LOG_OR_READ = """
import sys
from pathlib import Path
import mlflow
from denoise.core.config import load_params
from denoise.core.errors import StoppedError
from denoise.tracking.runs import configure
root = Path(sys.argv[2])
configure(load_params(sys.argv[1]), root)
if sys.argv[3] == "log":
    with mlflow.start_run() as run:
        mlflow.log_text("the triptych", "evaluation/note.txt")
        print(run.info.run_id)
else:
    local = mlflow.artifacts.download_artifacts(run_id=sys.argv[3], artifact_path="evaluation")
    print(mlflow.get_run(sys.argv[3]).info.artifact_uri)
    print(Path(local, "note.txt").read_text())
"""


def test_a_moved_repository_still_opens_its_artifacts(tmp_path: Path) -> None:
    """MLflow's SQLite store records absolute file:// artifact locations: the next use of a
    moved repository's store points them at the artifact folder beside it."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    params = str(PROJECT_ROOT / "params.yaml")
    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()

    def probe(root: Path, action: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", _LOG_OR_READ, params, str(root), action],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-2:]

    (run_id,) = probe(first, "log")[-1:]
    first.rename(moved)
    artifact_uri, text = probe(moved, run_id)
    assert artifact_uri.startswith((moved / "mlflow" / "artifacts").as_uri())
    assert text == "the triptych"


def test_denoise_ui_serves_the_link_it_prints_and_stops_at_once_on_ctrl_c(tmp_path: Path) -> None:
    """`denoise ui` on a project's local store: one server process (one uvicorn worker, no
    job runner), the printed link's page answers, and Ctrl-C (SIGINT to its process group, as
    a terminal sends it) ends every process within 5 s (here a deadline of 30 s: the machine
    may be loaded; docs/tracking.md has the measured figure)."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["denoise", "ui", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, process)
        link = next(line for line in log.read_text().splitlines() if "MLflow UI on" in line)
        url = link.split("MLflow UI on ", 1)[1].split()[0]
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        assert requests.get(url, timeout=30).status_code == 200
        group = subprocess.run(
            ["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(group) == 2, group  # `mlflow ui` and its uvicorn worker
        began = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        process.wait(30)
        while (
            subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True).returncode == 0
        ):
            assert time.monotonic() - began < 30, "a process of `denoise ui` outlived Ctrl-C"
            time.sleep(0.05)
        print(f"denoise ui stopped {time.monotonic() - began:.2f} s after Ctrl-C")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("error", "status", "recorded"),
    [
        (StoppedError("stopped by SIGTERM"), "KILLED", "stopped"),  # SIGTERM, a cancel, lifeline
        (KeyboardInterrupt(), "KILLED", "stopped"),
        (ValueError("a bad input"), "FAILED", "failed"),
    ],
)
def test_a_stopped_stage_ends_its_runs_killed_and_a_failed_one_failed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    status: str,
    recorded: str,
) -> None:
    """A stage run by a bare `dvc repro`: its own parent run and its child run."""
    from mlflow.tracking import MlflowClient

    params = load_params(PROJECT_ROOT / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with (
        pytest.raises(type(error)),
        stage(params, "train@paper_cae") as tracker,
        tracker.child("paper_cae: from scratch") as run_id,
    ):
        raise error
    client = MlflowClient()
    child = client.get_run(run_id)
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert (child.info.status, parent.info.status) == (status, status)
    assert parent.data.tags["denoise.stage.train/paper_cae"] == recorded
