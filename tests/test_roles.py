"""Which footage is clean: extract's per-source noise level and role, a noisy source cropped at
native scale and never a clean target, validate's check of clean sources, on real files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import write_tiny_video

from denoise.core.config import Params
from denoise.core.errors import DataError, ValidationError
from denoise.core.noise_level import measure_noise_level
from denoise.data.evalsets import load_set
from denoise.data.extract import load_manifest
from denoise.data.roles import clean_targets, decide_role, load_sources, source_role
from denoise.data.samples import find_sample, render_canvas_video
from denoise.data.sources import list_sources
from denoise.data.stills import build_wallpapers
from denoise.data.video import centre_crop_resize, write_video
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.stages.samples import run as run_samples
from denoise.stages.validate import run as run_validate
from denoise.validation.tables import split_warnings

NATIVE = 64  # the test sources' side; extract.size stays 32, so a resize would show


def _assert_bundled_sources_clean(params: Params) -> None:
    raw = Path(params.paths.raw)
    threshold = params.extract.noise_estimate.auto_threshold
    for source in list_sources(raw):
        name = source.path.relative_to(raw).as_posix()
        role = source_role(source, name, params)
        assert role.role == "clean", f"{name}: {role.level.sigma:.2f} above {threshold}"
        assert role.level.sigma < threshold / 2, f"{name}: {role.level.sigma:.2f}, no margin"


def _full_size(params: Params, stills: list[str]) -> Params:
    """Default frame size (the real sources are measured at native scale regardless)."""
    for path in Path(params.paths.raw).iterdir():
        path.unlink()
    return dataclasses.replace(
        params,
        samples=dataclasses.replace(params.samples, stills=stills),  # type: ignore[arg-type]
        extract=dataclasses.replace(params.extract, size=200),
    )


@pytest.mark.skipif(
    find_sample("box.mp4") is None,
    reason="Debian's opencv-doc is not installed: infra/apt-install.sh opencv-doc",
)
def test_auto_keeps_the_bundled_videos_and_photographs_clean(params: Params) -> None:
    params = _full_size(params, ["photos"])
    run_samples(params)
    raw = Path(params.paths.raw)
    frames = render_canvas_video(24, seed=params.seed)  # the fallback when opencv-doc is missing
    write_video(raw / "synthetic-canvas.avi", frames, fps=25.0)
    names = {source.path.name for source in list_sources(raw)}
    assert names == {"box.mp4", "cup.mp4", "vtest.avi", "photos", "synthetic-canvas.avi"}
    _assert_bundled_sources_clean(params)


@pytest.mark.slow
def test_auto_keeps_the_wallpapers_clean(params: Params) -> None:
    params = _full_size(params, [])
    try:
        build_wallpapers(Path(params.paths.raw) / "wallpapers", 200)
    except DataError as error:  # apt-get cannot reach Debian's archive here
        pytest.skip(str(error))
    _assert_bundled_sources_clean(params)


def _noisy_folder(folder: Path, count: int = 12, sigma: float = 20.0) -> list[np.ndarray]:
    """count lossless NATIVE x NATIVE PNG frames: a colour gradient with N(0, sigma) noise."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:NATIVE, 0:NATIVE]
    base = np.stack([cols * 3, rows * 3, 255 - cols * 3], axis=-1).astype(np.float64) * 0.8 + 20
    images = []
    for index in range(count):
        noisy = np.clip(np.round(base + rng.normal(0, sigma, base.shape)), 0, 255)
        rgb = noisy.astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append(rgb)
    return images


def _two_sources(params: Params, **roles: str) -> tuple[Params, list[np.ndarray]]:
    """paths.raw holds a clean 64x64 video and a folder `noisy` of noisy 64x64 images."""
    raw = Path(params.paths.raw)
    (raw / "tiny.avi").unlink()
    write_tiny_video(raw / "clean.avi", size=NATIVE)
    images = _noisy_folder(raw / "noisy")
    return dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, roles=roles)
    ), images


def test_a_noisy_source_is_cropped_at_native_scale_and_never_a_clean_target(
    params: Params,
) -> None:
    params, images = _two_sources(params)  # both auto
    summary = run_extract(params)
    assert summary.roles == {"clean.avi": "clean", "noisy": "noisy"}
    frames_dir = Path(params.paths.frames)
    sources = load_sources(frames_dir).set_index("source")
    assert sources.loc["noisy", "noise_sigma"] == pytest.approx(20.0, rel=0.15)
    assert sources.loc["clean.avi", "noise_sigma"] < 2.0
    assert sources.loc["noisy", "role_setting"] == "auto"
    assert len(sources.loc["noisy", "curve_sigma"]) == params.extract.noise_estimate.curve_bins
    manifest = load_manifest(frames_dir)
    assert set(manifest.groupby("video")["role"].first().items()) == {
        ("clean.avi", "clean"),
        ("noisy", "noisy"),
    }
    # the noisy frames are the images' centre crops, pixel for pixel: never area-resized
    noisy_rows = manifest[manifest["video"] == "noisy"].sort_values("frame_index")
    size, top = params.extract.size, (NATIVE - params.extract.size) // 2
    for row in noisy_rows.itertuples():
        stored = np.load(frames_dir / row.shard)[row.offset]
        crop = images[row.frame_index][top : top + size, top : top + size]
        assert np.array_equal(stored, crop)
        assert not np.array_equal(stored, centre_crop_resize(images[row.frame_index], size))
    assert set(clean_targets(manifest)["video"]) == {"clean.avi"}
    # nothing is scored against a noisy frame
    run_noise(params)
    for split in ("validation", "test"):
        _, _, info = load_set(Path(params.paths.evalsets), split)
        assert all(image.startswith("clean.avi#") for image in info["images"])


def test_a_clean_source_too_noisy_stops_validate_with_one_line(params: Params) -> None:
    params, _ = _two_sources(params, noisy="clean")
    assert run_extract(params).roles["noisy"] == "clean"  # an explicit role is kept
    run_noise(params)
    with pytest.raises(ValidationError) as caught:
        run_validate(params)
    message = str(caught.value)
    assert "\n" not in message
    assert "video_clean_noise_sigma" in message and "e.g. noisy:" in message
    assert "clean.avi" not in message


def test_a_failed_estimate_keeps_an_explicit_role_and_auto_falls_back_to_clean() -> None:
    flat = measure_noise_level([np.full((16, 16, 3), 90, np.uint8)] * 2, 4, 10, 0.5)
    assert flat.measurable == 0 and math.isnan(flat.sigma)
    auto = decide_role("grey.avi", "auto", flat, 4.0)
    assert auto.role == "clean" and "falls back to clean" in auto.note
    assert "grey.avi" in auto.note and "\n" not in auto.note
    kept = decide_role("grey.avi", "noisy", flat, 4.0)
    assert kept.role == "noisy" and "keeps its role noisy" in kept.note
    saturated = np.zeros((16, 16, 3), np.uint8)
    saturated[:2] = np.random.default_rng(0).integers(0, 255, (2, 16, 3))
    assert measure_noise_level([saturated], 4, 10, 0.5).measurable == 0


def test_validate_warns_of_a_source_without_validation_or_test_frames() -> None:
    manifest = pd.DataFrame(
        {
            "video": ["long.mp4"] * 3 + ["short.mp4"] * 2 + ["photos"] * 2,
            "split": ["train", "validation", "test", "train", "test", "train", "train"],
            "train_only": [False] * 5 + [True] * 2,
        }
    )
    assert split_warnings(manifest) == [
        "short.mp4 yields no validation frames (2 frames); lengthen it or raise "
        "extract.split's fractions"
    ]
