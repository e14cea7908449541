"""Statistics tables: one row per frame, per evaluation image and level, or per result."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from denoise.core.errors import DataError
from denoise.data.evalsets import INDEX_NAME
from denoise.data.extract import GAP
from denoise.data.roles import CLEAN
from denoise.validation.outcomes import ROW


def _frame_hash(frame: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).hexdigest()


def frame_table(
    manifest: pd.DataFrame, frames_dir: Path, near_duplicate_difference: float
) -> pd.DataFrame:
    """One row per extracted frame: the manifest's columns plus what the frames suite checks.

    Adds height, width, channels (the shard array's shape); difference: mean |frame - previous
    frame of the same video| on the [0, 1] scale (NaN for a video's first frame); duplicate: the
    frame repeats an earlier frame of its video exactly or differs from the previous one by
    less than near_duplicate_difference; per video, video_frames and video_duplicate_fraction;
    split_frames: video_frames of a source split in time, NaN for an extract.train_only one;
    overlaps_other_split: the frame's time lies in another split's time block of its video;
    shared_with_other_split: identical pixels appear in another split (of any video);
    video_clean_noise_sigma: a clean source's estimated noise level (NaN for a noisy one).
    """
    table = manifest.sort_values(["video", "timestamp_s", "frame_index"], kind="stable")
    table = table.reset_index(drop=True)
    shards: dict[str, np.ndarray] = {}
    shapes, hashes, differences, duplicates = [], [], [], []
    previous: np.ndarray | None = None
    seen: set[str] = set()
    for position, (video, shard, offset) in enumerate(
        zip(table["video"], table["shard"], table["offset"], strict=True)
    ):
        if shard not in shards:
            path = frames_dir / shard
            if not path.is_file():
                raise DataError(f"{path}: missing shard; rerun `denoise extract`")
            shards[shard] = np.load(path, mmap_mode="r")
        frame = np.asarray(shards[shard][offset])
        if position == 0 or video != table["video"].iat[position - 1]:
            previous, seen = None, set()
        digest = _frame_hash(frame)
        difference = (
            float(np.abs(frame.astype(np.float32) - previous).mean() / 255.0)
            if previous is not None and previous.shape == frame.shape
            else math.nan
        )
        shapes.append(frame.shape + (1,) * (3 - frame.ndim))
        hashes.append(digest)
        differences.append(difference)
        duplicates.append(digest in seen or difference < near_duplicate_difference)
        seen.add(digest)
        previous = frame.astype(np.float32)
    table.insert(
        0,
        ROW,
        [
            f"{video}#{index}"
            for video, index in zip(table["video"], table["frame_index"], strict=True)
        ],
    )
    table["height"] = [shape[0] for shape in shapes]
    table["width"] = [shape[1] for shape in shapes]
    table["channels"] = [shape[2] for shape in shapes]
    table["content"] = hashes
    table["difference"] = differences
    table["duplicate"] = duplicates
    by_video = table.groupby("video", sort=False)
    table["video_frames"] = by_video["video"].transform("size").astype(int)
    table["split_frames"] = table["video_frames"].astype(float).where(~table["train_only"])
    table["video_duplicate_fraction"] = by_video["duplicate"].transform("mean").astype(float)
    # a clean source's noise level (extract's estimate), checked against max_clean_noise_sigma
    table["video_clean_noise_sigma"] = (
        table["source_noise_sigma"].astype(float).where(table["role"] == CLEAN)
    )
    table["overlaps_other_split"] = _overlaps_other_split(table)
    table["shared_with_other_split"] = _shared_with_other_split(table)
    return table


def split_warnings(manifest: pd.DataFrame) -> list[str]:
    """One line per source split in time (not extract.train_only) that yields no validation or
    no test frames: it is then trained on but never checked."""
    warnings = []
    for video, rows in manifest[~manifest["train_only"]].groupby("video", sort=True):
        missing = [split for split in ("validation", "test") if not (rows["split"] == split).any()]
        if missing:
            warnings.append(
                f"{video} yields no {' and no '.join(missing)} frames ({len(rows)} frames); "
                "lengthen it or raise extract.split's fractions"
            )
    return warnings


def _overlaps_other_split(table: pd.DataFrame) -> list[bool]:
    """Per frame: its time lies within another split's [first, last] time of the same video."""
    used = table[table["split"] != GAP]
    blocks: dict[str, list[tuple[str, float, float]]] = {}
    for (video, split), times in used.groupby(["video", "split"])["timestamp_s"]:
        blocks.setdefault(str(video), []).append((str(split), times.min(), times.max()))
    return [
        split != GAP
        and any(
            other != split and low <= time <= high for other, low, high in blocks.get(video, [])
        )
        for video, split, time in zip(
            table["video"], table["split"], table["timestamp_s"], strict=True
        )
    ]


def _shared_with_other_split(table: pd.DataFrame) -> list[bool]:
    """Per frame: the same pixels occur in another split, in any video (leakage)."""
    used = table[table["split"] != GAP]
    splits_of = used.groupby("content")["split"].agg(lambda splits: set(splits))
    return [
        split != GAP and len(splits_of.get(content, set())) > 1
        for split, content in zip(table["split"], table["content"], strict=True)
    ]


def evaluation_set_table(evalsets_dir: Path) -> pd.DataFrame:
    """One row per evaluation image and noise level, from the arrays the noise stage wrote.

    empirical_sigma is std(noisy - clean) * 255 per image; sigma_relative_error is
    |empirical - declared| / max(declared, 1) for Gaussian levels and NaN (not checked) for
    the other noise kinds; finite says whether every clean and noisy value is finite.
    """
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    index = json.loads(index_path.read_text())
    rows: list[dict[str, Any]] = []
    for set_name, info in index["sets"].items():
        clean = np.load(evalsets_dir / set_name / "clean.npy")
        for level, level_info in info["levels"].items():
            path = evalsets_dir / set_name / f"{level}.npy"
            if not path.is_file():
                raise DataError(f"{path}: missing; rerun `denoise noise`")
            noisy = np.load(path)
            for position, image in enumerate(info["images"]):
                rows.append(
                    _evaluation_row(set_name, level, level_info, image, clean, noisy, position)
                )
    return pd.DataFrame(rows)


def _evaluation_row(
    set_name: str,
    level: str,
    level_info: Mapping[str, Any],
    image: str,
    clean: np.ndarray,
    noisy: np.ndarray,
    position: int,
) -> dict[str, Any]:
    clean_image = clean[position] if position < len(clean) else np.zeros((0, 0, 0), np.float32)
    noisy_image = noisy[position] if position < len(noisy) else np.zeros((0, 0, 0), np.float32)
    shape_matches = clean_image.shape == noisy_image.shape and clean_image.size > 0
    finite = bool(np.isfinite(clean_image).all() and np.isfinite(noisy_image).all())
    empirical = (
        float(np.std(noisy_image.astype(np.float64) - clean_image) * 255.0)
        if shape_matches and finite
        else math.nan
    )
    saved = bool(level_info.get("as_saved", False))
    # Clipping shrinks the noise of an as-saved level; its unclipped twin's sigma is checked.
    gaussian = level_info["kind"] == "gaussian" and not saved
    declared = float(level_info["level"]) if gaussian else math.nan
    on_8_bit_grid = (
        bool(np.array_equal(np.round(np.clip(noisy_image, 0, 1) * 255) / 255, noisy_image))
        if saved and finite
        else not saved
    )
    return {
        ROW: f"{set_name}/{level}/{image}",
        "set": set_name,
        "level": level,
        "kind": level_info["kind"],
        "image": image,
        "height": clean_image.shape[0] if clean_image.ndim == 3 else 0,
        "width": clean_image.shape[1] if clean_image.ndim == 3 else 0,
        "shape_matches": shape_matches,
        "finite": finite,
        "as_saved": saved,
        "on_8_bit_grid": on_8_bit_grid,
        "clean_min": float(clean_image.min()) if clean_image.size else math.nan,
        "clean_max": float(clean_image.max()) if clean_image.size else math.nan,
        "declared_sigma": declared,
        "empirical_sigma": empirical,
        "sigma_relative_error": abs(empirical - declared) / max(declared, 1.0)
        if gaussian
        else math.nan,
    }


def results_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per set (clip sets too), noise level and method of the evaluate stage's
    metrics.json; images: how many images (clips) the method was scored on."""
    rows = []
    scored = {**metrics.get("sets", {}), **metrics.get("clip_sets", {})}
    for set_name, set_metrics in scored.items():
        for level, methods in set_metrics.get("levels", {}).items():
            for method, result in methods.items():
                values = [float(result.get(key, math.nan)) for key in ("psnr", "ssim")]
                values.append(float(result.get("ms_per_frame", math.nan)))
                rows.append(
                    {
                        ROW: f"{set_name}/{level}/{method}",
                        "set": set_name,
                        "level": level,
                        "method": method,
                        "psnr": values[0],
                        "ssim": values[1],
                        "ms_per_frame": values[2],
                        "images": int(result.get("images", result.get("clips", 0))),
                        "finite": all(math.isfinite(value) for value in values),
                    }
                )
    columns = [ROW, "set", "level", "method", "psnr", "ssim", "ms_per_frame", "images", "finite"]
    return pd.DataFrame(rows, columns=columns)
