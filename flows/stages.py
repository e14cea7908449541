"""The DVC stages as the flows run them, and DVC run with the project's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The stages of dvc.yaml, in order (tests/test_consistency.py keeps the two in step). The first
# checks params, inputs and the tracking server before any stage deletes an output. PER_MODEL
# is a foreach stage: one train@<model> per model of train.models.
STAGES = ("preflight", "extract", "noise", "validate", "init", "train", "evaluate", "register")
PER_MODEL = "train"


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
    for line in process.stdout:
        if echo is not None:
            echo(line)
        lines.append(line)
    return process.wait(), "".join(lines)


def expand(stages: tuple[str, ...], models: list[str]) -> list[str]:
    """The stages to run in order, PER_MODEL as train@<model> for each of models."""
    return [
        item
        for name in stages
        for item in ([f"{name}@{model}" for model in models] if name == PER_MODEL else [name])
    ]
