"""bench/throughput.py part (a): the stream and both in-memory baselines train, on frames made
up when extract has not run."""

from __future__ import annotations

import dataclasses
import sys

from conftest import PROJECT_ROOT

from denoise.core.config import Params
from denoise.training.settings import with_active

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import throughput  # bench/throughput.py


def test_stream_and_memory_rates_of_the_same_patches(params: Params) -> None:
    results, source = throughput.measure_training(params, ["paper_cae"], 3, 1, 2)
    assert source.startswith("32 synthetic")
    (result,) = results
    assert result["model"] == "paper_cae" and result["timed_steps"] == 3
    for kind in ("stream", "memory", "memory_noise"):
        assert len(result[f"{kind}_runs"]) == 2
        assert result[f"{kind}_images_per_s"] > 0
    stream = result["stream_images_per_s"]
    assert result["stream_over_memory"] == stream / result["memory_images_per_s"]
    assert result["stream_over_memory_noise"] == stream / result["memory_noise_images_per_s"]
    assert "in-step noise" in throughput.training_table(results)


def test_training_rates_in_the_profiles_precision(params: Params) -> None:
    mixed = dataclasses.replace(params, train=with_active(params.train, precision="mixed_bfloat16"))
    (result,), _ = throughput.measure_training(mixed, ["paper_cae"], 2, 1, 1)
    assert all(result[f"{kind}_images_per_s"] > 0 for kind in ("stream", "memory", "memory_noise"))
