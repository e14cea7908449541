"""The training loop's callbacks: validation scores and images, checkpoints and early
stopping, the divergence guard, and the state a checkpoint holds to resume exactly."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from denoise.core.atomic import atomic_path, write_json
from denoise.core.images import triptych
from denoise.core.metrics import ssim
from denoise.core.progress import PLAIN_EVERY_SECONDS, clock
from denoise.core.train_config import Profile
from denoise.training.noise import denoiser
from denoise.training.supervision import held_out_loss

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "val_psnr", "val_ssim", "seconds")
HELD_OUT_METRIC = "val_frame_to_frame"  # supervision noisy: the held-out frame-to-frame loss
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
    model's noisy windows (N, H, W, 3 * window)). scores: also set val_loss (mean squared
    error) and val_psnr, for a fitted model whose own loss is not one against clean frames
    (supervision noisy), which fit then validates with no validation_data. held_out: noisy
    frames and their packed frame-to-frame targets (training.stream.frame_to_frame_validation)
    of held-out noisy clips: their masked loss is val_frame_to_frame, and val_loss, on which
    the epoch is chosen, when there is no clean reference for that noise.
    """

    def __init__(
        self,
        validation: tuple[np.ndarray, np.ndarray],
        batch_size: int,
        num_samples: int,
        logger: EpochLogger | None,
        scores: bool = False,
        held_out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.noisy, self.clean = validation
        self.batch_size, self.num_samples, self.logger = batch_size, num_samples, logger
        self.scores, self.held_out = scores, held_out

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        network = denoiser(self.model)
        raw = np.asarray(network.predict(self.noisy, batch_size=self.batch_size, verbose=0))
        if self.scores:
            errors = np.mean(np.square(raw.astype(np.float32) - self.clean), axis=(1, 2, 3))
            logs["val_loss"] = float(np.mean(errors))
            logs["val_psnr"] = float(np.mean(-10.0 * np.log10(np.maximum(errors, 1e-12))))
        if self.held_out is not None:
            frames, packed = self.held_out
            output = np.asarray(network.predict(frames, batch_size=self.batch_size, verbose=0))
            logs[HELD_OUT_METRIC] = logs["val_loss"] = held_out_loss(output, packed)
        denoised = np.clip(raw, 0.0, 1.0)
        logs["val_ssim"] = float(
            np.mean([ssim(clean, image) for clean, image in zip(self.clean, denoised, strict=True)])
        )
        if self.logger is not None:
            samples = [
                triptych(middle_frame(self.noisy[index]), denoised[index], self.clean[index])
                for index in range(min(self.num_samples, len(self.clean)))
            ]
            metrics = {
                key: float(logs[key]) for key in (*EPOCH_METRICS, HELD_OUT_METRIC) if key in logs
            }
            self.logger(epoch + 1, metrics, samples)


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
                **(
                    {HELD_OUT_METRIC: float(logs[HELD_OUT_METRIC])}
                    if HELD_OUT_METRIC in logs
                    else {}
                ),
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
