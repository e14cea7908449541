from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_params, write_tiny_video

from denoise.core.config import Params
from denoise.core.data_config import Split
from denoise.core.errors import DataError
from denoise.data.extract import assign_splits, load_frames, load_manifest
from denoise.data.sources import list_sources
from denoise.data.video import IMAGE_SUFFIXES
from denoise.stages.extract import run as run_extract


def test_frames_counts_shapes_and_rgb_order(params: Params) -> None:
    summary = run_extract(params)
    manifest = load_manifest(Path(params.paths.frames))
    assert summary.num_sources == 1
    assert len(manifest) == 12
    assert list(manifest["frame_index"]) == list(range(12))
    frames = load_frames(Path(params.paths.frames), manifest)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.float32
    left = frames[:, 4:28, 1:6]  # the pure red strip, away from JPEG's block edges
    assert left[..., 0].mean() > 0.9 and left[..., 2].mean() < 0.1
    assert set(manifest.columns) >= {
        "video",
        "video_sha256",
        "source_kind",
        "role",
        "source_noise_sigma",
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
    assert manifest["source_kind"].eq("video").all()
    assert manifest["role"].eq("clean").all(), "auto keeps a clean video clean"


def test_stride_target_fps_and_shards(params: Params) -> None:
    strided = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, frame_stride=3, frames_per_shard=2)
    )
    run_extract(strided)
    manifest = load_manifest(Path(params.paths.frames))
    assert list(manifest["frame_index"]) == [0, 3, 6, 9]
    assert manifest["shard"].nunique() == 2
    resampled = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, target_fps=2.0)
    )  # the video is 4 fps
    run_extract(resampled)
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
    run_extract(params)
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
    run_extract(params)
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


def _write_image(path: Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3), RGBA (H, W, 4) or greyscale (H, W) image with OpenCV, making its
    folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        )
    assert cv2.imwrite(str(path), image)
    return path


def _write_stills(folder: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """count 32x32 RGB images img00.png, img01.png, ... (the fourth is img03.JPG): a random
    colour plus texture."""
    rng = np.random.default_rng(seed)
    images = [
        (rng.integers(0, 190, 3) + rng.integers(0, 64, (32, 32, 3))).astype(np.uint8)
        for _ in range(count)
    ]
    for index, image in enumerate(images):
        _write_image(folder / f"img{index:02d}{'.JPG' if index == 3 else '.png'}", image)
    return images


BAD_VIDEOS = {
    "notes.mp4": (lambda raw, name: (raw / name).write_text("not a video\n"), "notes.mp4"),
    "truncated.avi": (_corrupt, "truncated.avi"),
    "empty.avi": (_empty, "empty.avi"),
    "small.avi": (lambda raw, name: write_tiny_video(raw / name, size=16), "smaller than"),
    "grey.avi": (lambda raw, name: write_tiny_video(raw / name, colour=False), "greyscale"),
    "photos/broken.png": (
        lambda raw, name: _write_image(raw / name, np.zeros((32, 32, 3), np.uint8)).write_bytes(
            np.random.default_rng(0).bytes(500)
        ),
        "not an image OpenCV can read",
    ),
    "photos/grey.png": (
        lambda raw, name: _write_image(raw / name, np.full((32, 32), 128, np.uint8)),
        "greyscale image",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_VIDEOS))
def test_bad_video_fails_with_one_line_and_keeps_last_frames(
    params: Params, tmp_path: Path, name: str
) -> None:
    run_extract(params)
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
    run_extract(allowed)
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
    _expect_one_line_error(
        _run_cli_on(path), "noise.evaluation.gaussian[0]", "must be >= 0, got -15"
    )


def test_empty_raw_directory(params: Params, tmp_path: Path) -> None:
    (Path(params.paths.raw) / "tiny.avi").unlink()
    _expect_one_line_error(_run_cli(params, tmp_path), "no videos")


def test_still_image_folder_beside_a_video(params: Params) -> None:
    raw, frames_dir = Path(params.paths.raw), Path(params.paths.frames)
    images = _write_stills(raw / "photos", 8)
    summary = run_extract(params)
    manifest = load_manifest(frames_dir)
    assert summary.num_sources == 2
    assert list(manifest["video"].unique()) == ["photos", "tiny.avi"], "sources in name order"
    stills = manifest[manifest["video"] == "photos"]
    assert stills["source_kind"].eq("images").all()
    assert manifest.loc[manifest["video"] == "tiny.avi", "source_kind"].eq("video").all()
    assert list(stills["frame_index"]) == list(range(8))
    assert list(stills["timestamp_s"]) == [float(index) for index in range(8)]
    # one image = one second; 25% validation and 25% test of the 7 s span, no gap
    assert list(stills["split"]) == ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    frames = load_frames(frames_dir, stills)
    assert frames.shape == (8, 32, 32, 3)
    for index in (0, 1, 2, 4):  # lossless PNGs come back exactly, in RGB order
        assert np.array_equal(np.round(frames[index] * 255).astype(np.uint8), images[index])
    colour = frames[3].mean(axis=(0, 1)) * 255
    assert np.abs(colour - images[3].mean(axis=(0, 1))).max() < 4, "the JPEG is read, as RGB"

    digest = stills["video_sha256"].iat[0]
    video_digest = manifest.loc[manifest["video"] == "tiny.avi", "video_sha256"].iat[0]
    run_extract(params)
    again = load_manifest(frames_dir)
    assert set(again.loc[again["video"] == "photos", "video_sha256"]) == {digest}
    changed = images[5].copy()
    changed[0, 0] ^= 1
    _write_image(raw / "photos" / "img05.png", changed)
    run_extract(params)
    after = load_manifest(frames_dir)
    assert set(after.loc[after["video"] == "photos", "video_sha256"]) != {digest}
    assert set(after.loc[after["video"] == "tiny.avi", "video_sha256"]) == {video_digest}


def test_sixteen_bit_image_with_alpha_is_scaled(params: Params) -> None:
    image = np.zeros((40, 48, 4), np.uint16)  # cropped to 40x40, then area-resized to 32x32
    image[..., :3] = (65535, 128 * 257, 0)
    image[..., 3] = 1000
    path = Path(params.paths.raw) / "deep" / "rgba16.png"
    _write_image(path, image)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    run_extract(params)
    manifest = load_manifest(Path(params.paths.frames))
    rows = manifest[manifest["video"] == "deep"]
    frame = load_frames(Path(params.paths.frames), rows)[0]
    assert frame.shape == (32, 32, 3)
    assert np.array_equal(np.round(frame * 255).astype(np.uint8)[0, 0], [255, 128, 0])


def test_greyscale_image_needs_allow_greyscale(params: Params) -> None:
    grey = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    _write_image(Path(params.paths.raw) / "photos" / "grey.png", grey)
    with pytest.raises(DataError, match=r"grey\.png: greyscale image") as raised:
        run_extract(params)
    assert "\n" not in str(raised.value) and "allow_greyscale" in str(raised.value)
    allowed = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, allow_greyscale=True)
    )
    run_extract(allowed)
    manifest = load_manifest(Path(params.paths.frames))
    frame = load_frames(Path(params.paths.frames), manifest[manifest["video"] == "photos"])[0]
    assert np.array_equal(frame[..., 0], frame[..., 2]) and frame.std() > 0.1


def test_corrupt_image_names_the_file(params: Params) -> None:
    _write_stills(Path(params.paths.raw) / "photos", 2)
    broken = Path(params.paths.raw) / "photos" / "img01.png"
    broken.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DataError, match=r"img01\.png: not an image") as raised:
        run_extract(params)
    assert str(broken) in str(raised.value) and "\n" not in str(raised.value)


def test_images_directly_in_raw_are_refused(params: Params) -> None:
    _write_image(Path(params.paths.raw) / "loose.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"loose\.png: still images must be in a folder"):
        run_extract(params)


def test_a_train_only_folder_goes_to_train_whole(params: Params) -> None:
    _write_stills(Path(params.paths.raw) / "photos", 8)
    train_only = dataclasses.replace(params.extract, train_only=["photos"])
    summary = run_extract(dataclasses.replace(params, extract=train_only))
    manifest = load_manifest(Path(params.paths.frames))
    stills = manifest[manifest["video"] == "photos"]
    assert list(stills["split"]) == ["train"] * 8 and stills["train_only"].all()
    video = manifest[manifest["video"] == "tiny.avi"]
    assert not video["train_only"].any() and set(video["split"]) > {"train"}, "split in time"
    assert summary.frames_per_split["train"] == 8 + (video["split"] == "train").sum()


def test_train_only_must_name_a_source(params: Params) -> None:
    train_only = dataclasses.replace(params.extract, train_only=["holiday"])
    with pytest.raises(DataError, match=r"extract\.train_only names 'holiday', which is not a"):
        run_extract(dataclasses.replace(params, extract=train_only))


def test_every_image_type_apply_reads_is_a_still_to_extract(tmp_path: Path) -> None:
    """One list of image suffixes: a .ppm in a photo folder is a still, not a video."""
    folder = tmp_path / "raw" / "photos"
    folder.mkdir(parents=True)
    for index, suffix in enumerate(IMAGE_SUFFIXES):
        (folder / f"still{index}{suffix}").write_bytes(b"")
    (source,) = list_sources(tmp_path / "raw")
    assert source.path == folder and len(source.images) == len(IMAGE_SUFFIXES)


def test_a_linked_photo_folder_is_followed_and_a_broken_or_looping_link_named(
    params: Params, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo library linked into the raw folder is a source like any folder, named by its
    link; a link to nothing, and one to a folder that holds it, are named in a warning."""
    library = tmp_path / "library" / "holiday"
    _write_stills(library, 4)
    raw = Path(params.paths.raw)
    (raw / "photos").symlink_to(library, target_is_directory=True)
    (raw / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (raw / "photos" / "again").symlink_to(raw, target_is_directory=True)  # a loop, in library
    sources = {source.path.relative_to(raw).as_posix(): source for source in list_sources(raw)}
    assert sorted(sources) == ["photos", "tiny.avi"]
    assert [image.name for image in sources["photos"].images] == sorted(
        path.name for path in library.iterdir() if path.is_file()
    )
    warnings = capsys.readouterr().err.splitlines()
    gone, loop = raw / "gone", raw / "photos" / "again"
    assert (
        f"warning: {raw / 'photos'}: a link to {library.resolve()}, followed; DVC does not "
        "version what it holds (copy the folder in to version it)"
    ) in warnings
    assert f"warning: {gone}: a link to {tmp_path / 'nowhere'}, which does not exist; skipped" in (
        warnings
    )
    assert f"warning: {loop}: a link to {raw.resolve()}, a folder that holds it; skipped" in (
        warnings
    )
    train_only = dataclasses.replace(params.extract, train_only=["photos"])
    run_extract(dataclasses.replace(params, extract=train_only))
    manifest = load_manifest(Path(params.paths.frames))
    assert (manifest["video"] == "photos").sum() == 4
