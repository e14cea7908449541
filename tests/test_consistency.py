"""The chain has one path: every dvc.yaml stage is a `denoise` command of the same name, the flow
runs each one in dvc.yaml's order, and `denoise run`'s options are the flow's parameters."""

from __future__ import annotations

import inspect
from typing import Any

import typer.main
import yaml
from conftest import PROJECT_ROOT, TINY_MODELS

from denoise.cli import app
from flows.stages import read_stages


def _commands() -> dict[str, Any]:
    """The `denoise` commands by name, as Typer builds them."""
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_dvc_stage_is_a_cli_command() -> None:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    commands = _commands()
    for name, stage in stages.items():
        # A foreach stage runs the command once per item, naming it: train@<model>.
        command = stage["do"]["cmd"] if "foreach" in stage else stage["cmd"]
        assert command.split()[:2] == ["denoise", name]
        assert name in commands
    assert {"samples", "run", "model-summary"} <= set(commands)


def test_every_dvc_stage_is_run_by_the_flow_in_order_as_dvc_names_them() -> None:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    declared = read_stages(PROJECT_ROOT)
    assert declared.names == tuple(stages)
    # The per-model stage iterates over train.models, which the flow expands it with.
    assert stages[declared.per_model]["foreach"] == "${train.models}"
    expanded = declared.expand(TINY_MODELS)
    assert [stage.split("@")[0] for stage in expanded] == [
        name for name in stages for _ in (TINY_MODELS if name == declared.per_model else [name])
    ]
    assert [stage for stage in expanded if "@" in stage] == [
        f"{declared.per_model}@{model}" for model in TINY_MODELS
    ]


def test_the_run_command_s_options_are_the_flow_s_parameters() -> None:
    from flows.pipeline import denoise_pipeline

    options = {parameter.name for parameter in _commands()["run"].params} - {"params"}
    flow = set(inspect.signature(denoise_pipeline.fn).parameters) - {"root"}
    assert options == flow
