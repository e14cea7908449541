"""Clips for temporal models: extracted inside one split's block, noised frame by frame."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_clip_params

from denoise.core.config import Params, default_params, params_from_dict, params_to_dict
from denoise.core.errors import ConfigError
from denoise.data.clips import clip_starts
from denoise.data.evalsets import CLIP_SETS, load_set, write_evaluation_sets
from denoise.data.extract import (
    GAP,
    assign_splits,
    extract_frames,
    load_clips_manifest,
    load_manifest,
)
from denoise.data.video import probe, read_frames

FPS = 8.0


@pytest.fixture
def clip_params(tmp_path: Path) -> Params:
    """A 10-second 8-fps video, every third frame sampled, two 6-frame clips per split."""
    return tiny_clip_params(tmp_path, FPS)


def test_clip_starts_keep_every_clip_inside_one_block() -> None:
    labels = np.array(["train"] * 10 + [GAP] * 2 + ["validation"] * 5 + [GAP] + ["test"] * 7)
    for split in ("train", "validation", "test"):
        starts = clip_starts(labels, 4, 3, split)
        assert starts, split
        for start in starts:
            assert set(labels[start : start + 4]) == {split}
    assert clip_starts(labels, 4, 3, "train") == [0, 3, 6]  # evenly spaced, ends included
    assert clip_starts(labels, 6, 3, "validation") == []  # no 6-frame run in a 5-frame block
    assert clip_starts(labels, 4, 0, "test") == []


def test_clips_never_cross_a_split_boundary_and_hold_the_decoded_frames(
    clip_params: Params,
) -> None:
    summary = extract_frames(clip_params)
    assert summary.clips_per_split == {"train": 2, "validation": 2, "test": 2}
    frames_dir = Path(clip_params.paths.frames)
    clips, manifest = load_clips_manifest(frames_dir), load_manifest(frames_dir)
    video = Path(clip_params.paths.raw) / "long.avi"
    decoded = [frame.rgb for frame in read_frames(video, clip_params.extract.size)]
    # Every decoded frame's block, as the sampled frames' blocks divide the same span.
    span = (manifest["timestamp_s"].min(), manifest["timestamp_s"].max())
    labels = assign_splits(
        np.arange(probe(video).frame_count) / FPS, clip_params.extract.split, span
    )
    sampled = {
        split: set(manifest.loc[manifest["split"] == split, "frame_index"])
        for split in ("train", "validation", "test")
    }
    for clip in clips.itertuples():
        indices = range(clip.first_frame_index, clip.last_frame_index + 1)
        assert len(indices) == clip.frames == 6
        assert set(labels[list(indices)]) == {clip.split}, clip
        pixels = np.load(frames_dir / clip.file)
        np.testing.assert_array_equal(pixels, np.stack([decoded[index] for index in indices]))
        # No frame of a clip is a sampled frame of another split.
        for split, sampled_indices in sampled.items():
            if split != clip.split:
                assert not sampled_indices & set(indices), (clip.split, split)


def test_clip_sets_hold_independent_noise_per_frame(clip_params: Params) -> None:
    extract_frames(clip_params)
    write_evaluation_sets(clip_params)
    evalsets = Path(clip_params.paths.evalsets)
    clean, noisy, info = load_set(evalsets, "clips-test", group=CLIP_SETS)
    assert clean.shape == (2, 6, 32, 32, 3)
    noise = (noisy["gaussian-25"] - clean).astype(np.float64)
    assert info["levels"]["gaussian-25"]["empirical_sigma"] == pytest.approx(25, rel=0.05)
    # Neighbouring frames' noise: uncorrelated (about 12,000 pixel pairs: |r| < 0.03).
    before, after = noise[:, :-1].ravel(), noise[:, 1:].ravel()
    assert abs(np.corrcoef(before, after)[0, 1]) < 0.03
    # The same frames again, the same draw: the clip sets are fixed by the seed.
    first = noisy["gaussian-25"].copy()
    write_evaluation_sets(clip_params)
    np.testing.assert_array_equal(
        load_set(evalsets, "clips-test", CLIP_SETS)[1]["gaussian-25"], first
    )


def test_noise_max_clips_keeps_clips_evenly_spaced_over_each_clip_set(
    clip_params: Params,
) -> None:
    extract_frames(clip_params)
    write_evaluation_sets(clip_params)
    evalsets = Path(clip_params.paths.evalsets)
    every = load_set(evalsets, "clips-test", CLIP_SETS)[0]
    capped = dataclasses.replace(clip_params.noise, max_clips=1)
    write_evaluation_sets(dataclasses.replace(clip_params, noise=capped))
    for name in ("clips-validation", "clips-test"):
        assert load_set(evalsets, name, CLIP_SETS)[0].shape[0] == 1
    np.testing.assert_array_equal(load_set(evalsets, "clips-test", CLIP_SETS)[0], every[:1])


def test_clips_are_off_by_default_and_checked() -> None:
    defaults = params_from_dict(params_to_dict(default_params()))
    assert defaults.extract.clips.per_split == 0
    values = params_to_dict(default_params())
    values["extract"]["clips"] = {"length": 1, "per_split": 2}
    with pytest.raises(ConfigError, match="length"):
        params_from_dict(values)
    values["extract"]["clips"] = {"length": 5, "per_split": -1}
    with pytest.raises(ConfigError, match="per_split"):
        params_from_dict(values)
