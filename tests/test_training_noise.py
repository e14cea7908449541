"""TrainingNoise: the training noise drawn in the compiled step, checked against its definition."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from test_noise import MILLION, _looks_gaussian

from denoise.core.config import default_params
from denoise.core.noise import as_saved
from denoise.core.train_config import TrainNoise
from denoise.training.noise import TrainingNoise, denoiser, with_training_noise


def _noise(**changes: object) -> TrainNoise:
    """params.yaml's noise.train with `changes` applied."""
    return dataclasses.replace(default_params().noise.train, **changes)


def _draw(noise: TrainNoise, clean: np.ndarray, seed: int = 0) -> np.ndarray:
    return keras.ops.convert_to_numpy(TrainingNoise(noise, seed)(clean, training=True))


@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_gaussian_statistics_on_a_million_pixels(sigma: float) -> None:
    clean = np.full(MILLION, 0.5, np.float32)
    noisy = _draw(_noise(kind="gaussian", sigma=sigma), clean)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert _looks_gaussian(noisy - clean, sigma)


def test_blind_sigma_per_image_within_range() -> None:
    clean = np.zeros((200, 32, 32, 3), np.float32)
    noisy = _draw(_noise(kind="gaussian_blind", sigma_min=10.0, sigma_max=40.0), clean)
    per_image = noisy.reshape(200, -1).std(axis=1) * 255.0
    assert per_image.min() > 9.0 and per_image.max() < 41.0
    assert per_image.std() > 5.0, "sigma must vary between images"


def test_poisson_speckle_salt_pepper() -> None:
    clean = np.full((2, 500, 500, 3), 0.4, np.float32)
    poisson = _draw(_noise(kind="poisson", peak=30.0), clean)
    counts = poisson * 30.0
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # whole photon counts
    assert abs(counts.mean() - 12.0) < 0.05 and abs(counts.var() - 12.0) < 0.2
    speckle = _draw(_noise(kind="speckle", variance=0.04), clean)
    assert abs((speckle / clean - 1.0).std() - 0.2) < 0.001
    salted = _draw(_noise(kind="salt_pepper", amount=0.1), clean)
    hit = (salted != np.float32(0.4)).all(axis=-1)
    assert abs(hit.mean() - 0.1) < 0.005
    assert ((salted != np.float32(0.4)).any(axis=-1) == hit).all(), "all channels alike"
    assert set(np.unique(salted[hit])) == {0.0, 1.0}
    assert abs(salted[hit].mean() - 0.5) < 0.01


def test_as_saved_noise_is_clipped_and_on_the_8_bit_grid() -> None:
    clean = np.full((2, 16, 16, 3), 0.02, np.float32)
    saved = _draw(_noise(kind="gaussian", sigma=25.0, as_saved=True), clean)
    unclipped = _draw(_noise(kind="gaussian", sigma=25.0), clean)
    np.testing.assert_array_equal(saved, as_saved(unclipped))  # the same draw, then saved
    assert saved.min() == 0.0 and unclipped.min() < 0.0


def test_identity_outside_training_and_fresh_noise_every_call() -> None:
    clean = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    layer = TrainingNoise(default_params().noise.train, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(clean)), clean)
    first, second = (keras.ops.convert_to_numpy(layer(clean, training=True)) for _ in range(2))
    assert not np.array_equal(first, second)
    again = keras.ops.convert_to_numpy(
        TrainingNoise(default_params().noise.train, seed=3)(clean, training=True)
    )
    np.testing.assert_array_equal(again, first)  # the seed fixes the sequence


def test_a_saved_model_resumes_the_noise_sequence(tmp_path) -> None:
    inner = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3)])
    model = with_training_noise(inner, default_params().noise.train, seed=5)
    assert denoiser(model) is inner
    clean = np.zeros((2, 8, 8, 3), np.float32)
    layer = model.layers[0]
    layer(clean, training=True)
    model.save(tmp_path / "model.keras")
    expected = keras.ops.convert_to_numpy(layer(clean, training=True))
    loaded = keras.models.load_model(tmp_path / "model.keras")
    resumed = keras.ops.convert_to_numpy(loaded.layers[0](clean, training=True))
    np.testing.assert_array_equal(resumed, expected)
