"""extract stage: decode every video and image folder in paths.raw into shards and a manifest."""

from __future__ import annotations

import dataclasses

from denoise.core.config import Params
from denoise.data.extract import ExtractSummary, extract_frames
from denoise.tracking.runs import stage


def run(params: Params) -> ExtractSummary:
    """Decode every video and still-image folder in paths.raw into shards under paths.frames,
    with the manifest."""
    with stage(params, "extract") as tracker:
        summary = extract_frames(params)
        tracker.log_to_parent(summary=dataclasses.asdict(summary))
    return summary
