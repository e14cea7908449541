"""How `denoise apply` calls a network: the eager call against the compiled predict step.

Usage:  .venv/bin/python bench/predict_call.py [--models-dir DIR] [--models NAME ...]
                                               [--size 256] [--frames 1 4] [--repeats 7]
                                               [--out out.json]

For each model (the *.keras files of --models-dir, else every params.yaml architecture and
variant of its own size, untrained: the time does not depend on the weights), in one run,
milliseconds per frame of:
- `eager`: model(batch, training=False), the layer-by-layer eager call;
- `predict_on_batch`: tiling.keras_predictor, the compiled call `denoise apply` makes;
- `apply` and `apply x8`: tiling.denoise_batch on whole frames (one tile each), without and with
  the x8 self-ensemble, through keras_predictor.
Each on batches of --frames frames of --size x --size (AWGN sigma 25 on scikit-image's
astronaut), after two untimed calls; the median of --repeats calls. The two calls' outputs are
compared too. Prints the machine, a markdown table and the load average.
"""

from __future__ import annotations

from denoise.core import runtime

runtime.configure()  # before keras loads: TensorFlow's CPU options, as `denoise` sets them

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from report import cpu_model  # bench/report.py, beside this script
from throughput import load_average, model_names, noisy_frames  # bench/throughput.py

from denoise.core.config import load_params
from denoise.core.markdown import markdown_table
from denoise.models.build import build_model, load_model, required_multiple
from denoise.serving.tiling import denoise_batch, keras_predictor


def median_ms(call: Any, batch: np.ndarray, repeats: int) -> float:
    """Median wall-clock ms per frame of call(batch), after two untimed calls."""
    call(batch)
    call(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch)
        times.append(1000.0 * (time.perf_counter() - start) / len(batch))
    return statistics.median(times)


def measure(model: Any, noisy: np.ndarray, repeats: int) -> dict[str, float]:
    """ms per frame of the four calls on one batch, and the largest eager/compiled difference."""
    size = noisy.shape[1]
    predict = keras_predictor(model)
    multiple = required_multiple(model)

    def apply(batch: np.ndarray, ensemble: bool) -> np.ndarray:
        return denoise_batch(model, batch, size + multiple, 0, len(batch), multiple, ensemble)

    def eager(batch: np.ndarray) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)))

    return {
        "eager": median_ms(eager, noisy, repeats),
        "predict_on_batch": median_ms(predict, noisy, repeats),
        "apply": median_ms(lambda batch: apply(batch, False), noisy, repeats),
        "apply_x8": median_ms(lambda batch: apply(batch, True), noisy, max(1, repeats // 3)),
        "max_abs_difference": float(np.abs(eager(noisy) - predict(noisy)).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models-dir", type=Path, default=None, help="trained *.keras files")
    parser.add_argument("--models", nargs="*", default=None, help="only these models")
    parser.add_argument("--size", type=int, default=256, help="frame side, pixels")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 4], help="batch sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.models_dir is not None:
        paths = sorted(args.models_dir.glob("*.keras"))
        if not paths:
            parser.error(f"{args.models_dir}: no *.keras files")
        models = {path.stem: load_model(path) for path in paths}
    else:
        models = {name: build_model(name, params.train) for name in model_names(params)}
    if args.models:
        models = {name: model for name, model in models.items() if name in args.models}
    print(
        f"Machine: {cpu_model()}, Keras {keras.__version__} ({keras.backend.backend()}); "
        f"load average {load_average()}",
        flush=True,
    )
    _, noisy = noisy_frames(args.size, max(args.frames), params.seed)
    results = []
    for name, model in models.items():
        for frames in args.frames:
            row = {"model": name, "frames": frames} | measure(model, noisy[:frames], args.repeats)
            results.append(row)
            print(f"  {row}, load {load_average()}", flush=True)
    print(f"\nms per {args.size}x{args.size} frame, median of {args.repeats} calls:\n")
    header = ["model", "frames per call", "eager", "predict_on_batch", "eager / compiled"]
    rows = [
        [
            row["model"],
            row["frames"],
            f"{row['eager']:.1f}",
            f"{row['predict_on_batch']:.1f}",
            f"{row['eager'] / row['predict_on_batch']:.2f}",
            f"{row['apply']:.1f}",
            f"{row['apply_x8']:.1f}",
        ]
        for row in results
    ]
    print(markdown_table([*header, "apply", "apply x8"], rows))
    print(f"\nLoad average at end {load_average()}.")
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": cpu_model(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
