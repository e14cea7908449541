"""How well ffdnet's noise-level map estimates sigma on the evaluation sets.

Usage (after `denoise noise`):  .venv/bin/python bench/noise_level.py [--params params.yaml]

For every evaluation set and noise level that paths.evalsets holds (and the clean images),
prints the mean, min and max over images of the estimate NoiseLevelMap makes from the noisy
images (Donoho's median(|HH|) / 0.6745 on the finest Haar diagonal), on the 0-255 scale, next
to the level's empirical sigma (the std of noisy - clean that the noise stage recorded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from denoise.core.config import load_params
from denoise.core.markdown import markdown_table
from denoise.data.evalsets import list_sets, load_set
from denoise.models.dense_ae import ExtractPatches
from denoise.models.ffdnet import NoiseLevelMap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    evalsets = Path(load_params(args.params).paths.evalsets)
    pack, estimate = ExtractPatches(2, 2, 3), NoiseLevelMap(3)
    rows = []
    for name in list_sets(evalsets):
        clean, noisy, info = load_set(evalsets, name)
        for level, images in {"clean": clean, **noisy}.items():
            sigmas = np.asarray(estimate(pack(images.astype(np.float32))))[:, 0, 0, 0] * 255
            empirical = info["levels"][level]["empirical_sigma"] if level in noisy else 0.0
            rows.append([name, level, f"{empirical:.2f}"])
            rows[-1] += [f"{sigmas.mean():.2f}", f"{sigmas.min():.2f}", f"{sigmas.max():.2f}"]
    header = ["set", "level", "empirical sigma", "estimate mean", "min", "max"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
