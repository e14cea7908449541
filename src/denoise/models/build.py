"""Model builders, one function per architecture (Keras 3 Functional API, keras.ops only).

Every model maps noisy float32 (N, H, W, 3) RGB to denoised (N, H, W, 3) and is fully
convolutional, so it trains on patches and denoises frames of other sizes. Output layers are
float32 whatever the global dtype policy, so mixed-precision training keeps a float32 output.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
from keras import ops

from denoise.core.architectures import ARCHITECTURES
from denoise.core.errors import ModelError
from denoise.core.train_config import Train


def builder_module(architecture: str) -> ModuleType:
    """The module of the architecture's builder (its row's "module:function"), imported."""
    return importlib.import_module(ARCHITECTURES[architecture].builder.split(":")[0])


def builder(architecture: str) -> Callable[..., keras.Model]:
    """The build function the architecture's row names ("module:function")."""
    function = ARCHITECTURES[architecture].builder.split(":")[1]
    built: Callable[..., keras.Model] = getattr(builder_module(architecture), function)
    return built


def build_model(name: str, config: Train, input_size: int | None = None) -> keras.Model:
    """Build the named model (an architecture or a params.train.variants entry)."""
    spec = config.spec(name)
    model: keras.Model = builder(spec.architecture)(config, spec, input_size)
    return model


def load_model(path: str | Path) -> keras.Model:
    """A saved .keras model, uncompiled. Every row's builder module is imported first, which
    registers the custom layers it defines."""
    for architecture in ARCHITECTURES:
        builder_module(architecture)
    return keras.models.load_model(path, compile=False)


@keras.saving.register_keras_serializable(package="denoise", name="psnr")
def psnr(clean: Any, denoised: Any) -> Any:
    """Mean PSNR in dB over the batch, data range 1.0; a Keras metric function."""
    squared = ops.square(ops.cast(clean, "float32") - ops.cast(denoised, "float32"))
    mse = ops.mean(squared, axis=(1, 2, 3))
    return ops.mean(-10.0 * ops.log(ops.maximum(mse, 1e-12)) / ops.log(10.0))


def count_parameters(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def required_multiple(model: Any) -> int:
    """Side multiple a model accepts: product of pooling and conv strides, lcm with patch strides.

    4 for paper_cae (two 2x poolings); its stride (4) for dense_ae, whose patch must be a
    multiple of its stride so that any padded size that is a multiple of the stride works;
    1 for dncnn; 2 ** (levels - 1) for drunet (one stride-2 conv per level down), and for
    fastdvdnet's blocks.
    """
    from keras import layers

    from denoise.models.dense_ae import ExtractPatches

    multiple = 1
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):  # a block of fastdvdnet's, on the input's grid
            multiple = math.lcm(multiple, required_multiple(layer))
        elif isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D | layers.Conv2D):
            multiple *= int(layer.strides[0])
        elif isinstance(layer, ExtractPatches):
            if layer.patch % layer.stride:
                raise ValueError(
                    f"dense patch {layer.patch} is not a multiple of its stride {layer.stride}: "
                    "tiled inference cannot pad such a model's input"
                )
            multiple = math.lcm(multiple, layer.stride)
    return multiple


def _weight_layout(model: keras.Model) -> list[tuple[str, list[tuple[int, ...]]]]:
    """Each layer that holds weights: its name and its weights' shapes, in order."""
    return [
        (layer.name, [tuple(weight.shape) for weight in layer.weights])
        for layer in model.layers
        if layer.weights
    ]


def start_from(model: keras.Model, source: keras.Model, name: str, source_label: str) -> None:
    """Set `model`'s weights to `source`'s (a warm start), which must match: the same layer
    names and weight shapes. Otherwise ModelError names both architectures."""
    if _weight_layout(model) != _weight_layout(source):
        raise ModelError(
            f"{name}: init_from {source_label} is a {source.name} of "
            f"{count_parameters(source):,} parameters, {name} a {model.name} of "
            f"{count_parameters(model):,}: their layer names or weight shapes differ"
        )
    model.set_weights(source.get_weights())


def multiply_adds_per_pixel(model: keras.Model) -> float:
    """Multiply-adds of the model's convolutions per input pixel (per output frame's pixel for
    a temporal model), counting every call of a nested block (fastdvdnet's shared triplet
    block runs window - 2 times). Fully convolutional models only: other layers (dense_ae's
    Dense) are not counted. What "similar compute" compares (docs/benchmarks.md)."""
    from keras import layers

    scale: dict[int, float] = {}  # id of a symbolic tensor -> its pixels per input pixel
    for tensor in model.inputs:
        scale[id(tensor)] = 1.0
    total = 0.0
    nodes = model._nodes_by_depth  # Keras's functional graph: depth -> nodes, inputs deepest
    for depth in sorted(nodes, reverse=True):
        for node in nodes[depth]:
            layer, inputs = node.operation, node.input_tensors
            if not inputs:
                continue
            here = scale[id(inputs[0])]
            after = here
            if isinstance(layer, keras.Model):
                total += here * multiply_adds_per_pixel(layer)
            elif isinstance(layer, layers.Conv2D | layers.Conv2DTranspose):
                kernel = layer.kernel.shape  # (kh, kw, in, out) or (kh, kw, out, in)
                work = float(np.prod(kernel))
                stride = float(np.prod(layer.strides))
                if isinstance(layer, layers.Conv2DTranspose):
                    total += here * work
                    after = here * stride
                else:
                    after = here / stride
                    total += after * work
            for tensor in node.output_tensors:
                scale[id(tensor)] = after
    return total
