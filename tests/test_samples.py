from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from denoise import extract, samples
from denoise.config import Params
from denoise.extract import load_manifest


def _empty_raw(params: Params) -> Params:
    raw = Path(params.paths.raw)
    for path in raw.iterdir():
        path.unlink()
    return params


@pytest.mark.skipif(
    samples.find_sample("box.mp4") is None,
    reason="Debian's opencv-doc is not installed (make test installs it)",
)
def test_real_sample_videos_are_copied_and_decode(params: Params) -> None:
    params = _empty_raw(params)
    summary = samples.run(params)
    assert summary.copied == ["box.mp4", "cup.mp4", "vtest.avi"] and summary.synthetic is None
    assert samples.run(params).present == summary.copied, "a second run copies nothing"
    sparse = dataclasses.replace(
        params, extract=dataclasses.replace(params.extract, size=200, frame_stride=50)
    )
    extract.run(sparse)
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
    summary = samples.run(params, search_paths=())
    assert summary.synthetic == samples.SYNTHETIC_NAME
    assert summary.missing == ["box.mp4", "cup.mp4", "vtest.avi"]
    extract.run(params)
    manifest = load_manifest(Path(params.paths.frames))
    assert len(manifest) == 24 and set(manifest["video"]) == {"synthetic-canvas.avi"}
    assert manifest["phash"].nunique() > 12, "the scene moves: frames differ"
    assert manifest["sharpness"].min() > 0.0
