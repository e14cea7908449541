"""Settings of the numerical libraries that must be in place before TensorFlow loads.

TensorFlow reads them once, at import, so every entry point (the `denoise` command, the test
suite, the benchmarks) calls configure() before anything imports keras. A value the user has
already set in the environment wins.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from denoise.core.errors import ModelError

# The packages Keras 3 runs on, in the order a model server falls back to them.
KERAS_BACKENDS = ("tensorflow", "jax", "torch")

DEFAULTS = {
    # oneDNN's kernels. TensorFlow 2.21 turns them on by itself only on some CPUs and left
    # them off on the AVX-512 Xeon of docs/benchmarks.md, where they halve a training step of
    # ffdnet or dncnn (bench/onednn.py), with the same results up to float round-off.
    # Deterministic ops (the train stage's enable_op_determinism) keep working.
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def configure() -> None:
    """Put DEFAULTS in the environment where it has no value yet."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)


def choose_keras_backend(trained_on: str | None) -> str | None:
    """Before Keras loads, pick the backend a saved model runs on here; return it.

    KERAS_BACKEND in the environment wins (None is returned: the environment decides, as it
    does once Keras is loaded). Otherwise the backend the model was trained on, if this
    environment has it, else the first of KERAS_BACKENDS it has: a .keras file holds weights,
    not backend code, so any backend runs it.
    """
    if os.environ.get("KERAS_BACKEND") or "keras" in sys.modules:
        return None
    for name in (trained_on, *KERAS_BACKENDS):
        if name in KERAS_BACKENDS and importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            return name
    raise ModelError(
        f"no Keras backend is installed ({', '.join(KERAS_BACKENDS)}): "
        "pip install tensorflow-cpu or jax"
    )
