"""The stages DVC runs every time (preflight, init) decide quickly when nothing changed: they
load no TensorFlow, Keras, MLflow, Great Expectations or pandas, and write the same files."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_params
from servers import start_mlflow_server, stop

from denoise.core.config import Params
from denoise.tracking import store

HEAVY = ("tensorflow", "keras", "mlflow", "great_expectations", "pandas")


def imported_by(root: Path, command: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages `denoise <command>` imports, run in root."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "denoise", command],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.split("|")[-1].strip().split(".")[0] for line in lines}


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_preflight_and_init_load_nothing_heavy_when_nothing_changed(
    params: Params, tmp_path: Path
) -> None:
    write_params(params, tmp_path / "params.yaml")
    # A store of its own: a RUNNING run in it (another test's) would take MLflow's path.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    imported_by(tmp_path, "preflight", env)
    imported_by(tmp_path, "init", env)
    written = _contents(Path(params.paths.init))

    for command in ("preflight", "init"):
        heavy = imported_by(tmp_path, command, env) & set(HEAVY)
        assert not heavy, f"denoise {command} imported {heavy}"
    assert _contents(Path(params.paths.init)) == written

    # A changed setting is written: the training of that model reruns.
    changed = dataclasses.replace(params, seed=params.seed + 1)
    write_params(changed, tmp_path / "params.yaml")
    imported_by(tmp_path, "init", env)
    assert _contents(Path(params.paths.init)) != written


@pytest.fixture(params=["sqlite", "server"])
def tracking(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A tracking store MLflow writes: a local SQLite file, or an `mlflow server`."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlflow.db'}"
        return
    url, process = start_mlflow_server(tmp_path / "server")
    yield url
    stop(process)


def test_the_store_reads_what_mlflow_wrote(tracking: str) -> None:
    from mlflow.tracking import MlflowClient

    assert store.alias_version(tracking, "denoise", "champion") is None
    assert not store.has_running_runs(tracking, "denoise", "denoise.host", "here")
    client = MlflowClient(tracking)
    experiment = client.create_experiment("denoise")
    run = client.create_run(experiment, tags={"denoise.host": "here"})
    assert store.has_running_runs(tracking, "denoise", "denoise.host", "here")
    assert not store.has_running_runs(tracking, "denoise", "denoise.host", "elsewhere")
    assert not store.has_running_runs(tracking, "other", "denoise.host", "here")
    client.set_terminated(run.info.run_id, "FAILED")
    assert not store.has_running_runs(tracking, "denoise", "denoise.host", "here")

    client.create_registered_model("denoise")
    with pytest.raises(store.Unknown):  # MLflow's own answer is an error: it decides
        store.alias_version(tracking, "denoise", "champion")
    for _ in range(2):
        client.create_model_version(
            "denoise", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
    client.set_registered_model_alias("denoise", "champion", "2")
    assert store.alias_version(tracking, "denoise", "champion") == "2"
    client.set_registered_model_alias("denoise", "champion", "1")
    assert store.alias_version(tracking, "denoise", "champion") == "1"
    assert store.alias_version(tracking, "other", "champion") is None
    with pytest.raises(store.Unknown):
        store.alias_version("postgresql://nowhere/db", "denoise", "champion")
