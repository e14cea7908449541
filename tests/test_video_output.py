"""`denoise apply` on videos keeps what the source has: every audio stream (a generated sine
tone), the exact frame rate (29.97 stays 30000/1001) and a variable rate's timestamps; output
is H.264 (Motion-JPEG in .avi), and a stream a container cannot hold is named in one line."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from denoise.cli import app
from denoise.data import container

WIDTH, HEIGHT, FRAMES = 64, 48, 24
NTSC = Fraction(30000, 1001)


def _clip(path: Path, audio_codec: str = "aac", timestamps: list[int] | None = None) -> Path:
    """A moving gradient in H.264 with one second of a 440 Hz sine tone. Frame k sits at
    timestamps[k] (units of 1/1000 s) when given, else at k / 29.97 s."""
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=NTSC)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if timestamps is not None:
            video.time_base = Fraction(1, 1000)
        audio = output.add_stream(audio_codec, rate=48000)
        audio.layout = "mono"
        columns = np.linspace(0, 255, WIDTH, dtype=np.float32)
        for index in range(FRAMES):
            rgb = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            rgb[...] = ((columns + 10 * index) % 256).astype(np.uint8)[None, :, None]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if timestamps is not None:
                frame.pts, frame.time_base = timestamps[index], Fraction(1, 1000)
            else:
                frame.pts = index
            for packet in video.encode(frame):
                output.mux(packet)
        for packet in video.encode():
            output.mux(packet)
        seconds = np.arange(48000, dtype=np.float32) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)[None, :]
        sound = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 48000, 0
        for chunk in (sound, None):
            for packet in audio.encode(chunk):
                output.mux(packet)
    return path


def _streams(path: Path) -> tuple[str, Fraction, list[float], list[tuple[str, list[bytes]]]]:
    """(video codec, average rate, frame times in seconds, [(audio codec, packet payloads)])."""
    with av.open(str(path)) as source:
        video = source.streams.video[0]
        codec, rate = video.codec_context.name, Fraction(video.average_rate)
        times = [float(frame.pts * frame.time_base) for frame in source.decode(video)]
    audio = []
    with av.open(str(path)) as source:
        for stream in source.streams.audio:
            payloads = [bytes(p) for p in source.demux(stream) if p.dts is not None and p.size]
            audio.append((stream.codec_context.name, payloads))
    return codec, rate, times, audio


def _apply(source: Path, output: Path, model: Path) -> tuple[str, str]:
    result = CliRunner().invoke(
        app, ["apply", str(source), "-o", str(output), "--model", str(model)]
    )
    assert result.exit_code == 0, result.stderr or result.exception
    return result.stdout, result.stderr


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_the_audio_and_the_exact_rate_are_kept(
    tmp_path: Path, quick_model: Path, suffix: str
) -> None:
    source = _clip(tmp_path / "tone.mp4")
    output = tmp_path / f"out{suffix}"
    stdout, stderr = _apply(source, output, quick_model)
    codec, rate, times, audio = _streams(output)
    _, source_rate, source_times, source_audio = _streams(source)
    assert codec == ("mjpeg" if suffix == ".avi" else "h264")
    assert rate == source_rate == NTSC
    assert len(times) == FRAMES
    # Matroska and AVI may shift every stream by the tone's priming samples (1024 of 48000).
    steps = np.diff(times)
    assert np.allclose(steps, np.diff(source_times), atol=1e-3)
    assert audio == source_audio, "the audio packets are copied byte for byte"
    assert f"{FRAMES} frames" in stdout and "30000/1001 fps" in stdout and "aac" in stdout
    assert "note:" not in stderr


def test_a_variable_rate_keeps_its_timestamps(tmp_path: Path, quick_model: Path) -> None:
    milliseconds = [round(1000 * k / 25 + (17 if k % 5 == 2 else 0)) for k in range(FRAMES)]
    source = _clip(tmp_path / "variable.mkv", timestamps=milliseconds)
    output = tmp_path / "out.mkv"
    _apply(source, output, quick_model)
    _, _, times, _ = _streams(output)
    _, _, source_times, _ = _streams(source)
    assert np.allclose(np.array(times) - times[0], np.array(source_times) - source_times[0])


def test_audio_a_container_cannot_hold_is_named_in_one_note(
    tmp_path: Path, quick_model: Path
) -> None:
    source = _clip(tmp_path / "opus.mkv", audio_codec="libopus")
    output = tmp_path / "out.avi"
    _, stderr = _apply(source, output, quick_model)
    notes = [line for line in stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith("note: audio not kept: avi cannot hold opus")
    _, _, times, audio = _streams(output)
    assert len(times) == FRAMES and audio == []


def test_without_pyav_opencv_writes_and_one_note_says_so(
    tmp_path: Path, quick_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(container, "available", lambda: False)
    source = _clip(tmp_path / "tone.mp4")
    output = tmp_path / "out.mp4"
    _, stderr = _apply(source, output, quick_model)
    (note,) = [line for line in stderr.splitlines() if line.startswith("note: ")]
    assert note.startswith("note: PyAV is not installed (pip install 'denoise[video]')")
    assert "without the source's audio" in note
    codec, _, times, audio = _streams(output)
    assert codec == "mpeg4" and len(times) == FRAMES and audio == []
