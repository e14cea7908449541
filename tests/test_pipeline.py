"""End to end through the real chain: `denoise run` -> `dvc repro` -> `denoise <stage>`.

Builds a real git + DVC repository in a temporary folder with the project's dvc.yaml, a tiny
params.yaml and a 12-frame 32x32 video.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, tiny_params, write_params, write_tiny_video

from denoise.config import Params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _sh(
    *command: str, cwd: Path, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _relative(params: Params, root: Path) -> Params:
    """The same params with every path relative to the repository root, as users write them."""
    import dataclasses

    paths = {
        field.name: str(Path(getattr(params.paths, field.name)).relative_to(root))
        for field in dataclasses.fields(params.paths)
    }
    return dataclasses.replace(params, paths=type(params.paths)(**paths))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    _sh("git", "init", "-q", cwd=root)
    _sh("git", "config", "user.email", "ci@example.invalid", cwd=root)
    _sh("git", "config", "user.name", "CI", cwd=root)
    _sh("dvc", "init", "-q", cwd=root)
    _sh("dvc", "config", "core.analytics", "false", cwd=root)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(
        PROJECT_ROOT / "src" / "denoise",
        root / "src" / "denoise",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    write_params(_relative(tiny_params(root), root), root / "params.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    write_tiny_video(root / "data" / "raw" / "tiny.avi")
    _sh("git", "add", "-A", cwd=root)
    _sh("git", "commit", "-qm", "tiny project", cwd=root)
    return root


def test_run_executes_every_stage_and_prints_the_table(repository: Path) -> None:
    result = _sh("denoise", "run", cwd=repository)
    for stage in ("extract", "noise", "train", "evaluate"):
        assert f"Running stage '{stage}'" in result.stdout
    assert "| paper_cae |" in result.stdout and "| bm3d |" in result.stdout
    metrics = json.loads((repository / "reports" / "metrics.json").read_text())
    assert set(metrics["sets"]) == {"test", "photographs"}
    lock = yaml.safe_load((repository / "dvc.lock").read_text())
    assert list(lock["stages"]) == ["extract", "noise", "train", "evaluate"]


def test_second_run_skips_everything(repository: Path) -> None:
    status = _sh("dvc", "status", cwd=repository)
    assert "Data and pipelines are up to date" in status.stdout
    start = time.perf_counter()
    result = _sh("denoise", "run", cwd=repository)
    assert time.perf_counter() - start < 60
    assert "Running stage" not in result.stdout


def test_failed_stage_keeps_last_good_outputs_restorable(repository: Path) -> None:
    lock = yaml.safe_load((repository / "dvc.lock").read_text())
    frames_hash = lock["stages"]["extract"]["outs"][0]["md5"]
    (repository / "data" / "raw" / "broken.mp4").write_bytes(b"\x00" * 1000)
    result = _sh("denoise", "run", cwd=repository, check=False)
    assert result.returncode == 1
    assert "broken.mp4: not a video OpenCV can read" in result.stderr
    (repository / "data" / "raw" / "broken.mp4").unlink()
    assert yaml.safe_load((repository / "dvc.lock").read_text()) == lock, (
        "a failed run must not record anything"
    )
    _sh("dvc", "checkout", cwd=repository)
    # Up to date means every output's content hash matches dvc.lock again.
    status = _sh("dvc", "status", cwd=repository)
    assert "Data and pipelines are up to date" in status.stdout
    assert (repository / "data" / "frames" / "manifest.parquet").is_file()
    assert lock["stages"]["extract"]["outs"][0]["md5"] == frames_hash
