"""A real git + DVC repository of the project with tiny params, for the end-to-end tests.

The repository holds the project's dvc.yaml, DVC config (default remote ../denoise-dvc-remote
beside the working tree), flows/, src/denoise/, prefect.yaml and infra/, a tiny params.yaml
and a 12-frame 32x32 video tracked by DVC, committed on `main`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, TINY_MODELS, tiny_params, write_params, write_tiny_video

from denoise.core.config import Params
from denoise.training.settings import with_active
from flows.stages import read_stages

BIN = Path(sys.executable).parent
COPIED_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", ".dvc/config", "prefect.yaml")
COPIED_FOLDERS = ("flows", "src/denoise", "infra")
# The stages of a repository built with tiny params, in order: train@<model> for each model.
STAGES = read_stages(PROJECT_ROOT).expand(TINY_MODELS)


def sh(
    *command: str,
    cwd: Path,
    check: bool = True,
    timeout: int = 900,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with the project's environment first on PATH; fail with its output."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        **(env or {}),
    }
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def relative_params(params: Params, root: Path) -> Params:
    """The same params with every path relative to the repository root, as users write them."""
    paths = {
        field.name: str(Path(getattr(params.paths, field.name)).relative_to(root))
        for field in dataclasses.fields(params.paths)
    }
    return dataclasses.replace(params, paths=type(params.paths)(**paths))


def without_bm3d(params: Params) -> Params:
    methods = [method for method in params.evaluate.methods if method != "bm3d"]
    return dataclasses.replace(
        params, evaluate=dataclasses.replace(params.evaluate, methods=methods)
    )


def commit(root: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", message, cwd=root)


def build_repository(
    root: Path, params: Params | None = None, models: list[str] | None = None
) -> Path:
    """git init + dvc init in root (created), the project's files, tiny params and video.

    params: written as params.yaml with paths relative to root (default: tiny_params without
    BM3D, which costs seconds per call even at 32x32 and is scored by tests/test_evaluate.py;
    these repositories run the evaluate stage many times). models: the default params training
    only these models.
    """
    root.mkdir(parents=True)
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "config", "user.email", "ci@example.invalid", cwd=root)
    sh("git", "config", "user.name", "CI", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    for name in COPIED_FILES:
        if (PROJECT_ROOT / name).is_file():
            shutil.copy(PROJECT_ROOT / name, root / name)
    for name in COPIED_FOLDERS:
        shutil.copytree(
            PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    if params is None:
        params = without_bm3d(tiny_params(root))
        if models is not None:
            params = dataclasses.replace(params, train=with_active(params.train, models=models))
    write_params(relative_params(params, root), root / "params.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    write_tiny_video(root / "data" / "raw" / "tiny.avi")
    sh("dvc", "add", "-q", "data/raw", cwd=root)
    commit(root, "tiny project")
    return root
