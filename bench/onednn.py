"""TensorFlow with and without oneDNN's kernels: training and inference time, same run.

Usage:  .venv/bin/python bench/onednn.py [--models paper_cae dncnn_light ffdnet dncnn]
            [--repeats 2] [--steps 6] [--batch 32] [--patch 64] [--size 256] [--out out.json]

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, so each measurement is a child process
with the variable at 0 or 1; the two settings alternate --repeats times and the median is
reported. Per model (params.yaml's hyperparameters, fixed seed, float32): ms per training step
(train_on_batch, batch --batch of --patch x --patch, after 2 untimed steps) and ms per frame
of inference on 2 frames of --size x --size (after a warm-up call). Each child also saves its
models' outputs on those frames after the same 2 + --steps training steps, and the table
reports the largest difference between the two settings (float round-off, accumulated).
Prints the machine and load, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from denoise.core.atomic import write_json
from denoise.core.markdown import markdown_table

SETTINGS = ("0", "1")


def child(args: argparse.Namespace) -> None:
    """Measure every model under this process's TF_ENABLE_ONEDNN_OPTS; print JSON."""
    import keras

    from denoise.core.config import load_params
    from denoise.models.build import build_model

    params = load_params(args.params)
    rng = np.random.default_rng(0)
    patches = rng.random((args.batch, args.patch, args.patch, 3), dtype=np.float32)
    frames = rng.random((2, args.size, args.size, 3), dtype=np.float32)
    results = {}
    for name in args.models:
        keras.utils.set_random_seed(0)
        model = build_model(name, params.train)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        for _ in range(2):
            model.train_on_batch(patches, patches)
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(patches, patches)
        step_ms = 1000 * (time.perf_counter() - start) / args.steps
        model(frames[:, :64, :64], training=False)
        start = time.perf_counter()
        output = np.asarray(model(frames, training=False))
        frame_ms = 1000 * (time.perf_counter() - start) / len(frames)
        np.save(Path(args.child_out) / f"{name}.npy", output)
        results[name] = {"train_ms_per_step": step_ms, "infer_ms_per_frame": frame_ms}
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--models", nargs="+", default=["paper_cae", "dncnn_light", "ffdnet", "dncnn"]
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_out:
        child(args)
        return

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average at start "
        f"{os.getloadavg()[0]:.2f}"
    )
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for setting in SETTINGS:
                out = Path(scratch) / f"{setting}-{repeat}"
                out.mkdir()
                command = [sys.executable, __file__, "--child-out", str(out)]
                for key in ("params", "steps", "batch", "patch", "size"):
                    command += [f"--{key}", str(getattr(args, key))]
                command += ["--models", *args.models]
                env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
                result = subprocess.run(
                    command, capture_output=True, text=True, env=env, check=True, timeout=3600
                )
                runs[setting].append(json.loads(result.stdout.strip().splitlines()[-1]))
        difference = {
            name: float(
                np.abs(
                    np.load(Path(scratch) / "0-0" / f"{name}.npy")
                    - np.load(Path(scratch) / "1-0" / f"{name}.npy")
                ).max()
            )
            for name in args.models
        }
    print(f"Load average at end {os.getloadavg()[0]:.2f}\n")
    header = [
        "model",
        "train ms/step, oneDNN off",
        "on",
        "speed-up",
        f"infer ms/frame {args.size}x{args.size}, off",
        "on",
        "speed-up",
        "max output difference",
    ]
    table = {}
    for name in args.models:
        row = {
            f"{key}_{label}": statistics.median(run[name][key] for run in runs[setting])
            for key in ("train_ms_per_step", "infer_ms_per_frame")
            for setting, label in zip(SETTINGS, ("off", "on"), strict=True)
        }
        row["max_output_difference"] = difference[name]
        table[name] = row
    rows = [
        [
            name,
            f"{row['train_ms_per_step_off']:.0f}",
            f"{row['train_ms_per_step_on']:.0f}",
            f"{row['train_ms_per_step_off'] / row['train_ms_per_step_on']:.2f}x",
            f"{row['infer_ms_per_frame_off']:.0f}",
            f"{row['infer_ms_per_frame_on']:.0f}",
            f"{row['infer_ms_per_frame_off'] / row['infer_ms_per_frame_on']:.2f}x",
            f"{row['max_output_difference']:.1e}",
        ]
        for name, row in table.items()
    ]
    print(markdown_table(header, rows))
    if args.out:
        write_json(
            args.out, {"args": vars(args) | {"out": str(args.out)}, "models": table, "runs": runs}
        )


if __name__ == "__main__":
    main()
