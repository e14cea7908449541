"""Promotion when a run has noisy sources: the held-out frame-to-frame loss decides, with a
guard on the clean score set, and the version's tags say which rule decided."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_register import _logged_runs
from test_without_clean import translating_clip

from denoise.core.config import Params
from denoise.evaluation.frame_to_frame import frame_to_frame_db, held_out_pairs
from denoise.serving.load import CHALLENGER, CHAMPION
from denoise.stages.register import _register
from denoise.tracking.aliases import (
    RULE_FRAME_TO_FRAME,
    RULE_TAG,
    Scores,
    decide_on_noisy,
)

MARGIN, GUARD = 0.05, 0.5


def _decide(scores: Scores, eligible: bool = True) -> tuple[str | None, str]:
    return decide_on_noisy(scores, eligible, "3", "2", MARGIN, GUARD)


def test_a_better_candidate_on_the_noisy_frames_becomes_champion() -> None:
    alias, reason = _decide(Scores(30.0, 28.4, 30.1, 28.0))
    assert alias == CHAMPION and "by 0.400 dB frame-to-frame" in reason


def test_a_worse_candidate_or_one_within_the_margin_stays_challenger() -> None:
    assert _decide(Scores(30.0, 27.5, 30.0, 28.0))[0] == CHALLENGER
    alias, reason = _decide(Scores(30.0, 28.04, 30.0, 28.0))
    assert alias == CHALLENGER and "margin 0.05 dB" in reason


def test_the_guard_keeps_a_candidate_that_loses_psnr_on_the_clean_set() -> None:
    alias, reason = _decide(Scores(29.4, 29.0, 30.0, 28.0))  # +1 dB held out, -0.6 dB clean
    assert alias == CHALLENGER and "guard 0.5 dB" in reason
    assert _decide(Scores(29.6, 29.0, 30.0, 28.0))[0] == CHAMPION  # -0.4 dB: within it


def test_first_champion_ineligible_and_already_champion() -> None:
    first = decide_on_noisy(Scores(30.0, 28.0, None, None), True, "1", None, MARGIN, GUARD)
    assert first[0] == CHAMPION and first[1].startswith("first champion")
    assert _decide(Scores(31.0, 29.0, 30.0, 28.0), eligible=False)[0] is None
    already = decide_on_noisy(Scores(30.0, 28.0, 30.0, 28.0), True, "2", "2", MARGIN, GUARD)
    assert already[0] == CHAMPION
    assert _decide(Scores(30.0, math.nan, 30.0, 28.0))[0] == CHALLENGER


def _frames_with_clips(root: Path, roles: dict[str, str]) -> Path:
    """A frames folder: each source (name -> role) one translating noisy video whose 6 frames
    are one test clip, with the manifest's role column."""
    root.mkdir()
    (root / "clips").mkdir()
    rows, clips = [], []
    for seed, (name, role) in enumerate(roles.items()):
        frames = translating_clip(6, 15, seed=seed)
        np.save(root / f"{name}.0000.npy", frames)
        np.save(root / f"clips/{name}.test.000.npy", frames)
        rows += [
            {"video": name, "source_kind": "video", "frame_index": index, "timestamp_s": index,
             "shard": f"{name}.0000.npy", "offset": index, "split": "test", "role": role}
            for index in range(len(frames))
        ]  # fmt: skip
        clips.append({"video": name, "split": "test", "clip": 0,
                      "file": f"clips/{name}.test.000.npy", "frames": 6})  # fmt: skip
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    pd.DataFrame(clips).to_parquet(root / "clips.parquet", index=False)
    return root


def test_held_out_pairs_come_from_the_noisy_sources_test_clips_only(
    params: Params, tmp_path: Path
) -> None:
    notes: list[str] = []

    def pairs(roles: dict[str, str], clips: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        frames = _frames_with_clips(tmp_path / f"{'-'.join(roles.values())}-{clips}", roles)
        if not clips:  # extract.clips off: no clips manifest
            (frames / "clips.parquet").unlink()
        paths = dataclasses.replace(params.paths, frames=str(frames))
        return held_out_pairs(dataclasses.replace(params, paths=paths), print_fn=notes.append)

    assert pairs({"box.mp4": "clean"}) is None and notes == []  # register decides as before
    assert pairs({"phone.mp4": "noisy"}, clips=False) is None
    assert len(notes) == 1 and "phone.mp4" in notes[0] and "on PSNR" in notes[0]
    found = pairs({"box.mp4": "clean", "phone.mp4": "noisy"})
    assert found is not None
    noisy, packed = found
    assert noisy.shape[1:] == (32, 32, 3) and packed.shape == (*noisy.shape[:3], 4)
    assert len(noisy) == 3  # per_clip frames of the one noisy clip, none of the clean one


def _noisy_pairs(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ramp's clean frames, a noisy frame t, and frame t + 1 (independent sigma-25 noise)
    packed with a mask that keeps every pixel: a static scene, warped exactly."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    clean = np.broadcast_to(ramp[None, :, None, None], (2, 32, 32, 3)).copy()
    noisy = clean + rng.normal(0.0, 25 / 255, clean.shape).astype(np.float32)
    following = clean + rng.normal(0.0, 25 / 255, clean.shape).astype(np.float32)
    packed = np.concatenate([following, np.ones_like(clean[..., :1])], axis=-1)
    return clean, noisy, packed


def test_the_held_out_loss_ranks_as_the_error_against_the_clean_frame() -> None:
    clean, noisy, packed = _noisy_pairs(0)
    close = clean + 0.2 * (noisy - clean)
    far = clean + 0.8 * (noisy - clean)
    assert frame_to_frame_db(close, packed) > frame_to_frame_db(far, packed)
    assert frame_to_frame_db(packed[..., :3], packed) == math.inf
    unkept = packed.copy()
    unkept[..., 3] = 0.0  # nothing kept: no score, never a promotion
    assert math.isnan(frame_to_frame_db(far, unkept))


@pytest.mark.slow
def test_register_decides_on_the_noisy_frames_and_tags_the_rule(
    params: Params, tmp_path: Path
) -> None:
    clean, noisy, packed = _noisy_pairs(1)
    name, scored_on, client = "denoise-noisy-rule", "test/gaussian-25", MlflowClient()

    first = _logged_runs(params, {"weak": 0.1}, tmp_path)
    decided = _register(
        params, name, first, {"weak": True}, clean, noisy, scored_on, (noisy, packed)
    )
    assert [(entry.model, entry.alias, entry.rule) for entry in decided] == [
        ("weak", CHAMPION, RULE_FRAME_TO_FRAME)
    ]

    runs = {**first, **_logged_runs(params, {"better": 0.6, "poorer": 0.05}, tmp_path)}
    decided = _register(
        params, name, runs, dict.fromkeys(runs, True), clean, noisy, scored_on, (noisy, packed)
    )
    by_model = {entry.model: entry for entry in decided}
    assert by_model["better"].alias == CHAMPION and by_model["better"].holds == CHAMPION
    assert by_model["poorer"].alias == CHALLENGER
    better = by_model["better"]
    assert better.frame_to_frame is not None and better.champion_frame_to_frame is not None
    assert better.frame_to_frame > better.champion_frame_to_frame  # same frames, both scored
    version = client.get_model_version_by_alias(name, CHAMPION)
    assert version.tags[RULE_TAG] == RULE_FRAME_TO_FRAME
    assert float(version.tags["denoise.score_frame_to_frame_db"]) == pytest.approx(
        better.frame_to_frame, abs=1e-3
    )
    assert "frame-to-frame on the noisy sources" in version.description
