"""A DRUNet-style bias-free residual U-Net (Zhang et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from denoise.core.train_config import Train, Variant


def _residual_block(features: Any, width: int, name: str) -> Any:
    """conv-relu-conv plus the block's input (bias-free 3x3 convolutions, as in DRUNet)."""
    residual = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv_1")(
        features
    )
    residual = layers.ReLU(name=f"{name}_relu")(residual)
    residual = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv_2")(
        residual
    )
    return layers.Add(name=f"{name}_add")([features, residual])


def drunet(
    widths: Sequence[int] = (64, 128, 256, 512),
    blocks_per_level: int = 4,
    channels: int = 3,
    input_size: int | None = None,
) -> keras.Model:
    """A U-Net in the spirit of DRUNet (Zhang et al. 2021), without the noise-level map input.

    Head 3x3 conv to widths[0]; per level down: residual blocks then a 2x2 stride-2 conv to
    the next width; residual blocks at the bottom; per level up: add the matching encoder
    output, 2x2 stride-2 transposed conv, residual blocks; then add the head's output and a
    3x3 conv to `channels`. No batch norm and no biases (bias-free networks generalise across
    noise levels, which suits blind training). Unlike DRUNet, which outputs the image, the last
    conv predicts a correction and the output is noisy + correction (unclipped); that conv
    starts at zero, so an untrained net is the identity and trains faster. Height and width
    must be multiples of 2 ** (len(widths) - 1); 32,640,384 parameters with the defaults.
    """
    if not widths or blocks_per_level < 1:
        raise ValueError("drunet needs at least one width and one block per level")
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    correction = correction_head(unet(noisy, widths, blocks_per_level), channels)
    denoised = layers.Add(name="denoised", dtype="float32")([noisy, correction])
    return keras.Model(noisy, denoised, name="drunet")


def unet(inputs: Any, widths: Sequence[int], blocks_per_level: int) -> Any:
    """The U-Net body of drunet (head conv through skip_0) on `inputs`: features of widths[0]
    channels at the input's resolution."""
    features = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="head")(inputs)
    encoded = [features]  # the head's and every level's output, added back on the way up
    for level, width in enumerate(widths[:-1]):
        for block in range(blocks_per_level):
            features = _residual_block(features, width, f"down_{level}_block_{block}")
        features = layers.Conv2D(
            widths[level + 1], 2, strides=2, use_bias=False, name=f"down_{level}"
        )(features)
        encoded.append(features)
    for block in range(blocks_per_level):
        features = _residual_block(features, widths[-1], f"body_block_{block}")
    for level in reversed(range(len(widths) - 1)):
        features = layers.Add(name=f"skip_{level + 1}")([features, encoded[level + 1]])
        features = layers.Conv2DTranspose(
            widths[level], 2, strides=2, use_bias=False, name=f"up_{level}"
        )(features)
        for block in range(blocks_per_level):
            features = _residual_block(features, widths[level], f"up_{level}_block_{block}")
    features = layers.Add(name="skip_0")([features, encoded[0]])
    return features


def correction_head(features: Any, channels: int) -> Any:
    """The last 3x3 conv to `channels`, float32 and starting at zero (an untrained net is the
    identity)."""
    return layers.Conv2D(
        channels,
        3,
        padding="same",
        use_bias=False,
        name="correction",
        dtype="float32",
        kernel_initializer="zeros",
    )(features)


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names, sized by the spec's settings."""
    settings = spec.settings
    return drunet(tuple(settings.widths), settings.blocks_per_level, input_size=input_size)


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy (the predicted
    correction and the output): models.precision asks, to compute the rest in bfloat16."""
    return layer.name in {"correction", "denoised"}
