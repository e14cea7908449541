"""denoise.core.runtime: TensorFlow's CPU options, set before TensorFlow loads."""

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


@pytest.mark.parametrize(("user_value", "expected"), [(None, "1"), ("0", "0")])
def test_the_command_line_sets_the_options_before_tensorflow_loads(
    user_value: str | None, expected: str
) -> None:
    """`denoise` puts the options in its environment before any command imports TensorFlow,
    which reads them once at import."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if user_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_value
    probe = (
        "import os, sys; from denoise.cli.base import main; main(); "
        "print('tensorflow' in sys.modules, os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    assert result.stdout.split() == ["False", expected]
