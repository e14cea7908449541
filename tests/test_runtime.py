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


def _run(probe: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_tensorflow_loads_without_its_start_up_lines(tmp_path: os.PathLike[str]) -> None:
    """absl's "before absl::InitializeLog()" and oneDNN's notice come from C++ at import,
    whatever TF_CPP_MIN_LOG_LEVEL says: configure() holds them back."""
    probe = (
        "from denoise.core import runtime; runtime.configure(); "
        "import tensorflow as tf; print(int(tf.constant(2) + 1))"
    )
    result = _run(probe, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"
    assert result.stderr == ""


def test_a_quiet_import_that_fails_still_shows_what_it_wrote(tmp_path: os.PathLike[str]) -> None:
    """What a held module writes to file descriptor 2 comes out when its import raises."""
    module = os.path.join(tmp_path, "chatty.py")
    with open(module, "w") as file:
        file.write("import os\nos.write(2, b'the real cause\\n')\nraise ImportError('broken')\n")
    probe = (
        "from denoise.core import runtime; import sys; "
        "sys.meta_path.insert(0, runtime._QuietImport(['chatty'])); import chatty"
    )
    result = _run(probe, str(tmp_path))
    assert result.returncode != 0
    assert "the real cause" in result.stderr
    assert "ImportError: broken" in result.stderr
