"""Precision: dtype policies for training and inference, and what the backend runs on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras

from denoise.core.architectures import ARCHITECTURES
from denoise.models.build import builder_module


def has_gpu() -> bool:
    """Whether the Keras backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy for a profile's precision: "auto" is mixed_bfloat16 on a GPU
    (tensor cores) and float32 on a CPU, where bfloat16 arithmetic is emulated and slower."""
    if precision == "auto":
        return "mixed_bfloat16" if has_gpu() else "float32"
    return precision


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under `policy`, then restore the global policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_rule(model: keras.Model) -> Callable[[keras.layers.Layer], bool]:
    """Which layers of `model` (nested ones included) its builder makes float32 under any
    dtype policy: the `keeps_float32(layer)` its builder module defines (a model is named after
    its architecture), else the model's output layers."""
    rule: Callable[[keras.layers.Layer], bool] | None = None
    if model.name in ARCHITECTURES:
        rule = getattr(builder_module(model.name), "keeps_float32", None)
    if rule is not None:
        return rule
    outputs = set(model.output_names)
    return lambda layer: layer.name in outputs


def computing_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer that computes, those of nested models (fastdvdnet's blocks) included."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += computing_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            found.append(layer)
    return found


def at_precision(model: keras.Model, precision: str) -> keras.Model:
    """The model with its weights, computing in `precision` (config.APPLY_PRECISIONS).

    bfloat16 is Keras's mixed_bfloat16 policy, as mixed-precision training builds the model:
    float32 weights, bfloat16 arithmetic, the layers its builder keeps float32 (float32_rule)
    and so the output in float32. On a CPU with native bfloat16 (AVX512_BF16, AMX) or a GPU it
    is faster, and the output differs by about bfloat16's resolution (docs/benchmarks.md).
    Returns `model` itself when every layer already computes as asked; otherwise a clone with
    the same weights.
    """
    policy = "float32" if precision == "float32" else f"mixed_{precision}"
    keeps_float32 = float32_rule(model)

    def wanted(layer: keras.layers.Layer) -> str:
        return "float32" if keeps_float32(layer) else policy

    if all(layer.dtype_policy.name == wanted(layer) for layer in computing_layers(model)):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": wanted(layer)})

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
