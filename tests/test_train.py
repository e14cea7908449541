from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import write_params
from test_extract import _write_stills

from denoise.core.architecture_settings.dncnn import DnCNN
from denoise.core.config import Params
from denoise.core.errors import ConfigError, TrainingError
from denoise.core.train_config import Variant, VariantNoise
from denoise.data.evalsets import load_set
from denoise.data.extract import load_manifest
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.stages.train import run as run_train
from denoise.training.loop import (
    Checkpointer,
    TrainingState,
    learning_rate,
    make_optimizer,
    train_model,
)
from denoise.training.settings import model_budget, with_active
from denoise.training.stream import PatchStream


class CrashAfterEpoch(keras.callbacks.Callback):
    """Simulates the process dying right after epoch `epoch` (1-based) was checkpointed."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("killed")


class Poison(keras.callbacks.Callback):
    """Sets every weight to NaN before the first step of each epoch in `epochs` (1-based),
    the first `times` times such an epoch is trained (None: every time), and records the
    learning rate each epoch starts at, as (epoch, rate)."""

    def __init__(self, epochs: set[int], times: int | None = None) -> None:
        super().__init__()
        self.epochs, self.times = epochs, times
        self.rates: list[tuple[int, float]] = []
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self.rates.append((self._epoch, float(self.model.optimizer.learning_rate)))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch != 0 or self._epoch not in self.epochs or self.times == 0:
            return
        if self.times is not None:
            self.times -= 1
        for variable in self.model.trainable_variables:
            variable.assign(np.full(variable.shape, np.nan, variable.dtype))


@pytest.fixture
def prepared(params: Params) -> Params:
    run_extract(params)
    run_noise(params)
    return params


def _fit(params: Params, name: str, checkpoints: Path, callbacks=()):
    frames = Path(params.paths.frames)
    manifest = load_manifest(frames)
    clean, noisy, _ = load_set(Path(params.paths.evalsets), "validation")
    stream = PatchStream(frames, manifest[manifest["split"] == "train"], params)
    return train_model(
        name,
        params,
        stream,
        (noisy["gaussian-25"], clean),
        checkpoints,
        print_fn=lambda *_: None,
        extra_callbacks=callbacks,
    )


def test_stream_is_a_pure_function_of_seed_and_batch(prepared: Params) -> None:
    frames = Path(prepared.paths.frames)
    rows = load_manifest(frames).query("split == 'train'")
    first, second = (PatchStream(frames, rows, prepared) for _ in range(2))
    inputs_a, clean_a = first[3]
    second[1]  # a different access order changes nothing
    _, clean_b = second[3]
    assert np.array_equal(clean_a, clean_b)
    assert np.array_equal(inputs_a, clean_a), "clean in: the model's first layer adds the noise"
    assert clean_a.shape == (4, 16, 16, 3) and clean_a.min() >= 0.0 and clean_a.max() <= 1.0
    assert not np.array_equal(first[4][1], clean_a), "every batch draws new patches"
    resumed = PatchStream(frames, rows, prepared, first_batch=2)
    assert np.array_equal(resumed[1][1], clean_a), "a resumed stream continues the sequence"


@pytest.mark.parametrize("name", ["paper_cae", "dense_ae"])
def test_two_epochs_lower_the_loss(prepared: Params, tmp_path: Path, name: str) -> None:
    params = dataclasses.replace(
        prepared, train=with_active(prepared.train, epochs=2, steps_per_epoch=10)
    )
    _, state = _fit(params, name, tmp_path / "ckpt")
    losses = [epoch["loss"] for epoch in state.history]
    assert len(losses) == 2 and losses[1] < losses[0]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resumed_training_ends_with_the_same_weights(
    prepared: Params, tmp_path: Path, schedule: str
) -> None:
    params = dataclasses.replace(
        prepared,
        train=with_active(
            prepared.train,
            epochs=3,
            steps_per_epoch=3,
            early_stopping_patience=10,
            schedule=schedule,
            warmup_steps=2 if schedule == "cosine" else 0,
        ),
    )
    reference, _ = _fit(params, "paper_cae", tmp_path / "uninterrupted")
    with pytest.raises(KeyboardInterrupt):
        _fit(params, "paper_cae", tmp_path / "interrupted", [CrashAfterEpoch(2)])
    assert (tmp_path / "interrupted" / "last.keras").is_file()
    resumed, state = _fit(params, "paper_cae", tmp_path / "interrupted")
    assert [epoch["epoch"] for epoch in state.history] == [1, 2, 3]
    for expected, actual in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_cosine_schedule_warms_up_then_decays_to_the_minimum(params: Params) -> None:
    profile = with_active(
        params.train,
        epochs=2,
        steps_per_epoch=10,
        learning_rate=0.01,
        schedule="cosine",
        min_learning_rate=0.001,
        warmup_steps=4,
    ).active
    schedule = learning_rate(profile)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    rates = [float(schedule(step)) for step in (0, 2, 4, 12, 20)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.005)
    assert rates[2] == pytest.approx(0.01) and 0.001 < rates[3] < 0.01
    assert rates[4] == pytest.approx(0.001)
    halved = learning_rate(profile, scale=0.5)  # after a rollback: the same curve, halved
    assert [float(halved(step)) for step in (0, 2, 4, 12, 20)] == pytest.approx(
        [rate / 2 for rate in rates]
    )
    constant = with_active(params.train, learning_rate=0.002).active
    assert learning_rate(constant) == 0.002
    assert float(make_optimizer(constant).learning_rate) == pytest.approx(0.002)


def test_a_variant_trains_on_its_own_noise_in_mixed_precision_and_saves_float32(
    prepared: Params,
) -> None:
    variant = Variant(
        architecture="dncnn",
        noise=VariantNoise(kind="gaussian", sigma=25.0, as_saved=True),
        settings=DnCNN(depth=3, width=4, batch_norm=True),
    )
    variants = {**prepared.train.variants, "tiny_s25": variant}
    training = dataclasses.replace(prepared.train, variants=variants)
    training = with_active(
        training, models=["tiny_s25"], precision="mixed_bfloat16", schedule="cosine"
    )
    summary = run_train(dataclasses.replace(prepared, train=training)).models["tiny_s25"]
    assert summary["architecture"] == "dncnn" and summary["precision"] == "mixed_bfloat16"
    assert summary["noise"]["kind"] == "gaussian" and summary["noise"]["as_saved"] is True
    saved = json.loads((Path(prepared.paths.models) / "tiny_s25.json").read_text())
    assert saved["noise"] == summary["noise"] and saved["schedule"] == "cosine"
    model = keras.models.load_model(Path(prepared.paths.models) / "tiny_s25.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored"
    image = np.full((1, 20, 20, 3), 0.5, np.float32)
    assert np.asarray(model.predict(image, verbose=0)).dtype == np.float32


def _diverging(prepared: Params, **changes) -> Params:
    """Three short epochs, no early stopping, and `changes`."""
    settings = {"epochs": 3, "steps_per_epoch": 3, "early_stopping_patience": 10, **changes}
    return dataclasses.replace(prepared, train=with_active(prepared.train, **settings))


def test_a_diverged_epoch_is_trained_again_from_the_last_checkpoint_at_half_the_rate(
    prepared: Params, tmp_path: Path
) -> None:
    params = _diverging(prepared)
    rate = params.train.active.learning_rate
    poison = Poison({2}, times=1)
    model, state = _fit(params, "paper_cae", tmp_path / "ckpt", [poison])
    full, half = pytest.approx(rate), pytest.approx(rate / 2)
    assert poison.rates == [(1, full), (2, full), (2, half), (3, half)]
    assert [record["epoch"] for record in state.history] == [1, 2, 3]
    assert all(np.isfinite(record["loss"]) for record in state.history)
    assert len(state.rollbacks) == 1 and state.rollbacks[0]["epoch"] == 2
    assert state.rollbacks[0]["loss"] is None and state.rollbacks[0]["lr_scale"] == 1.0
    assert state.lr_scale == 0.5 and not state.diverged
    assert all(np.isfinite(weights).all() for weights in model.get_weights())

    # Killed right after the rollback was recorded (CrashAfterEpoch runs after the
    # Checkpointer), a resumed run trains epoch 2 again at half the rate, to the same weights.
    with pytest.raises(KeyboardInterrupt):
        _fit(params, "paper_cae", tmp_path / "killed", [Poison({2}, times=1), CrashAfterEpoch(2)])
    resumed_rates = Poison(set())
    resumed, resumed_state = _fit(params, "paper_cae", tmp_path / "killed", [resumed_rates])
    assert resumed_rates.rates == [(2, half), (3, half)]
    assert resumed_state.rollbacks == state.rollbacks
    for expected, actual in zip(model.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_training_that_keeps_diverging_ends_with_its_best_epoch(
    prepared: Params, tmp_path: Path
) -> None:
    params = _diverging(prepared, max_rollbacks=1)
    reference, _ = _fit(_diverging(prepared, epochs=1), "paper_cae", tmp_path / "one-epoch")
    model, state = _fit(params, "paper_cae", tmp_path / "ckpt", [Poison({2, 3})])
    assert state.diverged and len(state.rollbacks) == 1
    assert [record["epoch"] for record in state.history] == [1] and state.best_epoch == 0
    for expected, actual in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)

    first = _diverging(prepared, max_rollbacks=0)
    with pytest.raises(TrainingError, match="diverged in epoch 1 before any epoch completed"):
        _fit(first, "paper_cae", tmp_path / "first", [Poison({1})])


def test_divergence_is_a_non_finite_loss_or_a_jump_over_the_lowest(params: Params) -> None:
    profile = with_active(params.train, divergence_factor=10.0).active
    state = TrainingState(fingerprint="")
    checkpointer = Checkpointer(Path("unused"), state, profile)
    assert checkpointer.diverged(float("nan")) and checkpointer.diverged(float("inf"))
    assert not checkpointer.diverged(1e6), "the first epoch has nothing to compare with"
    state.history = [{"loss": 0.02}, {"loss": 0.004}, {"loss": 0.005}]
    assert not checkpointer.diverged(0.039) and checkpointer.diverged(0.041)


def test_clip_norm_clips_the_global_gradient_norm(params: Params) -> None:
    optimizer = make_optimizer(with_active(params.train, clip_norm=0.5).active)
    assert optimizer.global_clipnorm == 0.5
    assert make_optimizer(params.train.active).global_clipnorm is None
    with pytest.raises(ConfigError, match=r"clip_norm: must be > 0, got 0\.0"):
        with_active(params.train, clip_norm=0.0)


def test_checkpoint_of_other_inputs_is_not_resumed(prepared: Params, tmp_path: Path) -> None:
    params = dataclasses.replace(
        prepared, train=with_active(prepared.train, epochs=2, steps_per_epoch=2)
    )
    with pytest.raises(KeyboardInterrupt):
        _fit(params, "dense_ae", tmp_path / "ckpt", [CrashAfterEpoch(1)])
    changed = dataclasses.replace(params, train=with_active(params.train, learning_rate=0.01))
    _, state = _fit(changed, "dense_ae", tmp_path / "ckpt")
    assert len(state.history) == 2 and state.history[0]["epoch"] == 1


def test_stage_writes_models_and_histories(prepared: Params) -> None:
    summary = run_train(prepared)
    assert set(summary.models) == {"paper_cae", "dense_ae"}
    for name in ("paper_cae", "dense_ae"):
        assert (Path(prepared.paths.models) / f"{name}.keras").is_file()
        history = (Path(prepared.paths.train_reports) / f"{name}.csv").read_text().splitlines()
        assert history[0] == "epoch,loss,val_loss,val_psnr,val_ssim,seconds" and len(history) == 3
        assert -1.0 <= float(history[-1].split(",")[4]) <= 1.0
        assert summary.models[name]["mlflow_run_id"]
    assert not (Path(prepared.paths.checkpoints) / "paper_cae").exists()


def _train_params(params: Params, root: Path) -> Params:
    paths = dataclasses.replace(
        params.paths,
        models=str(root / "models"),
        checkpoints=str(root / "checkpoints"),
        train_reports=str(root / "reports"),
    )
    training = with_active(
        params.train,
        models=["paper_cae"],
        epochs=6,
        steps_per_epoch=25,
        early_stopping_patience=10,
    )
    return dataclasses.replace(params, paths=paths, train=training)


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_same_weights(prepared: Params, tmp_path: Path) -> None:
    """A real `denoise train` process is killed with SIGKILL after an epoch, then rerun."""
    command = [sys.executable, "-m", "denoise", "train", "--params"]
    reference = _train_params(prepared, tmp_path / "reference")
    subprocess.run(
        [*command, str(write_params(reference, tmp_path / "reference.yaml"))],
        check=True,
        capture_output=True,
        timeout=600,
    )

    killed = _train_params(prepared, tmp_path / "killed")
    params_path = str(write_params(killed, tmp_path / "killed.yaml"))
    state = Path(killed.paths.checkpoints) / "paper_cae" / "state.json"
    process = subprocess.Popen(
        [*command, params_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "training ended before it was killed"
    epochs_done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= epochs_done < model_budget(killed.train, "paper_cae").epochs
    assert not (Path(killed.paths.models) / "paper_cae.keras").exists()

    resumed = subprocess.run(
        [*command, params_path], check=True, capture_output=True, text=True, timeout=600
    )
    assert f"resuming after epoch {epochs_done}" in resumed.stdout
    expected = keras.models.load_model(Path(reference.paths.models) / "paper_cae.keras")
    actual = keras.models.load_model(Path(killed.paths.models) / "paper_cae.keras")
    for want, got in zip(expected.get_weights(), actual.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sampling", ["frames", "sources"])
def test_sampling_weighs_frames_or_sources(params: Params, sampling: str) -> None:
    _write_stills(Path(params.paths.raw) / "photos", 3)
    params = dataclasses.replace(
        params,
        extract=dataclasses.replace(params.extract, train_only=["photos"]),
        train=with_active(params.train, sampling=sampling),
    )
    run_extract(params)
    frames = Path(params.paths.frames)
    rows = load_manifest(frames).query("split == 'train'").reset_index(drop=True)
    photos = (rows["video"] == "photos").to_numpy()
    assert photos.sum() == 3 and (~photos).sum() > 3
    stream = PatchStream(frames, rows, params)
    picks = np.concatenate([stream.frames(index) for index in range(400)])
    share = photos[picks].mean()
    expected = 0.5 if sampling == "sources" else photos.mean()
    assert abs(share - expected) < 0.04, (share, expected)
    assert set(picks) == set(range(len(rows))), "every train frame is drawn"
    np.testing.assert_array_equal(stream[7][1], stream[7][1])  # still a pure function
