"""What the camera evaluation sets add to the default run, and how every method scores on them.

Usage (opencv-doc installed):  .venv/bin/python bench/camera_sets.py [--workspace DIR]

In a scratch workspace (paths under DIR), copies the three sample videos, extracts them with
params.yaml's extract section (printing each source's role), writes the evaluation sets with
and without noise.evaluation's camera and compressed levels (timing each), then scores every
default method on the three new levels of every set the evaluate stage scores: the classical
ones (told no sigma: Donoho's estimate), the shipped drunet_light, and untrained paper_cae and
dense_ae (their time, not their scores, stands for the trained ones'). Prints the seconds and a
PSNR / SSIM (ms per frame) line per set and level.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from denoise.core.config import load_params
from denoise.data.evalsets import list_sets, load_set, write_evaluation_sets
from denoise.data.extract import extract_frames
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import image_baselines
from denoise.evaluation.sets import score_image_sets
from denoise.models.build import build_model
from denoise.models.pretrained import pretrained_model_path
from denoise.stages.samples import copy_sample_videos

NEW_LEVELS = ("camera-low", "camera-high", "camera-high-jpeg80")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/camera-sets"))
    args = parser.parse_args()
    params = load_params(args.params)
    paths = {
        field.name: str(args.workspace / getattr(params.paths, field.name))
        for field in dataclasses.fields(params.paths)
    }
    params = dataclasses.replace(params, paths=type(params.paths)(**paths))
    missing = copy_sample_videos(params)[2]
    if missing:
        missing_names = ", ".join(missing)
        raise SystemExit(f"{missing_names}: Debian's opencv-doc is missing (infra/apt-install.sh)")
    start = time.perf_counter()
    summary = extract_frames(params)
    print(f"extract: {time.perf_counter() - start:.1f} s, roles {summary.roles}")
    without = dataclasses.replace(params.noise.evaluation, camera={}, compressed=[])
    for label, evaluation in (("Gaussian only", without), ("with", params.noise.evaluation)):
        noise = dataclasses.replace(params.noise, evaluation=evaluation)
        start = time.perf_counter()
        write_evaluation_sets(dataclasses.replace(params, noise=noise))
        print(f"noise stage, {label} the new levels: {time.perf_counter() - start:.1f} s")
    evalsets = Path(params.paths.evalsets)
    sets = {}
    for name in (name for name in list_sets(evalsets) if name != "validation"):
        clean, noisy, info = load_set(evalsets, name)
        levels = {level: info["levels"][level] for level in NEW_LEVELS}
        sets[name] = (
            clean,
            {level: noisy[level] for level in NEW_LEVELS},
            {**info, "levels": levels},
        )
    import keras

    import denoise.models.build  # noqa: F401  (registers the custom layers)

    methods = image_baselines(params.evaluate.methods, params.evaluate)
    models = {
        "drunet_light": keras.saving.load_model(pretrained_model_path()),
        "paper_cae": build_model("paper_cae", params.train),
        "dense_ae": build_model("dense_ae", params.train),
    }
    for name, model in models.items():
        methods[name] = model_denoiser(
            model, params.train.batch_size, params.apply.self_ensemble, params.apply.precision
        )
    methods["drunet_light"](sets["test"][0][:2], 25.0)  # warm-up, paid by evaluate's first set
    start = time.perf_counter()
    scored = score_image_sets(params, sets, methods)
    print(f"evaluate, the three new levels, every method: {time.perf_counter() - start:.1f} s")
    for set_name, info in scored.sets.items():
        for level, results in info["levels"].items():
            cells = [
                f"{method} {result['psnr']:.2f}/{result['ssim']:.3f} ({result['ms_per_frame']:.0f})"
                for method, result in results.items()
            ]
            print(f"{set_name} {level}: {', '.join(cells)}")


if __name__ == "__main__":
    main()
