"""Camera and compressed noise, and the Donoho estimator they are scored with: statistics
on flat ramps, what OpenCV decodes, and the compiled training step against the NumPy model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from denoise.core.config import Params, default_params
from denoise.core.errors import ConfigError
from denoise.core.noise import add_camera_noise, compress_jpeg, process, unprocess
from denoise.core.noise_level import estimate_sigma, measure_noise_level
from denoise.data.extract import load_manifest
from denoise.evaluation.scoring import told_or_estimated, told_sigma
from denoise.stages.extract import run as run_extract
from denoise.training.noise import TrainingNoise, host_noise
from denoise.training.stream import PatchStream

CAMERA = default_params().noise.camera
GAINS = CAMERA.gains()
LEVELS = np.linspace(0.4, 0.85, 8, dtype=np.float32)  # well above the clip at 0, below 1


def _ramp(pixels: int) -> np.ndarray:
    """A flat ramp: one row of `pixels` equal grey pixels per level, float32 (1, 8, pixels, 3)."""
    return np.broadcast_to(LEVELS[None, :, None, None], (1, len(LEVELS), pixels, 3)).copy()


def _linear_variance(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per level and channel: the variance of the noise in linear light, (8, 3)."""
    return (unprocess(noisy, GAINS, CAMERA.gamma) - unprocess(clean, GAINS, CAMERA.gamma))[0].var(
        axis=1
    )


def test_process_inverts_unprocess() -> None:
    clean = np.random.default_rng(0).uniform(0.02, 0.98, (2, 8, 8, 3)).astype(np.float32)
    linear = unprocess(clean, GAINS, CAMERA.gamma)
    assert linear.max() < 1.0 / min(GAINS) + 1e-6  # the gains were divided out
    assert np.allclose(process(linear, GAINS, CAMERA.gamma), clean, atol=1e-4)


@pytest.mark.parametrize(("shot", "read"), [(2.5e-3, 7e-6), (1e-2, 1.5e-4)])
def test_camera_noise_variance_is_shot_times_intensity_plus_read(shot: float, read: float) -> None:
    clean = _ramp(40_000)
    noisy = add_camera_noise(clean, shot, read, GAINS, CAMERA.gamma, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.min() >= 0.0 and noisy.max() <= 1.0
    intensity = unprocess(clean, GAINS, CAMERA.gamma)[0, :, 0]  # (8, 3) linear light
    expected = shot * intensity + read
    assert np.allclose(_linear_variance(noisy, clean), expected, rtol=0.04)
    # in the frame itself, the noise is signal-dependent: it varies along the ramp
    spread = (noisy - clean)[0].std(axis=(1, 2))
    assert spread.max() > 1.3 * spread.min()


def test_camera_noise_rejects_bad_levels() -> None:
    with pytest.raises(ConfigError, match="camera shot"):
        add_camera_noise(_ramp(4), 0.0, 1e-5, GAINS, CAMERA.gamma, np.random.default_rng(0))


def test_jpeg_output_is_what_opencv_decodes() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.uniform(-0.1, 1.1, (2, 24, 32, 3)).astype(np.float32)
    compressed = compress_jpeg(noisy, 80)
    for image, out in zip(noisy, compressed, strict=True):
        pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        _, coded = cv2.imencode(
            ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80]
        )
        decoded = cv2.cvtColor(cv2.imdecode(coded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(out, decoded.astype(np.float32) / 255.0)
    assert compress_jpeg(noisy[None], 80).shape == (1, *noisy.shape)  # clips keep their shape
    assert not np.array_equal(compress_jpeg(noisy, 95), compressed)


def test_donoho_estimate_reads_gaussian_sigma_and_ignores_smooth_content() -> None:
    rng = np.random.default_rng(2)
    smooth = np.broadcast_to(np.linspace(0.1, 0.9, 64, dtype=np.float32), (2, 64, 64))
    clean = np.stack([smooth] * 3, axis=-1)
    noisy = clean + rng.normal(0, 20 / 255, clean.shape).astype(np.float32)
    assert np.allclose(estimate_sigma(noisy), 20.0, rtol=0.06)
    assert float(estimate_sigma(clean[0])) < 0.5


def test_methods_told_no_sigma_estimate_it_on_camera_levels() -> None:
    assert told_sigma({"kind": "gaussian", "level": 25.0}) == 25.0
    assert np.isnan(told_sigma({"kind": "camera", "level": "high"}))
    assert np.isnan(told_sigma({"kind": "compressed", "level": "camera-high-jpeg80"}))
    noisy = np.random.default_rng(3).normal(0.5, 10 / 255, (32, 32, 3)).astype(np.float32)
    assert told_or_estimated(noisy, 25.0) == 25.0
    assert told_or_estimated(noisy, float("nan")) == pytest.approx(10.0, rel=0.1)


def test_noise_curve_is_flat_for_gaussian_and_bends_for_camera_noise() -> None:
    levels = np.repeat(np.linspace(0.1, 0.9, 8, dtype=np.float32), 2)  # 2x2 blocks on one
    clean = np.broadcast_to(levels[None, :, None, None], (1, 16, 4_000, 3)).copy()
    rng = np.random.default_rng(4)
    camera = add_camera_noise(clean, 1e-2, 1.5e-4, GAINS, CAMERA.gamma, rng)
    gaussian = clean + rng.normal(0, 20 / 255, clean.shape).astype(np.float32)
    curves = {}
    for name, noisy in (("camera", camera), ("gaussian", gaussian)):
        frame = np.round(np.clip(noisy[0], 0, 1) * 255).astype(np.uint8)
        level = measure_noise_level([frame], bins=4, min_blocks=100, max_saturated=0.5)
        assert level.measurable == 1 and np.isfinite(level.sigma)
        curves[name] = np.array(level.curve_sigma)
    assert np.ptp(curves["gaussian"]) < 0.1 * curves["gaussian"].mean()
    # the tone curve makes camera noise largest in mid-tones, smallest in highlights
    assert curves["camera"].max() > 1.3 * curves["camera"].min()
    flat = measure_noise_level([np.full((8, 8, 3), 128, np.uint8)], 4, 10, 0.5)
    assert flat.measurable == 0 and np.isnan(flat.sigma)


def test_training_step_camera_noise_matches_the_numpy_model() -> None:
    noise = dataclasses.replace(
        default_params().noise.train, kind="camera", shot_min=1e-2, shot_max=1e-2, read_spread=0.0
    )
    clean = _ramp(20_000)
    layer = TrainingNoise(noise, seed=0, camera=CAMERA)
    noisy = keras.ops.convert_to_numpy(layer(clean, training=True))
    read = float(np.exp(noise.read_slope * np.log(1e-2) + noise.read_intercept))
    intensity = unprocess(clean, GAINS, CAMERA.gamma)[0, :, 0]
    assert np.allclose(_linear_variance(noisy, clean), 1e-2 * intensity + read, rtol=0.05)
    restored = TrainingNoise.from_config(layer.get_config())
    assert restored.camera == CAMERA
    with pytest.raises(ConfigError, match=r"noise\.camera"):
        TrainingNoise(noise, seed=0)


def test_compressed_training_noise_is_drawn_seeded_on_the_host(params: Params) -> None:
    run_extract(params)
    noise = dataclasses.replace(params.noise.train, kind="compressed", jpeg_quality=80)
    frames_dir = Path(params.paths.frames)
    rows = load_manifest(frames_dir)
    stream = PatchStream(frames_dir, rows, params, host_noise=host_noise(noise, CAMERA))
    noisy, clean = stream[3]
    assert noisy.shape == clean.shape and not np.array_equal(noisy, clean)
    assert np.array_equal(np.round(noisy * 255) / 255, noisy), "JPEG decodes to 8 bits"
    assert 2.0 < np.std(noisy - clean) * 255 < 60.0
    again, _ = PatchStream(frames_dir, rows, params, host_noise=host_noise(noise, CAMERA))[3]
    assert np.array_equal(noisy, again), "batch 3 is the same batch on a resumed run"
    assert host_noise(params.noise.train, CAMERA) is None  # gaussian_blind: in the step
    layer = TrainingNoise(noise, seed=0, camera=CAMERA)  # passes the host's noise through
    assert np.array_equal(keras.ops.convert_to_numpy(layer(noisy, training=True)), noisy)
