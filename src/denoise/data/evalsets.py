"""The fixed evaluation sets: seeded noisy copies of held-out frames and photographs.

Each set holds clean float32 (N, H, W, 3) RGB in [0, 1] and one noisy array per level, written
losslessly and unclipped (the literature's convention, docs/benchmarks.md). The Gaussian levels
in noise.evaluation.as_saved also get an "as saved" twin of the same draw, clipped and rounded
to 8 bits, as a noisy frame written to disk would be.

With extract.clips, the validation and test clips become clip sets the same way: clean
float32 (N, T, H, W, 3) and noisy copies, the noise of every frame drawn independently.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from denoise.core.atomic import atomic_directory, write_json
from denoise.core.config import Params
from denoise.core.errors import ConfigError, DataError
from denoise.core.noise import (
    add_camera_noise,
    apply_noise,
    as_saved,
    compress_jpeg,
    empirical_sigma,
    level_name,
    set_rng,
)
from denoise.core.noise_level import estimate_sigma
from denoise.data.extract import load_clips_manifest, load_frames, load_manifest
from denoise.data.roles import clean_targets
from denoise.data.stills import tiles
from denoise.data.video import centre_crop_resize

EVALUATION_SPLITS = ("validation", "test")
PHOTOGRAPHS = "photographs"
HELD_OUT = "held_out"  # noise.held_out: photographs no training set uses, scored as PHOTOGRAPHS
GRACE_HOPPER = "grace_hopper"  # matplotlib's sample photograph (Debian: python-matplotlib-data)
DEBIAN_MATPLOTLIB_DATA = Path("/usr/share/matplotlib/sample_data")
INDEX_NAME = "index.json"
CLIP_SETS = "clip_sets"  # index.json key of the clip sets (clips-validation, clips-test)
CLIP_VALIDATION = "clips-validation"  # training's model selection for models on clips
CLIP_TEST = "clips-test"  # where temporal models are scored for registering


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


def noisy_levels(
    clean: np.ndarray, name: str, params: Params
) -> Iterator[tuple[str, dict[str, object], np.ndarray]]:
    """Every evaluation level of one set: (level name, its index entry, the noisy images), in
    params order (numeric kinds, camera, compressed); each level's draw seeded by its name."""
    evaluation, seed = params.noise.evaluation, params.seed
    drawn: dict[str, np.ndarray] = {}
    for kind, level in evaluation.levels():
        noisy = apply_noise(clean, kind, level, set_rng(seed, name, kind, f"{level:g}"))
        drawn[level_name(kind, level)] = noisy
        yield level_name(kind, level), {"kind": kind, "level": level, "as_saved": False}, noisy
        if kind == "gaussian" and level in evaluation.as_saved:  # the same draw, as on disk
            saved = {"kind": kind, "level": level, "as_saved": True}
            yield level_name(kind, level, saved=True), saved, as_saved(noisy)
    camera = params.noise.camera
    for setting, values in evaluation.camera.items():
        rng = set_rng(seed, name, "camera", setting)
        noisy = add_camera_noise(clean, values.shot, values.read, camera.gains(), camera.gamma, rng)
        drawn[f"camera-{setting}"] = noisy
        entry = {"kind": "camera", "level": setting, "shot": values.shot, "read": values.read}
        yield f"camera-{setting}", {**entry, "as_saved": False}, noisy
    for compressed in evaluation.compressed:
        entry = {"kind": "compressed", "level": compressed.name(), "noise": compressed.noise}
        noisy = compress_jpeg(drawn[compressed.noise], compressed.quality)
        yield compressed.name(), {**entry, "quality": compressed.quality, "as_saved": False}, noisy


def held_out_source(name: str) -> np.ndarray:
    """A held-out photograph as its source holds it: uint8 (H, W, 3) RGB. grace_hopper comes
    from Debian's python-matplotlib-data where installed, else from matplotlib's own sample
    data; any other name is a scikit-image colour photograph (the left view of a stereo pair)."""
    if name == GRACE_HOPPER:
        path = DEBIAN_MATPLOTLIB_DATA / "grace_hopper.jpg"
        if not path.is_file():
            from matplotlib import cbook

            path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{path}: not an image OpenCV can read")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None:
        raise ConfigError(f"noise.held_out.images: scikit-image has no image {name!r}")
    image = loader()
    image = np.asarray(image[0] if isinstance(image, tuple) else image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ConfigError(f"noise.held_out.images: {name!r} is not a colour photograph")
    return np.ascontiguousarray(image[..., :3])


def held_out_crops(name: str, size: int, crops: int) -> list[tuple[str, np.ndarray]]:
    """Up to `crops` size x size tiles of a held-out photograph, (label, float32 (S, S, 3) RGB
    in [0, 1]): resized (area) so its short side is 2 x size and cut on a centred grid (as the
    train folders' tiles are), the most textured (highest std-dev) kept, in grid order."""
    grid = tiles(held_out_source(name), size)
    ranked = sorted(grid, key=lambda tile: -float(tile[2].std()))[:crops]
    return [
        (f"{name}_{row}_{col}", tile.astype(np.float32) / 255.0)
        for row, col, tile in sorted(ranked, key=lambda tile: tile[:2])
    ]


def _write_set(
    directory: Path, name: str, clean: np.ndarray, sources: list[str], params: Params
) -> dict[str, object]:
    set_dir = directory / name
    set_dir.mkdir()
    np.save(set_dir / "clean.npy", clean.astype(np.float32), allow_pickle=False)
    levels = {}
    for level, entry, images in noisy_levels(clean, name, params):
        np.save(set_dir / f"{level}.npy", images, allow_pickle=False)
        frames = images.reshape(-1, *images.shape[-3:])  # a clip set's frames, one by one
        levels[level] = {
            **entry,
            "empirical_sigma": empirical_sigma(images, clean),
            # what a method told no sigma estimates (core.noise_level), mean over images
            "estimated_sigma": float(np.mean(estimate_sigma(frames))) if len(frames) else 0.0,
        }
    return {"images": sources, "shape": list(clean.shape), "levels": levels}


def _write_clip_sets(directory: Path, frames_dir: Path, params: Params) -> dict[str, object]:
    """clips-validation and clips-test: the split's clips (at most noise.max_clips, evenly
    spaced over it), clean and noisy."""
    clips = clean_targets(load_clips_manifest(frames_dir))
    written: dict[str, object] = {}
    for split in EVALUATION_SPLITS:
        rows = clips[clips["split"] == split] if len(clips) else clips
        if rows.empty:
            raise DataError(
                f"{frames_dir}: no {split} clips of {params.extract.clips.length} frames from "
                "a clean source; shorten extract.clips.length or add longer clean videos"
            )
        if params.noise.max_clips is not None:
            rows = evenly_spaced(rows, params.noise.max_clips)
        clean = np.stack([np.load(frames_dir / file) for file in rows["file"]])
        sources = [
            f"{video}#{first}-{last}"
            for video, first, last in zip(
                rows["video"], rows["first_frame_index"], rows["last_frame_index"], strict=True
            )
        ]
        name = f"clips-{split}"
        written[name] = _write_set(
            directory, name, clean.astype(np.float32) / 255.0, sources, params
        )
    return written


@dataclasses.dataclass(frozen=True)
class NoiseSummary:
    images_per_set: dict[str, int]
    levels: list[str]


def write_evaluation_sets(params: Params) -> NoiseSummary:
    """The stage's work without MLflow (bench/gpu_train.py runs it on hosts without it)."""
    frames_dir = Path(params.paths.frames)
    manifest = clean_targets(load_manifest(frames_dir))  # never score against noisy frames
    index: dict[str, object] = {"seed": params.seed, "sets": {}}
    with atomic_directory(params.paths.evalsets) as staging:
        for split in EVALUATION_SPLITS:
            rows = evenly_spaced(manifest[manifest["split"] == split], params.noise.max_frames)
            if rows.empty:
                raise DataError(
                    f"{frames_dir}: no {split} frames from a clean source; raise "
                    f"extract.split.{split}_fraction, add longer videos, or give a source "
                    "role clean in extract.roles"
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
        held_out = params.noise.held_out
        if held_out.images and held_out.crops > 0:
            crops = [
                crop
                for name in held_out.images
                for crop in held_out_crops(name, params.noise.photograph_size, held_out.crops)
            ]
            index["sets"][HELD_OUT] = _write_set(  # type: ignore[index]
                staging,
                HELD_OUT,
                np.stack([image for _, image in crops]),
                [label for label, _ in crops],
                params,
            )
        if params.extract.clips.per_split > 0:
            index[CLIP_SETS] = _write_clip_sets(staging, frames_dir, params)
        write_json(staging / INDEX_NAME, index)
    sets: dict[str, dict[str, object]] = index["sets"]  # type: ignore[assignment]
    return NoiseSummary(
        images_per_set={name: len(info["images"]) for name, info in sets.items()},  # type: ignore[arg-type]
        levels=list(next(iter(sets.values()))["levels"]),  # type: ignore[call-overload]
    )


def load_set(
    evalsets_dir: Path, name: str, group: str = "sets"
) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Read one evaluation set (group CLIP_SETS: one clip set): clean, {level name: noisy},
    and its index entry."""
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    info = json.loads(index_path.read_text()).get(group, {}).get(name)
    if info is None:
        raise DataError(f"{evalsets_dir}: no evaluation set {name!r}; rerun `denoise noise`")
    clean = np.load(evalsets_dir / name / "clean.npy")
    noisy = {level: np.load(evalsets_dir / name / f"{level}.npy") for level in info["levels"]}
    return clean, noisy, info


def list_sets(evalsets_dir: Path, group: str = "sets") -> list[str]:
    """Names of the evaluation sets the noise stage wrote (group CLIP_SETS: the clip sets,
    none unless extract.clips.per_split > 0)."""
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    return list(json.loads(index_path.read_text()).get(group, {}))
