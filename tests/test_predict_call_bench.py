"""bench/predict_call.py: the eager and the compiled call time the same model to the same
output, and apply x8 costs more than apply."""

from __future__ import annotations

import sys

from conftest import PROJECT_ROOT

from denoise.core.config import Params
from denoise.models.build import build_model

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import predict_call  # bench/predict_call.py
import throughput  # bench/throughput.py


def test_eager_and_compiled_calls_agree(params: Params) -> None:
    _, noisy = throughput.noisy_frames(32, 2, params.seed)
    result = predict_call.measure(build_model("paper_cae", params.train), noisy, repeats=3)
    assert set(result) == {"eager", "predict_on_batch", "apply", "apply_x8", "max_abs_difference"}
    assert all(result[key] > 0 for key in ("eager", "predict_on_batch", "apply", "apply_x8"))
    assert result["max_abs_difference"] < 1e-5
    assert result["apply_x8"] > result["apply"]
