"""Footage that is already noisy: frame-to-frame and Neighbor2Neighbor against the oracle, the
shipped model, the default champion, NLM and BM3D, on the sample videos made noisy with camera
noise; and whether the held-out frame-to-frame loss ranks models as PSNR does.

Usage (opencv-doc installed):  .venv/bin/python bench/noisy_footage.py [--params params.yaml]
            [--workspace /tmp/noisy-footage] [--out docs/noisy-footage-benchmark.md]
            [--render <workspace>/noisy_footage.json]   (the page again, measuring nothing)

Its settings are params.yaml's `noisy_footage` section (the recipe), read with the rest of
params.yaml. In a scratch workspace it extracts the three sample videos as the default run does,
with noisy_footage.clips_per_split stride-1 clips per video and split, and writes the evaluation
sets (the noise stage's code, its camera and compressed levels as the default run draws them, on
noisy_footage.test_frames test frames and test_clips test clips). It trains the default champion
once: the default run's drunet_light (its per_model budget, from the shipped model, epochs
chosen on the Gaussian validation set), through the train stage's loop. Then for each level of
noisy_footage.levels:
- the user's footage: every train clip with that level's noise (the evaluation sets' noise
  functions, a draw of its own), saved as 8 bits;
- three candidates fine-tune the shipped model (models.pretrained: what init_from pretrained
  loads) from the same seed on the same noisy frames, for the same steps: the budget of
  noisy_footage.budget_of (Adam, its learning rate, patch and batch size) for
  noisy_footage.epochs of its epochs, the last weights kept: the oracle (the same noisy patches
  as frame-to-frame, the clean frame as target, every pixel scored), frame-to-frame (the next or
  previous noisy frame warped onto it, masked: training.stream.FrameToFrameStream) and
  Neighbor2Neighbor (the same frames as stills: training.stream.NeighbourStream);
- every method is scored on the same test frames and test clips at that level (PSNR, SSIM,
  tPSNR on clips, ms per frame): the noisy input, NLM and BM3D told Donoho's estimate (as the
  evaluate stage tells them on camera levels), the shipped model, the champion, the candidates.
  BM3D is left out of the clips (seconds a frame), BM4D too (minutes a clip);
- the ranking: after every epoch each candidate, and the noisy input, NLM, the shipped model
  and the champion, are scored on held-out pairs of the test clips (frames t evenly spaced, as
  training validates): PSNR against the clean frame t, and the frame-to-frame loss against the
  noisy frame t + 1 warped onto t (evaluation.frame_to_frame, dB); Kendall's tau between them.
Writes the page (--out; between its two marker lines where it has them, else the whole file)
and <workspace>/noisy_footage.json, and prints the page's generated part.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from denoise.core import runtime

runtime.configure()

import keras
from scipy.stats import kendalltau

from denoise.core.config import Params, load_params
from denoise.core.markdown import markdown_table
from denoise.core.metrics import psnr
from denoise.data.evalsets import (
    CLIP_SETS,
    CLIP_TEST,
    load_set,
    noisy_levels,
    write_evaluation_sets,
)
from denoise.data.extract import extract_frames, load_clips_manifest, load_manifest
from denoise.data.flow import frame_to_frame_target
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import image_baselines
from denoise.evaluation.frame_to_frame import frame_to_frame_db
from denoise.evaluation.scoring import BatchDenoiser, score_clips, score_methods, told_sigma
from denoise.models.build import load_model
from denoise.models.pretrained import pretrained_model_path
from denoise.stages.samples import copy_sample_videos
from denoise.training.loop import make_optimizer, train_model
from denoise.training.settings import model_budget
from denoise.training.stream import (
    FrameToFrameStream,
    NeighbourStream,
    PatchStream,
    held_out_frames,
)
from denoise.training.supervision import (
    Neighbor2NeighborLoss,
    frame_to_frame_model,
    masked_mse,
    neighbor2neighbor_model,
)

BEGIN = "<!-- bench/noisy_footage.py writes from here -->"
END = "<!-- bench/noisy_footage.py writes up to here -->"
CHAMPION_MODEL = "drunet_light"  # the default run's champion (docs/benchmarks.md)
CANDIDATES = ("oracle", "frame-to-frame", "Neighbor2Neighbor")
BASELINES = ["noisy", "nlm", "bm3d"]
HeldOut = tuple[np.ndarray, np.ndarray, np.ndarray]  # noisy (M, H, W, 3), packed, clean


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def workspace_params(params: Params, workspace: Path) -> Params:
    """params with every path under workspace, noisy_footage's clips and test sizes, and the
    evaluation levels cut to the Gaussian validation level (the champion's epochs) and the
    camera and compressed ones; no photographs."""
    settings = params.noisy_footage
    paths = {
        field.name: str(workspace / getattr(params.paths, field.name))
        for field in dataclasses.fields(params.paths)
    }
    extract = dataclasses.replace(
        params.extract,
        clips=dataclasses.replace(params.extract.clips, per_split=settings.clips_per_split),
    )
    evaluation = dataclasses.replace(
        params.noise.evaluation,
        gaussian=[params.noise.validation_sigma],
        poisson=[],
        speckle=[],
        salt_pepper=[],
        as_saved=[],
    )
    noise = dataclasses.replace(
        params.noise,
        evaluation=evaluation,
        max_frames=settings.test_frames,
        max_clips=settings.test_clips,
        photographs=[],
        held_out=dataclasses.replace(params.noise.held_out, crops=0),
    )
    return dataclasses.replace(
        params, paths=type(params.paths)(**paths), extract=extract, noise=noise
    )


def prepare(params: Params) -> None:
    """The sample videos copied into paths.raw, extracted, and the evaluation sets written."""
    missing = copy_sample_videos(params)[2]
    if missing:
        missing_names = ", ".join(missing)
        raise SystemExit(f"{missing_names}: Debian's opencv-doc is missing (infra/apt-install.sh)")
    summary = extract_frames(params)
    log(f"extract: roles {summary.roles}")
    write_evaluation_sets(params)


def noisy_footage(
    params: Params, clips: pd.DataFrame, level: str, root: Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray]]:
    """Every train clip with `level`'s noise, saved as 8 bits under root: the clips table
    FrameToFrameStream reads, the frames table NeighbourStream reads (the same frames as
    stills), and the clean clips float32 (T, H, W, 3) in the clips table's order."""
    frames_dir = Path(params.paths.frames)
    root.mkdir(parents=True)
    clean_clips, clip_rows, frame_rows = [], [], []
    for position, (file, video) in enumerate(zip(clips["file"], clips["video"], strict=True)):
        clean = np.load(frames_dir / file).astype(np.float32) / 255.0
        drawn = {name: images for name, _, images in noisy_levels(clean, f"footage-{file}", params)}
        noisy = np.round(np.clip(drawn[level], 0.0, 1.0) * 255.0).astype(np.uint8)
        name = f"clip-{position}.npy"
        np.save(root / name, noisy)
        clean_clips.append(clean)
        clip_rows.append({"video": video, "split": "train", "clip": position, "file": name})
        frame_rows += [
            {"video": video, "shard": name, "offset": offset, "split": "train"}
            for offset in range(len(noisy))
        ]
    return pd.DataFrame(clip_rows), pd.DataFrame(frame_rows), clean_clips


class OracleStream(FrameToFrameStream):
    """FrameToFrameStream's batches (the same noisy patches) with the clean frame as target and
    every pixel scored."""

    def __init__(self, root: Path, clips: pd.DataFrame, params: Params, clean: dict[str, Any]):
        super().__init__(root, clips, params)
        self._clean = [clean[file] for file in self.kept]

    def _target(self, pair: int, window: tuple[slice, slice]) -> np.ndarray:
        clip, frame, _, _ = self._pairs[pair]
        target = self._clean[clip][frame][window]
        return np.concatenate([target, np.ones((*target.shape[:2], 1), np.float32)], axis=-1)


def held_out_pairs(clean: np.ndarray, noisy: np.ndarray, params: Params) -> HeldOut:
    """Held-out pairs of the test clips, as training validates on its clips: per clip,
    noisy_footage.pairs_per_clip frames t evenly spaced, each with the noisy frame t + 1 warped
    onto it and its mask (pairs keeping too few pixels dropped), and the clean frame t.

    clean, noisy: float32 (N, T, H, W, 3) clips."""
    settings = params.train.without_clean
    inputs, packed, references = [], [], []
    for clean_clip, noisy_clip in zip(clean, noisy, strict=True):
        for frame in held_out_frames(len(noisy_clip), params.noisy_footage.pairs_per_clip):
            target, mask = frame_to_frame_target(noisy_clip[frame], noisy_clip[frame + 1], settings)
            if mask.mean() >= settings.min_coverage:
                inputs.append(noisy_clip[frame])
                packed.append(np.concatenate([target, mask[..., None]], axis=-1))
                references.append(clean_clip[frame])
    if not inputs:
        raise SystemExit("no held-out pair of the test clips keeps enough pixels")
    return np.stack(inputs), np.stack(packed).astype(np.float32), np.stack(references)


def held_out_scores(denoise: BatchDenoiser, pairs: HeldOut) -> tuple[float, float]:
    """(mean PSNR against the clean frames t, frame-to-frame dB against the warped t + 1)."""
    noisy, packed, clean = pairs
    denoised = np.clip(denoise(noisy, math.nan), 0.0, 1.0)
    scores = [psnr(reference, image) for reference, image in zip(clean, denoised, strict=True)]
    return float(np.mean(scores)), frame_to_frame_db(denoised, packed)


class EpochScores(keras.callbacks.Callback):
    """After every epoch: the network's held_out_scores, and the seconds they took (not
    training)."""

    def __init__(self, denoise: BatchDenoiser, pairs: HeldOut, steps: int) -> None:
        super().__init__()
        self.denoise, self.pairs, self.steps = denoise, pairs, steps
        self.scores: list[dict[str, float]] = []
        self.seconds = 0.0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        start = time.perf_counter()
        scored_psnr, scored_f2f = held_out_scores(self.denoise, self.pairs)
        self.scores.append(
            {"steps": (epoch + 1) * self.steps, "psnr": scored_psnr, "f2f": scored_f2f}
        )
        self.seconds += time.perf_counter() - start


def train_candidate(
    label: str, stream: Any, params: Params, pairs: HeldOut, batch: int
) -> tuple[keras.Model, dict[str, Any]]:
    """Fine-tune the shipped model on `stream` for noisy_footage's budget; the network and
    {seconds, steps, scores after each epoch}."""
    budget = model_budget(params.train, params.noisy_footage.budget_of)
    epochs = params.noisy_footage.epochs or budget.epochs
    keras.utils.set_random_seed(params.seed)
    network = load_model(pretrained_model_path())
    if isinstance(stream, NeighbourStream):
        model = neighbor2neighbor_model(network, stream.patch)
        loss: Any = Neighbor2NeighborLoss(params.train.without_clean.gamma)
    else:
        model, loss = frame_to_frame_model(network), masked_mse
    model.compile(optimizer=make_optimizer(budget), loss=loss)
    scores = EpochScores(model_denoiser(network, batch), pairs, budget.steps_per_epoch)
    stream.first_batch = 0
    start = time.perf_counter()
    model.fit(
        stream,
        epochs=epochs,
        steps_per_epoch=budget.steps_per_epoch,
        shuffle=False,
        callbacks=[scores],
        verbose=0,
    )
    seconds = time.perf_counter() - start - scores.seconds
    steps = epochs * budget.steps_per_epoch
    log(f"{label}: {steps} steps in {seconds:.0f} s; held-out {scores.scores[-1]}")
    return network, {"seconds": seconds, "steps": steps, "epochs": scores.scores}


def train_champion(params: Params) -> tuple[keras.Model, dict[str, Any]]:
    """The default run's drunet_light: its budget, from the shipped model (init_from champion
    without a registry), on the clean train frames, epochs chosen on the validation set at
    noise.validation_sigma: the train stage's loop."""
    frames_dir, evalsets = Path(params.paths.frames), Path(params.paths.evalsets)
    manifest = load_manifest(frames_dir)
    stream = PatchStream(frames_dir, manifest[manifest["split"] == "train"], params)
    clean, noisy, _ = load_set(evalsets, "validation")
    level = f"gaussian-{params.noise.validation_sigma:g}"
    model, state = train_model(
        CHAMPION_MODEL,
        params,
        stream,
        (noisy[level], clean),
        Path(params.paths.checkpoints) / CHAMPION_MODEL,
        init=pretrained_model_path(),
    )
    budget = model_budget(params.train, CHAMPION_MODEL)
    steps = state.epochs_done * budget.steps_per_epoch
    log(f"champion: {steps} steps in {state.seconds:.0f} s, best epoch {state.best_epoch + 1}")
    return model, {"seconds": state.seconds, "steps": steps, "best_epoch": state.best_epoch + 1}


def warmed(denoise: BatchDenoiser, sample: np.ndarray) -> BatchDenoiser:
    """denoise after one call on sample (a network's first call compiles), so times are of
    its work alone."""
    denoise(sample[:1], math.nan)
    return denoise


def score_level(
    params: Params,
    level: str,
    networks: dict[str, keras.Model],
    trained: dict[str, dict[str, Any]],
    pairs: HeldOut,
) -> dict[str, Any]:
    """Every method on the test frames and clips at `level`, and the ranking's fixed methods."""
    evalsets, batch = Path(params.paths.evalsets), params.train.batch_size
    clean, noisy_sets, info = load_set(evalsets, "test")
    clip_clean, clip_noisy, clip_info = load_set(evalsets, CLIP_TEST, CLIP_SETS)
    noisy, clips = noisy_sets[level], clip_noisy[level]
    sigma, clip_sigma = told_sigma(info["levels"][level]), told_sigma(clip_info["levels"][level])
    methods: dict[str, BatchDenoiser] = {
        **image_baselines(BASELINES, params.evaluate),
        **{name: warmed(model_denoiser(model, batch), noisy) for name, model in networks.items()},
    }
    rows: dict[str, dict[str, Any]] = {}
    for method, result in score_methods(clean, noisy, sigma, methods):
        rows[method] = {**result.summary(), **trained.get(method, {})}
        log(f"{level} {method}: {rows[method]['psnr']:.2f} dB")
    for method, denoise in methods.items():
        if method == "bm3d":
            continue
        scores, _ = score_clips(clip_clean, clips, clip_sigma, denoise)
        rows[method]["clips"] = scores
    ranking = {
        method: held_out_scores(methods[method], pairs)
        for method in ("noisy", "nlm", "shipped", "champion")
    }
    return {
        "methods": rows,
        "test_frames": info["images"],
        "test_clips": clip_info["images"],
        "estimated_sigma": info["levels"][level]["estimated_sigma"],
        "empirical_sigma": info["levels"][level]["empirical_sigma"],
        "fixed_ranking": {
            method: {"psnr": value[0], "f2f": value[1]} for method, value in ranking.items()
        },
    }


def run_level(
    params: Params,
    level: str,
    shipped: keras.Model,
    champion: tuple[keras.Model, dict[str, Any]],
    clips: pd.DataFrame,
) -> dict[str, Any]:
    """One table: the footage at `level`, the three candidates, every method scored."""
    evalsets = Path(params.paths.evalsets)
    clip_clean, clip_noisy, _ = load_set(evalsets, CLIP_TEST, CLIP_SETS)
    pairs = held_out_pairs(clip_clean, clip_noisy[level], params)
    root = Path(params.paths.frames).parent / "footage" / level
    clip_table, frame_table, clean = noisy_footage(params, clips, level, root)
    start = time.perf_counter()
    frame_to_frame = FrameToFrameStream(root, clip_table, params)
    made = time.perf_counter() - start
    log(
        f"{level}: {len(frame_to_frame._pairs)} frame pairs, {frame_to_frame.coverage:.3f} of "
        f"pixels kept, made in {made:.1f} s; {len(pairs[0])} held-out pairs"
    )
    by_file = dict(zip(clip_table["file"], clean, strict=True))
    streams = {
        "oracle": OracleStream(root, clip_table, params, by_file),
        "frame-to-frame": frame_to_frame,
        "Neighbor2Neighbor": NeighbourStream(root, frame_table, params),
    }
    networks = {"shipped": shipped, "champion": champion[0]}
    trained: dict[str, dict[str, Any]] = {"champion": champion[1]}
    for label, stream in streams.items():
        networks[label], trained[label] = train_candidate(
            label, stream, params, pairs, params.train.batch_size
        )
    trained["frame-to-frame"]["pairs_seconds"] = made
    result = score_level(params, level, networks, trained, pairs)
    result["held_out_pairs"] = len(pairs[0])
    result["train_frames"] = len(frame_table)
    result["train_pairs"] = len(frame_to_frame._pairs)
    result["coverage"] = frame_to_frame.coverage
    return result


# ---- the page ----


def machine() -> str:
    """The CPU model and core count (lscpu), and the software."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lines.splitlines() if ":" in line)
        cpu = f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} cores"
    except (OSError, subprocess.CalledProcessError, KeyError):
        cpu = platform.processor() or platform.machine()
    import tensorflow as tf

    return (
        f"{cpu}, no GPU; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__} ({keras.backend.backend()})"
    )


def ranking_rows(level: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(model, held-out PSNR, held-out frame-to-frame dB) of every model the ranking compares."""
    rows = [(name, s["psnr"], s["f2f"]) for name, s in level["fixed_ranking"].items()]
    for label in CANDIDATES:
        for scores in level["methods"][label]["epochs"]:
            rows.append((f"{label} @{scores['steps']}", scores["psnr"], scores["f2f"]))
    return rows


def rank_agreement(rows: list[tuple[str, float, float]]) -> dict[str, Any]:
    """Kendall's tau between PSNR and the frame-to-frame loss over the rows, the pairs they
    order differently, and whether both pick the same best model."""
    names = [row[0] for row in rows]
    by_psnr, by_f2f = np.array([row[1] for row in rows]), np.array([row[2] for row in rows])
    tau = kendalltau(by_psnr, by_f2f).statistic
    discordant = [
        (names[first], names[second])
        for first in range(len(rows))
        for second in range(first + 1, len(rows))
        if (by_psnr[first] - by_psnr[second]) * (by_f2f[first] - by_f2f[second]) < 0
    ]
    return {
        "tau": float(tau),
        "models": len(rows),
        "discordant": discordant,
        "best_psnr": names[int(np.argmax(by_psnr))],
        "best_f2f": names[int(np.argmax(by_f2f))],
    }


LABELS = {
    "noisy": "noisy input",
    "nlm": "NLM (estimated sigma)",
    "bm3d": "BM3D (estimated sigma)",
    "shipped": "shipped drunet_light",
    "champion": "default champion",
}
TRAINED_ON = {
    "shipped": "-",
    "champion": "clean frames + U(5, 55) Gaussian",
    "oracle": "noisy clips, clean targets",
    "frame-to-frame": "noisy clips only",
    "Neighbor2Neighbor": "noisy clips' frames as stills",
}


def level_table(level: dict[str, Any]) -> str:
    rows = []
    for method, scores in level["methods"].items():
        clips = scores.get("clips")
        rows.append(
            [
                LABELS.get(method, method),
                TRAINED_ON.get(method, "-"),
                f"{scores['steps']:,}" if "steps" in scores else "-",
                f"{scores['psnr']:.2f}",
                f"{scores['ssim']:.3f}",
                f"{clips['psnr']:.2f}" if clips else "-",
                f"{clips['tpsnr']:.2f}" if clips else "-",
                f"{scores['ms_per_frame']:,.0f}",
                f"{scores['seconds']:.0f}" if "seconds" in scores else "-",
            ]
        )
    header = [
        "method",
        "trained on",
        "steps",
        "test PSNR",
        "SSIM",
        "clips PSNR",
        "tPSNR",
        "ms per frame",
        "train s",
    ]
    return markdown_table(header, rows)


def target_lines(level: dict[str, Any], params: Params) -> list[str]:
    """The issue's three targets at this level: each measured margin, met or missed by how
    much."""
    methods, settings = level["methods"], params.noisy_footage
    f2f = methods["frame-to-frame"]["psnr"]
    checks = [
        (
            "above the shipped model",
            f2f - methods["shipped"]["psnr"],
            settings.gain_over_shipped_db,
        ),
        ("against the oracle", f2f - methods["oracle"]["psnr"], -settings.oracle_gap_db),
        ("above BM3D (estimated sigma)", f2f - methods["bm3d"]["psnr"], settings.bm3d_margin_db),
    ]
    lines = []
    for what, margin, goal in checks:
        verdict = "met" if margin >= goal else f"missed by {goal - margin:.2f} dB"
        lines.append(f"- frame-to-frame {what}: {margin:+.2f} dB (target {goal:+.2f}): {verdict}")
    return lines


def ranking_table(rows: list[tuple[str, float, float]]) -> str:
    ordered = sorted(rows, key=lambda row: -row[1])
    f2f_rank = {row[0]: rank for rank, row in enumerate(sorted(rows, key=lambda r: -r[2]), 1)}
    return markdown_table(
        ["model", "held-out PSNR", "held-out frame-to-frame dB", "rank by PSNR", "rank by loss"],
        [
            [LABELS.get(name, name), f"{value:.2f}", f"{loss:.3f}", str(rank), str(f2f_rank[name])]
            for rank, (name, value, loss) in enumerate(ordered, 1)
        ],
    )


def page(report: dict[str, Any], params: Params) -> str:
    settings, champion = params.noisy_footage, report["champion"]
    budget = model_budget(params.train, settings.budget_of)
    epochs = settings.epochs or budget.epochs
    lines = [
        f"Command: `{report['command']}` (params.yaml's `noisy_footage`), {report['date']}, "
        f"{report['minutes']:.0f} minutes in all on {report['machine']}; niced, beside other "
        "work on the same two cores, so times are upper bounds.",
        "",
        f"- Footage: {report['train_frames']} frames ({report['train_clips']} stride-1 clips of "
        f"{params.extract.clips.length}) from the train split of "
        f"{', '.join(params.samples.videos)}, 200x200 (centre crop, area resize), each level's "
        "noise drawn once and saved as 8 bits. Scored on "
        f"{len(report['test_frames'])} test frames ({', '.join(report['test_frames'])}) and "
        f"{len(report['test_clips'])} test clips ({', '.join(report['test_clips'])}).",
        f"- Candidates: fine-tuned from the shipped model (`{report['shipped']}`, what "
        f"`init_from: pretrained` loads), seed {params.seed}, Adam at "
        f"{budget.learning_rate:g}, batch {params.train.batch_size} of "
        f"{params.train.patch_size}x{params.train.patch_size} patches, {epochs} x "
        f"{budget.steps_per_epoch} steps: {settings.budget_of}'s budget in the "
        f"`{params.train.profile}` profile is {budget.epochs} x {budget.steps_per_epoch}. "
        "The last weights are scored.",
        f"- Default champion: the default run's `{CHAMPION_MODEL}` trained here once "
        f"({champion['steps']} steps, best epoch {champion['best_epoch']}, chosen on "
        f"{settings.test_frames} Gaussian validation frames) from the shipped model, the "
        "same for every level.",
        "- PSNR (dB) and SSIM on the test frames, PSNR and tPSNR on the test clips; NLM and "
        "BM3D are told Donoho's estimate made on each noisy frame; BM3D is not run on the "
        "clips (seconds a frame), nor BM4D (minutes a clip).",
        "",
    ]
    for name, level in report["levels"].items():
        lines += [
            f"### {name}",
            "",
            f"Noise: {level['empirical_sigma']:.1f} (0-255) against the clean frames, "
            f"estimated {level['estimated_sigma']:.1f} by Donoho's estimator. Frame-to-frame "
            f"learnt from {level['train_pairs']} frame pairs keeping "
            f"{level['coverage']:.0%} of their pixels (made in "
            f"{level['methods']['frame-to-frame']['pairs_seconds']:.0f} s).",
            "",
            level_table(level),
            "",
            *target_lines(level, params),
            "",
        ]
    lines += [
        "### The held-out frame-to-frame loss against PSNR",
        "",
        "Each model after every epoch of its training, and the fixed ones, on the same "
        "held-out pairs of the test clips: PSNR against the clean frame t, and the "
        "frame-to-frame loss against the noisy frame t + 1 warped onto t, over the pixels its "
        "mask keeps (dB, higher is better). Kendall's tau is 1 when the loss orders every "
        "pair of models as PSNR does.",
        "",
    ]
    agreement_rows = []
    for name, level in report["levels"].items():
        rows = ranking_rows(level)
        agreement = rank_agreement(rows)
        trained = rank_agreement([row for row in rows if row[0].startswith(CANDIDATES)])
        others = rank_agreement([row for row in rows if not row[0].startswith(CANDIDATES[1])])
        agreement_rows.append(
            [
                name,
                str(level["held_out_pairs"]),
                f"{agreement['tau']:.3f} ({agreement['models']})",
                str(len(agreement["discordant"])),
                f"{trained['tau']:.3f} ({trained['models']})",
                f"{others['tau']:.3f} ({others['models']})",
                LABELS.get(agreement["best_psnr"], agreement["best_psnr"]),
                LABELS.get(agreement["best_f2f"], agreement["best_f2f"]),
            ]
        )
    lines += [
        markdown_table(
            [
                "level",
                "held-out pairs",
                "Kendall tau (models)",
                "pairs ordered differently",
                "tau: the candidates' epochs",
                "tau: all but frame-to-frame's",
                "best by PSNR",
                "best by loss",
            ],
            agreement_rows,
        ),
        "",
    ]
    for name, level in report["levels"].items():
        discordant = rank_agreement(ranking_rows(level))["discordant"]
        lines += [
            f"<details><summary>{name}: every model</summary>",
            "",
            ranking_table(ranking_rows(level)),
            "",
            "Ordered differently: "
            + ("; ".join(f"{first} / {second}" for first, second in discordant) or "none")
            + ".",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_page(path: Path, generated: str) -> None:
    """generated between the page's marker lines, or the whole page when it has none."""
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(f"{head}{BEGIN}\n{generated}{END}{tail}")
    else:
        path.write_text(
            f"# Footage that is already noisy: the benchmark\n\n{BEGIN}\n{generated}{END}\n"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/noisy-footage"))
    parser.add_argument("--out", type=Path, default=Path("docs/noisy-footage-benchmark.md"))
    parser.add_argument(
        "--render",
        type=Path,
        help="write the page from this noisy_footage.json of an earlier run, measuring nothing",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        generated = page(report, workspace_params(load_params(args.params), args.workspace))
        write_page(args.out, generated)
        print(generated)
        return
    started = time.perf_counter()
    if args.workspace.exists() and any(args.workspace.iterdir()):
        raise SystemExit(f"{args.workspace}: not empty; give an empty or new --workspace")
    params = workspace_params(load_params(args.params), args.workspace)
    prepare(params)
    _, _, info = load_set(Path(params.paths.evalsets), "test")
    for level in params.noisy_footage.levels:
        if level not in info["levels"]:
            raise SystemExit(
                f"noisy_footage.levels: {level!r} is not a level of noise.evaluation "
                f"({', '.join(info['levels'])})"
            )
    clips = load_clips_manifest(Path(params.paths.frames))
    clips = clips[clips["split"] == "train"].reset_index(drop=True)
    shipped = load_model(pretrained_model_path())
    champion = train_champion(params)
    report: dict[str, Any] = {
        "command": shlex.join(["python", "bench/noisy_footage.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "shipped": f"src/denoise/models/pretrained/{pretrained_model_path().name}",
        "champion": champion[1],
        "train_clips": len(clips),
        "levels": {},
    }
    for level in params.noisy_footage.levels:
        result = run_level(params, level, shipped, champion, clips)
        report["levels"][level] = result
        report.update(
            train_frames=result["train_frames"],
            test_frames=result["test_frames"],
            test_clips=result["test_clips"],
        )
    report["minutes"] = (time.perf_counter() - started) / 60
    (args.workspace / "noisy_footage.json").write_text(json.dumps(report, indent=1))
    generated = page(report, params)
    write_page(args.out, generated)
    print(generated)


if __name__ == "__main__":
    main()
