"""Frame-to-frame variants on one level of a finished bench/noisy_footage.py workspace, and how
good its target can be.

Usage:  .venv/bin/python bench/noisy_footage_variants.py LEVEL [VARIANT ...]
            [--params params.yaml] [--workspace /tmp/noisy-footage]

VARIANT: a label, then comma-separated settings as `denoise recipe` applies them ({dotted
params key: value}), e.g. `steps-300,noisy_footage.epochs=6` or
`linear,train.without_clean.warp=linear`; `oracle` as the label trains the oracle instead.
Reuses the workspace's frames and evaluation sets (run bench/noisy_footage.py first, same
params). Prints, for LEVEL:
- the target's floor: frame t + 1's clean copy, warped onto t by the flow frame-to-frame
  computes on the noisy frames and kept by its mask, against the clean frame t (PSNR over the
  kept pixels, every train pair): how close the frame-to-frame target is to the truth once its
  noise is gone;
- each variant trained as bench/noisy_footage.py trains its candidates, from the shipped model:
  its PSNR on the bench's test frames and on the held-out pairs after each epoch.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import noisy_footage as bench  # bench/noisy_footage.py (configures the runtime first)
import numpy as np
import yaml

from denoise.core.config import Params, params_from_dict
from denoise.core.params_file import read_values, with_recipe
from denoise.data.evalsets import CLIP_SETS, CLIP_TEST, load_set, noisy_levels
from denoise.data.extract import load_clips_manifest
from denoise.data.flow import _grey, frame_to_frame_target, optical_flow, warp
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.scoring import score_methods
from denoise.training.stream import FrameToFrameStream


def variant_params(path: Path, variant: str) -> tuple[str, Params]:
    """(label, params.yaml with the variant's {dotted key: value} settings applied)."""
    label, *settings = variant.split(",")
    values = read_values(path)
    changes = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        changes[key] = yaml.safe_load(value)
    values["recipes"] = {label: changes}
    return label, params_from_dict({**with_recipe(values, label), "recipes": {}})


def target_floor(params: Params, level: str) -> tuple[float, float]:
    """(PSNR of clean t against the warped clean t + 1 over the kept pixels, share kept) over
    every train pair (t, t + 1) of the level's footage, as noisy_footage draws it."""
    settings, frames_dir = params.train.without_clean, Path(params.paths.frames)
    clips = load_clips_manifest(frames_dir)
    errors, kept = [], []
    for file in clips.loc[clips["split"] == "train", "file"]:
        clean = np.load(frames_dir / file).astype(np.float32) / 255.0
        drawn = {name: images for name, _, images in noisy_levels(clean, f"footage-{file}", params)}
        noisy = np.round(np.clip(drawn[level], 0.0, 1.0) * 255.0) / 255.0
        for frame in range(len(clean) - 1):
            _, mask = frame_to_frame_target(noisy[frame], noisy[frame + 1], settings)
            if mask.mean() < settings.min_coverage:
                continue
            flow = optical_flow(
                _grey(noisy[frame], settings.prefilter_sigma),
                _grey(noisy[frame + 1], settings.prefilter_sigma),
                settings.flow,
            )
            moved, _ = warp(clean[frame + 1], flow, settings.warp)
            squared = mask[..., None] * np.square(moved - clean[frame])
            errors.append(float(squared.sum() / (3.0 * mask.sum())))
            kept.append(float(mask.mean()))
    return -10.0 * math.log10(float(np.mean(errors))), float(np.mean(kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("level")
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/noisy-footage"))
    args = parser.parse_args()
    base = bench.workspace_params(params_from_dict(read_values(args.params)), args.workspace)
    floor, kept = target_floor(base, args.level)
    bench.log(f"{args.level}: the target's floor {floor:.2f} dB over the {kept:.0%} kept")
    evalsets = Path(base.paths.evalsets)
    clip_clean, clip_noisy, _ = load_set(evalsets, CLIP_TEST, CLIP_SETS)
    pairs = bench.held_out_pairs(clip_clean, clip_noisy[args.level], base)
    clean, noisy_sets, _ = load_set(evalsets, "test")
    clips = load_clips_manifest(Path(base.paths.frames))
    clips = clips[clips["split"] == "train"].reset_index(drop=True)
    for variant in args.variants:
        label, params = variant_params(args.params, variant)
        params = bench.workspace_params(params, args.workspace)
        root = args.workspace / "variants" / f"{args.level}-{label}"
        table, _, clean_clips = bench.noisy_footage(params, clips, args.level, root)
        if label == "oracle":
            by_file = dict(zip(table["file"], clean_clips, strict=True))
            stream: FrameToFrameStream = bench.OracleStream(root, table, params, by_file)
        else:
            stream = FrameToFrameStream(root, table, params)
        network, trained = bench.train_candidate(label, stream, params, pairs, 16)
        denoise = bench.warmed(model_denoiser(network, 16), noisy_sets[args.level])
        ((_, result),) = score_methods(clean, noisy_sets[args.level], math.nan, {label: denoise})
        held_out = [round(epoch["psnr"], 2) for epoch in trained["epochs"]]
        print(
            json.dumps(
                {
                    "variant": variant,
                    "test_psnr": round(float(np.mean(result.psnr)), 2),
                    "held_out_psnr_per_epoch": held_out,
                    "train_seconds": round(trained["seconds"]),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
