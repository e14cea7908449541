"""FFDNet-style: DnCNN's stack on 2x2-packed pixels, with an estimated noise-level map."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from denoise.core.noise_level import donoho_sigma
from denoise.core.train_config import Train, Variant
from denoise.models.dense_ae import AveragePatches, ExtractPatches
from denoise.models.dncnn import _conv_stack


@keras.saving.register_keras_serializable(package="denoise")
class NoiseLevelMap(layers.Layer):
    """A constant map of each image's estimated noise std-dev, from 2x2-packed pixels.

    Input (N, h, w, 4C) as ExtractPatches(2, 2, C) packs them; output (N, h, w, 1). The
    estimate is Donoho's (core.noise_level.donoho_sigma, the one the evaluation's classical
    methods and extract use): median(|HH|) / 0.6745 over the finest Haar diagonal coefficients
    HH = (x00 - x01 - x10 + x11) / 2 of every channel, which for white Gaussian noise of std
    sigma have std sigma, and which smooth image content barely reaches. It has no weights
    and passes no gradient, so the map tells the network the noise level as FFDNet's input
    map does, without the caller having to know it.
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, packed: Any) -> Any:
        packed = ops.cast(packed, "float32")
        c = self.channels
        blocks = [packed[..., index * c : (index + 1) * c] for index in range(4)]
        sigma = ops.stop_gradient(donoho_sigma(blocks[0], blocks[1], blocks[2], blocks[3], ops))
        return ops.ones_like(packed[..., :1]) * sigma[:, None, None, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}


def ffdnet(
    depth: int = 12,
    width: int = 64,
    batch_norm: bool = True,
    noise_map: bool = True,
    channels: int = 3,
    input_size: int | None = None,
) -> keras.Model:
    """FFDNet-style (Zhang et al. 2018): the DnCNN stack at half resolution.

    The image is packed 2x2 into 4C channels (pixel unshuffle); with `noise_map`, a map of the
    estimated noise level (NoiseLevelMap) joins them, so one blind model conditions on the
    level as FFDNet does on its input map. Then Conv+ReLU, (Conv+BN+ReLU) x (depth - 2), and a
    conv to 4C channels, unpacked (pixel shuffle) into the predicted noise; the output is noisy
    - noise (residual, unclipped; FFDNet itself outputs the image). The last conv starts at
    zero, as in dncnn. Working on a quarter of the pixels, it costs depth * width^2 * 9 / 4
    multiply-adds per pixel and sees twice the receptive field of a dncnn of the same depth.
    Height and width must be even.
    """
    if depth < 3:
        raise ValueError(f"ffdnet depth must be >= 3, got {depth}")
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    packed = ExtractPatches(2, 2, channels, name="pack", dtype="float32")(noisy)
    features = packed
    if noise_map:
        level = NoiseLevelMap(channels, name="noise_level")(packed)
        features = layers.Concatenate(name="with_level")([packed, level])
    features = _conv_stack(features, depth, width, batch_norm)
    packed_noise = layers.Conv2D(
        4 * channels, 3, padding="same", name="noise", dtype="float32", kernel_initializer="zeros"
    )(features)
    noise = AveragePatches(2, 2, channels, name="unpack", dtype="float32")(packed_noise)
    denoised = layers.Subtract(name="denoised", dtype="float32")([noisy, noise])
    return keras.Model(noisy, denoised, name="ffdnet")


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names, sized by the spec's settings."""
    settings = spec.settings
    return ffdnet(
        settings.depth,
        settings.width,
        settings.batch_norm,
        settings.noise_map,
        input_size=input_size,
    )


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy (the packing, the
    noise-level estimate, the predicted noise and the output): models.precision asks, to compute
    the rest in bfloat16."""
    return layer.name in {"pack", "noise_level", "noise", "unpack", "denoised"}
