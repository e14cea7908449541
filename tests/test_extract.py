from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_params, write_tiny_video

from denoise import extract
from denoise.config import Params, Split
from denoise.extract import assign_splits, load_frames, load_manifest


def test_frames_counts_shapes_and_rgb_order(params: Params) -> None:
    summary = extract.run(params)
    manifest = load_manifest(Path(params.paths.frames))
    assert summary.num_videos == 1
    assert len(manifest) == 12
    assert list(manifest["frame_index"]) == list(range(12))
    frames = load_frames(Path(params.paths.frames), manifest)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.float32
    left = frames[:, 4:28, 1:6]  # the pure red strip, away from JPEG's block edges
    assert left[..., 0].mean() > 0.9 and left[..., 2].mean() < 0.1
    assert set(manifest.columns) >= {
        "video",
        "video_sha256",
        "frame_index",
        "timestamp_s",
        "mean",
        "std",
        "sharpness",
        "phash",
        "split",
        "shard",
    }
    assert manifest["phash"].str.len().eq(16).all()


def test_stride_target_fps_and_shards(params: Params) -> None:
    strided = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, frame_stride=3, frames_per_shard=2)
    )
    extract.run(strided)
    manifest = load_manifest(Path(params.paths.frames))
    assert list(manifest["frame_index"]) == [0, 3, 6, 9]
    assert manifest["shard"].nunique() == 2
    resampled = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, target_fps=2.0)
    )  # the video is 4 fps
    extract.run(resampled)
    assert list(load_manifest(Path(params.paths.frames))["frame_index"]) == [0, 2, 4, 6, 8, 10]


def test_splits_are_time_blocks_without_leakage() -> None:
    timestamps = np.arange(100) / 10.0
    split = Split(validation_fraction=0.2, test_fraction=0.2, gap_seconds=1.0)
    labels = assign_splits(timestamps, split)
    order = {"train": 0, "validation": 1, "test": 2}
    kept = [(time, label) for time, label in zip(timestamps, labels, strict=True) if label != "gap"]
    ranks = [order[label] for _, label in kept]
    assert ranks == sorted(ranks), "blocks must be contiguous in time"
    for first, second in (("train", "validation"), ("validation", "test")):
        last = max(time for time, label in kept if label == first)
        following = min(time for time, label in kept if label == second)
        assert following - last >= 1.0, "a gap separates neighbouring blocks"
    assert {"train", "validation", "test", "gap"} == set(labels)


def test_split_of_a_real_run_is_disjoint_by_time(params: Params) -> None:
    extract.run(params)
    manifest = load_manifest(Path(params.paths.frames))
    times = {
        split: manifest.loc[manifest["split"] == split, "timestamp_s"]
        for split in ("train", "validation", "test")
    }
    assert all(len(values) for values in times.values())
    assert times["train"].max() < times["validation"].min()
    assert times["validation"].max() < times["test"].min()


def test_new_video_is_picked_up(params: Params) -> None:
    write_tiny_video(Path(params.paths.raw) / "second.avi", num_frames=8, seed=1)
    extract.run(params)
    manifest = load_manifest(Path(params.paths.frames))
    assert manifest.groupby("video").size().to_dict() == {"second.avi": 8, "tiny.avi": 12}


def _run_cli_on(params_path: Path, command: str = "extract") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "denoise", command, "--params", str(params_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_cli(params: Params, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _run_cli_on(write_params(params, tmp_path / "params.yaml"))


def _expect_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 1, no traceback, and the last line of stderr is the only error line.

    (Progress bars of the stages that ran before the failure may precede it.)"""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert not [line for line in lines if line.startswith("[")], "decoder noise leaked"
    for needle in needles:
        assert needle in errors[0], errors[0]


def _corrupt(raw: Path, name: str) -> None:
    whole = write_tiny_video(raw / "whole.avi", num_frames=40)
    (raw / name).write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 10])
    whole.unlink()


def _empty(raw: Path, name: str) -> None:
    write_tiny_video(raw / name, num_frames=0)


BAD_VIDEOS = {
    "notes.mp4": (lambda raw, name: (raw / name).write_text("not a video\n"), "notes.mp4"),
    "truncated.avi": (_corrupt, "truncated.avi"),
    "empty.avi": (_empty, "empty.avi"),
    "small.avi": (lambda raw, name: write_tiny_video(raw / name, size=16), "smaller than"),
    "grey.avi": (lambda raw, name: write_tiny_video(raw / name, colour=False), "greyscale"),
}


@pytest.mark.parametrize("name", sorted(BAD_VIDEOS))
def test_bad_video_fails_with_one_line_and_keeps_last_frames(
    params: Params, tmp_path: Path, name: str
) -> None:
    extract.run(params)
    manifest = Path(params.paths.frames) / "manifest.parquet"
    before = manifest.read_bytes()
    make, needle = BAD_VIDEOS[name]
    make(Path(params.paths.raw), name)
    result = _run_cli(params, tmp_path)
    _expect_one_line_error(result, name, needle)
    assert manifest.read_bytes() == before, "a failed extract must not touch the last output"
    assert not list(Path(params.paths.frames).parent.glob(".frames.tmp-*"))


def test_greyscale_allowed_when_configured(params: Params) -> None:
    write_tiny_video(Path(params.paths.raw) / "grey.avi", colour=False)
    allowed = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, allow_greyscale=True)
    )
    extract.run(allowed)
    manifest = load_manifest(Path(params.paths.frames))
    assert (manifest["video"] == "grey.avi").sum() == 12


def test_bad_params_fail_with_one_line(params: Params, tmp_path: Path) -> None:
    path = write_params(params, tmp_path / "params.yaml")
    text = path.read_text()
    path.write_text(text.replace("size: 32", "size: 30"))
    _expect_one_line_error(_run_cli_on(path), "extract.size", "divisible by 4")
    path.write_text(text.replace("seed: 0", "seed: 0\nsneed: 1"))
    _expect_one_line_error(_run_cli_on(path), "sneed: unknown key")
    path.write_text(text.replace("- 15.0", "- -15.0"))
    _expect_one_line_error(_run_cli_on(path), "noise.evaluation.gaussian[0]", "sigma must be >= 0")


def test_empty_raw_directory(params: Params, tmp_path: Path) -> None:
    (Path(params.paths.raw) / "tiny.avi").unlink()
    _expect_one_line_error(_run_cli(params, tmp_path), "no videos")
