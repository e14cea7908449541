"""bench/throughput.py part (a): the stream and the in-memory baseline both train, on frames
made up when extract has not run."""

from __future__ import annotations

import sys

from conftest import PROJECT_ROOT

from denoise.config import Params

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import throughput  # bench/throughput.py


def test_stream_and_memory_rates_of_the_same_patches(params: Params) -> None:
    results, source = throughput.measure_training(params, ["paper_cae"], 3, 1, 2)
    assert source.startswith("32 synthetic")
    (result,) = results
    assert result["model"] == "paper_cae" and result["timed_steps"] == 3
    assert len(result["stream_runs"]) == len(result["memory_runs"]) == 2
    assert result["stream_images_per_s"] > 0 and result["memory_images_per_s"] > 0
    ratio = result["stream_images_per_s"] / result["memory_images_per_s"]
    assert result["stream_over_memory"] == ratio
