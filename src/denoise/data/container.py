"""Videos through PyAV (the optional `video` extra: FFmpeg with x264, GPL): frames with their
timestamps, H.264 output (Motion-JPEG in .avi) at the source's exact timing, and every audio
stream of the source copied unchanged.

Without PyAV, `denoise apply` writes through OpenCV (data.video): MPEG-4 Part 2, no audio, and
a rate rounded to OpenCV's float; it says so in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.errors import VideoError
from denoise.data.video import check_written

# Encoder per output container: H.264 where browsers play it, Motion-JPEG in .avi (any size).
_ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264"}
_AVI_ENCODER = "mjpeg"
# x264's constant-quality setting (18: about visually lossless), without B-frames: their
# reordering gives negative decoding times, which some muxers (Matroska) shift. Preset veryfast:
# a 720p frame in about a third of medium's time (27 against 87 ms on 2 cores), about 10% more
# bytes at the same quality setting, so encoding stays small beside the model's call.
_X264_OPTIONS = {"crf": "18", "preset": "veryfast", "bf": "0"}


def available() -> bool:
    """Whether PyAV is installed (pip install 'denoise[video]')."""
    return importlib.util.find_spec("av") is not None


@dataclasses.dataclass(frozen=True)
class Written:
    """What a video was written with."""

    codec: str  # FFmpeg's name of the video codec: h264, mjpeg
    rate: Fraction  # frames per second, exactly as the source's stream says
    audio: tuple[str, ...]  # codecs of the audio streams copied
    note: str | None  # one line when an audio stream could not be kept, and why


class TimedFrames:
    """The source's frames as float32 RGB (H, W, 3) in [0, 1], in decoding order, each
    frame's timestamp (in the source stream's time base) kept in order for the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timestamps: deque[int | None] = deque()

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        try:
            container = av.open(str(self.path))
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: not a video FFmpeg can read ({error})") from None
        decoded = 0
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                self.timestamps.append(frame.pts)
                decoded += 1
                yield frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
        if decoded == 0:
            raise VideoError(f"{self.path}: video has no decodable frames")


def _audio_kept(source: Any, output_format: str) -> tuple[list[Any], str | None]:
    """The source's audio streams the output container takes as they are, and a note naming
    those it does not (a trial header in memory asks FFmpeg's muxer)."""
    import av

    kept, refused = [], []
    for stream in source.streams.audio:
        try:
            with av.open(io.BytesIO(), "w", format=output_format) as trial:
                trial.add_stream_from_template(stream)
                trial.start_encoding()
            kept.append(stream)
        except (av.FFmpegError, ValueError) as error:
            refused.append(f"{stream.codec_context.name} ({error})")
    if not refused:
        return kept, None
    return kept, (
        f"audio not kept: {output_format} cannot hold {', '.join(refused)}; "
        "write .mkv or .mp4 to keep it"
    )


class VideoOutput:
    """Appends frames to a video being written (see video_writer); `written` says how it was
    written once the block has ended cleanly."""

    def __init__(self, append: Callable[[np.ndarray], None]) -> None:
        self._append = append
        self.written: Written | None = None

    def __call__(self, rgb: np.ndarray) -> None:
        self._append(rgb)


@contextlib.contextmanager
def video_writer(
    path: Path, source: Path, frames: TimedFrames, width: int, height: int
) -> Iterator[VideoOutput]:
    """Yield a VideoOutput that appends float32 RGB (H, W, 3) frames in [0, 1] to a new video
    at path, each with the timestamp of the source frame it was made from (frames.timestamps,
    in order). On a clean exit the source's audio packets are copied in, unchanged."""
    import av

    suffix = path.suffix.lower()
    encoder = _AVI_ENCODER if suffix == ".avi" else _ENCODERS.get(suffix)
    if encoder is None:
        raise VideoError(f"{path}: cannot write {suffix or 'extensionless'} video")
    if encoder == "libx264" and (width % 2 or height % 2):
        raise VideoError(
            f"{path}: H.264 cannot keep the odd size {width}x{height}; write .avi instead "
            "(Motion-JPEG keeps any size)"
        )
    with av.open(str(source)) as inputs, av.open(str(path), "w") as output:
        video_in = inputs.streams.video[0]
        rate = Fraction(video_in.average_rate or video_in.guessed_rate or 25)
        # AVI has one rate and no timestamps: frame k sits at k / rate. Elsewhere each frame keeps
        # its source timestamp, so a variable-rate source keeps its timing.
        timed = suffix != ".avi" and video_in.time_base is not None
        audio_in, note = _audio_kept(inputs, output.format.name)
        stream: Any = output.add_stream(encoder, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if encoder == "libx264" else "yuvj444p"
        if encoder == "libx264":
            stream.options = dict(_X264_OPTIONS)
        if timed:
            stream.time_base = video_in.time_base
        audio_out = {audio.index: output.add_stream_from_template(audio) for audio in audio_in}
        count = 0

        def append(rgb: np.ndarray) -> None:
            nonlocal count
            if rgb.shape != (height, width, 3):
                raise ValueError(f"frame shape {rgb.shape} is not ({height}, {width}, 3)")
            pixels = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            timestamp = frames.timestamps.popleft() if frames.timestamps else None
            if timed and timestamp is not None:
                frame.pts, frame.time_base = timestamp, video_in.time_base
            else:  # in the encoder's time base, 1 / rate: frame k at k / rate
                frame.pts = count
            count += 1
            for packet in stream.encode(frame):
                output.mux(packet)

        # The audio goes in first (the muxer interleaves; it is small beside the video), so a
        # shift the container makes for audio that starts before zero moves every video frame.
        # AVI has no edit lists: audio that starts before zero (an encoder's priming samples)
        # starts at zero instead, as the audio of a container that shifts all streams would.
        start: dict[int, int] = {}
        for packet in inputs.demux(*audio_in) if audio_in else ():
            if packet.dts is None:  # the demuxer's flush packet
                continue
            index = packet.stream.index
            if not timed:
                start.setdefault(index, min(0, packet.dts))
                packet.dts -= start[index]
                if packet.pts is not None:
                    packet.pts -= start[index]
            packet.stream = audio_out[index]
            output.mux(packet)
        writer = VideoOutput(append)
        yield writer
        for packet in stream.encode():
            output.mux(packet)
        written = Written(
            codec="h264" if encoder == "libx264" else encoder,
            rate=rate,
            audio=tuple(audio.codec_context.name for audio in audio_in),
            note=note,
        )
    check_written(path, count, width * height * 3)
    writer.written = written
