"""Settings of the numerical libraries that must be in place before TensorFlow loads.

TensorFlow reads them once, at import, so every entry point (the `denoise` command, the test
suite, the benchmarks) calls configure() before anything imports keras. A value the user has
already set in the environment wins.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import types
from collections.abc import Iterator, Sequence

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


# Modules whose import writes start-up lines from C++ straight to file descriptor 2, before
# any log level applies: TensorFlow 2.21 prints absl's "All log messages before
# absl::InitializeLog()" and oneDNN's notice whatever TF_CPP_MIN_LOG_LEVEL says.
CHATTY_IMPORTS = ("tensorflow",)


def configure() -> None:
    """Put DEFAULTS in the environment where it has no value yet, and import the chatty
    modules quietly."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport(CHATTY_IMPORTS))


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 (C++ included); write it out only when the
    block raises, so a failed import still shows its cause."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        with _stderr_held():
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Imports the named top-level modules with their start-up writes to stderr held back."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


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
