"""Data-parallel training on one node: every batch split across all the node's accelerators.

On the JAX backend with more than one device, keras.distribution.DataParallel replicates the
model's variables on every device and shards each batch along its first axis; XLA averages the
gradients across devices. With one device nothing changes. The TensorFlow backend trains on one
device: Keras's TensorFlow distribution API is a prototype, so with more than one GPU visible
training stops and asks for KERAS_BACKEND=jax. Training across nodes is out of scope
(docs/orchestration.md): past one node, a team runs one job per model and per sweep point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras

from denoise.core.errors import TrainingError


def _tensorflow_gpus() -> int:
    import tensorflow as tf  # the backend in use: already imported

    return len(tf.config.list_physical_devices("GPU"))


@contextlib.contextmanager
def data_parallel(batch_size: int, print_fn: Callable[[str], Any] = print) -> Iterator[int]:
    """Build and fit models in the block across every device; yields how many there are.

    Raises TrainingError when batch_size does not split evenly, or on the TensorFlow backend
    with more than one GPU.
    """
    backend = keras.backend.backend()
    devices = keras.distribution.list_devices() if backend == "jax" else []
    if backend == "tensorflow" and _tensorflow_gpus() > 1:
        raise TrainingError(
            f"{_tensorflow_gpus()} GPUs visible: training on more than one runs on the JAX "
            "backend (KERAS_BACKEND=jax, pip install -e '.[gpu]'); Keras's TensorFlow "
            "distribution API is a prototype"
        )
    if len(devices) <= 1:
        yield 1
        return
    if batch_size % len(devices):
        raise TrainingError(
            f"batch_size {batch_size} does not split across {len(devices)} devices; make it a "
            f"multiple of {len(devices)}"
        )
    print_fn(
        f"data-parallel on {len(devices)} devices ({', '.join(devices)}): "
        f"{batch_size // len(devices)} patches each per step"
    )
    with keras.distribution.DataParallel(devices=devices).scope():
        yield len(devices)
