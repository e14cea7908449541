"""noise stage: write the fixed, seeded noisy evaluation sets under paths.evalsets."""

from __future__ import annotations

import dataclasses

from denoise.core.config import Params
from denoise.data.evalsets import NoiseSummary, write_evaluation_sets
from denoise.tracking.runs import stage


def run(params: Params) -> NoiseSummary:
    """Write the fixed evaluation sets (validation, test, photographs) under paths.evalsets."""
    with stage(params, "noise") as tracker:
        summary = write_evaluation_sets(params)
        tracker.log_to_parent(summary=dataclasses.asdict(summary))
    return summary
