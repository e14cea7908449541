"""Trained models as batch denoisers: a Keras model on whole images, and a temporal model on
the window of frames around each frame of a clip."""

from __future__ import annotations

from typing import Any

import numpy as np

from denoise.core.temporal import channel_windows
from denoise.evaluation.scoring import BatchDenoiser
from denoise.models.build import required_multiple
from denoise.models.precision import at_precision
from denoise.serving import tiling


def model_denoiser(
    model: Any, batch_size: int, ensemble: bool = False, precision: str = "float32"
) -> BatchDenoiser:
    """A model on whole images in batches; ensemble: its x8 self-ensemble
    (tiling.self_ensemble); precision: what it computes in (precision.at_precision)."""
    model = at_precision(model, precision)

    try:
        multiple = required_multiple(model)
    except ValueError:  # a dense_ae whose patch is no multiple of its stride: whole frames only
        multiple = 1

    def denoise_batch(noisy: np.ndarray, sigma: float) -> np.ndarray:
        # The whole image as one tile, reflect-padded to the model's multiple and cropped back,
        # through the compiled call `denoise apply` makes (faster than model.predict's per-call
        # setup on small sets).
        tile = max(*noisy.shape[1:3], 16) + multiple
        return tiling.denoise_batch(model, noisy, tile, 0, batch_size, multiple, ensemble)

    return denoise_batch


def window_denoiser(frame_denoiser: BatchDenoiser, window: int) -> BatchDenoiser:
    """A temporal model's denoiser of one clip (T, H, W, 3): every frame from the window of
    frames around it, the ends reflected (core.temporal); frame_denoiser: model_denoiser of
    the model, which takes windows stacked on the channel axis."""
    return lambda clip, sigma: frame_denoiser(np.stack(list(channel_windows(clip, window))), sigma)
