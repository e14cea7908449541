"""Where things live: the repository root and the local tracking store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from denoise.core.config import Params

_DVC_EXPERIMENT_COPIES = (".dvc", "tmp", "exps")


def repository_root(start: Path | None = None) -> Path:
    """The main working tree of the project that start (default: the working directory) is in.

    Git worktrees share their main tree's git common directory; DVC runs queued experiments in
    temporary clones under <root>/.dvc/tmp/exps/, which map back to <root>.
    """
    start = (start or Path.cwd()).resolve()
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=start,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        root = Path(common).parent if Path(common).name == ".git" else start
    except (OSError, subprocess.CalledProcessError):
        root = start
    parts = root.parts
    for index in range(len(parts) - len(_DVC_EXPERIMENT_COPIES)):
        if parts[index : index + len(_DVC_EXPERIMENT_COPIES)] == _DVC_EXPERIMENT_COPIES:
            return Path(*parts[:index])
    return root


def local_store(params: Params, root: Path | None = None) -> Path:
    """The folder of the local default store: mlflow.db and artifacts/."""
    return (root or repository_root()) / params.tracking.local_store


def tracking_uri(params: Params, root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else SQLite in the local store."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{local_store(params, root) / 'mlflow.db'}"


def init_file(params: Params, model: str, suffix: str = ".json") -> Path:
    """What the init stage writes for a model: .json, its training settings and starting point;
    .keras, its starting weights (models with init_from only)."""
    return Path(params.paths.init) / f"{model}{suffix}"
