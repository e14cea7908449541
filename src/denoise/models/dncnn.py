"""DnCNN (Zhang et al. 2017): residual learning, a stack of 3x3 convolutions."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from denoise.core.train_config import Train, Variant


def _conv_stack(features: Any, depth: int, width: int, batch_norm: bool) -> Any:
    """DnCNN's body: Conv+ReLU, then (Conv+BN+ReLU) x (depth - 2), all 3x3, `width` channels.

    Convolutions followed by batch norm have no bias (the norm's beta replaces it).
    """
    features = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv_1")(features)
    for index in range(2, depth):
        features = layers.Conv2D(
            width, 3, padding="same", use_bias=not batch_norm, name=f"conv_{index}"
        )(features)
        if batch_norm:
            features = layers.BatchNormalization(name=f"norm_{index}")(features)
        features = layers.ReLU(name=f"relu_{index}")(features)
    return features


def dncnn(
    depth: int = 17,
    width: int = 64,
    batch_norm: bool = True,
    channels: int = 3,
    input_size: int | None = None,
) -> keras.Model:
    """DnCNN (Zhang et al. 2017): a plain stack of 3x3 convolutions that predicts the noise.

    Conv+ReLU, (Conv+BN+ReLU) x (depth - 2), Conv; the output is noisy - predicted noise
    (residual learning), unclipped. The last conv starts at zero, so the untrained net is the
    identity: with batch norm, a randomly initialised last layer predicts noise of std about 1
    (ten times sigma 25) and training spends its first hundreds of steps undoing that
    (measured: docs/benchmarks.md). With the defaults: 558,403 trainable parameters, receptive field
    35x35. Any height and width.
    """
    if depth < 3:
        raise ValueError(f"dncnn depth must be >= 3, got {depth}")
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    features = _conv_stack(noisy, depth, width, batch_norm)
    noise = layers.Conv2D(
        channels, 3, padding="same", name="noise", dtype="float32", kernel_initializer="zeros"
    )(features)
    denoised = layers.Subtract(name="denoised", dtype="float32")([noisy, noise])
    return keras.Model(noisy, denoised, name="dncnn")


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names, sized by the spec's settings."""
    settings = spec.settings
    return dncnn(settings.depth, settings.width, settings.batch_norm, input_size=input_size)


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy (the predicted noise and
    the output): models.precision asks, to compute the rest in bfloat16."""
    return layer.name in {"noise", "denoised"}
