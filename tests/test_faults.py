"""Fault injection on a real git + DVC repository: each fault gives one line, exits non-zero,
and loses nothing; `denoise restore` then leaves `dvc status` clean and the champion in place.

The repository (tiny params and video) runs the pipeline once with `dvc repro`, pushes to its
DVC remote and commits; every test works in a clone of its own. All of them log to one SQLite
MLflow store, where the first run registered the champion; the test that stops a tracking
server mid-run serves a copy of that store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from repository import BIN, build_repository, sh
from repository import commit as _commit
from servers import free_port, start, stop, wait_http

pytestmark = pytest.mark.slow
ALWAYS_RUN = {"preflight", "init"}  # always_changed stages: `dvc status` lists them always
MODEL_NAME = "denoise"


def _env(store: Path, **extra: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{store}", **extra}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(repository after one `dvc repro`, pushed and committed; its MLflow store)."""
    folder = tmp_path_factory.mktemp("faults")
    store = folder / "mlflow.db"
    # One model: the faults stop or break paper_cae's training, and a second model's
    # training, scoring and registration would add nothing to what they check.
    root = build_repository(folder / "repo", models=["paper_cae"])
    sh("dvc", "repro", cwd=root, env=_env(store))
    sh("dvc", "push", cwd=root)
    _commit(root, "first run")
    yield root, store


def _clone(repo: tuple[Path, Path], name: str) -> Path:
    root, _ = repo
    target = root.parent / name
    sh("git", "clone", "-q", str(root), str(target), cwd=root.parent)
    sh("dvc", "pull", "-q", cwd=target)
    return target


def _champion(store: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    return str(client.get_model_version_by_alias(MODEL_NAME, "champion").version)


def _changed(root: Path) -> set[str]:
    output = sh("dvc", "status", "--json", cwd=root).stdout.strip()
    return set(json.loads(output.splitlines()[-1] if output else "{}"))


def _one_error_line(output: str) -> str:
    """The single `error: ...` line of a failed command's output (no traceback)."""
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def _restored(root: Path, store: Path, champion: str) -> None:
    """`denoise restore`, then: dvc status clean, the champion unchanged."""
    sh("denoise", "restore", cwd=root, env=_env(store))
    assert _changed(root) == ALWAYS_RUN
    assert _champion(store) == champion


def _edit_params(root: Path, **active: object) -> None:
    """Change the active training profile's settings in params.yaml."""
    path = root / "params.yaml"
    values = yaml.safe_load(path.read_text())
    values["train"]["profiles"][values["train"]["profile"]].update(active)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def _processes(root: Path, needle: str) -> list[int]:
    """Pids of the processes working in root that run the command needle (`denoise train`).

    The program's own process only: argv holds the program (by path or name) and then its
    arguments, so a shell that DVC starts the command with (`sh -c 'denoise train'`, which
    `dash` does not replace by exec) is not matched.
    """
    program, *arguments = needle.split()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        runs = any(
            Path(part).name == program and argv[i + 1 : i + 1 + len(arguments)] == arguments
            for i, part in enumerate(argv[:3])
        )
        if runs and Path(cwd) == root:
            found.append(int(entry.name))
    return found


def _wait_for_process(root: Path, needle: str, seconds: float = 180) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = _processes(root, needle)
        if pids:
            return pids[0]
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} process in {root} within {seconds} s")


def _wait_gone(root: Path, needle: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _processes(root, needle):
        assert time.monotonic() < deadline, f"{needle!r} still runs after {seconds} s"
        time.sleep(0.2)


def _background(root: Path, env: dict[str, str], *command: str) -> subprocess.Popen[str]:
    """Start command in root with the project's environment first on PATH; output piped."""
    return subprocess.Popen(
        command,
        cwd=root,
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _mlflow_server(store: Path, folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """An `mlflow server` on 127.0.0.1 over a copy of store; (URL, process)."""
    served = folder / "served.db"
    shutil.copy(store, served)
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{served}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = start(command, folder / "server.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", 120, process)
    except BaseException:
        stop(process)
        raise
    return url, process


def _set_services(root: Path, **values: float) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["services"] = {**params.get("services", {}), **values}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _runs(store: Path, filter_string: str) -> list:  # type: ignore[type-arg]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("denoise")
    return list(client.search_runs([experiment.experiment_id], filter_string))


def _prepared(repo: tuple[Path, Path], name: str) -> tuple[Path, Path, str]:
    """(a clone of its own, the MLflow store, the champion's version before the fault)."""
    _, store = repo
    return _clone(repo, name), store, _champion(store)


def _training_started(uri: str, trainer: int, seconds: float = 180) -> None:
    """Wait until the trainer's model run is open in the store at uri: it is fitting."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    deadline = time.monotonic() + seconds
    query = f"tags.`denoise.pid` = '{trainer}' and tags.`denoise.model` = 'paper_cae'"
    while True:
        experiment = client.get_experiment_by_name("denoise")
        if experiment and client.search_runs([experiment.experiment_id], query):
            time.sleep(2)  # past the run's first calls, into fit
            return
        assert time.monotonic() < deadline, f"trainer {trainer} opened no run in {seconds} s"
        time.sleep(0.5)


def _training(clone: Path, store: Path) -> tuple[subprocess.Popen[str], int]:
    """`dvc repro` with a long training in the background, once the trainer's MLflow runs are
    open; (the dvc process, the trainer's pid)."""
    _edit_params(clone, steps_per_epoch=5000, epochs=3)
    run = _background(clone, _env(store), "dvc", "repro")
    trainer = _wait_for_process(clone, "denoise train")
    _training_started(f"sqlite:///{store}", trainer)
    return run, trainer


def test_an_unreachable_tracking_server_fails_within_seconds_and_deletes_nothing(
    repo: tuple[Path, Path],
) -> None:
    clone, store, champion = _prepared(repo, "mlflow-down")
    _edit_params(clone, epochs=1)  # train would run, and DVC would delete models/ first
    down = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}
    for command in (("denoise", "run"), ("dvc", "repro")):
        started = time.monotonic()
        result = sh(*command, cwd=clone, check=False, env=down)
        assert result.returncode != 0
        assert time.monotonic() - started < 60
        line = _one_error_line(result.stdout + result.stderr)
        assert line == (
            "error: MLflow tracking server http://127.0.0.1:1 is unreachable (connection "
            "refused); start it, or unset MLFLOW_TRACKING_URI to log to the local store"
        )
        assert (clone / "models" / "paper_cae.keras").is_file()
    sh("git", "checkout", "params.yaml", cwd=clone)
    assert _changed(clone) == ALWAYS_RUN, "nothing was deleted: no restore needed"
    _restored(clone, store, champion)


def test_a_bad_params_edit_stops_before_any_output_is_deleted(repo: tuple[Path, Path]) -> None:
    clone, store, champion = _prepared(repo, "bad-params")
    _edit_params(clone, epochs=-1)
    for command in (("denoise", "run"), ("dvc", "repro")):
        result = sh(*command, cwd=clone, check=False, env=_env(store))
        assert result.returncode != 0
        line = _one_error_line(result.stdout + result.stderr)
        assert line == "error: params.yaml: train.profiles.quick.epochs: must be >= 1, got -1"
        assert (clone / "models" / "paper_cae.keras").is_file()
        assert (clone / "reports" / "train" / "paper_cae.csv").is_file()
    sh("git", "checkout", "params.yaml", cwd=clone)
    _restored(clone, store, champion)


def test_an_unreachable_prefect_api_fails_before_the_flow_starts(repo: tuple[Path, Path]) -> None:
    clone = _clone(repo, "prefect-down")
    _, store = repo
    url = f"http://127.0.0.1:{free_port()}/api"
    started = time.monotonic()
    result = sh("denoise", "run", cwd=clone, check=False, env=_env(store, PREFECT_API_URL=url))
    assert result.returncode == 1 and time.monotonic() - started < 60
    assert _one_error_line(result.stderr) == (
        f"error: Prefect API {url} is unreachable (connection refused); start the Prefect "
        "server (make serve), or unset PREFECT_API_URL to run on a temporary local server"
    )
    _restored(clone, store, _champion(store))


def test_a_tracking_server_that_stops_mid_run_fails_the_stage_with_one_line(
    repo: tuple[Path, Path], tmp_path: Path
) -> None:
    clone, store, champion = _prepared(repo, "mlflow-stops")
    url, server = _mlflow_server(store, tmp_path)
    try:
        _set_services(clone, timeout_seconds=5, retry_seconds=2)
        # Epochs of about 5 s: the first epoch's end after the stop logs to the stopped server
        # (nine of them: the same 45 s of training as three of 15 s for the stop to come in).
        _edit_params(clone, steps_per_epoch=500, epochs=9)
        run = _background(clone, {"MLFLOW_TRACKING_URI": url}, "dvc", "repro")
        _training_started(url, _wait_for_process(clone, "denoise train"))
    finally:
        stop(server)
    stopped = time.monotonic()
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0
    assert time.monotonic() - stopped < 120, "bounded retries, not minutes"
    assert _one_error_line(output).startswith(
        f"error: MLflow tracking server {url} stopped answering (connection refused)"
    )
    sh("git", "checkout", "params.yaml", cwd=clone)
    _restored(clone, store, champion)


def test_kill_9_of_dvc_stops_the_trainer_and_restore_returns_the_last_state(
    repo: tuple[Path, Path],
) -> None:
    clone, store, champion = _prepared(repo, "kill-dvc")
    run, trainer = _training(clone, store)
    os.kill(run.pid, signal.SIGKILL)
    killed = time.monotonic()
    run.wait()
    # The lifeline notices within a second, and a stopped stage exits at once after its line
    # (about 2 s in all, docs/reliability.md): 20 s allows for a loaded machine.
    _wait_gone(clone, "denoise train", 20)
    print(f"the trainer ended {time.monotonic() - killed:.1f} s after kill -9 of dvc")
    # The trainer ended its own runs KILLED (stopped, not failed) on the way out.
    assert not _runs(store, f"attributes.status = 'RUNNING' and tags.`denoise.pid` = '{trainer}'")
    assert _runs(store, f"attributes.status = 'KILLED' and tags.`denoise.pid` = '{trainer}'")
    sh("git", "checkout", "params.yaml", cwd=clone)
    _restored(clone, store, champion)


def test_sigterm_to_denoise_run_stops_every_process_and_ends_the_runs_killed(
    repo: tuple[Path, Path],
) -> None:
    """`denoise run` passes a stop to the flow's process, which stops DVC and the stage and
    ends the pipeline's tracking run KILLED: nothing is left running or RUNNING."""
    clone, store, champion = _prepared(repo, "stop-run")
    _edit_params(clone, steps_per_epoch=5000, epochs=3)
    run = _background(clone, _env(store), "denoise", "run")
    trainer = _wait_for_process(clone, "denoise train", 300)
    _training_started(f"sqlite:///{store}", trainer)
    (flow,) = _processes(clone, "python -m flows.pipeline")
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert output.strip().splitlines()[-1] == (
        "error: stopped by SIGTERM; the pipeline's tracking run ended KILLED"
    )
    # Within about 2 s (docs/reliability.md); 30 s allows for a loaded machine.
    for needle in ("denoise train", "python -m flows.pipeline", "dvc repro"):
        _wait_gone(clone, needle, 30)
    assert not _runs(store, "attributes.status = 'RUNNING'")
    (pipeline,) = _runs(store, f"tags.`denoise.pid` = '{flow}'")
    assert pipeline.info.status == "KILLED"
    sh("git", "checkout", "params.yaml", cwd=clone)
    _restored(clone, store, champion)


def test_kill_9_of_the_trainer_leaves_runs_that_the_next_start_ends_failed(
    repo: tuple[Path, Path],
) -> None:
    clone, store, champion = _prepared(repo, "kill-trainer")
    run, trainer = _training(clone, store)
    os.kill(trainer, signal.SIGKILL)
    output, _ = run.communicate(timeout=120)
    assert run.returncode != 0, output
    running = f"attributes.status = 'RUNNING' and tags.`denoise.pid` = '{trainer}'"
    assert _runs(store, running), "a killed process cannot close its runs"
    sh("git", "checkout", "params.yaml", cwd=clone)
    result = sh("dvc", "repro", "preflight", cwd=clone, env=_env(store))
    assert "ended FAILED" in result.stdout
    assert not _runs(store, running)
    failed = _runs(store, f"tags.`denoise.pid` = '{trainer}' and attributes.status = 'FAILED'")
    assert failed
    assert all(
        "ended without closing the run" in run.data.tags["denoise.failure"] for run in failed
    )
    _restored(clone, store, champion)


def test_kill_9_of_extract_leaves_temporary_frames_that_git_ignores_and_restore_removes(
    repo: tuple[Path, Path],
) -> None:
    from conftest import write_tiny_video

    clone, store, champion = _prepared(repo, "kill-extract")
    write_tiny_video(clone / "data" / "raw" / "long.avi", num_frames=2000, size=96)
    run = _background(clone, _env(store), "dvc", "repro")
    data = clone / "data"
    deadline = time.monotonic() + 180
    while not list(data.glob(".frames.tmp-*")):
        assert time.monotonic() < deadline, "extract started no write"
        time.sleep(0.05)
    os.kill(_wait_for_process(clone, "denoise extract"), signal.SIGKILL)
    run.communicate(timeout=120)
    assert run.returncode != 0
    assert list(data.glob(".frames.tmp-*")), "the killed write's folder is left"
    status = sh("git", "status", "--porcelain", "--untracked-files=all", cwd=clone).stdout
    assert ".frames.tmp-" not in status, "git ignores it"
    (clone / "data" / "raw" / "long.avi").unlink()
    _restored(clone, store, champion)
    assert not list(data.glob(".frames.tmp-*")), "restore removed it"


def test_a_second_trainer_in_the_same_tree_stops_naming_the_first(
    repo: tuple[Path, Path],
) -> None:
    clone, store, champion = _prepared(repo, "two-trainers")
    _edit_params(clone, steps_per_epoch=5000, epochs=3)
    first = _background(clone, _env(store), "denoise", "train")
    pid = _wait_for_process(clone, "denoise train")
    lock = clone / "checkpoints" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f"(pid {pid})" in lock.read_text()):
        assert time.monotonic() < deadline, "the first trainer took no lock"
        time.sleep(0.2)
    second = sh("denoise", "train", cwd=clone, check=False, env=_env(store))
    assert second.returncode == 1
    assert _one_error_line(second.stderr) == (
        f"error: checkpoints: in use by denoise train (pid {pid}); wait for it to finish, or "
        "stop it (the lock goes with the process)"
    )
    # Through DVC as well: the train stage stops on the lock (DVC deleted models/ as it
    # started the stage; restore brings it back).
    repro = sh("dvc", "repro", cwd=clone, check=False, env=_env(store))
    assert repro.returncode != 0
    assert f"in use by denoise train (pid {pid})" in _one_error_line(repro.stdout + repro.stderr)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=120)
    assert _one_error_line(output) == "error: stopped by SIGTERM"
    sh("git", "checkout", "params.yaml", cwd=clone)
    _restored(clone, store, champion)


def test_a_full_disk_during_extract_is_one_line_and_keeps_the_frames(
    repo: tuple[Path, Path], tmp_path: Path
) -> None:
    """The file-size limit (`ulimit -f`) stands in for a full device: both fail the write. With
    a tracking server, the frames are the first write past it; with a local SQLite store, the
    store is."""
    from conftest import write_tiny_video

    clone, store, champion = _prepared(repo, "full-disk")
    frames = clone / "data" / "frames"
    before = {path.name: path.read_bytes() for path in frames.iterdir()}
    write_tiny_video(clone / "data" / "raw" / "big.avi", num_frames=60, size=96)
    url, server = _mlflow_server(store, tmp_path)
    lines = {}

    def run(*command: str, uri: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=clone,
            env={
                **os.environ,
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "MLFLOW_TRACKING_URI": uri,
            },
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        for name, uri in (("server", url), ("sqlite", f"sqlite:///{store}")):
            result = run("bash", "-c", "ulimit -f 160; exec denoise extract", uri=uri)
            assert result.returncode == 1, result.stderr[-2000:]
            lines[name] = _one_error_line(result.stderr)
            assert {path.name: path.read_bytes() for path in frames.iterdir()} == before
        # Under `dvc repro`, DVC deletes a stage's outputs before it runs: the message says where
        # the last good frames are, and that command brings them back. The limit is the stage's
        # alone (DVC's own SQLite state would meet it first).
        pipeline = (clone / "dvc.yaml").read_text()
        limited = pipeline.replace(
            "cmd: denoise extract", "cmd: bash -c 'ulimit -f 160; exec denoise extract'"
        )
        assert limited != pipeline
        (clone / "dvc.yaml").write_text(limited)
        result = run("dvc", "repro", "--single-item", "extract", uri=url)
        assert result.returncode != 0
        lines["dvc"] = _one_error_line(result.stdout + result.stderr)
    finally:
        stop(server)
    assert lines["server"].startswith("error: data/frames: no space to write it: needs more than")
    assert "file-size limit (ulimit -f) 160.0 KB" in lines["server"]
    assert lines["server"].endswith("free space and run again (the previous output is intact)")
    assert lines["sqlite"] == (
        f"error: MLflow tracking store sqlite:///{store}: disk I/O error while writing (a full "
        "disk or the file-size limit); free space and run again"
    )
    assert lines["dvc"].startswith("error: data/frames: no space to write it"), lines["dvc"]
    assert lines["dvc"].endswith(
        "the previous output is in DVC's cache: `dvc checkout extract` restores it)"
    )
    (clone / "data" / "raw" / "big.avi").unlink()
    (clone / "dvc.yaml").write_text(pipeline)
    sh("dvc", "checkout", "extract", cwd=clone)
    assert {path.name: path.read_bytes() for path in frames.iterdir()} == before
    _restored(clone, store, champion)


def test_a_corrupt_cache_entry_is_fetched_again_from_the_remote(repo: tuple[Path, Path]) -> None:
    clone, store, champion = _prepared(repo, "corrupt-cache")
    model = clone / "models" / "paper_cae.keras"
    good = model.read_bytes()
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    outs = lock["stages"]["train@paper_cae"]["outs"]
    (entry,) = [out for out in outs if out["path"] == "models/paper_cae.keras"]
    cached = clone / ".dvc" / "cache" / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
    cached.chmod(0o644)
    cached.write_bytes(b"corrupt")
    model.unlink()
    _restored(clone, store, champion)
    assert model.read_bytes() == good
