"""The training loop: fit one model on the patch stream, with checkpoints and a divergence guard.

Noise is drawn fresh for every patch of every step inside the compiled step
(denoise.training.noise), so neither a noisy copy nor the whole data set is ever held (the
paper's two reported limits). Every epoch writes a checkpoint under paths.checkpoints (outside
DVC's outs); an interrupted run resumes from it and ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from denoise.core.atomic import atomic_path, write_json
from denoise.core.config import Params
from denoise.core.errors import TrainingError
from denoise.core.images import triptych
from denoise.core.metrics import ssim
from denoise.core.progress import PLAIN_EVERY_SECONDS, clock
from denoise.core.train_config import Profile
from denoise.data.sources import file_sha256
from denoise.models.build import build_model, count_parameters, load_model, start_from
from denoise.models.build import psnr as psnr_metric  # the Keras metric (val_psnr)
from denoise.models.precision import at_precision, dtype_policy, resolve_precision
from denoise.training.noise import denoiser, with_training_noise
from denoise.training.settings import model_budget, training_noise
from denoise.training.stream import ClipStream, PatchStream

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "val_psnr", "val_ssim", "seconds")
EPOCH_METRICS = ("loss", "val_loss", "val_psnr", "val_ssim")
# Called after every epoch with (epoch, metrics, triptychs of the first validation frames).
EpochLogger = Callable[[int, dict[str, float], list[np.ndarray]], None]


@dataclasses.dataclass
class TrainingState:
    """What a checkpoint must hold besides the model to resume exactly (JSON-serialisable)."""

    fingerprint: str
    epochs_done: int = 0
    best_val_loss: float = float("inf")
    best_epoch: int = -1
    wait: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    # Undone epochs: {"epoch": 1-based, "loss": its training loss (None: not finite),
    # "lr_scale": the scale it ran at}.
    rollbacks: list[dict[str, float | None]] = dataclasses.field(default_factory=list)
    diverged: bool = False  # diverged once more than max_rollbacks allows: training ended

    @property
    def lr_scale(self) -> float:
        """The learning rate's scale: halved by every rollback."""
        return 0.5 ** len(self.rollbacks)


def middle_frame(image: np.ndarray) -> np.ndarray:
    """The middle frame of a temporal model's input (H, W, 3 * window); an image as it is."""
    middle = image.shape[-1] // 3 // 2
    return image[..., 3 * middle : 3 * middle + 3]


class ValidationImages(keras.callbacks.Callback):
    """Adds val_ssim to the epoch's logs, and hands sample triptychs to an optional logger.

    Runs before the Checkpointer, so the history it records holds val_ssim too.
    validation: (noisy, clean) float32 (N, H, W, 3) in [0, 1] (noisy unclipped; a temporal
    model's noisy windows (N, H, W, 3 * window)).
    """

    def __init__(
        self,
        validation: tuple[np.ndarray, np.ndarray],
        batch_size: int,
        num_samples: int,
        logger: EpochLogger | None,
    ) -> None:
        super().__init__()
        self.noisy, self.clean = validation
        self.batch_size, self.num_samples, self.logger = batch_size, num_samples, logger

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        denoised = np.clip(
            np.asarray(self.model.predict(self.noisy, batch_size=self.batch_size, verbose=0)),
            0.0,
            1.0,
        )
        logs["val_ssim"] = float(
            np.mean([ssim(clean, image) for clean, image in zip(self.clean, denoised, strict=True)])
        )
        if self.logger is not None:
            samples = [
                triptych(middle_frame(self.noisy[index]), denoised[index], self.clean[index])
                for index in range(min(self.num_samples, len(self.clean)))
            ]
            self.logger(epoch + 1, {key: float(logs[key]) for key in EPOCH_METRICS}, samples)


class StepProgress(keras.callbacks.Callback):
    """A line within each epoch every PLAIN_EVERY_SECONDS, on standard error: steps done, steps
    per second and the time left in the epoch and in all (Keras itself prints per epoch)."""

    def __init__(self, name: str, epochs: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.name, self.epochs, self.steps = name, epochs, steps_per_epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.start = self.last = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now - self.last < PLAIN_EVERY_SECONDS:
            return
        self.last = now
        done = batch + 1
        rate = done / (now - self.start)
        left = (self.steps - done) / rate
        in_all = left + (self.epochs - self.epoch - 1) * self.steps / rate
        print(
            f"{self.name}: epoch {self.epoch + 1}/{self.epochs}, step {done}/{self.steps}, "
            f"{rate:.2f} steps/s, about {clock(left)} left in the epoch, {clock(in_all)} in all",
            file=sys.stderr,
            flush=True,
        )


class Checkpointer(keras.callbacks.Callback):
    """Early stopping on val_loss, an atomic checkpoint every epoch, and the divergence guard.

    The checkpoint holds the model with its optimizer state, the best weights so far, and the
    TrainingState, which is all a resumed run needs. An epoch that diverged (see `diverged`)
    is not checkpointed: training stops with `rolled_back` set, and train_model resumes from
    the previous checkpoint at half the learning rate; after profile.max_rollbacks of those,
    the next divergence ends training (state.diverged).
    """

    def __init__(self, directory: Path, state: TrainingState, profile: Profile) -> None:
        super().__init__()
        self.directory, self.state, self.profile = directory, state, profile
        self.rolled_back = False
        self._epoch_start = 0.0

    def diverged(self, loss: float) -> bool:
        """Whether an epoch's training loss is non-finite or divergence_factor times the
        lowest epoch loss so far."""
        lowest = min((record["loss"] for record in self.state.history), default=math.inf)
        return not math.isfinite(loss) or loss > self.profile.divergence_factor * lowest

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        state = self.state
        seconds = time.perf_counter() - self._epoch_start
        state.seconds += seconds
        self.directory.mkdir(parents=True, exist_ok=True)
        loss = float(logs["loss"])
        if self.diverged(loss):
            self.model.stop_training = True
            if len(state.rollbacks) >= self.profile.max_rollbacks:
                state.diverged = True
            else:
                state.rollbacks.append(
                    {
                        "epoch": epoch + 1,
                        "loss": loss if math.isfinite(loss) else None,  # JSON has no NaN
                        "lr_scale": state.lr_scale,
                    }
                )
                self.rolled_back = True
            write_json(self.directory / "state.json", dataclasses.asdict(state))
            return
        state.history.append(
            {
                "epoch": epoch + 1,
                "loss": loss,
                "val_loss": float(logs["val_loss"]),
                "val_psnr": float(logs["val_psnr"]),
                "val_ssim": float(logs["val_ssim"]),
                "seconds": seconds,
            }
        )
        if logs["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.wait = float(logs["val_loss"]), epoch, 0
            with atomic_path(self.directory / "best.weights.h5") as staging:
                self.model.save_weights(staging)
        else:
            state.wait += 1
        state.epochs_done = epoch + 1
        with atomic_path(self.directory / "last.keras") as staging:
            self.model.save(staging)
        write_json(self.directory / "state.json", dataclasses.asdict(state))
        if state.wait >= self.profile.early_stopping_patience:
            self.model.stop_training = True


def fingerprint(
    name: str,
    params: Params,
    stream: PatchStream | ClipStream,
    validation: np.ndarray,
    init: Path | None = None,
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
    stream: PatchStream | ClipStream,
    validation: tuple[np.ndarray, np.ndarray],
    checkpoint_dir: Path,
    print_fn: Any = print,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    epoch_logger: EpochLogger | None = None,
    num_samples: int = 0,
    init: Path | None = None,
) -> tuple[keras.Model, TrainingState]:
    """Fit one model, resuming from checkpoint_dir if it holds a run of the same fingerprint.

    The model's training noise (params.training_noise) is added to the stream's clean patches
    in the training step.
    validation: (noisy, clean) float32 (N, H, W, 3). Returns the model with its best weights.
    epoch_logger gets every epoch's metrics, including those a resumed run did before.
    init: a .keras model of the same layers to start from (a warm start), else from scratch.
    The model trains on its budget: the active profile with its per_model settings. Call it
    inside training.distribution.data_parallel to train on every device of the node.
    """
    config = params.train
    budget = model_budget(config, name)
    expected = fingerprint(name, params, stream, validation[0], init)
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
            model = with_training_noise(
                network, training_noise(params, name), params.seed, params.noise.camera
            )
        model.compile(optimizer=make_optimizer(budget), loss="mse", metrics=[psnr_metric])
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
                epoch_logger(int(record["epoch"]), {key: record[key] for key in EPOCH_METRICS}, [])
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
            validation_data=validation,
            validation_batch_size=config.batch_size,
            callbacks=[
                ValidationImages(validation, config.batch_size, num_samples, epoch_logger),
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
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def summarise(
    name: str,
    params: Params,
    model: keras.Model,
    state: TrainingState,
    stream: PatchStream | ClipStream,
) -> dict[str, Any]:
    """What models/<name>.json records of a trained model: size, budget, noise, best scores."""
    best = state.history[state.best_epoch]
    return {
        "parameters": count_parameters(model),
        "architecture": params.train.spec(name).architecture,
        "profile": params.train.profile,
        "precision": resolve_precision(params.train.active.precision),
        "schedule": model_budget(params.train, name).schedule,
        "learning_rate": model_budget(params.train, name).learning_rate,
        "noise": dataclasses.asdict(training_noise(params, name)),
        "patch_size": stream.patch,
        "batch_size": stream.batch_size,
        "epochs": state.epochs_done,
        "best_epoch": state.best_epoch + 1,
        "val_loss": best["val_loss"],
        "val_psnr": best["val_psnr"],
        "val_ssim": best["val_ssim"],
        "train_seconds": state.seconds,
        # every epoch trained counts, the undone ones too: they took time as well
        "train_patches_per_second": (state.epochs_done + len(state.rollbacks) + state.diverged)
        * model_budget(params.train, name).steps_per_epoch
        * stream.batch_size
        / max(state.seconds, 1e-9),
        "rollbacks": state.rollbacks,
        "diverged": state.diverged,
    }
