"""`denoise apply` at its edges: every output it cannot write is one `error:` line before the
model loads, and greyscale and transparent images keep their channels."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.config import default_params
from denoise.core.metrics import psnr
from denoise.data.video import read_image_float
from denoise.serving.apply import denoise_channels

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


def test_alpha_is_copied_through_and_colour_denoised(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    originals = {
        "eight.png": rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8),
        "sixteen.png": rng.integers(0, 65536, (SIZE, SIZE, 4), dtype=np.uint16),
        "sixteen.tif": rng.integers(0, 65536, (SIZE, SIZE, 4), dtype=np.uint16),
        "lossless.webp": rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8),
    }
    for name, bgra in originals.items():
        cv2.imwrite(str(tmp_path / name), bgra, [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless
    _apply(*(str(tmp_path / name) for name in originals), "-o", str(tmp_path / "out"))
    for name, bgra in originals.items():
        written = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert written.shape == bgra.shape and written.dtype == bgra.dtype, name
        assert np.array_equal(written[..., 3], bgra[..., 3]), name
        assert not np.array_equal(written[..., :3], bgra[..., :3]), name


def _with_exif_orientation(png: bytes, orientation: int) -> bytes:
    """png with an eXIf chunk holding only the EXIF orientation tag (274)."""
    exif = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">HHHIHHI", 1, 274, 3, 1, orientation, 0, 0)
    chunk = b"eXIf" + exif
    first_data = png.index(b"IDAT") - 4  # before the chunk's length field
    packed = struct.pack(">I", len(exif)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:first_data] + packed + png[first_data:]


def test_alpha_turns_with_the_colour_of_an_exif_rotated_image(tmp_path: Path) -> None:
    """OpenCV applies EXIF rotation to colour reads only; alpha is turned to match."""
    bgra = np.random.default_rng(0).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    path = tmp_path / "rotated.png"
    path.write_bytes(_with_exif_orientation(cv2.imencode(".png", bgra)[1].tobytes(), 6))
    image, dtype = read_image_float(path)
    upright = np.rot90(bgra, -1)  # orientation 6: turn a quarter clockwise to display
    assert dtype == np.uint8 and image.shape == (6, 4, 4)
    assert np.array_equal(np.round(image * 255).astype(np.uint8), upright[..., [2, 1, 0, 3]])


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 1), (9, 4, 1), (5, 6, 4)])
def test_packing_grey_and_setting_alpha_aside_give_the_input_back(shape: tuple[int, ...]) -> None:
    """With the identity as the model, grey of any size (three-pixel packings at every offset,
    along rows and columns, reflect-padded) and RGBA come back exactly."""
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    result = denoise_channels(lambda tiles: tiles, image, default_params().apply)
    np.testing.assert_allclose(result, image, atol=1e-6)


def test_greyscale_comes_back_greyscale_at_its_depth_and_denoised(tmp_path: Path) -> None:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    clean = 0.3 + 0.4 * (rows + columns) / (2 * SIZE)
    noise = np.random.default_rng(0).normal(0.0, 25 / 255, clean.shape)
    noisy = np.clip(clean + noise, 0.0, 1.0)
    cv2.imwrite(str(tmp_path / "eight.png"), np.round(noisy * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "sixteen.png"), np.round(noisy * 65535).astype(np.uint16))
    _apply(str(tmp_path / "eight.png"), str(tmp_path / "sixteen.png"), "-o", str(tmp_path / "out"))
    for name, dtype, scale in (("eight.png", np.uint8, 255.0), ("sixteen.png", np.uint16, 65535.0)):
        written = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert written.shape == (SIZE, SIZE) and written.dtype == dtype, name
        denoised = written[..., None].astype(np.float32) / scale
        gain = psnr(clean[..., None], denoised) - psnr(clean[..., None], noisy[..., None])
        assert gain > 6.0, name  # copied into three equal channels, grey gains about 1 dB


def _apply_limited(limit_kb: int | None, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`denoise apply` as a user runs it, under a file-size limit (`ulimit -f`) when given."""
    limit = f"ulimit -f {limit_kb}; " if limit_kb is not None else ""
    return subprocess.run(
        [
            "bash",
            "-c",
            f'{limit}exec "{sys.executable}" -m denoise apply "$@"',
            "apply",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_video_cut_short_by_a_size_limit_keeps_the_complete_output(
    tmp_path: Path, quick_model: Path
) -> None:
    """OpenCV's writer reports no failed write: the finished file is read back, and a truncated
    one never replaces the last complete output."""
    from conftest import write_tiny_video

    source = write_tiny_video(tmp_path / "clip.avi", num_frames=40, size=96, fps=10.0)
    output = tmp_path / "out.avi"
    first = _apply_limited(None, str(source), "-o", str(output), "--model", str(quick_model))
    assert first.returncode == 0, first.stderr
    complete = output.read_bytes()
    limit_kb = max(1, len(complete) // 1024 // 3)
    limited = _apply_limited(limit_kb, str(source), "-o", str(output), "--model", str(quick_model))
    assert limited.returncode == 1, limited.stderr
    assert "Traceback" not in limited.stderr
    (line,) = [line for line in limited.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {output}: no space to write it")
    assert f"file-size limit (ulimit -f) {limit_kb}.0 KB" in line
    assert output.read_bytes() == complete
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_an_image_past_a_size_limit_names_the_output_and_the_limit(
    tmp_path: Path, quick_model: Path
) -> None:
    source = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    cv2.imwrite(str(source), noise)
    output = tmp_path / "out" / "big.tif"
    limited = _apply_limited(64, str(source), "-o", str(output), "--model", str(quick_model))
    assert limited.returncode == 1, limited.stderr
    (line,) = [line for line in limited.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {output}: no space to write it")
    assert "file-size limit (ulimit -f) 64.0 KB" in line
    assert ".tmp-" not in line
    assert not output.exists()
