from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from denoise.core.config import Params
from denoise.data.extract import load_manifest
from denoise.data.samples import SYNTHETIC_NAME, find_sample
from denoise.stages.extract import run as run_extract
from denoise.stages.samples import run as run_samples


def _empty_raw(params: Params) -> Params:
    raw = Path(params.paths.raw)
    for path in raw.iterdir():
        path.unlink()
    return params


@pytest.mark.skipif(
    find_sample("box.mp4") is None,
    reason="Debian's opencv-doc is not installed (make test installs it)",
)
def test_real_sample_videos_are_copied_and_decode(params: Params) -> None:
    params = _empty_raw(params)
    summary = run_samples(params)
    assert summary.copied == ["box.mp4", "cup.mp4", "vtest.avi"] and summary.synthetic is None
    assert run_samples(params).present == summary.copied, "a second run copies nothing"
    sparse = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, size=200, frame_stride=50)
    )
    run_extract(sparse)
    manifest = load_manifest(Path(params.paths.frames))
    counts = manifest.groupby("video").size().to_dict()
    # 455, 217 and 795 decodable frames (docs/benchmarks.md), every 50th kept.
    assert counts == {"box.mp4": 10, "cup.mp4": 5, "vtest.avi": 16}
    assert manifest["std"].min() > 0.02, "no blank frames in real footage"


def test_synthetic_fallback_is_labelled_and_usable(params: Params) -> None:
    params = _empty_raw(params)
    params = dataclasses.replace(
        params, samples=dataclasses.replace(params.samples, synthetic_frames=24)
    )
    summary = run_samples(params, search_paths=())
    assert summary.synthetic == SYNTHETIC_NAME
    assert summary.missing == ["box.mp4", "cup.mp4", "vtest.avi"]
    run_extract(params)
    manifest = load_manifest(Path(params.paths.frames))
    assert len(manifest) == 24 and set(manifest["video"]) == {"synthetic-canvas.avi"}
    assert manifest["phash"].nunique() > 12, "the scene moves: frames differ"
    assert manifest["sharpness"].min() > 0.0
