"""The training loop: fit one model on the patch stream, with checkpoints and a divergence guard.

Noise is drawn fresh for every patch of every step inside the compiled step
(denoise.training.noise), so neither a noisy copy nor the whole data set is ever held (the
paper's two reported limits). Every epoch writes a checkpoint under paths.checkpoints (outside
DVC's outs); an interrupted run resumes from it and ends with the same weights as an
uninterrupted one. The callbacks (validation, checkpoints, the guard) are training.callbacks';
a model of supervision noisy adds no noise and fits training.supervision's model and loss.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from denoise.core.atomic import atomic_path
from denoise.core.config import Params
from denoise.core.errors import TrainingError
from denoise.core.train_config import Profile
from denoise.data.sources import file_sha256
from denoise.models.build import build_model, count_parameters, load_model, start_from
from denoise.models.build import psnr as psnr_metric  # the Keras metric (val_psnr)
from denoise.models.precision import at_precision, dtype_policy, resolve_precision
from denoise.training.callbacks import (
    EPOCH_METRICS,
    HELD_OUT_METRIC,
    HISTORY_FIELDS,
    Checkpointer,
    EpochLogger,
    StepProgress,
    TrainingState,
    ValidationImages,
)
from denoise.training.noise import denoiser
from denoise.training.settings import model_budget, training_noise
from denoise.training.stream import ClipStream, FrameToFrameStream, PatchStream
from denoise.training.supervision import fitted_model

Stream = PatchStream | ClipStream | FrameToFrameStream


def fingerprint(
    name: str,
    params: Params,
    stream: Stream,
    validation: np.ndarray,
    init: Path | None = None,
    held_out: np.ndarray | None = None,
) -> str:
    """Hash of everything a checkpoint depends on; a changed input starts training afresh."""
    spec = params.train.spec(name)
    content = {
        "checkpoint": 2,  # 2: the fitted model holds TrainingNoise (noise drawn in the step)
        "model": name,
        "seed": params.seed,
        "spec": dataclasses.asdict(spec),  # its architecture's settings resolved
        "profile": dataclasses.asdict(model_budget(params.train, name)),
        "init": file_sha256(init) if init is not None else None,
        "noise": dataclasses.asdict(training_noise(params, name)),
        "manifest": file_sha256(stream.manifest),
        "validation": hashlib.sha256(validation.tobytes()).hexdigest(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    if params.train.supervision_of(name) == "noisy":
        content["supervision"] = type(stream).__name__
        content["without_clean"] = dataclasses.asdict(params.train.without_clean)
        content["held_out"] = (
            None if held_out is None else hashlib.sha256(held_out.tobytes()).hexdigest()
        )
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _make_deterministic(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def learning_rate(
    profile: Profile, scale: float = 1.0
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The profile's learning rate times `scale` (a rollback's): a constant, or linear warm-up
    then cosine decay to min_learning_rate at the last step."""
    peak = profile.learning_rate * scale
    if profile.schedule == "constant":
        return peak
    total = profile.epochs * profile.steps_per_epoch
    warm = profile.warmup_steps > 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warm else peak,
        decay_steps=total - profile.warmup_steps,
        alpha=profile.min_learning_rate / profile.learning_rate,
        warmup_target=peak if warm else None,
        warmup_steps=profile.warmup_steps,
    )


def _load_checkpoint(directory: Path, profile: Profile, state: TrainingState) -> keras.Model:
    """The checkpointed model with its optimizer state, at the state's learning-rate scale."""
    model = keras.models.load_model(directory / "last.keras")
    if state.lr_scale != 1.0:
        model.optimizer.learning_rate = learning_rate(profile, state.lr_scale)
    return model


def make_optimizer(profile: Profile) -> keras.optimizers.Optimizer:
    """Adam on the profile's learning rate, clipping the gradients' global norm to
    profile.clip_norm if set. A schedule runs on the optimizer's step count, which checkpoints
    keep, so a resumed run continues the same curve."""
    return keras.optimizers.Adam(learning_rate(profile), global_clipnorm=profile.clip_norm)


def _load_state(directory: Path, expected: str) -> TrainingState | None:
    path = directory / "state.json"
    if not path.is_file() or not (directory / "last.keras").is_file():
        return None
    state = TrainingState(**json.loads(path.read_text()))
    return state if state.fingerprint == expected else None


def train_model(
    name: str,
    params: Params,
    stream: Stream,
    validation: tuple[np.ndarray, np.ndarray],
    checkpoint_dir: Path,
    print_fn: Any = print,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    epoch_logger: EpochLogger | None = None,
    num_samples: int = 0,
    init: Path | None = None,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[keras.Model, TrainingState]:
    """Fit one model, resuming from checkpoint_dir if it holds a run of the same fingerprint.

    The model's training noise (params.training_noise) is added to the stream's clean patches
    in the training step; a model of supervision noisy adds none, and fits its network on a
    FrameToFrameStream (masked loss) or a NeighbourStream (Neighbor2Neighbor's loss).
    validation: (noisy, clean) float32 (N, H, W, 3). Returns the model with its best weights.
    epoch_logger gets every epoch's metrics, including those a resumed run did before.
    init: a .keras model of the same layers to start from (a warm start), else from scratch.
    held_out: a model of supervision noisy's held-out frame-to-frame pairs (ValidationImages):
    its epochs are then chosen on them.
    The model trains on its budget: the active profile with its per_model settings. Call it
    inside training.distribution.data_parallel to train on every device of the node.
    """
    config = params.train
    budget = model_budget(config, name)
    expected = fingerprint(
        name, params, stream, validation[0], init, None if held_out is None else held_out[1]
    )
    _make_deterministic(params.seed)
    state = _load_state(checkpoint_dir, expected)
    if state is None:
        if checkpoint_dir.exists():
            print_fn(f"{name}: discarding a checkpoint of other inputs in {checkpoint_dir}")
            shutil.rmtree(checkpoint_dir)
        state = TrainingState(fingerprint=expected)
        with dtype_policy(resolve_precision(budget.precision)):
            network = build_model(name, config)
            if init is not None:
                start_from(network, load_model(init), name, str(init))
            model, loss = fitted_model(name, params, network, stream)
        scores = [psnr_metric] if loss == "mse" else []
        model.compile(optimizer=make_optimizer(budget), loss=loss, metrics=scores)
        # Epoch 0's model: what a divergence in the first epoch rolls back to (state.json,
        # which a resume needs as well, comes with the first epoch or rollback).
        checkpoint_dir.mkdir(parents=True)
        with atomic_path(checkpoint_dir / "last.keras") as staging:
            model.save(staging)
    else:
        print_fn(f"{name}: resuming after epoch {state.epochs_done} from {checkpoint_dir}")
        model = _load_checkpoint(checkpoint_dir, budget, state)
        if epoch_logger is not None:
            for record in state.history:
                metrics = {
                    key: record[key] for key in (*EPOCH_METRICS, HELD_OUT_METRIC) if key in record
                }
                epoch_logger(int(record["epoch"]), metrics, [])
    clean = config.supervision_of(name) == "clean"
    while not (
        state.diverged
        or state.wait >= budget.early_stopping_patience
        or state.epochs_done >= budget.epochs
    ):
        stream.first_batch = state.epochs_done * budget.steps_per_epoch
        checkpointer = Checkpointer(checkpoint_dir, state, budget)
        model.fit(
            stream,
            epochs=budget.epochs,
            steps_per_epoch=budget.steps_per_epoch,
            shuffle=False,
            initial_epoch=state.epochs_done,
            validation_data=validation if clean else None,
            validation_batch_size=config.batch_size,
            callbacks=[
                ValidationImages(
                    validation, config.batch_size, num_samples, epoch_logger, not clean, held_out
                ),
                checkpointer,
                StepProgress(name, budget.epochs, budget.steps_per_epoch),
                *extra_callbacks,
            ],
            verbose=2,
        )
        if not checkpointer.rolled_back:
            break
        undone = state.rollbacks[-1]
        loss = "not finite" if undone["loss"] is None else f"{undone['loss']:.4g}"
        print_fn(
            f"{name}: epoch {undone['epoch']:.0f} diverged (training loss {loss}); "
            f"training it again from epoch {state.epochs_done}'s checkpoint at "
            f"{state.lr_scale:g} times the learning rate"
        )
        model = _load_checkpoint(checkpoint_dir, budget, state)
    if state.diverged:
        if state.best_epoch < 0:
            raise TrainingError(
                f"{name}: training diverged in epoch {state.epochs_done + 1} before any epoch "
                f"completed, {len(state.rollbacks)} rollbacks allowed; lower "
                f"train.profiles.{config.profile}.learning_rate (or per_model.{name}) or set "
                "clip_norm"
            )
        print_fn(
            f"{name}: training diverged again after {len(state.rollbacks)} rollbacks; it ends "
            f"at epoch {state.epochs_done} with the best epoch's weights ({state.best_epoch + 1})"
        )
    model.load_weights(checkpoint_dir / "best.weights.h5")
    # In float32 with the same weights (float32 variables under mixed precision), so saved
    # models infer at full precision on any hardware.
    return at_precision(denoiser(model), "float32"), state


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as staging, staging.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def summarise(
    name: str,
    params: Params,
    model: keras.Model,
    state: TrainingState,
    stream: Stream,
) -> dict[str, Any]:
    """What models/<name>.json records of a trained model: size, budget, noise, best scores."""
    best = state.history[state.best_epoch]
    clean = params.train.supervision_of(name) == "clean"
    return {
        "parameters": count_parameters(model),
        "architecture": params.train.spec(name).architecture,
        "profile": params.train.profile,
        "precision": resolve_precision(params.train.active.precision),
        "schedule": model_budget(params.train, name).schedule,
        "learning_rate": model_budget(params.train, name).learning_rate,
        # supervision noisy adds no noise: the sources' own is what it learns
        "noise": dataclasses.asdict(training_noise(params, name)) if clean else None,
        "supervision": params.train.supervision_of(name),
        "patch_size": stream.patch,
        "batch_size": stream.batch_size,
        "epochs": state.epochs_done,
        "best_epoch": state.best_epoch + 1,
        "val_loss": best["val_loss"],
        "val_psnr": best["val_psnr"],
        "val_ssim": best["val_ssim"],
        **({HELD_OUT_METRIC: best[HELD_OUT_METRIC]} if HELD_OUT_METRIC in best else {}),
        "train_seconds": state.seconds,
        # every epoch trained counts, the undone ones too: they took time as well
        "train_patches_per_second": (state.epochs_done + len(state.rollbacks) + state.diverged)
        * model_budget(params.train, name).steps_per_epoch
        * stream.batch_size
        / max(state.seconds, 1e-9),
        "rollbacks": state.rollbacks,
        "diverged": state.diverged,
    }
