"""Learning without clean targets: the models fitted and their losses (keras.ops only).

A model of supervision noisy (train.supervision, or its variant's) adds no noise: its input is
a noisy source as it is. Frame-to-frame (Ehret et al. 2019) fits the network itself against
the neighbouring frame warped onto it, with a mask of the pixels to score (both made on the
host: training.stream.FrameToFrameStream). Neighbor2Neighbor (Huang et al. 2021) fits the
network on one random neighbour sub-image of a noisy patch against the other, plus its
regulariser, which needs the network's output on the whole patch: the fitted model runs the
network twice, the second time without gradient, and packs both results into its output.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from denoise.core.config import Params
from denoise.core.errors import TrainingError
from denoise.training.noise import with_training_noise
from denoise.training.settings import training_noise
from denoise.training.stream import FrameToFrameStream, NeighbourStream


def _subsample(images: Any, mask: Any) -> Any:
    """The half-size sub-image `mask` picks: images (B, H, W, C), mask (B, H, W, 1) of 0 and
    1 with one 1 per 2x2 cell (data.subsampling.neighbour_masks); (B, H / 2, W / 2, C)."""
    height, width, channels = images.shape[1:]
    cells = ops.reshape(images * mask, (-1, height // 2, 2, width // 2, 2, channels))
    return ops.sum(cells, axis=(2, 4))


@keras.saving.register_keras_serializable(package="denoise")
class NeighbourSubImages(keras.layers.Layer):
    """packed float32 (B, H, W, 5): a noisy patch, then Neighbor2Neighbor's two masks ->
    (the noisy patch (B, H, W, 3), its first sub-image (B, H / 2, W / 2, 3))."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, packed: Any) -> tuple[Any, Any]:
        noisy = packed[..., :3]
        return noisy, _subsample(noisy, packed[..., 3:4])


@keras.saving.register_keras_serializable(package="denoise")
class Neighbor2NeighborOutputs(keras.layers.Layer):
    """[denoised first sub-image (B, h, w, 3), denoised patch (B, 2h, 2w, 3), packed] ->
    float32 (B, h, w, 6): the first, then the difference of the denoised patch's two
    sub-images, which the loss's regulariser compares without gradient (stop_gradient)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs: list[Any]) -> Any:
        denoised_first, denoised, packed = inputs
        denoised = ops.stop_gradient(ops.cast(denoised, "float32"))
        difference = _subsample(denoised, packed[..., 3:4]) - _subsample(denoised, packed[..., 4:5])
        return ops.concatenate([ops.cast(denoised_first, "float32"), difference], axis=-1)


@keras.saving.register_keras_serializable(package="denoise")
class Neighbor2NeighborLoss(keras.losses.Loss):
    """Huang et al.'s loss: |f(g1(y)) - g2(y)|^2 + gamma |f(g1(y)) - g2(y) - (g1(f(y)) -
    g2(f(y)))|^2, each a mean over pixels and channels.

    second: float32 (B, h, w, 3), the second sub-image g2(y). packed: (B, h, w, 6) from
    Neighbor2NeighborOutputs.
    """

    def __init__(self, gamma: float, name: str = "neighbor2neighbor", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma = gamma

    def call(self, second: Any, packed: Any) -> Any:
        difference = packed[..., :3] - ops.cast(second, "float32")
        regulariser = difference - packed[..., 3:]
        return ops.mean(ops.square(difference), axis=(1, 2, 3)) + self.gamma * ops.mean(
            ops.square(regulariser), axis=(1, 2, 3)
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="denoise", name="masked_mse")
def masked_mse(packed: Any, denoised: Any) -> Any:
    """Frame-to-frame loss: the squared error over the pixels the mask keeps, as a mean over
    the batch's kept pixels (per-sample values whose batch mean is that).

    packed: float32 (B, H, W, 4), the neighbour warped onto the frame, then the mask (0 or 1).
    denoised: (B, H, W, 3).
    """
    target, mask = packed[..., :3], packed[..., 3:4]
    squared = mask * ops.square(ops.cast(denoised, "float32") - target)
    per_sample = ops.sum(squared, axis=(1, 2, 3))
    kept = 3.0 * ops.mean(ops.sum(mask, axis=(1, 2, 3)))  # kept values per sample, on average
    return per_sample / ops.maximum(kept, 1.0)


def frame_to_frame_model(network: keras.Model) -> keras.Model:
    """The model to fit on frame-to-frame batches: the network as it is, no noise added."""
    return keras.Sequential(
        [keras.Input(network.input_shape[1:]), network], name=f"{network.name}_frame_to_frame"
    )


def neighbor2neighbor_model(network: keras.Model, patch: int) -> keras.Model:
    """The model to fit on Neighbor2Neighbor batches: packed (B, patch, patch, 5) in, (B,
    patch / 2, patch / 2, 6) out (Neighbor2NeighborOutputs); no noise added."""
    packed = keras.Input((patch, patch, 5))
    noisy, first = NeighbourSubImages()(packed)
    outputs = Neighbor2NeighborOutputs()([network(first), network(noisy), packed])
    return keras.Model(packed, outputs, name=f"{network.name}_neighbor2neighbor")


def fitted_model(
    name: str, params: Params, network: keras.Model, stream: Any
) -> tuple[keras.Model, Any]:
    """The model fit trains for `network`, and its loss: the training noise and MSE for
    supervision clean; for noisy, frame-to-frame's or Neighbor2Neighbor's, by the stream."""
    supervision = params.train.supervision_of(name)
    if supervision == "clean":
        noise = training_noise(params, name)
        return with_training_noise(network, noise, params.seed, params.noise.camera), "mse"
    if isinstance(stream, NeighbourStream):
        gamma = params.train.without_clean.gamma
        return neighbor2neighbor_model(network, stream.patch), Neighbor2NeighborLoss(gamma)
    if isinstance(stream, FrameToFrameStream):
        return frame_to_frame_model(network), masked_mse
    raise TrainingError(
        f"{name}: supervision noisy trains on noisy clips or frames, not a {type(stream).__name__}"
    )


def held_out_loss(denoised: np.ndarray, packed: np.ndarray) -> float:
    """Frame-to-frame loss on held-out frames: the mean squared error of the denoised frames
    against their warped neighbours over the pixels the masks keep.

    denoised: float32 (N, H, W, 3). packed: float32 (N, H, W, 4), the warped neighbour then
    the mask (0 or 1).
    """
    mask = packed[..., 3:]
    squared = mask * np.square(denoised.astype(np.float32) - packed[..., :3])
    return float(squared.sum() / max(3.0 * mask.sum(), 1.0))
