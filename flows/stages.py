"""The DVC stages as the flows run them (dvc.yaml lists them), and DVC run with the
project's environment."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DVC_YAML = "dvc.yaml"
# How long a stopped flow waits for DVC to end on SIGTERM before it kills it. The stage under
# it stops by its lifeline within a second of DVC's end.
DVC_STOP_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Stages:
    """The stages of a project's dvc.yaml, in file order: that file is their one list.

    per_model: the `foreach` stage, which DVC runs once per model of train.models, as
    <per_model>@<model>. The first stage checks params, inputs and the tracking server before
    any stage deletes an output.
    """

    names: tuple[str, ...]
    per_model: str

    def expand(self, models: list[str]) -> list[str]:
        """The stages to run in order, as DVC names them: per_model as <per_model>@<model>
        for each of models (a foreach over a list)."""
        return [
            item
            for name in self.names
            for item in (
                [f"{name}@{model}" for model in models] if name == self.per_model else [name]
            )
        ]

    def before_training(self) -> tuple[str, ...]:
        """The stages between the first (the checks) and per_model."""
        return self.names[1 : self.names.index(self.per_model)]


def read_stages(root: Path) -> Stages:
    """The stages of root/dvc.yaml."""
    stages = yaml.safe_load((root / DVC_YAML).read_text())["stages"]
    per_model = [name for name, stage in stages.items() if "foreach" in stage]
    if len(per_model) != 1:
        raise ValueError(f"{root / DVC_YAML}: one foreach stage (per model) expected")
    return Stages(tuple(stages), per_model[0])


# A stage's status in the tracking run's tags, and in words in the report.
DESCRIBED = {
    "ran": "ran",
    "skipped": "skipped (unchanged)",
    "restored": "restored (run cache)",
}


def status_of(result: dict[str, Any]) -> str:
    """A stage task's result as one of DESCRIBED's keys."""
    if result.get("restored"):
        return "restored"
    return "ran" if result["ran"] else "skipped"


def deleted_outputs(root: Path, stage: str) -> list[str]:
    """The outputs of the stage's last completed run (dvc.lock records them) that are gone
    from the tree: DVC deletes a stage's outputs as it starts the stage, so a stage stopped
    midway leaves them deleted."""
    lock = root / "dvc.lock"
    recorded = (yaml.safe_load(lock.read_text()) or {}) if lock.is_file() else {}
    outs = recorded.get("stages", {}).get(stage, {}).get("outs", [])
    return [str(out["path"]) for out in outs if not (root / str(out["path"])).exists()]


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero: bad input or a bug, so retrying would not help."""


def run_dvc(
    arguments: list[str],
    root: Path,
    env: dict[str, str] | None = None,
    echo: Callable[[str], Any] | None = sys.stdout.write,
) -> tuple[int, str]:
    """Run DVC in root, handing each line of its output (stdout and stderr) to echo as it
    comes (None: keep it quiet); return the exit status and the output."""
    # Stages call `denoise`, which lives beside this interpreter (the project's environment).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dvc")), *arguments],
        cwd=root,
        env={**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            if echo is not None:
                echo(line)
            lines.append(line)
        return process.wait(), "".join(lines)
    except BaseException:  # a stop (SIGTERM, Ctrl-C, a cancel): DVC and its stage go too
        process.terminate()
        try:
            process.wait(timeout=DVC_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
