"""The training profiles of params.yaml: the GPU profile fits its time budget at the measured
rates, and its recipe (learning rates, warm-up, clipping) stays finite in mixed bfloat16."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

from denoise.core.config import Params, load_params
from denoise.core.train_config import ModelBudget
from denoise.data.evalsets import load_set
from denoise.data.extract import load_manifest
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.training.loop import train_model
from denoise.training.settings import model_budget, with_active
from denoise.training.stream import PatchStream

GPU_PROFILE = "full"
GPU_BUDGET_SECONDS = 45 * 60  # on one H100/H200-class GPU, the profile's models in sequence


def _profile(name: str) -> Params:
    """params.yaml with the recipe of that name: its profile and the models it trains."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    recipe = params.recipes[name]
    train = dataclasses.replace(
        params.train, profile=recipe["train.profile"], models=recipe["train.models"]
    )
    return dataclasses.replace(params, train=train)


def test_the_gpu_profile_fits_its_budget_at_the_measured_rates() -> None:
    train = _profile(GPU_PROFILE).train
    rates = json.loads((PROJECT_ROOT / "bench" / "rates.json").read_text())[GPU_PROFILE]
    seconds = 0.0
    for name in train.models:
        assert rates.get(name, 0) > 0, f"{name}: no measured images/s in bench/rates.json"
        budget = model_budget(train, name)
        images = budget.epochs * budget.steps_per_epoch * budget.batch_size
        seconds += images / rates[name]
    assert seconds <= GPU_BUDGET_SECONDS, f"{seconds / 60:.1f} minutes"


@pytest.mark.slow
def test_the_gpu_recipe_stays_finite_in_mixed_bfloat16_at_tiny_size(
    params: Params, tmp_path: Path
) -> None:
    """Every model of the GPU profile, at its own learning rate and clipping, on tiny patches
    in mixed bfloat16 on the CPU: no epoch's loss is NaN or infinite, none is undone."""
    gpu = _profile(GPU_PROFILE).train
    tiny = {
        name: ModelBudget(
            learning_rate=model_budget(gpu, name).learning_rate,
            clip_norm=model_budget(gpu, name).clip_norm,
        )
        for name in gpu.models
    }
    train = dataclasses.replace(params.train, profiles=gpu.profiles, profile=GPU_PROFILE)
    train = with_active(
        train,
        models=gpu.models,
        per_model=tiny,
        patch_size=16,
        batch_size=4,
        epochs=3,
        steps_per_epoch=8,
        warmup_steps=4,
        early_stopping_patience=3,
        precision="mixed_bfloat16",
    )
    configured = dataclasses.replace(params, train=train)
    run_extract(configured)
    run_noise(configured)
    frames = Path(configured.paths.frames)
    manifest = load_manifest(frames)
    clean, noisy, _ = load_set(Path(configured.paths.evalsets), "validation")
    for name in train.models:
        stream = PatchStream(frames, manifest[manifest["split"] == "train"], configured)
        _, state = train_model(
            name,
            configured,
            stream,
            (noisy["gaussian-25"], clean),
            tmp_path / name,
            print_fn=lambda *_: None,
        )
        losses = [epoch["loss"] for epoch in state.history]
        assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses), (name, losses)
        assert state.rollbacks == [] and not state.diverged, name


def test_measured_rates_are_no_params() -> None:
    """The measured rates live in bench/rates.json, which no stage reads: editing them
    reruns nothing, as a change to params.yaml's train section would."""
    assert "images_per_second" not in (PROJECT_ROOT / "params.yaml").read_text()
    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        for dep in stage.get("deps", []):
            assert not str(dep).startswith("bench"), (name, dep)
