"""`denoise apply` at its edges: every output it cannot write is one `error:` line before the
model loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from denoise.cli import app

SIZE = 32
# Loading it would fail with its own error: an output error proves the outputs came first.
ABSENT_MODEL = "absent.keras"


def _noisy_rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a folder."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def _apply_fails(cwd: Path, *arguments: str) -> str:
    """Run `denoise apply` as a user does, check that it fails cleanly and touches nothing
    under cwd; return its one error line."""
    before = _snapshot(cwd)
    result = subprocess.run(
        [sys.executable, "-m", "denoise", "apply", *arguments, "--model", ABSENT_MODEL],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert ABSENT_MODEL not in lines[0]
    assert _snapshot(cwd) == before
    return lines[0]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Two images and a text file, in a folder of their own."""
    cv2.imwrite(str(tmp_path / "a.png"), _noisy_rgb(0))
    cv2.imwrite(str(tmp_path / "b.png"), _noisy_rgb(1))
    (tmp_path / "notes.txt").write_text("keep me\n")
    return tmp_path


@pytest.mark.parametrize("inputs", [["a.png"], ["a.png", "b.png"]])
def test_an_existing_file_cannot_be_the_output_folder(workspace: Path, inputs: list[str]) -> None:
    error = _apply_fails(workspace, *inputs, "-o", "notes.txt")
    assert error.startswith("error: notes.txt/a.png: cannot be written, notes.txt is not a folder")
    assert "choose another -o" in error


@pytest.mark.parametrize("output", ["notes.txt/out/", "notes.txt/denoised.png"])
def test_an_output_under_a_file_is_refused(workspace: Path, output: str) -> None:
    error = _apply_fails(workspace, "a.png", "-o", output)
    assert "cannot be written, notes.txt is not a folder" in error


@pytest.mark.parametrize("output", ["/proc/denoise-out", "/proc/denoise.png"])
def test_an_output_where_nothing_can_be_written_is_refused(workspace: Path, output: str) -> None:
    """/proc takes no new files, whoever asks (permission bits do not stop root)."""
    error = _apply_fails(workspace, "a.png", "-o", output)
    assert error.startswith("error: /proc/denoise") and "cannot be written in /proc" in error


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only folder"
)
def test_a_read_only_output_folder_is_refused(workspace: Path) -> None:
    locked = workspace / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        error = _apply_fails(workspace, "a.png", "-o", "locked/out")
    finally:
        locked.chmod(0o755)
    assert "cannot be written in locked (Permission denied)" in error


def test_a_folder_in_place_of_an_output_file_is_refused(workspace: Path) -> None:
    (workspace / "out" / "a.png").mkdir(parents=True)
    error = _apply_fails(workspace, "a.png", "-o", "out")
    assert error.startswith("error: out/a.png: a folder is in the way of the output for a.png")


def test_two_inputs_with_one_output_name_are_refused(workspace: Path) -> None:
    (workspace / "other").mkdir()
    cv2.imwrite(str(workspace / "other" / "a.png"), _noisy_rgb(2))
    error = _apply_fails(workspace, "a.png", "other/a.png", "-o", "out")
    assert error == "error: other/a.png and a.png would both be written to out/a.png"


def test_an_output_over_its_input_is_refused(workspace: Path) -> None:
    error = _apply_fails(workspace, "a.png", "-o", ".")
    assert error == "error: a.png: the output would overwrite its input; choose another -o"


def _apply(*arguments: str) -> None:
    result = CliRunner().invoke(app, ["apply", *arguments, "--model", "pretrained"])
    assert result.exit_code == 0, result.stderr or result.exception


def test_a_name_of_dots_is_denoised_like_any_other(tmp_path: Path) -> None:
    """pathlib gives "..png" a suffix but no suffixes; the output keeps its PNG format."""
    dots = tmp_path / "..png"
    cv2.imwrite(str(dots), _noisy_rgb())
    _apply(str(dots), "-o", str(tmp_path / "out"))
    written = cv2.imread(str(tmp_path / "out" / "..png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (SIZE, SIZE, 3)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["..png"]
