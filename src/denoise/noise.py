"""noise stage: noise models as pure functions, and the fixed evaluation sets.

Every noise function takes clean float32 (N, H, W, C) RGB in [0, 1] and an rng, and returns a
float32 array of the same shape, unclipped (the literature's convention, see docs/benchmarks.md).
The Gaussian levels in noise.evaluation.as_saved also get an "as saved" twin of the same draw,
clipped and rounded to 8 bits, as a noisy frame written to disk would be.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from denoise import tracking
from denoise.atomic import atomic_directory, write_json
from denoise.config import Params
from denoise.errors import ConfigError, DataError
from denoise.extract import load_frames, load_manifest
from denoise.video import centre_crop_resize

EVALUATION_SPLITS = ("validation", "test")
PHOTOGRAPHS = "photographs"
INDEX_NAME = "index.json"
SAVED_SUFFIX = "-saved"


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return clean + N(0, sigma/255), unclipped. sigma: std-dev on the 0-255 scale."""
    if sigma < 0:
        raise ConfigError(f"gaussian sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return clean.astype(np.float32, copy=True)
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return (clean + noise).astype(np.float32)


def as_saved(noisy: np.ndarray) -> np.ndarray:
    """What a noisy image looks like once written to disk: clipped to [0, 1] and rounded to the
    256 levels of 8 bits. float32, same shape."""
    return (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def add_poisson_noise(clean: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts ~ Poisson(clean * peak), scaled back by 1 / peak."""
    if peak <= 0:
        raise ConfigError(f"poisson peak must be > 0, got {peak}")
    return (rng.poisson(np.clip(clean, 0.0, None) * peak) / peak).astype(np.float32)


def add_speckle_noise(clean: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise: clean * (1 + n), n ~ N(0, variance)."""
    if variance < 0:
        raise ConfigError(f"speckle variance must be >= 0, got {variance}")
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(np.sqrt(variance))
    return (clean * (1.0 + noise)).astype(np.float32)


def add_salt_pepper_noise(clean: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a share `amount` of pixel locations (all channels) to 0 or 1 with equal odds."""
    if not 0.0 <= amount <= 1.0:
        raise ConfigError(f"salt_pepper amount must be in [0, 1], got {amount}")
    noisy = clean.astype(np.float32, copy=True)
    hit = rng.random(clean.shape[:-1]) < amount
    salt = rng.random(clean.shape[:-1]) < 0.5
    noisy[hit & salt] = 1.0
    noisy[hit & ~salt] = 0.0
    return noisy


def apply_noise(clean: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """Add one evaluation noise model: `level` is sigma, peak, variance or amount by `kind`."""
    functions = {
        "gaussian": add_gaussian_noise,
        "poisson": add_poisson_noise,
        "speckle": add_speckle_noise,
        "salt_pepper": add_salt_pepper_noise,
    }
    if kind not in functions:
        raise ConfigError(f"unknown noise kind {kind!r} (known: {', '.join(functions)})")
    return functions[kind](clean, level, rng)


def level_name(kind: str, level: float, saved: bool = False) -> str:
    """File-name form of a noise level: gaussian-25, poisson-30, speckle-0.04; the as-saved
    (clipped, 8-bit) twin of a level gets a -saved suffix: gaussian-25-saved."""
    return f"{kind}-{level:g}{SAVED_SUFFIX if saved else ''}"


def set_rng(seed: int, *names: str) -> np.random.Generator:
    """An rng fixed by the seed and names, so each evaluation set's noise is reproducible."""
    keys = [zlib.crc32(name.encode()) for name in names]
    return np.random.default_rng([seed, *keys])


def evenly_spaced(rows: pd.DataFrame, count: int) -> pd.DataFrame:
    """At most `count` rows spread evenly over the table, first and last included."""
    if len(rows) <= count:
        return rows
    positions = np.unique(np.linspace(0, len(rows) - 1, count).round().astype(int))
    return rows.iloc[positions]


def load_photograph(name: str, size: int) -> np.ndarray:
    """A scikit-image colour photograph, centre-cropped and area-resized: float32 (S, S, 3)."""
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None:
        raise ConfigError(f"noise.photographs: scikit-image has no image {name!r}")
    image = np.asarray(loader())
    if image.ndim != 3 or image.shape[2] < 3:
        raise ConfigError(f"noise.photographs: {name!r} is not a colour photograph")
    image = image[..., :3].astype(np.float32) / 255.0
    return centre_crop_resize(image, size)


def empirical_sigma(noisy: np.ndarray, clean: np.ndarray) -> float:
    """Standard deviation of (noisy - clean) on the 0-255 scale."""
    return float(np.std(noisy.astype(np.float64) - clean) * 255.0)


def _write_set(
    directory: Path, name: str, clean: np.ndarray, sources: list[str], params: Params
) -> dict[str, object]:
    set_dir = directory / name
    set_dir.mkdir()
    np.save(set_dir / "clean.npy", clean.astype(np.float32), allow_pickle=False)
    levels = {}
    for kind, level in params.noise.evaluation.levels():
        noisy = apply_noise(clean, kind, level, set_rng(params.seed, name, kind, f"{level:g}"))
        variants = [(False, noisy)]
        if kind == "gaussian" and level in params.noise.evaluation.as_saved:
            variants.append((True, as_saved(noisy)))  # the same draw, as written to disk
        for saved, images in variants:
            np.save(set_dir / f"{level_name(kind, level, saved)}.npy", images, allow_pickle=False)
            levels[level_name(kind, level, saved)] = {
                "kind": kind,
                "level": level,
                "as_saved": saved,
                "empirical_sigma": empirical_sigma(images, clean),
            }
    return {"images": sources, "shape": list(clean.shape), "levels": levels}


@dataclasses.dataclass(frozen=True)
class NoiseSummary:
    images_per_set: dict[str, int]
    levels: list[str]


def run(params: Params) -> NoiseSummary:
    """Write the fixed evaluation sets (validation, test, photographs) under paths.evalsets."""
    with tracking.stage(params, "noise") as tracker:
        summary = write_evaluation_sets(params)
        tracker.log_to_parent(summary=dataclasses.asdict(summary))
    return summary


def write_evaluation_sets(params: Params) -> NoiseSummary:
    """The stage's work without MLflow (bench/gpu_train.py runs it on hosts without it)."""
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    index: dict[str, object] = {"seed": params.seed, "sets": {}}
    with atomic_directory(params.paths.evalsets) as staging:
        for split in EVALUATION_SPLITS:
            rows = evenly_spaced(manifest[manifest["split"] == split], params.noise.max_frames)
            if rows.empty:
                raise DataError(
                    f"{frames_dir}: no {split} frames; raise extract.split.{split}_fraction "
                    "or add longer videos"
                )
            sources = [
                f"{video}#{frame}"
                for video, frame in zip(rows["video"], rows["frame_index"], strict=True)
            ]
            index["sets"][split] = _write_set(  # type: ignore[index]
                staging, split, load_frames(frames_dir, rows), sources, params
            )
        if params.noise.photographs:
            photographs = np.stack(
                [
                    load_photograph(name, params.noise.photograph_size)
                    for name in params.noise.photographs
                ]
            )
            index["sets"][PHOTOGRAPHS] = _write_set(  # type: ignore[index]
                staging, PHOTOGRAPHS, photographs, list(params.noise.photographs), params
            )
        write_json(staging / INDEX_NAME, index)
    sets: dict[str, dict[str, object]] = index["sets"]  # type: ignore[assignment]
    return NoiseSummary(
        images_per_set={name: len(info["images"]) for name, info in sets.items()},  # type: ignore[arg-type]
        levels=list(next(iter(sets.values()))["levels"]),  # type: ignore[call-overload]
    )


def load_set(evalsets_dir: Path, name: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Read one evaluation set: clean, {level name: noisy}, and its index entry."""
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    info = json.loads(index_path.read_text())["sets"].get(name)
    if info is None:
        raise DataError(f"{evalsets_dir}: no evaluation set {name!r}; rerun `denoise noise`")
    clean = np.load(evalsets_dir / name / "clean.npy")
    noisy = {level: np.load(evalsets_dir / name / f"{level}.npy") for level in info["levels"]}
    return clean, noisy, info


def list_sets(evalsets_dir: Path) -> list[str]:
    """Names of the evaluation sets the noise stage wrote."""
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    return list(json.loads(index_path.read_text())["sets"])
