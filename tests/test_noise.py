from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT
from scipy import stats

from denoise.core.config import Params, load_params
from denoise.core.errors import ConfigError
from denoise.core.noise import (
    add_gaussian_noise,
    add_poisson_noise,
    add_salt_pepper_noise,
    add_speckle_noise,
    as_saved,
)
from denoise.data.evalsets import HELD_OUT, load_set
from denoise.data.stills import JXL_PHOTOS, OPENCV_DOC_PHOTOS, WALLPAPERS
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise

MILLION = (10, 100, 1000)


def _looks_gaussian(residual: np.ndarray, sigma: float) -> bool:
    """Mean within 0.001, std within 0.5 % of sigma/255, kurtosis within 0.05 of 3."""
    residual = residual.astype(np.float64).ravel()
    return bool(
        abs(residual.mean()) < 0.001
        and abs(residual.std() / (sigma / 255.0) - 1.0) < 0.005
        and abs(stats.kurtosis(residual, fisher=False) - 3.0) < 0.05
    )


@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_gaussian_statistics_on_a_million_pixels(sigma: float) -> None:
    clean = np.full(MILLION, 0.5, np.float32)
    noisy = add_gaussian_noise(clean, sigma, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert _looks_gaussian(noisy - clean, sigma)


def test_the_gaussian_check_rejects_uniform_noise() -> None:
    sigma = 25.0
    half_width = np.sqrt(3.0) * sigma / 255.0  # same std-dev as the Gaussian
    uniform = np.random.default_rng(0).uniform(-half_width, half_width, MILLION)
    assert abs(uniform.std() / (sigma / 255.0) - 1.0) < 0.005
    assert not _looks_gaussian(uniform, sigma)


def test_gaussian_is_unclipped_and_sigma_zero_is_identity() -> None:
    clean = np.random.default_rng(1).random((4, 16, 16, 3), dtype=np.float32)
    assert np.array_equal(add_gaussian_noise(clean, 0.0, np.random.default_rng(0)), clean)
    noisy = add_gaussian_noise(clean, 50.0, np.random.default_rng(0))
    assert noisy.min() < 0.0 and noisy.max() > 1.0


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    clean = np.zeros((2, 8, 8, 3), np.float32)
    first = add_gaussian_noise(clean, 25.0, np.random.default_rng(7))
    assert np.array_equal(first, add_gaussian_noise(clean, 25.0, np.random.default_rng(7)))
    assert not np.array_equal(first, add_gaussian_noise(clean, 25.0, np.random.default_rng(8)))


def test_negative_sigma_is_refused() -> None:
    with pytest.raises(ConfigError, match="sigma must be >= 0"):
        add_gaussian_noise(np.zeros((1, 2, 2, 3), np.float32), -1.0, np.random.default_rng(0))


def test_poisson_speckle_salt_pepper() -> None:
    rng = np.random.default_rng(0)
    clean = np.full(MILLION, 0.4, np.float32)
    poisson = add_poisson_noise(clean, 30.0, rng)
    assert abs(poisson.mean() - 0.4) < 0.001
    assert abs(poisson.var() - 0.4 / 30.0) / (0.4 / 30.0) < 0.01  # variance = mean / peak
    speckle = add_speckle_noise(clean, 0.04, rng)
    assert abs((speckle / clean - 1.0).std() - 0.2) < 0.001
    salted = add_salt_pepper_noise(np.full((1, 500, 500, 3), 0.4, np.float32), 0.1, rng)
    hit = (salted != np.float32(0.4)).all(axis=-1)
    assert abs(hit.mean() - 0.1) < 0.005
    assert set(np.unique(salted[hit])) == {0.0, 1.0}


def test_stage_writes_fixed_float_evaluation_sets(params: Params) -> None:
    run_extract(params)
    summary = run_noise(params)
    evalsets = Path(params.paths.evalsets)
    assert summary.levels == [
        "gaussian-15",
        "gaussian-25",
        "gaussian-25-saved",
        "gaussian-50",
        "camera-low",
        "camera-high",
        "camera-high-jpeg80",
    ]
    assert set(summary.images_per_set) == {"validation", "test", "photographs"}
    _, noisy, _ = load_set(evalsets, "test")
    assert noisy["gaussian-25"].dtype == np.float32
    assert noisy["gaussian-50"].min() < 0.0, "evaluation noise is stored unclipped"
    first = {name: np.load(evalsets / "test" / f"{name}.npy") for name in noisy}
    index = json.loads((evalsets / "index.json").read_text())
    assert abs(index["sets"]["test"]["levels"]["gaussian-25"]["empirical_sigma"] - 25) < 2
    # The as-saved twin is the same draw, clipped and rounded to 8 bits.
    np.testing.assert_array_equal(noisy["gaussian-25-saved"], as_saved(noisy["gaussian-25"]))
    assert index["sets"]["test"]["levels"]["gaussian-25-saved"]["as_saved"] is True
    run_noise(params)  # same seed: byte-identical sets
    for name, array in first.items():
        assert np.array_equal(array, np.load(evalsets / "test" / f"{name}.npy"))
    photographs, _, _ = load_set(evalsets, "photographs")
    assert photographs.shape == (2, 32, 32, 3)


def test_the_held_out_set_is_crops_of_photographs_no_other_set_uses(params: Params) -> None:
    """noise.held_out: up to `crops` tiles per photograph, scored as the photographs are; none
    of them is an evaluation photograph or a still a train folder lists."""
    held_out = dataclasses.replace(
        params.noise.held_out, images=["retina", "grace_hopper"], crops=2
    )
    params = dataclasses.replace(params, noise=dataclasses.replace(params.noise, held_out=held_out))
    run_extract(params)
    summary = run_noise(params)
    assert summary.images_per_set[HELD_OUT] == 4
    clean, noisy, info = load_set(Path(params.paths.evalsets), HELD_OUT)
    assert clean.shape == (4, 32, 32, 3) and clean.min() >= 0.0 and clean.max() <= 1.0
    assert [name.rsplit("_", 2)[0] for name in info["images"]] == ["retina"] * 2 + [
        "grace_hopper"
    ] * 2
    assert set(noisy) == {
        "gaussian-15",
        "gaussian-25",
        "gaussian-25-saved",
        "gaussian-50",
        "camera-low",
        "camera-high",
        "camera-high-jpeg80",
    }
    project = load_params(PROJECT_ROOT / "params.yaml").noise
    assert not set(project.held_out.images) & set(project.photographs)
    packaged = (*WALLPAPERS.values(), *JXL_PHOTOS.values())
    listed = [*OPENCV_DOC_PHOTOS, *(member for members in packaged for member in members)]
    assert not any(name in member for name in project.held_out.images for member in listed)
