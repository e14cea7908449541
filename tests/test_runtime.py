"""denoise.runtime: TensorFlow's CPU options, set before TensorFlow loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from denoise.core import runtime


def test_configure_fills_only_what_the_user_left_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    runtime.configure()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    runtime.configure()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


@pytest.mark.parametrize(("user_value", "expected_on"), [(None, True), ("0", False)])
def test_the_command_line_loads_tensorflow_with_onednn(
    user_value: str | None, expected_on: bool
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if user_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow says at import whether oneDNN is on
    result = subprocess.run(
        [sys.executable, "-m", "denoise", "model-summary", "paper_cae"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    assert ("oneDNN custom operations are on" in result.stderr) == expected_on
