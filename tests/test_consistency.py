"""The chain has one path: every dvc.yaml stage is a `denoise` command of the same name."""

from __future__ import annotations

import yaml
from conftest import PROJECT_ROOT

from denoise.cli import app


def test_every_dvc_stage_is_a_cli_command() -> None:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    commands = {
        command.name or command.callback.__name__.replace("_", "-")
        for command in app.registered_commands
    }
    for name, stage in stages.items():
        # A foreach stage runs the command once per item, naming it: train@<model>.
        command = stage["do"]["cmd"] if "foreach" in stage else stage["cmd"]
        assert command.split()[:2] == ["denoise", name]
        assert name in commands
    assert {"samples", "run", "model-summary"} <= commands


def test_every_dvc_stage_is_run_by_a_flow_task_in_order() -> None:
    from flows.pipeline import STAGES

    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    assert list(STAGES) == list(stages)
