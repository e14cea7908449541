"""Settings of the numerical libraries that must be in place before TensorFlow loads.

TensorFlow reads them once, at import, so every entry point (the `denoise` command, the test
suite, the benchmarks) calls configure() before anything imports keras. A value the user has
already set in the environment wins.
"""

from __future__ import annotations

import os

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
