"""Greyscale images through an RGB denoiser: the grey copied into R, G and B, against the
packing `denoise apply` uses (three neighbouring grey pixels as one RGB pixel, along rows and
columns at three offsets, six estimates averaged), beside NLM.

Usage:  .venv/bin/python bench/greyscale.py [--model pretrained|path.keras] [--sigma 25]

scikit-image's grey test images (camera, coins, moon), Gaussian noise of the given sigma (seed
0, unclipped). Prints the machine and a markdown table of PSNR (dB) and seconds per image.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import skimage.data

from denoise.core import runtime

runtime.configure()

from denoise.core.config import default_params
from denoise.core.markdown import markdown_table
from denoise.core.metrics import psnr
from denoise.evaluation.baselines import baseline
from denoise.models.build import load_model
from denoise.models.pretrained import pretrained_model_path
from denoise.serving.apply import denoise_channels

IMAGES = ("camera", "coins", "moon")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained", help="pretrained, or a .keras file")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std-dev in 8-bit levels")
    args = parser.parse_args()

    from report import machine

    model = load_model(pretrained_model_path() if args.model == "pretrained" else args.model)
    config = default_params().apply
    rng = np.random.default_rng(0)
    print(f"Machine: {machine()}\n")
    print(f"Model: {args.model}; Gaussian sigma {args.sigma:g}; PSNR (dB), seconds\n")
    rows = []
    for name in IMAGES:
        clean = getattr(skimage.data, name)().astype(np.float32)[..., None] / 255.0
        noise = rng.normal(0.0, args.sigma / 255.0, clean.shape).astype(np.float32)
        noisy = clean + noise
        cells = [f"{psnr(clean, noisy):.2f}"]
        nlm = baseline("nlm", default_params().evaluate)(noisy, args.sigma)
        cells.append(f"{psnr(clean, np.asarray(nlm).reshape(clean.shape)):.2f}")
        for channels in (np.repeat(noisy, 3, axis=2), noisy):
            started = time.perf_counter()
            denoised = denoise_channels(model, channels, config)
            seconds = time.perf_counter() - started
            grey = np.clip(denoised.mean(axis=2, keepdims=True), 0.0, 1.0)
            cells.append(f"{psnr(clean, grey):.2f} ({seconds:.1f} s)")
        rows.append([name, *cells])
    print(markdown_table(["image", "noisy", "NLM", "copied to RGB", "packed (apply)"], rows))


if __name__ == "__main__":
    main()
