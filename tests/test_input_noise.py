"""`denoise apply` says each input's estimated noise level against the model's trained range."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params, write_tiny_video
from mlflow.models import Model
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.noise_level import NOISE_RANGE, sources_noise_range, trained_noise_range
from denoise.data.roles import SOURCES_NAME
from denoise.models.pretrained import PRETRAINED_MODEL
from denoise.serving.input_noise import input_noise_level, model_noise_range, noise_note
from denoise.stages.train import noise_range


def _noisy_photo(path: Path, sigma: float) -> Path:
    """A flat mid-grey 96x96 photo with Gaussian noise of sigma (0-255), as 8-bit PNG."""
    rng = np.random.default_rng(0)
    noisy = np.clip(128 + rng.normal(0.0, sigma, (96, 96, 3)), 0, 255)
    cv2.imwrite(str(path), np.round(noisy).astype(np.uint8))
    return path


def test_trained_noise_range_reads_gaussian_kinds_only() -> None:
    assert trained_noise_range({"kind": "gaussian", "sigma": 25}) == (25.0, 25.0)
    blind = {"kind": "gaussian_blind", "sigma_min": 5, "sigma_max": 55}
    assert trained_noise_range(blind) == (5.0, 55.0)
    assert trained_noise_range({"kind": "poisson", "peak": 30}) is None
    assert trained_noise_range(None) is None
    assert sources_noise_range([7.5, float("nan"), 12.0]) == (7.5, 12.0)
    assert sources_noise_range([float("nan")]) is None


def test_noise_note_inside_outside_and_unknown() -> None:
    photo = Path("photo.png")
    inside = noise_note(photo, 20.0, (5.0, 55.0), 2.0)
    assert inside.startswith("photo.png: noise level 20.0") and "range 5-55" in inside
    assert noise_note(photo, 4.0, (5.0, 55.0), 2.0).startswith("photo.png:")  # within tolerance
    below = noise_note(photo, 1.0, (5.0, 55.0), 2.0)
    assert below.startswith("warning: photo.png:") and "below" in below
    assert "above" in noise_note(photo, 70.0, (25.0, 25.0), 2.0)
    assert noise_note(photo, 20.0, None, 2.0).endswith("trained range: unknown")
    assert all("\n" not in line for line in (inside, below))


def test_input_noise_level_of_an_image_and_a_video(tmp_path: Path) -> None:
    photo = _noisy_photo(tmp_path / "photo.png", 20.0)
    assert input_noise_level(photo) == pytest.approx(20.0, abs=1.5)
    video = write_tiny_video(tmp_path / "clip.mp4")
    assert np.isfinite(input_noise_level(video))


def test_model_noise_range_from_each_kind_of_card(tmp_path: Path) -> None:
    assert model_noise_range(str(PRETRAINED_MODEL)) == (5.0, 55.0)
    keras_file = tmp_path / "blind.keras"
    keras_file.touch()  # read beside, never loaded
    assert model_noise_range(str(keras_file)) is None
    keras_file.with_suffix(".json").write_text(json.dumps({NOISE_RANGE: [3.0, 9.5]}))
    assert model_noise_range(str(keras_file)) == (3.0, 9.5)
    logged = tmp_path / "logged"
    logged.mkdir()
    Model(metadata={NOISE_RANGE: [10, 30]}).save(logged / "MLmodel")
    assert model_noise_range(str(logged)) == (10.0, 30.0)
    Model(metadata={NOISE_RANGE: None}).save(logged / "MLmodel")
    assert model_noise_range(str(logged)) is None


def test_apply_warns_on_stderr_when_the_input_is_outside_the_range(tmp_path: Path) -> None:
    noisy = keras.Input((None, None, 3))
    model_path = tmp_path / "identity.keras"
    keras.Model(noisy, keras.layers.Identity()(noisy)).save(model_path)
    model_path.with_suffix(".json").write_text(json.dumps({NOISE_RANGE: [5.0, 15.0]}))
    calm, loud = _noisy_photo(tmp_path / "calm.png", 10.0), _noisy_photo(tmp_path / "loud.png", 40)
    result = CliRunner().invoke(
        app, ["apply", str(calm), str(loud), "-o", str(tmp_path / "out"), "-m", str(model_path)]
    )
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "noise level" in line]
    assert len(lines) == 2
    assert lines[0].startswith(f"{calm}: noise level") and "within" in lines[0]
    assert lines[1].startswith(f"warning: {loud}: noise level") and "above" in lines[1]


def test_a_models_noise_range_is_its_training_sigmas_or_its_noisy_sources_levels(
    tmp_path: Path,
) -> None:
    params = tiny_params(tmp_path)
    manifest = pd.DataFrame({"video": ["phone.mp4", "box.mp4"], "role": ["noisy", "clean"]})
    frames = Path(params.paths.frames)
    frames.mkdir(parents=True)
    pd.DataFrame(
        {"source": ["phone.mp4", "box.mp4", "other.mp4"], "noise_sigma": [9.0, 1.0, 20.0]}
    ).to_parquet(frames / SOURCES_NAME)
    blind = params.noise.train
    assert noise_range(params, "paper_cae", manifest) == [blind.sigma_min, blind.sigma_max]
    # Only the noisy sources it learnt from: not the clean box, nor a source of another run.
    assert noise_range(params, "drunet_light_noisy", manifest) == [9.0, 9.0]
