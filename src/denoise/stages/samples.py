"""samples command: copy the sample videos into paths.raw, or render a synthetic one; build
the train-only still folders samples.stills names."""

from __future__ import annotations

from pathlib import Path

from denoise.core.atomic import atomic_path
from denoise.core.config import Params
from denoise.data.samples import (
    SEARCH_PATHS,
    SYNTHETIC_NAME,
    SamplesSummary,
    _copy_sample,
    find_sample,
    render_canvas_video,
)
from denoise.data.stills import (
    DEAD_LEAVES_FOLDER,
    JXL_PHOTOS_FOLDER,
    PHOTOS_FOLDER,
    build_dead_leaves,
    build_jxl_photos,
    build_wallpapers,
    copy_photos,
)
from denoise.data.video import write_video


def copy_sample_videos(
    params: Params, search_paths: tuple[Path, ...] = SEARCH_PATHS
) -> tuple[list[str], list[str], list[str]]:
    """Copy each of samples.videos into paths.raw, skipping those present: the names copied,
    present and missing (not installed)."""
    raw_dir = Path(params.paths.raw)
    raw_dir.mkdir(parents=True, exist_ok=True)
    copied, present, missing = [], [], []
    for name in params.samples.videos:
        target = raw_dir / name
        if target.is_file():
            present.append(name)
            continue
        source = find_sample(name, search_paths)
        if source is None:
            missing.append(name)
            continue
        _copy_sample(source, target)
        copied.append(name)
    return copied, present, missing


def run(params: Params, search_paths: tuple[Path, ...] = SEARCH_PATHS) -> SamplesSummary:
    """Copy each sample video into paths.raw (skipping those present); render one if none exist."""
    raw_dir = Path(params.paths.raw)
    copied, present, missing = copy_sample_videos(params, search_paths)
    synthetic = None
    if missing and not copied and not present:
        target = raw_dir / SYNTHETIC_NAME
        if not target.is_file():
            frames = render_canvas_video(params.samples.synthetic_frames, seed=params.seed)
            with atomic_path(target) as staging:
                write_video(staging, frames, fps=25.0)
        synthetic = SYNTHETIC_NAME
    return SamplesSummary(copied, present, missing, synthetic, build_stills(params))


def build_stills(params: Params) -> dict[str, str]:
    """Build each train-only still folder samples.stills names under paths.raw (those present
    are kept; dead_leaves last, after the folders it takes its colours from): folder -> what it
    holds."""
    raw_dir = Path(params.paths.raw)
    stills: dict[str, str] = {}
    ordered = sorted(params.samples.stills, key=lambda folder: folder == DEAD_LEAVES_FOLDER)
    for folder in ordered:
        target = raw_dir / folder
        if target.is_dir():
            stills[folder] = "present"
        elif folder == PHOTOS_FOLDER:
            stills[folder] = f"{copy_photos(target)} photographs from opencv-doc"
        elif folder == JXL_PHOTOS_FOLDER:
            kept, flat = build_jxl_photos(target, params.extract.size)
            stills[folder] = f"{kept} tiles of libjxl-testdata photographs ({flat} flat dropped)"
        elif folder == DEAD_LEAVES_FOLDER:
            written, flat = build_dead_leaves(
                target, params.samples.dead_leaves, params.extract.size, params.seed, raw_dir
            )
            stills[folder] = f"{written} dead-leaves images ({flat} flat ones skipped)"
        else:
            kept, flat = build_wallpapers(target, params.extract.size)
            stills[folder] = f"{kept} tiles of Debian wallpapers ({flat} flat ones dropped)"
    return stills
