"""What a warm start is worth when new footage arrives: retrain from the last model on a quarter
of the steps, against training from scratch on all of them.

Usage:  .venv/bin/python bench/warm_start.py --raw <folder with the sample videos> \
            [--first box.mp4 vtest.avi] [--added cup.mp4] [--model drunet_light] \
            [--epochs 8] [--steps-per-epoch 110] [--out <out-dir>]

Three trainings of the same model, with the `cpu` profile of params.yaml (patch size, batch,
schedule, learning rate), through the train stage's own code (PatchStream, train_model):
1. `first`: from scratch on the --first videos, epochs x steps;
2. `scratch`: from scratch on the --first and --added videos, epochs x steps;
3. `warm`: from `first` on the --first and --added videos, a quarter of the epochs at a
   fine-tune's learning rate (--warm-learning-rate): the retrain after new data arrives, as
   `init_from` makes it.
Each is scored on the test frames of all the videos (extract and noise with params.yaml's
split and evaluation settings), at every Gaussian evaluation level, beside NLM. Prints a
markdown table and writes OUT/warm_start.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from denoise.core import runtime

runtime.configure()

from denoise.core.config import Params, load_params
from denoise.core.markdown import markdown_table
from denoise.core.noise import level_name
from denoise.data.evalsets import load_set, write_evaluation_sets
from denoise.data.extract import extract_frames, load_manifest
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import image_baselines
from denoise.evaluation.scoring import score_methods
from denoise.training.loop import train_model
from denoise.training.settings import model_budget, with_active
from denoise.training.stream import PatchStream

PROFILE = "cpu"


def workspace(params: Params, root: Path, raw: Path, videos: list[str]) -> Params:
    """params with every path under root, raw holding `videos` (copied), extracted and noised."""
    paths = {
        field.name: str(root / getattr(params.paths, field.name))
        for field in dataclasses.fields(params.paths)
    }
    configured = dataclasses.replace(params, paths=type(params.paths)(**paths))
    target = Path(configured.paths.raw)
    target.mkdir(parents=True, exist_ok=True)
    for name in videos:
        shutil.copyfile(raw / name, target / name)
    extract_frames(configured)
    write_evaluation_sets(configured)
    return configured


def fit(
    params: Params,
    model: str,
    epochs: int,
    out: Path,
    init: Path | None,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train `model` on params' frames for `epochs` (at learning_rate, else the profile's);
    save it as out/model.keras."""
    budget: dict[str, Any] = {"epochs": epochs, "early_stopping_patience": epochs}
    if learning_rate is not None:
        budget["learning_rate"] = learning_rate
    train = with_active(params.train, models=[model], per_model={}, **budget)
    params = dataclasses.replace(params, train=train)
    frames = Path(params.paths.frames)
    manifest = load_manifest(frames)
    clean, noisy, _ = load_set(Path(params.paths.evalsets), "validation")
    stream = PatchStream(frames, manifest[manifest["split"] == "train"], params)
    start = time.perf_counter()
    trained, state = train_model(
        model,
        params,
        stream,
        (noisy[level_name("gaussian", params.noise.validation_sigma)], clean),
        out / "checkpoints",
        init=init,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.keras"
    trained.save(path)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {
        "path": str(path),
        "model": trained,
        "seconds": time.perf_counter() - start,
        "steps": state.epochs_done * model_budget(train, model).steps_per_epoch,
        "train_frames": int((manifest["split"] == "train").sum()),
        "learning_rate": model_budget(train, model).learning_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, required=True, help="folder with the videos")
    parser.add_argument("--first", nargs="+", default=["box.mp4", "vtest.avi"])
    parser.add_argument("--added", nargs="+", default=["cup.mp4"])
    parser.add_argument("--model", default="drunet_light")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=110)
    parser.add_argument(
        "--warm-learning-rate",
        type=float,
        default=1e-4,
        help="the warm retrain's peak learning rate (a fine-tune's; the others use the profile's)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out/warm-start"))
    args = parser.parse_args()
    if args.epochs % 4:
        parser.error("--epochs must be a multiple of 4 (the warm start trains a quarter)")
    params = load_params(args.params)
    train = dataclasses.replace(params.train, profile=PROFILE)
    train = with_active(train, steps_per_epoch=args.steps_per_epoch, warmup_steps=0)
    params = dataclasses.replace(params, train=train)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    first = workspace(params, out / "first", args.raw, args.first)
    every = workspace(params, out / "all", args.raw, [*args.first, *args.added])
    runs = {
        "first": fit(first, args.model, args.epochs, out / "first-model", None),
        "scratch": fit(every, args.model, args.epochs, out / "scratch-model", None),
    }
    first_model = Path(runs["first"]["path"])
    runs["warm"] = fit(
        every,
        args.model,
        args.epochs // 4,
        out / "warm-model",
        first_model,
        args.warm_learning_rate,
    )
    clean, noisy_levels, info = load_set(Path(every.paths.evalsets), "test")
    methods = {name: model_denoiser(run["model"], 4) for name, run in runs.items()}
    methods |= image_baselines(["nlm"], params.evaluate)
    results: dict[str, dict[str, float]] = {}
    levels = [level for level in noisy_levels if info["levels"][level]["kind"] == "gaussian"]
    levels = [level for level in levels if not info["levels"][level]["as_saved"]]
    for level in levels:
        sigma = float(info["levels"][level]["level"])
        for name, measured in score_methods(clean, noisy_levels[level], sigma, methods):
            results.setdefault(name, {})[level] = measured.summary()["psnr"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "model": args.model,
        "first": args.first,
        "added": args.added,
        "test_images": len(clean),
        "runs": {
            name: {key: value for key, value in run.items() if key not in ("model", "path")}
            for name, run in runs.items()
        },
        "psnr": results,
    }
    (out / "warm_start.json").write_text(json.dumps(report, indent=1))
    rows = []
    for name in ("first", "scratch", "warm", "nlm"):
        run = runs.get(name, {})
        cells = [f"{results[name][level]:.2f}" for level in levels]
        rows.append([name, *cells, run.get("steps", "-"), f"{run['seconds']:.0f}" if run else "-"])
    header = [f"PSNR dB, {len(clean)} test frames of every video", *levels, "steps", "s"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
