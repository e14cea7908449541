"""A FastDVDnet-style video denoiser (Tassano et al. 2020): two stages of U-Nets, no flow.

The input is a window of consecutive noisy frames stacked on the channel axis, oldest first:
float32 (N, H, W, 3 * window). Stage one denoises every triplet of neighbouring frames with one
shared U-Net block; stage two fuses the triplets' outputs with a second block into the middle
frame, float32 (N, H, W, 3). With one stage, a single block takes the whole window (early
fusion): one wide U-Net where two stages spend the same work on four narrow ones. Like
FastDVDnet, the motion between frames is left to the networks (no optical flow). Unlike it,
the blocks are this package's DRUNet bodies (models.drunet.unet, bias-free residual blocks)
and there is no noise-level map: a blind model infers the level, as drunet does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from denoise.core.train_config import Train, Variant
from denoise.models.drunet import correction_head, unet

CHANNELS = 3  # RGB per frame


@keras.saving.register_keras_serializable(package="denoise")
class FrameRange(layers.Layer):
    """Frames first..first+count-1 of a channel-stacked window: (N, H, W, 3 * window) in,
    (N, H, W, 3 * count) out."""

    def __init__(self, first: int, count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first, self.count = first, count

    def call(self, window: Any) -> Any:
        return window[..., CHANNELS * self.first : CHANNELS * (self.first + self.count)]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], CHANNELS * self.count)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "first": self.first, "count": self.count}


def denoising_block(
    frames: int, widths: Sequence[int], blocks_per_level: int, name: str
) -> keras.Model:
    """A U-Net from `frames` stacked frames to their middle one: the middle noisy frame plus a
    predicted correction (zero at the start, so an untrained block passes the middle frame)."""
    stacked = keras.Input(shape=(None, None, CHANNELS * frames), name=f"{name}_frames")
    middle = FrameRange(frames // 2, 1, name=f"{name}_middle", dtype="float32")(stacked)
    correction = correction_head(unet(stacked, widths, blocks_per_level), CHANNELS)
    denoised = layers.Add(name=f"{name}_denoised", dtype="float32")([middle, correction])
    return keras.Model(stacked, denoised, name=name)


def fastdvdnet(
    window: int = 5,
    widths: Sequence[int] = (32, 64, 128),
    blocks_per_level: int = 1,
    input_size: int | None = None,
    stages: int = 2,
) -> keras.Model:
    """Denoise the middle frame of `window` frames (odd, >= 3).

    Two stages: one block, weights shared, on each of the window - 2 triplets of neighbouring
    frames, then a block on their window - 2 outputs. Per output frame that is window - 1
    blocks' work (4 for the default window of 5). One stage: a single block on the window.
    Height and width must be multiples of 2 ** (len(widths) - 1).
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"fastdvdnet's window must be odd and >= 3, got {window}")
    noisy = keras.Input(shape=(input_size, input_size, CHANNELS * window), name="noisy_window")
    if stages == 1:
        window_block = denoising_block(window, widths, blocks_per_level, "window_block")
        return keras.Model(noisy, window_block(noisy), name="fastdvdnet")
    triplet_block = denoising_block(3, widths, blocks_per_level, "triplet_block")
    fusion_block = denoising_block(window - 2, widths, blocks_per_level, "fusion_block")
    triplets = [
        triplet_block(FrameRange(first, 3, name=f"triplet_{first}", dtype="float32")(noisy))
        for first in range(window - 2)
    ]
    # The frame slices and the triplets' outputs carry the middle frames (the blocks' skips):
    # float32 under any dtype policy (keeps_float32).
    concatenate = layers.Concatenate(name="triplets", dtype="float32")
    fused = triplets[0] if len(triplets) == 1 else concatenate(triplets)
    denoised = fusion_block(fused)
    return keras.Model(noisy, denoised, name="fastdvdnet")


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names, sized by the spec's settings."""
    settings = spec.settings
    return fastdvdnet(
        settings.window,
        tuple(settings.widths),
        settings.blocks_per_level,
        input_size=input_size,
        stages=settings.stages,
    )


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy: the frame slices
    (FrameRange), the concatenated triplets and each block's correction and output, which carry
    the middle frames to the output. models.precision asks, to compute the rest in bfloat16."""
    if isinstance(layer, FrameRange):
        return True
    return layer.name in {"triplets", "correction"} or layer.name.endswith("_denoised")
