"""What a run was made from: the git commit and the DVC hashes of its data, as MLflow tags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from denoise.core.config import Params


def git_output(*arguments: str) -> str:
    """What `git <arguments>` prints, stripped ('' where git fails or is missing)."""
    try:
        return subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def dvc_out_md5(path: str) -> str:
    """The DVC hash of a raw-data folder (its .dvc file) or a stage output (dvc.lock), if any."""
    tracked = Path(f"{path}.dvc")
    if tracked.is_file():
        outs = yaml.safe_load(tracked.read_text()).get("outs", [])
        return str(outs[0].get("md5", "")) if outs else ""
    lock = Path("dvc.lock")
    if lock.is_file():
        for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                if Path(out["path"]) == Path(path):
                    return str(out.get("md5", ""))
    return ""


def lineage_tags(params: Params) -> dict[str, str]:
    """The git commit and the DVC hashes of the raw videos and frames this run used."""
    tags = {
        "git.commit": git_output("rev-parse", "HEAD") or "unknown",
        "git.dirty": str(bool(git_output("status", "--porcelain", "--untracked-files=no"))).lower(),
        "dvc.raw.md5": dvc_out_md5(params.paths.raw) or "unknown",
        "dvc.frames.md5": dvc_out_md5(params.paths.frames) or "unknown",
    }
    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment:
        tags["dvc.experiment"] = experiment
    return tags
