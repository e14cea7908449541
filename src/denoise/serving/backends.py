"""What runs a model for `denoise apply` and the Python API: Keras, or OpenVINO from a kept copy.

OpenVINO (the `fast` extra) runs a converted copy of the .keras file: made once, with Keras
and TensorFlow, into params.apply.converted_dir under the file's SHA-256, and served from
there without TensorFlow. It computes in bfloat16 where the CPU has native bfloat16
(AVX512_BF16 or AMX), else float32: about 2 to 4 times as fast as Keras on such a CPU, at a
PSNR cost under 0.05 dB (docs/apply-speed.md). Evaluate and register keep Keras, so promotion
never depends on the machine's CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.errors import ModelError

KERAS, OPENVINO = "keras", "openvino"
NOT_INSTALLED = (
    "the openvino backend is not installed: pip install 'denoise[fast]', or choose the keras "
    "backend (--backend keras)"
)
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_CONVERTED_XML, _CONVERTED_CARD = "model.xml", "card.json"


class ConversionError(ModelError):
    """The OpenVINO copy of a model could not be made (backend auto then runs Keras)."""


def cpu_flags() -> frozenset[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(choice: str) -> str:
    """keras or openvino for params.apply.backend: auto is openvino where it is installed and
    Keras runs on TensorFlow (a GPU worker's KERAS_BACKEND=jax keeps Keras). An openvino that
    is not installed is a ModelError in one line."""
    if choice == "auto":
        on_tensorflow = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
        return OPENVINO if openvino_installed() and on_tensorflow else KERAS
    if choice == OPENVINO and not openvino_installed():
        raise ModelError(NOT_INSTALLED)
    return choice


def converted_folder(setting: str) -> Path:
    """params.apply.converted_dir as a path: ~ expands, and a leading ~/.cache means the XDG
    cache folder, XDG_CACHE_HOME, where that is set."""
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache and (setting == "~/.cache" or setting.startswith("~/.cache/")):
        return Path(cache) / setting.removeprefix("~/.cache").lstrip("/")
    return Path(setting).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_copy(keras_file: Path, converted_dir: Path) -> Path:
    """The folder of keras_file's OpenVINO copy (model.xml, model.bin, card.json), made now
    with Keras if there is none yet. A copy appears whole or not at all (made in a staging
    folder and renamed), so two processes converting at once both end with a good one."""
    folder = converted_dir / file_sha256(keras_file)
    if (folder / _CONVERTED_CARD).is_file():
        return folder
    # lazy: Keras and TensorFlow load only to convert
    from denoise.models.build import load_model, required_multiple

    try:
        model = load_model(keras_file)
    except (OSError, ValueError) as error:
        raise ModelError(f"{keras_file}: not a Keras model ({error})".split("\n")[0]) from None
    staging = None
    try:
        converted_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=converted_dir, prefix=".converting-"))
        model.export(str(staging / _CONVERTED_XML), format="openvino", verbose=False)
        card = {
            "source": keras_file.name,
            "required_multiple": required_multiple(model),
            "input_channels": int(model.input_shape[-1]),
        }
        (staging / _CONVERTED_CARD).write_text(json.dumps(card, indent=1) + "\n")
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: keep its copy
            if not (folder / _CONVERTED_CARD).is_file():
                raise
    except (OSError, RuntimeError, ValueError) as error:  # a full disk, a layer OpenVINO lacks
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"cannot make the OpenVINO copy of {keras_file.name} in {converted_dir}: {reason}"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


@dataclasses.dataclass
class OpenVINOModel:
    """A compiled OpenVINO copy of a denoiser: a tiling Predictor, float32 (N, H, W, C) in
    [0, 1] -> float32 (N, H, W, 3); input_shape and required_multiple as the Keras model's."""

    compiled: Any
    required_multiple: int
    input_shape: tuple[None, None, None, int]
    precision: str  # what it computes in: bfloat16 or float32

    @property
    def description(self) -> str:
        return f"OpenVINO, {self.precision}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(np.ascontiguousarray(batch))[0], dtype=np.float32)


def load_openvino(keras_file: Path, converted_dir: Path) -> OpenVINOModel:
    """keras_file's OpenVINO copy (converted_copy), compiled for this CPU: bfloat16 where it
    has native bfloat16, else float32, tuned for the latency of one call."""
    folder = converted_copy(keras_file, converted_dir)
    import openvino

    card = json.loads((folder / _CONVERTED_CARD).read_text())
    core = openvino.Core()
    flags = cpu_flags()
    if flags:
        bfloat16 = bool(flags & BFLOAT16_FLAGS)
    else:  # no /proc/cpuinfo: OpenVINO's own view of the CPU
        bfloat16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    config = {"INFERENCE_PRECISION_HINT": "bf16" if bfloat16 else "f32"}
    config["PERFORMANCE_HINT"] = "LATENCY"
    compiled = core.compile_model(str(folder / _CONVERTED_XML), "CPU", config)
    return OpenVINOModel(
        compiled,
        int(card["required_multiple"]),
        (None, None, None, int(card["input_channels"])),
        "bfloat16" if bfloat16 else "float32",
    )


def describe(model: Any) -> str:
    """What runs a loaded model, for the output: "OpenVINO, bfloat16", "Keras (tensorflow),
    float32", or "MLflow pyfunc"."""
    if isinstance(model, OpenVINOModel):
        return model.description
    if hasattr(model, "layers"):
        import keras

        policy = getattr(model, "dtype_policy", None)
        compute = getattr(policy, "compute_dtype", "float32")
        return f"Keras ({keras.backend.backend()}), {compute}"
    return "MLflow pyfunc"
