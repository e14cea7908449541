from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import project_values, with_settings

from denoise.core.architecture_settings.dncnn import DnCNN
from denoise.core.architecture_settings.drunet import DRUNet
from denoise.core.architecture_settings.ffdnet import FFDNet
from denoise.core.config import default_params, params_from_dict
from denoise.core.errors import ConfigError
from denoise.evaluation.adapters import model_denoiser
from denoise.models.build import build_model, count_parameters, required_multiple
from denoise.models.dense_ae import AveragePatches, ExtractPatches
from denoise.models.ffdnet import NoiseLevelMap
from denoise.models.precision import at_precision, computing_layers, dtype_policy
from denoise.serving.tiling import denoise_batch
from denoise.training.settings import with_active

DEFAULT = default_params().train  # params.yaml's train section


def test_model_summary_reports_the_papers_parameter_count() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "denoise", "model-summary", "paper_cae"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "(None, 200, 200, 3)" in result.stdout
    assert "Trainable params: 29,507" in result.stdout


def test_dense_ae_has_the_same_order_of_parameters() -> None:
    assert count_parameters(build_model("dense_ae", DEFAULT)) == 29_024


@pytest.mark.parametrize("name", ["paper_cae", "dense_ae"])
@pytest.mark.parametrize("size", [32, 48, 200])
def test_any_valid_size_in_same_size_out(name: str, size: int) -> None:
    model = build_model(name, DEFAULT)
    noisy = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    denoised = np.asarray(model(noisy))
    assert denoised.shape == noisy.shape
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0


def test_patch_extraction_and_averaging_invert_each_other() -> None:
    images = np.random.default_rng(0).random((2, 24, 32, 3), dtype=np.float32)
    vectors = np.asarray(ExtractPatches(8, 4)(images))
    assert vectors.shape == (2, 5, 7, 192)
    np.testing.assert_array_equal(vectors[1, 2, 3], images[1, 8:16, 12:20].reshape(-1))
    np.testing.assert_allclose(np.asarray(AveragePatches(8, 4)(vectors)), images, atol=1e-6)


# Tiny configurations of the two larger architectures keep these tests to a few seconds.
TINY = with_settings(
    DEFAULT,
    dncnn=DnCNN(depth=3, width=8, batch_norm=True),
    ffdnet=FFDNet(depth=3, width=8, batch_norm=True, noise_map=True),
    drunet=DRUNet(widths=[4, 8, 16], blocks_per_level=1),
)


def _dncnn_parameters(depth: int, width: int, batch_norm: bool, channels: int = 3) -> int:
    """3x3 convs: first and last with bias; middle ones with bias, or with BN's gamma and beta."""
    first = 9 * channels * width + width
    middle = 9 * width * width + (2 * width if batch_norm else width)
    last = 9 * width * channels + channels
    return first + (depth - 2) * middle + last


def _ffdnet_parameters(depth: int, width: int, batch_norm: bool, noise_map: bool) -> int:
    """DnCNN's count on 12 packed channels in (13 with the map) and 12 out; pack and unpack
    are fixed."""
    packed = 12
    first = 9 * (packed + noise_map) * width + width
    middle = 9 * width * width + (2 * width if batch_norm else width)
    last = 9 * width * packed + packed
    return first + (depth - 2) * middle + last


def _drunet_parameters(widths: list[int], blocks: int, channels: int = 3) -> int:
    """Bias-free: head and tail 3x3, two 3x3 convs per residual block, 2x2 down and up convs."""
    head_and_tail = 2 * 9 * channels * widths[0]
    per_level = [2 * blocks * 2 * 9 * width * width for width in widths[:-1]]
    body = blocks * 2 * 9 * widths[-1] * widths[-1]
    down_and_up = [2 * 4 * low * high for low, high in itertools.pairwise(widths)]
    return head_and_tail + sum(per_level) + body + sum(down_and_up)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (DnCNN(depth=4, width=8, batch_norm=True), 1_627),
        (DnCNN(depth=4, width=8, batch_norm=False), 1_611),
        (DEFAULT.architectures["dncnn"], 558_403),
    ],
)
def test_dncnn_parameter_count_matches_the_formula(config: DnCNN, expected: int) -> None:
    assert _dncnn_parameters(config.depth, config.width, config.batch_norm) == expected
    assert count_parameters(build_model("dncnn", with_settings(DEFAULT, dncnn=config))) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (FFDNet(depth=3, width=8, batch_norm=True, noise_map=True), 2_412),
        (FFDNet(depth=3, width=8, noise_map=False, batch_norm=False), 2_332),
        (DEFAULT.architectures["ffdnet"], 384_396),
    ],
)
def test_ffdnet_parameter_count_matches_the_formula(config: FFDNet, expected: int) -> None:
    assert (
        _ffdnet_parameters(config.depth, config.width, config.batch_norm, config.noise_map)
        == expected
    )
    assert (
        count_parameters(build_model("ffdnet", with_settings(DEFAULT, ffdnet=config))) == expected
    )


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 50.0])
def test_noise_level_map_estimates_sigma(sigma: float) -> None:
    # A smooth image (a colour ramp) plus white noise: the Haar estimate lands within 5%.
    ramp = np.linspace(0.2, 0.8, 64, dtype=np.float32)
    clean = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 0.5), axis=-1)
    noise = np.random.default_rng(3).normal(0.0, sigma / 255, (2, 64, 64, 3))
    noisy = (clean + noise).astype(np.float32)
    level = np.asarray(NoiseLevelMap(3)(ExtractPatches(2, 2, 3)(noisy)))
    assert level.shape == (2, 32, 32, 1)
    assert np.all(level == level[:, :1, :1, :])  # one value per image
    np.testing.assert_allclose(level[:, 0, 0, 0] * 255, sigma, rtol=0.05)


@pytest.mark.parametrize(
    ("config", "expected"),
    [(DRUNet(widths=[4, 8], blocks_per_level=1), 2_200), (TINY.architectures["drunet"], 8_984)],
)
def test_drunet_parameter_count_matches_the_formula(config: DRUNet, expected: int) -> None:
    assert _drunet_parameters(config.widths, config.blocks_per_level) == expected
    assert (
        count_parameters(build_model("drunet", with_settings(DEFAULT, drunet=config))) == expected
    )


@pytest.mark.parametrize(("name", "multiple"), [("dncnn", 1), ("ffdnet", 2), ("drunet", 4)])
def test_new_models_keep_the_shape_directly_and_padded(name: str, multiple: int) -> None:
    model = build_model(name, TINY)
    assert required_multiple(model) == multiple
    assert with_active(TINY, models=[name]).size_multiple == multiple
    rng = np.random.default_rng(0)
    whole = rng.random((2, 24, 32, 3), dtype=np.float32)
    assert np.asarray(model(whole)).shape == whole.shape
    odd = rng.random((2, 13, 19, 3), dtype=np.float32)
    assert denoise_batch(model, odd, tile_size=64, overlap=8, batch_size=8).shape == odd.shape
    # The evaluate stage scores whole frames; sizes off the multiple go through the padded path.
    denoised = model_denoiser(model, batch_size=2)(odd, 25.0)
    assert denoised.shape == odd.shape
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0


@pytest.mark.parametrize(
    ("name", "last_layer"), [("dncnn", "noise"), ("ffdnet", "noise"), ("drunet", "correction")]
)
def test_new_models_are_residual(name: str, last_layer: str) -> None:
    model = build_model(name, TINY)
    layer = model.get_layer(last_layer)
    layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    noisy = np.random.default_rng(1).normal(0.5, 0.3, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(noisy, training=False)), noisy)


def test_small_dncnn_learns() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Smooth clean patches (upsampled 4x4 colours), so there is structure to learn.
    coarse = rng.random((64, 4, 4, 3), dtype=np.float32)
    clean = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    noisy = clean + rng.normal(0.0, 25 / 255, clean.shape).astype(np.float32)
    model = build_model("dncnn", TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    history = model.fit(noisy, clean, batch_size=16, epochs=10, shuffle=False, verbose=0)
    losses = history.history["loss"]  # training mode: batch norm uses the batch statistics
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", ["dncnn", "ffdnet", "drunet"])
def test_new_models_survive_save_and_load(name: str, tmp_path: Path) -> None:
    model = build_model(name, TINY)
    noisy = np.random.default_rng(2).random((2, 16, 24, 3), dtype=np.float32)
    model.save(tmp_path / f"{name}.keras")
    loaded = keras.models.load_model(tmp_path / f"{name}.keras")
    np.testing.assert_allclose(
        np.asarray(loaded(noisy, training=False)),
        np.asarray(model(noisy, training=False)),
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"train": {"architectures": {"dncnn": {"depth": 2}}}},
            "train.architectures.dncnn.depth: must be >= 3",
        ),
        (
            {"train": {"architectures": {"dncnn": {"width": 0}}}},
            "train.architectures.dncnn.width: must be >= 1",
        ),
        (
            {"train": {"architectures": {"dncnn": {"batch_norm": "yes"}}}},
            "train.architectures.dncnn.batch_norm: expected true or",
        ),
        (
            {"train": {"architectures": {"dncnn": {"depht": 17}}}},
            "train.architectures.dncnn.depht: unknown key",
        ),
        (
            {"train": {"architectures": {"ffdnet": {"depth": 1}}}},
            "train.architectures.ffdnet.depth: must be >= 3",
        ),
        (
            {"train": {"architectures": {"ffdnet": {"noise_map": 1}}}},
            "train.architectures.ffdnet.noise_map: expected true or",
        ),
        (
            {"train": {"models": ["ffdnet"]}, "extract": {"size": 99}},
            "extract.size: must be divisible by 2",
        ),
        (
            {"train": {"architectures": {"drunet": {"widths": []}}}},
            "train.architectures.drunet.widths: must not be empty",
        ),
        (
            {"train": {"architectures": {"drunet": {"widths": [8, 0]}}}},
            r"train.architectures.drunet.widths\[1\]: must be >= 1",
        ),
        (
            {"train": {"architectures": {"drunet": {"blocks_per_level": 0}}}},
            "train.architectures.drunet.blocks_per_level: must",
        ),
        (
            {"train": {"models": ["drunet"], "profiles": {"quick": {"patch_size": 100}}}},
            "train.profiles.quick.patch_size: must be a multiple of 8",
        ),
        (
            {"train": {"models": ["drunet"]}, "extract": {"size": 196}},
            "extract.size: must be divisible by 8",
        ),
    ],
)
def test_new_model_settings_are_validated(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        params_from_dict(project_values(values))


def test_drunet_settings_that_fit_are_accepted() -> None:
    values = project_values(
        {
            "train": {"models": ["drunet"], "architectures": {"drunet": {"widths": [8, 16]}}},
            "extract": {"size": 98},
        }
    )
    values["recipes"] = {}  # theirs are for 200-pixel frames
    params = params_from_dict(values)
    assert params.train.architectures["drunet"].multiple == 2


@pytest.mark.parametrize(
    "name", ["paper_cae", "dense_ae", "dncnn", "ffdnet", "drunet", "fastdvdnet"]
)
def test_at_precision_computes_as_a_mixed_precision_build_with_the_same_weights(
    name: str,
) -> None:
    model = build_model(name, TINY)
    for layer in computing_layers(model):  # the zero-initialised last convs: make the output
        # depend on them (fastdvdnet's are in its nested blocks)
        if layer.name in ("noise", "correction"):
            layer.set_weights([np.full_like(w, 0.01) for w in layer.get_weights()])
    assert at_precision(model, "float32") is model
    half = at_precision(model, "bfloat16")
    with dtype_policy("mixed_bfloat16"):
        mixed = build_model(name, TINY)
    policies = [[layer.dtype_policy.name for layer in computing_layers(m)] for m in (half, mixed)]
    assert policies[0] == policies[1]
    assert "mixed_bfloat16" in policies[0] and policies[0][-1] == "float32"
    for original, copied in zip(model.get_weights(), half.get_weights(), strict=True):
        np.testing.assert_array_equal(original, copied)
    channels = model.input_shape[-1]  # fastdvdnet: a window of frames
    noisy = np.random.default_rng(2).random((2, 32, 32, channels), dtype=np.float32)
    full = model.predict_on_batch(noisy)
    halved = half.predict_on_batch(noisy)
    assert halved.dtype == np.float32
    np.testing.assert_allclose(halved, full, atol=0.02)  # bf16 keeps 8 bits of mantissa
    assert at_precision(half, "bfloat16") is half
    np.testing.assert_array_equal(at_precision(half, "float32").predict_on_batch(noisy), full)
