"""Run the train stage's training on a GPU host and report training images per second.

Usage (from the repository root; the GPU host needs only Keras 3 with a backend, numpy, pandas
with pyarrow, OpenCV, scikit-image, PyYAML and rich, not TensorFlow, MLflow, DVC or Prefect):

    KERAS_BACKEND=jax PYTHONPATH=src python3 bench/gpu_train.py --profile full \
        [--models dncnn dncnn_s25] [--epochs N] [--steps-per-epoch N] [--batch-size N] \
        [--patch-size N] [--prepare] [--out bench-out/gpu-train]

It trains exactly as `denoise train` does (the same PatchStream, train_model, checkpoints,
resume, schedule and precision of the chosen profile in params.yaml), minus the MLflow logging.
--prepare first writes data/frames and data/evalsets from data/raw (extract and noise, without
tracking) when they are missing, so only the raw videos need to travel to the host.
Writes OUT/models/<name>.keras and .json (as the train stage does) and OUT/gpu_train.json, and
prints a markdown table: per model, the median training images/s over the epochs after the
first (which includes compilation), the best validation PSNR and the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import keras

from denoise.core.atomic import write_json
from denoise.core.config import Params, load_params
from denoise.core.errors import DenoiseError
from denoise.core.markdown import markdown_table
from denoise.core.noise import level_name
from denoise.data.evalsets import INDEX_NAME, load_set, write_evaluation_sets
from denoise.data.extract import MANIFEST_NAME, extract_frames, load_manifest
from denoise.training.loop import summarise, train_model
from denoise.training.settings import model_budget, with_active
from denoise.training.stream import PatchStream


class TrainingClock(keras.callbacks.Callback):
    """Seconds each epoch spent in its training steps (up to validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def device() -> str:
    """The accelerator Keras runs on, in words."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(sorted({str(item.device_kind) for item in jax.devices()}))
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"{len(gpus)} GPU(s)" if gpus else "CPU"
    return backend


def configure(args: argparse.Namespace) -> Params:
    """params.yaml with the command line's profile and overrides, checkpoints under OUT."""
    params = load_params(args.params)
    train = dataclasses.replace(params.train, profile=args.profile or params.train.profile)
    overrides = {
        key: value
        for key, value in (
            ("models", args.models),
            ("epochs", args.epochs),
            ("steps_per_epoch", args.steps_per_epoch),
            ("batch_size", args.batch_size),
            ("patch_size", args.patch_size),
        )
        if value is not None
    }
    paths = dataclasses.replace(params.paths, checkpoints=str(args.out / "checkpoints"))
    return dataclasses.replace(params, paths=paths, train=with_active(train, **overrides))


def prepare(params: Params) -> None:
    """Write frames and evaluation sets from the raw videos where they are missing."""
    if not (Path(params.paths.frames) / MANIFEST_NAME).is_file():
        print(extract_frames(params), flush=True)
    if not (Path(params.paths.evalsets) / INDEX_NAME).is_file():
        print(write_evaluation_sets(params), flush=True)


def train_one(name: str, params: Params, out: Path) -> dict[str, Any]:
    """Train one model as the train stage does; its summary with the measured rate."""
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    clean, noisy, _ = load_set(Path(params.paths.evalsets), "validation")
    validation = (noisy[level_name("gaussian", params.noise.validation_sigma)], clean)
    stream = PatchStream(frames_dir, manifest[manifest["split"] == "train"], params)
    clock = TrainingClock()
    start = time.perf_counter()
    model, state = train_model(
        name,
        params,
        stream,
        validation,
        Path(params.paths.checkpoints) / name,
        extra_callbacks=[clock],
    )
    wall = time.perf_counter() - start
    images = model_budget(params.train, name).steps_per_epoch * stream.batch_size
    steady = clock.seconds[1:] or clock.seconds
    summary = {
        **summarise(name, params, model, state, stream),
        "wall_seconds": wall,
        "images_per_second": images / statistics.median(steady) if steady else None,
        "epochs_timed": len(steady),
        "includes_compile": len(clock.seconds) < 2,
    }
    (out / "models").mkdir(parents=True, exist_ok=True)
    model.save(out / "models" / f"{name}.keras")
    write_json(out / "models" / f"{name}.json", summary)
    return summary


def report(results: dict[str, dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['device']}, Keras {machine['keras']} ({machine['backend']} backend), "
        f"Python {machine['python']}, {machine['cpus']} CPUs",
        "",
    ]
    header = ["model", "parameters", "precision", "patch", "batch", "epochs", "images/s"]
    rows = []
    for name, summary in results.items():
        rate = summary["images_per_second"]
        rate_text = "-" if rate is None else f"{rate:,.0f}"
        if summary["includes_compile"]:
            rate_text += " (incl. compile)"
        rows.append(
            [
                name,
                f"{summary['parameters']:,}",
                summary["precision"],
                summary["patch_size"],
                summary["batch_size"],
                summary["epochs"],
                rate_text,
                f"{summary['val_psnr']:.2f}",
                f"{summary['wall_seconds']:.0f}",
            ]
        )
    return "\n".join([*lines, markdown_table([*header, "best val PSNR", "wall s"], rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", help="a train.profiles entry (default: train.profile)")
    parser.add_argument("--models", nargs="+", help="models to train (default: the profile's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patch-size", type=int)
    parser.add_argument("--prepare", action="store_true", help="extract and noise if missing")
    parser.add_argument("--out", type=Path, default=Path("bench-out/gpu-train"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    params = configure(args)
    if args.prepare:
        prepare(params)
    machine = {
        "device": device(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    results = {name: train_one(name, params, args.out) for name in params.train.models}
    text = report(results, machine)
    write_json(args.out / "gpu_train.json", {"machine": machine, "models": results})
    print(text)
    return {"machine": machine, "models": results}


if __name__ == "__main__":
    try:
        main()
    except DenoiseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
