"""Frame extraction: videos and still-image folders -> uint8 frame shards and a manifest with
statistics and time-block splits."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from denoise.core.atomic import atomic_directory
from denoise.core.config import Params
from denoise.core.data_config import Split
from denoise.core.errors import DataError
from denoise.core.progress import progress
from denoise.data.clips import CLIPS_DIR, CLIPS_MANIFEST, clip_starts, collect_clips
from denoise.data.roles import NOISY, SOURCES_NAME, SourceRole, source_role, source_table
from denoise.data.sources import Source, check_sources, file_sha256
from denoise.data.video import Frame, probe, read_frames, read_still

MANIFEST_NAME = "manifest.parquet"
SPLITS = ("train", "validation", "test")
GAP = "gap"  # frames dropped at a split boundary: near-duplicates of both sides


@dataclasses.dataclass(frozen=True)
class ExtractSummary:
    num_sources: int  # videos plus still-image folders
    frames_per_split: dict[str, int]
    clips_per_split: dict[str, int] = dataclasses.field(default_factory=dict)  # extract.clips
    roles: dict[str, str] = dataclasses.field(default_factory=dict)  # source -> clean | noisy
    notes: list[str] = dataclasses.field(default_factory=list)  # one line each, for the user


def images_sha256(images: tuple[Path, ...]) -> str:
    """sha256 over the sorted (file name, file sha256) pairs of one folder's images."""
    digest = hashlib.sha256()
    for name, content in sorted((path.name, file_sha256(path)) for path in images):
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()


def perceptual_hash(rgb: np.ndarray) -> str:
    """64-bit DCT perceptual hash (pHash) as 16 hex digits. rgb: uint8 (H, W, 3)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def frame_statistics(rgb: np.ndarray) -> dict[str, float | str]:
    """Mean, std, sharpness (variance of the Laplacian) on the [0, 1] scale, and the pHash."""
    image = rgb.astype(np.float32) / 255.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return {
        "mean": float(image.mean()),
        "std": float(image.std()),
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_32F).var()),
        "phash": perceptual_hash(rgb),
    }


def assign_splits(
    timestamps: np.ndarray, split: Split, span: tuple[float, float] | None = None
) -> np.ndarray:
    """Label frames of one video by contiguous time blocks: train, then validation, then test.

    timestamps: seconds, float (N,). Frames within gap_seconds / 2 of a block boundary get
    "gap" and are used by nobody, so no evaluated frame has a near-duplicate in training.
    span: the (first, last) seconds the blocks divide; default the timestamps' own (the clips
    pass the sampled frames' span, so both share the blocks).
    """
    labels = np.full(len(timestamps), "train", dtype=object)
    if len(timestamps) == 0:
        return labels
    start, end = span or (float(timestamps.min()), float(timestamps.max()))
    duration = max(end - start, 1e-9)
    train_end = start + (1.0 - split.validation_fraction - split.test_fraction) * duration
    validation_end = start + (1.0 - split.test_fraction) * duration
    labels[timestamps >= train_end] = "validation"
    labels[timestamps >= validation_end] = "test"
    if split.validation_fraction == 0:
        labels[labels == "validation"] = "test"
    boundaries = [train_end] if split.validation_fraction > 0 else []
    if split.test_fraction > 0:
        boundaries.append(validation_end)
    for boundary in boundaries:
        labels[np.abs(timestamps - boundary) < split.gap_seconds / 2] = GAP
    return labels


def _extract_source(
    source: Source, role: SourceRole, raw_dir: Path, out_dir: Path, params: Params
) -> pd.DataFrame:
    """Write one source's frames as shards in out_dir; return its manifest rows.

    A still image counts as one second: its frame_index and timestamp_s are its position in
    name order, so the split's time blocks and gap_seconds apply to a folder as to a video.
    A noisy source's frames are cropped at native scale, never area-resized.
    """
    config = params.extract
    name = source.path.relative_to(raw_dir).as_posix()
    native = role.role == NOISY
    frames: Iterable[Frame]
    if source.images:
        kind, digest, expected = "images", images_sha256(source.images), len(source.images)
        frames = (
            Frame(
                position,
                float(position),
                read_still(path, config.size, config.allow_greyscale, native),
            )
            for position, path in enumerate(source.images)
        )
    else:
        kind, digest = "video", file_sha256(source.path)
        info = probe(source.path)
        expected = info.frame_count // (config.frame_stride if config.target_fps is None else 1)
        frames = read_frames(
            source.path,
            config.size,
            config.frame_stride,
            config.target_fps,
            config.allow_greyscale,
            config.min_decoded_fraction,
            native,
        )
    rows: list[dict[str, object]] = []
    buffer: list[np.ndarray] = []
    shard_stem = name.replace("/", "__")
    for frame in progress(frames, description=f"extract {name}", total=expected or None):
        shard = f"{shard_stem}.{len(rows) // config.frames_per_shard:04d}.npy"
        rows.append(
            {
                "video": name,
                "video_sha256": digest,
                "source_kind": kind,
                "role": role.role,
                "source_noise_sigma": role.level.sigma,
                "frame_index": frame.index,
                "timestamp_s": frame.timestamp,
                "shard": shard,
                "offset": len(rows) % config.frames_per_shard,
                **frame_statistics(frame.rgb),
            }
        )
        buffer.append(frame.rgb)
        if len(buffer) == config.frames_per_shard:
            np.save(out_dir / shard, np.stack(buffer), allow_pickle=False)
            buffer.clear()
    if buffer:
        np.save(out_dir / str(rows[-1]["shard"]), np.stack(buffer), allow_pickle=False)
    table = pd.DataFrame(rows)
    table["train_only"] = train_only = name in config.train_only
    if train_only:
        table["split"] = "train"
    else:
        table["split"] = assign_splits(table["timestamp_s"].to_numpy(), config.split)
    return table


def _extract_clips(
    source: Source, role: SourceRole, table: pd.DataFrame, out_dir: Path, params: Params
) -> pd.DataFrame:
    """A second decode of one video, every frame: write its clips (extract.clips) under
    out_dir/clips/ and return their manifest rows. The frames' blocks are those of its sampled
    frames (table), so a test clip holds only test-block frames, never a gap frame."""
    config = params.extract
    name = role.name
    info = probe(source.path)
    span = (float(table["timestamp_s"].min()), float(table["timestamp_s"].max()))
    # read_frames stamps decoded frame i at i / fps: the labels of every frame, ahead.
    timestamps = np.arange(info.frame_count) / info.fps
    if name in config.train_only:
        labels = np.full(len(timestamps), "train", dtype=object)
    else:
        labels = assign_splits(timestamps, config.split, span)
    length = config.clips.length
    starts = {
        start: split
        for split in SPLITS
        for start in clip_starts(labels, length, config.clips.per_split, split)
    }
    frames = read_frames(
        source.path,
        config.size,
        1,
        None,
        config.allow_greyscale,
        config.min_decoded_fraction,
        role.role == NOISY,
    )
    rows: list[dict[str, object]] = []
    stem = name.replace("/", "__")
    for split, clip in collect_clips(frames, starts, length):
        number = sum(row["split"] == split for row in rows)
        file = f"{CLIPS_DIR}/{stem}.{split}.{number:03d}.npy"
        np.save(out_dir / file, np.stack([frame.rgb for frame in clip]), allow_pickle=False)
        rows.append(
            {
                "video": name,
                "role": role.role,
                "split": split,
                "clip": number,
                "file": file,
                "frames": len(clip),
                "first_frame_index": clip[0].index,
                "last_frame_index": clip[-1].index,
                "first_timestamp_s": clip[0].timestamp,
                "last_timestamp_s": clip[-1].timestamp,
            }
        )
    return pd.DataFrame(rows)


def extract_frames(params: Params) -> ExtractSummary:
    """The stage's work without MLflow (bench/gpu_train.py runs it on hosts without it)."""
    raw_dir, frames_dir = Path(params.paths.raw), Path(params.paths.frames)
    sources = check_sources(params)
    roles = [
        source_role(source, source.path.relative_to(raw_dir).as_posix(), params)
        for source in sources
    ]
    with atomic_directory(frames_dir) as staging:
        tables = [
            _extract_source(source, role, raw_dir, staging, params)
            for source, role in zip(sources, roles, strict=True)
        ]
        manifest = pd.concat(tables, ignore_index=True)
        manifest.to_parquet(staging / MANIFEST_NAME, index=False)
        source_table(roles, tables, params).to_parquet(staging / SOURCES_NAME, index=False)
        clips_per_split: dict[str, int] = {}
        if params.extract.clips.per_split > 0:
            (staging / CLIPS_DIR).mkdir()
            found = [
                _extract_clips(source, role, table, staging, params)
                for source, role, table in zip(sources, roles, tables, strict=True)
                if not source.images
            ]
            clips = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
            clips.to_parquet(staging / CLIPS_MANIFEST, index=False)
            counted = clips["split"].value_counts() if len(clips) else pd.Series(dtype=int)
            clips_per_split = {split: int(counted.get(split, 0)) for split in SPLITS}
    counts = manifest["split"].value_counts()
    return ExtractSummary(
        num_sources=len(sources),
        frames_per_split={split: int(counts.get(split, 0)) for split in (*SPLITS, GAP)},
        clips_per_split=clips_per_split,
        roles={role.name: role.role for role in roles},
        notes=[role.note for role in roles if role.note],
    )


def load_clips_manifest(frames_dir: Path) -> pd.DataFrame:
    """The clips the extract stage wrote (extract.clips), or DataError if it wrote none."""
    path = frames_dir / CLIPS_MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: missing; set extract.clips.per_split and run `denoise extract`")
    return pd.read_parquet(path)


def load_manifest(frames_dir: Path) -> pd.DataFrame:
    """The manifest written by the extract stage, or DataError if it is missing."""
    path = frames_dir / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: missing; run `denoise extract` first")
    return pd.read_parquet(path)


def frame_digests(frames_dir: Path, rows: pd.DataFrame) -> list[str]:
    """SHA-256 of each manifest row's frame: its uint8 (H, W, 3) RGB pixels as stored."""
    shards: dict[str, np.ndarray] = {}
    digests = []
    for shard, offset in zip(rows["shard"], rows["offset"], strict=True):
        if shard not in shards:
            shards[shard] = np.load(frames_dir / shard, mmap_mode="r")
        pixels = np.ascontiguousarray(shards[shard][offset])
        digests.append(hashlib.sha256(pixels.tobytes()).hexdigest())
    return digests


def load_frames(frames_dir: Path, rows: pd.DataFrame) -> np.ndarray:
    """Load the frames of the given manifest rows as float32 (N, H, W, 3) RGB in [0, 1]."""
    shards: dict[str, np.ndarray] = {}
    images = []
    for shard, offset in zip(rows["shard"], rows["offset"], strict=True):
        if shard not in shards:
            shards[shard] = np.load(frames_dir / shard, mmap_mode="r")
        images.append(np.asarray(shards[shard][offset], dtype=np.float32) / 255.0)
    return np.stack(images) if images else np.zeros((0, 0, 0, 3), np.float32)
