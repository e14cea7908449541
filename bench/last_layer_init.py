"""Why DnCNN's last conv starts at zero: training loss over the first steps, three ways.

Usage (after `denoise extract`):  .venv/bin/python bench/last_layer_init.py [--steps 120]
    [--depth 10] [--width 32] [--batch 16] [--patch 48] [--sigma 25] [--params params.yaml]
    [--packed]

Trains a DnCNN (train.architectures.dncnn's layout at --depth x --width) on random patches of the
training frames with Gaussian noise of --sigma, fixed seed, Adam 1e-3, and prints the batch
loss every 20 steps for: batch norm with the last conv at zero (the builder's default), batch
norm with the last conv at Keras' default Glorot-uniform initialisation, and no batch norm
(last conv at zero). The noise variance, (sigma / 255)^2, is the loss of the identity.
--packed adds a fourth run: ffdnet at the same depth and width (batch norm, last conv zero, no
noise-level map), the same stack on 2x2-packed pixels.
"""

from __future__ import annotations

from denoise.core import runtime

runtime.configure()  # before keras loads: TensorFlow's CPU options, as `denoise` sets them

import argparse
from pathlib import Path

import keras
import numpy as np

from denoise.core.config import load_params
from denoise.core.markdown import markdown_table
from denoise.core.noise import add_gaussian_noise
from denoise.data.extract import load_frames, load_manifest
from denoise.models.dncnn import dncnn
from denoise.models.ffdnet import ffdnet


def losses(
    frames: np.ndarray,
    args: argparse.Namespace,
    batch_norm: bool,
    glorot_last: bool,
    packed: bool = False,
) -> list[float]:
    keras.utils.set_random_seed(0)
    if packed:
        model = ffdnet(args.depth, args.width, batch_norm, noise_map=False)
    else:
        model = dncnn(args.depth, args.width, batch_norm)
    if glorot_last:
        last = model.get_layer("noise")
        kernel = keras.initializers.GlorotUniform(seed=0)(last.kernel.shape)
        last.kernel.assign(kernel)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    height, width = frames.shape[1:3]
    history = []
    for _ in range(args.steps):
        picks = rng.integers(len(frames), size=args.batch)
        tops = rng.integers(height - args.patch + 1, size=args.batch)
        lefts = rng.integers(width - args.patch + 1, size=args.batch)
        clean = np.stack(
            [
                frames[pick, top : top + args.patch, left : left + args.patch]
                for pick, top, left in zip(picks, tops, lefts, strict=True)
            ]
        )
        noisy = add_gaussian_noise(clean, args.sigma, rng)
        history.append(float(model.train_on_batch(noisy, clean)))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--packed", action="store_true", help="also ffdnet, same depth and width")
    args = parser.parse_args()
    params = load_params(args.params)
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    frames = load_frames(frames_dir, manifest[manifest["split"] == "train"])
    runs = {
        "batch norm, last conv zero": losses(frames, args, True, False),
        "batch norm, last conv Glorot": losses(frames, args, True, True),
        "no batch norm, last conv zero": losses(frames, args, False, False),
    }
    if args.packed:
        runs["ffdnet (2x2-packed), batch norm, last conv zero"] = losses(
            frames, args, True, False, packed=True
        )
    steps = list(range(19, args.steps, 20))
    print(f"identity loss (sigma {args.sigma:g}): {(args.sigma / 255) ** 2:.5f}")
    rows = [[step + 1, *[f"{history[step]:.5f}" for history in runs.values()]] for step in steps]
    print(markdown_table(["step", *runs], rows))


if __name__ == "__main__":
    main()
