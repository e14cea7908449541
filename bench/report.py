"""Print the machine and the results of the last pipeline run as markdown for docs/benchmarks.md.

Usage (after `make run`):  .venv/bin/python bench/report.py [--params params.yaml]

The numbers are those the evaluate stage measured (reports/metrics.json and
reports/evaluation/per_image.csv); this script adds the machine it ran on and a comparison of
every method on exactly the images BM3D was run on (BM3D is slow, so by default it only sees the
first few images of each set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from denoise.core.config import Params, load_params
from denoise.core.markdown import markdown_table
from denoise.training.settings import model_budget


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown CPU"."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine() -> str:
    cpu = cpu_model()
    import keras
    import tensorflow as tf

    from denoise.models.precision import has_gpu

    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__} ({keras.backend.backend()} backend), "
        f"{'a GPU' if has_gpu() else 'no GPU'}"
    )


def same_images_table(per_image: pd.DataFrame) -> str:
    """Mean PSNR / SSIM of every method on the images BM3D saw, per set and level."""
    lines = []
    bm3d_images = per_image[per_image["method"] == "bm3d"][["set", "level", "image"]]
    if bm3d_images.empty:
        return "(BM3D was not run)\n"
    subset = per_image.merge(bm3d_images, on=["set", "level", "image"])
    for set_name, rows in subset.groupby("set", sort=False):
        count = rows[rows["method"] == "bm3d"].groupby("level").size().iloc[0]
        levels = list(dict.fromkeys(rows["level"]))
        lines.append(f"**{set_name}**, the {count} images BM3D ran on\n")
        table = []
        for method in dict.fromkeys(rows["method"]):
            cells = [method]
            for level in levels:
                values = rows[(rows["method"] == method) & (rows["level"] == level)]
                cells.append(f"{values['psnr'].mean():.2f} / {values['ssim'].mean():.3f}")
            table.append(cells)
        header = ["method", *[f"{level} PSNR / SSIM" for level in levels]]
        lines += [markdown_table(header, table), ""]
    return "\n".join(lines)


def model_line(name: str, info: dict[str, Any], params: Params) -> str:
    """One trained model's line: its parameters, its own budget (per_model settings included)
    and what it reached; info: its entry of metrics.json's models."""
    budget = model_budget(params.train, name)
    return (
        f"- {name}: {info['parameters']:,} parameters, {info['epochs']} epochs of "
        f"{budget.steps_per_epoch} x {budget.batch_size} patches of "
        f"{info['patch_size']}x{info['patch_size']}, {info['train_seconds']:.0f} s "
        f"({info['train_patches_per_second']:.1f} patches/s), best val PSNR "
        f"{info['val_psnr']:.2f} dB at sigma {params.noise.validation_sigma:g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    metrics = json.loads(Path(params.paths.metrics).read_text())
    evaluation = Path(params.paths.evaluation)
    print(f"Machine: {machine()}\n")
    print(
        "Conventions: "
        + "; ".join(f"{key}: {value}" for key, value in metrics["conventions"].items())
        + "\n"
    )
    for name, info in metrics["models"].items():
        print(model_line(name, info, params))
    print()
    print((evaluation / "metrics.md").read_text())
    print(same_images_table(pd.read_csv(evaluation / "per_image.csv")))


if __name__ == "__main__":
    main()
