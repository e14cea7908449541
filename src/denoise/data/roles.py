"""Which footage is clean: each source's noise level, measured before any resize, and its role.

A source is `clean` (a target: noise is added to it), `noisy` (no clean copy exists: its
frames are cropped at native scale and never used as targets, nor scored against), or, by
params, `auto`: noisy when Donoho's estimate (core.noise_level) on its native-scale frames is
above extract.noise_estimate.auto_threshold. extract writes the manifest's `role` column and
sources.parquet, one row per source, beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.core.noise_level import NoiseLevel, measure_noise_level
from denoise.data.sources import Source
from denoise.data.video import read_frames, read_still

SOURCES_NAME = "sources.parquet"  # one row per source: its noise level and role
CLEAN, NOISY, AUTO = "clean", "noisy", "auto"  # the roles (core.schema.Role)


@dataclasses.dataclass(frozen=True)
class SourceRole:
    """One source's measured noise level and the role it gets (a row of sources.parquet)."""

    name: str
    setting: str  # what params give it: clean, noisy or auto
    role: str  # clean or noisy
    level: NoiseLevel
    note: str  # "" or one line on how the role was decided when the estimate failed


def decide_role(name: str, setting: str, level: NoiseLevel, threshold: float) -> SourceRole:
    """A source's role: the one params set, or for auto noisy when its estimate is above the
    threshold. Where the estimator fails (every measured frame flat or saturated), an explicit
    role is kept and auto falls back to clean, each with a note."""
    if not np.isnan(level.sigma):
        role = setting if setting != AUTO else (NOISY if level.sigma > threshold else CLEAN)
        return SourceRole(name, setting, role, level, "")
    reason = (
        f"{name}: no noise estimate (its {level.frames} measured frame(s) are flat or saturated)"
    )
    if setting == AUTO:
        return SourceRole(name, setting, CLEAN, level, f"{reason}; role auto falls back to clean")
    return SourceRole(name, setting, setting, level, f"{reason}; keeps its role {setting}")


def _measured_frames(source: Source, params: Params) -> list[np.ndarray]:
    """The frames a source's noise level is measured on: native-scale centre crops (never
    resized) of a video's first extract.noise_estimate.frames kept frames, or of that many of a
    folder's images, evenly spaced. uint8 (size, size, 3) RGB each."""
    config = params.extract
    count = config.noise_estimate.frames
    if source.images:
        positions = np.unique(np.linspace(0, len(source.images) - 1, count).round().astype(int))
        return [
            read_still(source.images[position], config.size, config.allow_greyscale, True)
            for position in positions
        ]
    frames = read_frames(
        source.path,
        config.size,
        config.frame_stride,
        config.target_fps,
        config.allow_greyscale,
        min_decoded_fraction=0.0,  # a few frames only: the full read checks truncation
        native_scale=True,
    )
    with contextlib.closing(frames):
        return [frame.rgb for frame in itertools.islice(frames, count)]


def source_role(source: Source, name: str, params: Params) -> SourceRole:
    """Measure one source's noise level before any resize and decide its role."""
    estimate = params.extract.noise_estimate
    level = measure_noise_level(
        _measured_frames(source, params),
        estimate.curve_bins,
        estimate.curve_min_blocks,
        estimate.max_saturated,
    )
    return decide_role(name, params.extract.role(name), level, estimate.auto_threshold)


def source_table(
    roles: list[SourceRole], tables: list[pd.DataFrame], params: Params
) -> pd.DataFrame:
    """sources.parquet: one row per source, its role (and the setting it came from), its noise
    level (noise_sigma, 0-255: the median of its measured frames' estimates), the noise-level
    curve (curve_sigma against curve_intensity; flat for signal-independent noise), frames
    measured and kept, and any note."""
    return pd.DataFrame(
        [
            {
                "source": role.name,
                "source_kind": str(table["source_kind"].iat[0]) if len(table) else "",
                "role": role.role,
                "role_setting": role.setting,
                "noise_sigma": role.level.sigma,
                "auto_threshold": params.extract.noise_estimate.auto_threshold,
                "frames_measured": role.level.frames,
                "frames_measurable": role.level.measurable,
                "curve_intensity": role.level.curve_intensity,
                "curve_sigma": role.level.curve_sigma,
                "frames": len(table),
                "train_only": role.name in params.extract.train_only,
                "note": role.note,
            }
            for role, table in zip(roles, tables, strict=True)
        ]
    )


def load_sources(frames_dir: Path) -> pd.DataFrame:
    """The per-source table the extract stage wrote (sources.parquet), or DataError."""
    path = frames_dir / SOURCES_NAME
    if not path.is_file():
        raise DataError(f"{path}: missing; run `denoise extract` first")
    return pd.read_parquet(path)


def clean_targets(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's rows that may be clean targets: role clean (a noisy source's frames never
    are: no noise is added to them, and nothing is scored against them)."""
    return manifest if manifest.empty else manifest[manifest["role"] == CLEAN]
