"""How well ffdnet's noise-level map estimates sigma on the evaluation sets.

Usage (after `denoise noise`):  .venv/bin/python bench/noise_level.py [--params params.yaml]

For every evaluation set and noise level that paths.evalsets holds (and the clean images),
prints the mean, min and max over images of Donoho's estimate from the noisy images
(core.noise_level.estimate_sigma: median(|HH|) / 0.6745 on the finest Haar diagonal, the one
definition ffdnet's NoiseLevelMap and the classical baselines use), on the 0-255 scale, next
to the level's empirical sigma (the std of noisy - clean that the noise stage recorded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from denoise.core.config import load_params
from denoise.core.markdown import markdown_table
from denoise.core.noise_level import estimate_sigma
from denoise.data.evalsets import list_sets, load_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    evalsets = Path(load_params(args.params).paths.evalsets)
    rows = []
    for name in list_sets(evalsets):
        clean, noisy, info = load_set(evalsets, name)
        for level, images in {"clean": clean, **noisy}.items():
            sigmas = estimate_sigma(images.reshape(-1, *images.shape[-3:]))
            empirical = info["levels"][level]["empirical_sigma"] if level in noisy else 0.0
            rows.append([name, level, f"{empirical:.2f}"])
            rows[-1] += [f"{sigmas.mean():.2f}", f"{sigmas.min():.2f}", f"{sigmas.max():.2f}"]
    header = ["set", "level", "empirical sigma", "estimate mean", "min", "max"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
