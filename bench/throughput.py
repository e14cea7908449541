"""Measure training and inference throughput on this machine, every number in one run.

Usage:  .venv/bin/python bench/throughput.py [--steps 40] [--warmup 5] [--repeats 3]
                                             [--frames 4] [--budget-s 10] [--no-inference]
                                             [--out out.json]

(a) Training: images/s of model.fit on the pipeline's PatchStream, with the noise drawn in the
    training step (as the training loop fits it), against model.fit on in-memory numpy arrays of
    noisy and clean patches (the same patches, noise drawn beforehand, the paper's way): same model,
    batch size and number of steps, the first --warmup steps excluded from the timing. A third
    arm fits the in-memory clean patches with the noise drawn in the step, as the stream does:
    stream / that isolates the stream's own cost from the noise draw's. The three take turns
    --repeats times and the median of each is reported.
(b) Inference: milliseconds per frame at 200x200 and 512x512 for the classical baselines
    (BM3D on one frame only, it takes seconds) and every architecture at its params.yaml
    hyperparameters (untrained weights: the time does not depend on them). Networks are called
    directly on a batch of --frames whole frames (the call `denoise apply` makes per batch of
    tiles), after one warm-up call on a 64x64 crop; the median over --repeats is reported, but
    a method stops repeating once it has spent --budget-s seconds (the slow ones run once).

Prints the machine and the load average (the machine may be shared), then markdown tables;
--out also writes everything as JSON.
"""

from __future__ import annotations

from denoise.core import runtime

runtime.configure()  # before keras loads: TensorFlow's CPU options, as `denoise` sets them

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import pandas as pd

from denoise.core.architectures import ARCHITECTURES
from denoise.core.config import Params, load_params
from denoise.core.errors import DataError
from denoise.core.markdown import markdown_table
from denoise.core.schema import BASELINE_METHODS, PRECISIONS
from denoise.data.extract import load_manifest
from denoise.evaluation.baselines import baseline
from denoise.models.build import build_model, count_parameters, required_multiple
from denoise.models.build import psnr as psnr_metric  # the Keras metric (val_psnr)
from denoise.models.precision import dtype_policy, resolve_precision
from denoise.serving.tiling import keras_predictor
from denoise.training.loop import make_optimizer
from denoise.training.noise import TrainingNoise, with_training_noise
from denoise.training.settings import with_active
from denoise.training.stream import PatchStream

SIZES = (200, 512)
SIGMA = 25.0


def machine() -> dict[str, Any]:
    """CPU model, core count, OS and the deep-learning stack."""
    import tensorflow as tf
    from report import cpu_model  # bench/report.py, beside this script

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (runnable processes; compare with the core count)."""
    return [round(value, 2) for value in os.getloadavg()]


class _StepTimes(keras.callbacks.Callback):
    """perf_counter at the end of every training step."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.ends.append(time.perf_counter())


def _training_frames(params: Params, scratch: Path) -> tuple[Path, pd.DataFrame, str]:
    """The pipeline's train frames, or synthetic ones in scratch when extract has not run."""
    frames_dir = Path(params.paths.frames)
    try:
        manifest = load_manifest(frames_dir)
        rows = manifest[manifest["split"] == "train"]
        if not rows.empty:
            return frames_dir, rows, f"{len(rows)} train frames from {frames_dir}"
    except DataError:
        pass
    size = params.extract.size
    rng = np.random.default_rng(params.seed)
    frames = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    np.save(scratch / "synthetic.npy", frames)
    rows = pd.DataFrame({"shard": ["synthetic.npy"] * len(frames), "offset": range(len(frames))})
    return scratch, rows, f"{len(frames)} synthetic {size}x{size} frames (no extracted frames)"


def _fit_rate(
    name: str,
    params: Params,
    data: Any,
    batch_size: int,
    steps: int,
    warmup: int,
    in_step_noise: bool,
) -> float:
    """Images per second of model.fit over `steps` steps after `warmup` untimed ones.

    data: a PatchStream, or in-memory (inputs, targets); in_step_noise: fit with a
    TrainingNoise layer first (the inputs are then clean).
    """
    keras.utils.set_random_seed(params.seed)
    with dtype_policy(resolve_precision(params.train.active.precision)):  # as train.py builds
        model = build_model(name, params.train)
        if in_step_noise:
            model = with_training_noise(model, params.noise.train, params.seed)
    model.compile(optimizer=make_optimizer(params.train.active), loss="mse", metrics=[psnr_metric])
    timer = _StepTimes()
    if isinstance(data, PatchStream):
        model.fit(
            data,
            epochs=1,
            steps_per_epoch=warmup + steps,
            shuffle=False,
            callbacks=[timer],
            verbose=0,
        )
    else:
        inputs, targets = data
        model.fit(
            inputs,
            targets,
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            callbacks=[timer],
            verbose=0,
        )
    if len(timer.ends) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} steps, timed {len(timer.ends)}")
    return steps * batch_size / (timer.ends[-1] - timer.ends[warmup - 1])


def measure_training(
    params: Params, names: list[str], steps: int, warmup: int, repeats: int
) -> tuple[list[dict[str, Any]], str]:
    """PatchStream against in-memory arrays of the same patches, per model."""
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        frames_dir, rows, source = _training_frames(params, Path(scratch))
        stream = PatchStream(frames_dir, rows, params)
        clean = np.concatenate([stream[index][1] for index in range(warmup + steps)])
        add_noise = TrainingNoise(params.noise.train, params.seed)
        noisy = keras.ops.convert_to_numpy(add_noise(clean, training=True))
        batch = stream.batch_size
        arms = {  # kind: (data, in-step noise)
            "stream": (stream, True),
            "memory": ((noisy, clean), False),
            "memory_noise": ((clean, clean), True),
        }
        kinds = list(arms)
        for name in names:
            rates: dict[str, list[float]] = {kind: [] for kind in arms}
            for repeat in range(repeats):
                # Rotate which goes first, so a drift in machine load hits all alike.
                first = repeat % len(kinds)
                for kind in kinds[first:] + kinds[:first]:
                    data, in_step_noise = arms[kind]
                    stream.first_batch = 0
                    rates[kind].append(
                        _fit_rate(name, params, data, batch, steps, warmup, in_step_noise)
                    )
            median = {kind: statistics.median(runs) for kind, runs in rates.items()}
            results.append(
                {
                    "model": name,
                    "patch": stream.patch,
                    "batch_size": batch,
                    "timed_steps": steps,
                    "warmup_steps": warmup,
                    "repeats": repeats,
                    "stream_images_per_s": median["stream"],
                    "memory_images_per_s": median["memory"],
                    "memory_noise_images_per_s": median["memory_noise"],
                    "stream_over_memory": median["stream"] / median["memory"],
                    "stream_over_memory_noise": median["stream"] / median["memory_noise"],
                    "stream_runs": rates["stream"],
                    "memory_runs": rates["memory"],
                    "memory_noise_runs": rates["memory_noise"],
                    "load_average": load_average(),
                }
            )
            print(
                f"  train {name}: stream {median['stream']:.1f} img/s, memory "
                f"{median['memory']:.1f} img/s ({100 * median['stream'] / median['memory']:.0f}%)"
                f", memory + in-step noise {median['memory_noise']:.1f} img/s "
                f"({100 * median['stream'] / median['memory_noise']:.0f}%), "
                f"load {load_average()}",
                flush=True,
            )
    return results, source


def noisy_frames(size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut, area-resized to size x size, and `count` noisy copies.

    Returns clean float32 (size, size, 3) in [0, 1] and noisy float32 (count, size, size, 3),
    AWGN sigma 25 unclipped.
    """
    from skimage import data

    clean = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    clean = clean.astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, SIGMA / 255.0, (count, *clean.shape)).astype(np.float32)
    return clean, noisy


def _median_ms(
    denoise: Any, noisy: np.ndarray, repeats: int, budget_s: float
) -> tuple[float, list[float]]:
    """Median over repeats of the ms per frame of denoise(noisy); noisy (N, H, W, 3).

    Stops repeating once budget_s seconds are spent (the slow methods run once).
    """
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (not times or spent < budget_s):
        start = time.perf_counter()
        denoise(noisy)
        seconds = time.perf_counter() - start
        spent += seconds
        times.append(1000.0 * seconds / len(noisy))
    return statistics.median(times), times


def model_names(params: Params) -> list[str]:
    """Every architecture, then the variants whose layer sizes differ (noise-only variants
    cost the same as their architecture)."""
    names, shapes = [], set()
    for name in [*ARCHITECTURES, *params.train.variants]:
        shape = repr(dataclasses.replace(params.train.spec(name), noise=None))
        if shape not in shapes:
            names.append(name)
            shapes.add(shape)
    return names


def measure_inference(
    params: Params, frames: int, repeats: int, budget_s: float, sizes: tuple[int, ...] = SIZES
) -> list[dict[str, Any]]:
    """ms per frame of every baseline, architecture and variant of other sizes, at each size."""
    results = []
    models = {name: build_model(name, params.train) for name in model_names(params)}
    for size in sizes:
        _, noisy = noisy_frames(size, frames, params.seed)
        for method in BASELINE_METHODS:
            denoise = baseline(method, params.evaluate)
            denoise(noisy[0, :32, :32], SIGMA)  # warm-up: imports, caches
            count = 1 if method == "bm3d" else frames
            runs = 1 if method == "bm3d" else repeats

            median, times = _median_ms(
                lambda batch, denoise=denoise: [denoise(image, SIGMA) for image in batch],
                noisy[:count],
                runs,
                budget_s,
            )
            results.append(
                {
                    "method": method,
                    "kind": "classical",
                    "size": size,
                    "frames": count,
                    "repeats": len(times),
                    "ms_per_frame": median,
                    "runs_ms_per_frame": times,
                    "load_average": load_average(),
                }
            )
            print(f"  {size}px {method}: {median:.1f} ms/frame, load {load_average()}", flush=True)
        for name, model in models.items():
            multiple = required_multiple(model)
            if size % multiple:
                raise ValueError(f"{size} is not a multiple of {multiple}, which {name} needs")
            predict = keras_predictor(model)
            predict(noisy[:1, :64, :64])  # warm-up: the first call sets up the kernels

            median, times = _median_ms(predict, noisy, repeats, budget_s)
            results.append(
                {
                    "method": name,
                    "kind": "network",
                    "parameters": count_parameters(model),
                    "size": size,
                    "frames": frames,
                    "repeats": len(times),
                    "ms_per_frame": median,
                    "runs_ms_per_frame": times,
                    "load_average": load_average(),
                }
            )
            print(f"  {size}px {name}: {median:.1f} ms/frame, load {load_average()}", flush=True)
    return results


def training_table(results: list[dict[str, Any]]) -> str:
    header = ["model", "patch", "batch", "timed steps", "PatchStream img/s", "in-memory img/s"]
    header += ["ratio", "in-memory, in-step noise img/s", "ratio"]
    rows = [
        [
            row["model"],
            row["patch"],
            row["batch_size"],
            row["timed_steps"],
            f"{row['stream_images_per_s']:.1f}",
            f"{row['memory_images_per_s']:.1f}",
            f"{100 * row['stream_over_memory']:.0f}%",
            f"{row['memory_noise_images_per_s']:.1f}",
            f"{100 * row['stream_over_memory_noise']:.0f}%",
        ]
        for row in results
    ]
    return markdown_table(header, rows)


def inference_table(results: list[dict[str, Any]], sizes: tuple[int, ...] = SIZES) -> str:
    methods = list(dict.fromkeys(row["method"] for row in results))
    header = ["method", "parameters", *[f"ms/frame {size}x{size}" for size in sizes]]
    table = []
    for method in methods:
        rows = {row["size"]: row for row in results if row["method"] == method}
        first = next(iter(rows.values()))
        parameters = f"{first['parameters']:,}" if "parameters" in first else "-"
        cells = []
        for size in sizes:
            row = rows.get(size)
            if row is None:
                cells.append("-")
                continue
            note = f" (n={row['frames']})" if row["frames"] == 1 else ""
            cells.append(f"{row['ms_per_frame']:.1f}{note}")
        table.append([method, parameters, *cells])
    return markdown_table(header, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--frames", type=int, default=4, help="frames per inference call")
    parser.add_argument(
        "--budget-s", type=float, default=10.0, help="no more repeats once a method took this long"
    )
    parser.add_argument(
        "--train-models", default="paper_cae", help="comma-separated models for part (a)"
    )
    parser.add_argument("--no-inference", action="store_true", help="part (a) only")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="part (a): train in this precision [default: the active profile's]",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1 or args.frames < 1:
        parser.error("--steps, --warmup, --repeats and --frames must be >= 1")
    train_models = [name.strip() for name in args.train_models.split(",") if name.strip()]
    params = load_params(args.params)
    if args.precision is not None:
        params = dataclasses.replace(
            params, train=with_active(params.train, precision=args.precision)
        )
    known = [*ARCHITECTURES, *params.train.variants]
    for name in train_models:
        if name not in known:
            parser.error(f"unknown model {name!r} (known: {', '.join(known)})")
    started = time.perf_counter()
    info = machine()
    load_start = load_average()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['system']}, Python "
        f"{info['python']}, TensorFlow {info['tensorflow']}, Keras {info['keras']} "
        f"({info['backend']} backend), {info['gpus']} GPUs; load average {load_start}",
        flush=True,
    )
    training, source = measure_training(params, train_models, args.steps, args.warmup, args.repeats)
    inference = (
        []
        if args.no_inference
        else measure_inference(params, args.frames, args.repeats, args.budget_s)
    )
    load_end = load_average()
    seconds = time.perf_counter() - started
    print(
        f"\nTraining input: {source}; AWGN from noise.train ({params.noise.train.kind}); "
        f"precision {resolve_precision(params.train.active.precision)}.\n"
    )
    print(training_table(training))
    if inference:
        print(
            f"\nInference: astronaut, AWGN sigma {SIGMA:g}; networks on {args.frames} whole "
            "frames per call, untrained weights.\n"
        )
        print(inference_table(inference))
    print(f"\nLoad average at start {load_start}, at end {load_end}; took {seconds:.0f} s.")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "machine": info,
                    "load_average": {"start": load_start, "end": load_end},
                    "seconds": seconds,
                    "settings": vars(args) | {"params": str(args.params), "out": str(args.out)},
                    "training_input": source,
                    "training": training,
                    "inference": inference,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
