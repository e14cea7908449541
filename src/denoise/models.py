"""Model builders, one function per architecture (Keras 3 Functional API, keras.ops only).

Every model maps noisy float32 (N, H, W, 3) RGB to denoised (N, H, W, 3) and is fully
convolutional, so it trains on patches and denoises frames of other sizes. Output layers are
float32 whatever the global dtype policy, so mixed-precision training keeps a float32 output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from denoise.config import Train


def paper_cae(channels: int = 3, input_size: int | None = None) -> keras.Model:
    """The convolutional autoencoder of Ghafar & Sattar (2021), layer for layer.

    Conv2D 32 3x3 ReLU + MaxPool 2, twice; Conv2DTranspose 32 3x3 stride 2 ReLU, twice;
    Conv2D 3x3 sigmoid. 29,507 parameters for RGB. Height and width must be multiples of 4;
    input_size fixes them (for a summary with shapes, the paper's Fig. 8), None leaves them free.
    """
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    features = layers.Conv2D(32, 3, activation="relu", padding="same", name="encode_1")(noisy)
    features = layers.MaxPooling2D(2, padding="same", name="pool_1")(features)
    features = layers.Conv2D(32, 3, activation="relu", padding="same", name="encode_2")(features)
    features = layers.MaxPooling2D(2, padding="same", name="pool_2")(features)
    features = layers.Conv2DTranspose(
        32, 3, strides=2, activation="relu", padding="same", name="decode_1"
    )(features)
    features = layers.Conv2DTranspose(
        32, 3, strides=2, activation="relu", padding="same", name="decode_2"
    )(features)
    denoised = layers.Conv2D(
        channels, 3, activation="sigmoid", padding="same", name="denoised", dtype="float32"
    )(features)
    return keras.Model(noisy, denoised, name="paper_cae")


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


@keras.saving.register_keras_serializable(package="denoise")
class NoiseLevelMap(layers.Layer):
    """A constant map of each image's estimated noise std-dev, from 2x2-packed pixels.

    Input (N, h, w, 4C) as ExtractPatches(2, 2, C) packs them; output (N, h, w, 1). The
    estimate is Donoho's: median(|HH|) / 0.6745 over the finest Haar diagonal coefficients
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
        diagonal = (
            packed[..., 0:c] - packed[..., c : 2 * c] - packed[..., 2 * c : 3 * c]
        ) + packed[..., 3 * c : 4 * c]
        flat = ops.reshape(ops.abs(diagonal) * 0.5, (ops.shape(packed)[0], -1))
        sigma = ops.stop_gradient(ops.median(flat, axis=1) / 0.6745)
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
    features = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="head")(noisy)
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
    correction = layers.Conv2D(
        channels,
        3,
        padding="same",
        use_bias=False,
        name="correction",
        dtype="float32",
        kernel_initializer="zeros",
    )(features)
    denoised = layers.Add(name="denoised", dtype="float32")([noisy, correction])
    return keras.Model(noisy, denoised, name="drunet")


def build_model(name: str, config: Train, input_size: int | None = None) -> keras.Model:
    """Build the named model (an architecture or a params.train.variants entry)."""
    spec = config.spec(name)
    if spec.architecture == "paper_cae":
        return paper_cae(input_size=input_size)
    if spec.architecture == "dense_ae":
        return dense_ae(
            config.dense_patch,
            config.dense_stride,
            config.dense_hidden,
            config.dense_code,
            input_size=input_size,
        )
    if spec.architecture == "dncnn" and spec.dncnn is not None:
        return dncnn(
            spec.dncnn.depth, spec.dncnn.width, spec.dncnn.batch_norm, input_size=input_size
        )
    if spec.architecture == "ffdnet" and spec.ffdnet is not None:
        settings = spec.ffdnet
        return ffdnet(
            settings.depth,
            settings.width,
            settings.batch_norm,
            settings.noise_map,
            input_size=input_size,
        )
    if spec.architecture == "drunet" and spec.drunet is not None:
        return drunet(
            tuple(spec.drunet.widths), spec.drunet.blocks_per_level, input_size=input_size
        )
    raise ValueError(f"unknown model {name!r}")


# The layers the builders name and keep float32 under any global dtype policy: the output and
# what feeds it directly, and the noise-level estimate (plus dense_ae's last Dense, decode_2).
FLOAT32_LAYERS = frozenset({"denoised", "noise", "correction", "pack", "unpack", "noise_level"})


def _keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builders make this layer float32 whatever the policy. paper_cae's decode_2
    is a Conv2DTranspose that follows the policy; dense_ae's is its float32 output Dense."""
    if isinstance(layer, layers.Dense):
        return layer.name == "decode_2"
    return layer.name in FLOAT32_LAYERS


def at_precision(model: keras.Model, precision: str) -> keras.Model:
    """The model with its weights, computing in `precision` (config.APPLY_PRECISIONS).

    bfloat16 is Keras's mixed_bfloat16 policy, as mixed-precision training builds the model:
    float32 weights, bfloat16 arithmetic, the FLOAT32_LAYERS and so the output in float32. On a
    CPU with native bfloat16 (AVX512_BF16, AMX) or a GPU it is faster, and the output differs
    by about bfloat16's resolution (docs/benchmarks.md, session 9). Returns `model` itself when
    every layer already computes as asked; otherwise a clone with the same weights.
    """
    policy = "float32" if precision == "float32" else f"mixed_{precision}"

    def wanted(layer: keras.layers.Layer) -> str:
        return "float32" if _keeps_float32(layer) else policy

    computing = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if all(layer.dtype_policy.name == wanted(layer) for layer in computing):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": wanted(layer)})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="denoise", name="psnr")
def psnr(clean: Any, denoised: Any) -> Any:
    """Mean PSNR in dB over the batch, data range 1.0; a Keras metric function."""
    squared = ops.square(ops.cast(clean, "float32") - ops.cast(denoised, "float32"))
    mse = ops.mean(squared, axis=(1, 2, 3))
    return ops.mean(-10.0 * ops.log(ops.maximum(mse, 1e-12)) / ops.log(10.0))


def count_parameters(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
