"""Put a model trained by `denoise recipe pretrained` into the package, with its card.

Usage:  .venv/bin/python bench/ship_pretrained.py --workspace <recipe-workspace> \
            [--model drunet_light] [--recipe pretrained] [--machine "2-core Intel Xeon, no GPU"]

Reads, in the workspace where the recipe ran: models/<model>.keras and .json, the frames
manifest and shards (the training frames) and the evaluation sets. Writes
src/denoise/models/pretrained/: the .keras file (byte for byte), card.json (the recipe, the
training data by name with their licences, the SHA-256 of every training frame, the scores
on the test frames and photographs at each evaluation level, NLM's beside them) and
MODEL_CARD.md (the same, for people). Scores come from the evaluate stage's own scoring.
Every photograph of the still folders it trained on (package, path, licence, SHA-256) and the
dead-leaves generator's parameters and seed come from each folder's provenance file, which
`denoise samples` wrote (src/denoise/data/stills.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core import runtime

runtime.configure()

from denoise.core.config import load_params
from denoise.core.markdown import markdown_table
from denoise.data.evalsets import list_sets, load_set
from denoise.data.extract import frame_digests, load_manifest
from denoise.data.stills import DEAD_LEAVES_FOLDER, read_provenance
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import baseline
from denoise.evaluation.scoring import per_image, score, told_sigma
from denoise.models.build import load_model
from denoise.models.pretrained import PRETRAINED_CARD, PRETRAINED_DIR, PRETRAINED_MODEL

SETS = ("test", "photographs", "held_out")
LICENCES_NOTE = PRETRAINED_DIR / "LICENCES.md"


def frame_hashes(frames_dir: Path) -> dict[str, list[str]]:
    """SHA-256 of every train frame's pixels, by source."""
    manifest = load_manifest(frames_dir)
    rows = manifest[manifest["split"] == "train"]
    hashes: dict[str, list[str]] = {}
    for source, digest in zip(rows["video"], frame_digests(frames_dir, rows), strict=True):
        hashes.setdefault(str(source), []).append(digest)
    return hashes


def scores(workspace: Path, model_path: Path, params: Any) -> dict[str, Any]:
    """PSNR / SSIM of the model and of NLM on each set and level, as the evaluate stage
    scores them (the model as params.apply serves it)."""
    model = model_denoiser(load_model(model_path), 8, params.apply.self_ensemble)
    nlm = per_image(baseline("nlm", params.evaluate))
    results: dict[str, Any] = {}
    for set_name in SETS:
        if set_name not in list_sets(workspace / params.paths.evalsets):
            continue
        clean, noisy_levels, info = load_set(workspace / params.paths.evalsets, set_name)
        for level, noisy in noisy_levels.items():
            sigma = told_sigma(info["levels"][level])
            for method, function in (("model", model), ("nlm", nlm)):
                result = score(clean, noisy, sigma, function, keep=0)
                results.setdefault(set_name, {}).setdefault(level, {})[method] = {
                    "psnr": round(float(np.mean(result.psnr)), 4),
                    "ssim": round(float(np.mean(result.ssim)), 4),
                }
        results[set_name]["images"] = len(clean)
    return results


def render(card: dict[str, Any]) -> str:
    """MODEL_CARD.md from card.json's content."""
    lines = [
        f"# {card['name']}: the model shipped with denoise",
        "",
        card["summary"],
        "",
        "## Recipe",
        "",
        f"`{card['recipe']['command']}` ({card['recipe']['params']}); trained on "
        f"{card['recipe']['machine']} in {card['recipe']['train_seconds']:.0f} s, "
        f"{card['recipe']['epochs']} epochs, best epoch {card['recipe']['best_epoch']}, "
        f"validation PSNR {card['recipe']['val_psnr']:.2f} dB at sigma 25. "
        f"{card['recipe']['provenance']}",
        "",
        "## Training data",
        "",
        "Exactly these sources, and only their frames of the train split (the videos' first "
        "70% under the default `extract.split`; every still). `training_frames` in card.json "
        "holds the SHA-256 of every training frame's pixels; tests/test_pretrained.py checks "
        "that none is a validation or test frame, nor an evaluation photograph. Its "
        "`photographs` lists each photograph of the still folders (package, path, licence, "
        "SHA-256 of the file) and `dead_leaves`, if trained on, the generator's parameters "
        "and seed.",
        "",
        markdown_table(
            ["source", "frames", "what", "licence"],
            [
                [source["name"], source["frames"], source["what"], source["licence"]]
                for source in card["training_data"]
            ],
        ),
    ]
    lines += ["", "## Scores", "", card["scores_note"], ""]
    for set_name in [name for name in SETS if name in card["scores"]]:
        result = card["scores"][set_name]
        levels = [level for level in result if level != "images"]
        lines.append(f"**{set_name}** ({result['images']} images), PSNR dB / SSIM:")
        lines.append("")
        rows = [
            [
                label,
                *[
                    f"{result[level][method]['psnr']:.2f} / {result[level][method]['ssim']:.3f}"
                    for level in levels
                ],
            ]
            for method, label in (("model", card["name"]), ("nlm", "NLM"))
        ]
        lines += [markdown_table(["method", *levels], rows), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--model", default="drunet_light")
    parser.add_argument("--recipe", default="pretrained", help="the recipe that trained it")
    parser.add_argument("--machine", default="2-core Intel Xeon, no GPU")
    parser.add_argument("--provenance", default="")
    args = parser.parse_args()
    workspace = args.workspace.resolve()
    params = load_params(workspace / "params.yaml")
    model_path = workspace / params.paths.models / f"{args.model}.keras"
    summary = json.loads(model_path.with_suffix(".json").read_text())
    hashes = frame_hashes(workspace / params.paths.frames)
    raw = workspace / params.paths.raw
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout.strip()
    licences = json.loads((PRETRAINED_DIR / "licences.json").read_text())
    unlicensed = sorted(set(hashes) - set(licences))
    if unlicensed:
        raise SystemExit(f"no entry in licences.json for {', '.join(unlicensed)}")
    training_data = [
        {
            "name": name,
            "frames": len(hashes[name]),
            "what": licences[name]["what"],
            "licence": licences[name]["licence"],
        }
        for name in sorted(hashes)
    ]
    card = {
        "name": args.model,
        "summary": (
            f"A blind DRUNet-style denoiser ({summary['parameters']:,} parameters, "
            f"{summary['architecture']}, widths "
            f"{dataclasses.asdict(params.train.spec(args.model))['settings']['widths']}): "
            f"one model for Gaussian noise of sigma {params.noise.train.sigma_min:g} to "
            f"{params.noise.train.sigma_max:g} (0-255 scale) on RGB images in [0, 1], any size."
        ),
        "architecture": dataclasses.asdict(params.train.spec(args.model)),
        "parameters": summary["parameters"],
        "training_noise": summary["noise"],
        "recipe": {
            "command": f"denoise recipe {args.recipe}",
            "params": f"params.yaml recipes.{args.recipe}: "
            + ", ".join(f"{key} {value}" for key, value in params.recipes[args.recipe].items()),
            "commit": commit,
            "machine": args.machine,
            "provenance": args.provenance,
            **{
                key: summary[key]
                for key in (
                    "epochs",
                    "best_epoch",
                    "val_psnr",
                    "train_seconds",
                    "patch_size",
                    "batch_size",
                    "precision",
                )
            },
        },
        "training_data": training_data,
        "scores_note": (
            "The project's evaluation sets (seed 0, AWGN added in float, unclipped): 12 test "
            "frames of the three videos, 200x200, and the scikit-image photographs astronaut, "
            "chelsea, coffee and rocket, 256x256; held_out: 10 crops, 256x256, of five "
            "photographs no training set holds (noise.held_out: scikit-image's "
            "hubble_deep_field, immunohistochemistry, retina and stereo_motorcycle, and "
            "matplotlib's grace_hopper); NLM is skimage's, h = 0.8 sigma."
        ),
        "scores": scores(workspace, model_path, params),
        "training_frames": hashes,
        "photographs": [
            {"folder": name, **record}
            for name in sorted(hashes)
            if (raw / name).is_dir() and name != DEAD_LEAVES_FOLDER
            for record in read_provenance(raw / name)["photographs"]
        ],
    }
    if DEAD_LEAVES_FOLDER in hashes:
        card["dead_leaves"] = read_provenance(raw / DEAD_LEAVES_FOLDER)
    PRETRAINED_DIR.mkdir(exist_ok=True)
    shutil.copyfile(model_path, PRETRAINED_MODEL)
    PRETRAINED_CARD.write_text(json.dumps(card, indent=1) + "\n")
    (PRETRAINED_DIR / "MODEL_CARD.md").write_text(render(card))
    print(render(card))


if __name__ == "__main__":
    main()
