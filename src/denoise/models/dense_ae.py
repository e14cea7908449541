"""A traditional Dense autoencoder applied to overlapping patches, the paper's comparison."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from denoise.core.train_config import Train, Variant


def _identity_patch_kernel(patch: int, channels: int) -> np.ndarray:
    """Kernel (patch, patch, channels, patch*patch*channels) copying each pixel to one output."""
    size = patch * patch * channels
    return np.eye(size, dtype=np.float32).reshape(patch, patch, channels, size)


class _PatchLayer(layers.Layer):
    """Shared state of the two patch layers: a fixed identity kernel, no trainable weights."""

    def __init__(self, patch: int, stride: int, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch, self.stride, self.channels = patch, stride, channels
        # (patch, patch, C, patch*patch*C): a conv kernel for extraction, and a conv_transpose
        # kernel ((kh, kw, out_channels, in_channels)) for putting patches back.
        self._kernel = _identity_patch_kernel(patch, channels)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "patch": self.patch,
            "stride": self.stride,
            "channels": self.channels,
        }


@keras.saving.register_keras_serializable(package="denoise")
class ExtractPatches(_PatchLayer):
    """Flatten every patch x patch tile, placed every `stride` pixels, into a vector.

    (N, H, W, C) -> (N, (H - patch) / stride + 1, (W - patch) / stride + 1, patch*patch*C).
    """

    def call(self, images: Any) -> Any:
        kernel = ops.convert_to_tensor(self._kernel, dtype=images.dtype)
        return ops.conv(images, kernel, strides=self.stride, padding="valid")


@keras.saving.register_keras_serializable(package="denoise")
class AveragePatches(_PatchLayer):
    """Put patch vectors back in place, averaging where tiles overlap (inverse of ExtractPatches).

    (N, h, w, patch*patch*C) -> (N, (h - 1) * stride + patch, (w - 1) * stride + patch, C).
    """

    def call(self, vectors: Any) -> Any:
        kernel = ops.convert_to_tensor(self._kernel, dtype=vectors.dtype)
        summed = ops.conv_transpose(vectors, kernel, strides=self.stride, padding="valid")
        coverage = ops.conv_transpose(
            ops.ones_like(vectors), kernel, strides=self.stride, padding="valid"
        )
        return summed / coverage


def dense_ae(
    patch: int = 8,
    stride: int = 4,
    hidden: int = 64,
    code: int = 32,
    channels: int = 3,
    input_size: int | None = None,
) -> keras.Model:
    """A traditional fully-connected denoising autoencoder applied to overlapping patches.

    Each patch x patch x C tile is flattened and passed through Dense layers
    (patch*patch*C -> hidden -> code -> hidden -> patch*patch*C, sigmoid out); tiles are placed
    every `stride` pixels and the outputs averaged back into the image. With the defaults it has
    29,024 parameters, the same order as paper_cae's 29,507. (H - patch) and (W - patch) must
    be multiples of `stride`.
    """
    size = patch * patch * channels
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    vectors = ExtractPatches(patch, stride, channels, name="patches")(noisy)
    features = layers.Dense(hidden, activation="relu", name="encode_1")(vectors)
    features = layers.Dense(code, activation="relu", name="code")(features)
    features = layers.Dense(hidden, activation="relu", name="decode_1")(features)
    vectors = layers.Dense(size, activation="sigmoid", name="decode_2", dtype="float32")(features)
    denoised = AveragePatches(patch, stride, channels, name="denoised", dtype="float32")(vectors)
    return keras.Model(noisy, denoised, name="dense_ae")


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names, sized by the spec's settings."""
    settings = spec.settings
    return dense_ae(
        settings.patch, settings.stride, settings.hidden, settings.code, input_size=input_size
    )


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy (the last Dense and the
    output): models.precision asks, to compute the rest in bfloat16."""
    return layer.name in {"decode_2", "denoised"}
