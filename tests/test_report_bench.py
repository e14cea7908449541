"""bench/report.py: each model's line gives its own budget, per_model settings included."""

from __future__ import annotations

import sys

from conftest import PROJECT_ROOT

from denoise.core.config import load_params
from denoise.core.train_config import Train
from denoise.training.settings import model_budget

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import report  # bench/report.py

INFO = {
    "parameters": 1000,
    "epochs": 6,
    "patch_size": 96,
    "train_seconds": 60.0,
    "train_patches_per_second": 100.0,
    "val_psnr": 30.0,
}


def test_each_model_line_gives_that_models_own_steps_per_epoch() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    # drunet_light's per_model entry sets 50 steps an epoch; the profile's are 40.
    assert model_budget(params.train, "drunet_light").steps_per_epoch == 50
    assert params.train.active.steps_per_epoch == 40
    assert "6 epochs of 50 x 16 patches" in report.model_line("drunet_light", INFO, params)
    assert "of 40 x 16 patches" in report.model_line("paper_cae", INFO, params)


def test_no_shortcut_hides_a_models_own_budget() -> None:
    """What a per_model entry may change is asked per model (training.settings.model_budget):
    the train section has no profile-wide shortcut for it."""
    for key in ("epochs", "steps_per_epoch", "learning_rate", "early_stopping_patience"):
        assert not hasattr(Train, key), key
