"""denoise apply: images, folders and videos at full resolution, written atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.atomic import atomic_path
from denoise.core.config import Apply, Params
from denoise.core.errors import InputError, VideoError
from denoise.core.pipelined import read_ahead, write_behind
from denoise.core.progress import progress
from denoise.core.schema import INIT_PRETRAINED
from denoise.core.temporal import channel_windows
from denoise.data import container
from denoise.data.video import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    can_read_image,
    probe,
    read_image_float,
    read_video_rgb,
    rgb_video_writer,
    video_codec,
    write_image_float,
)
from denoise.models.pretrained import pretrained_model_path
from denoise.serving.backends import describe
from denoise.serving.choose import SHIPPED, first_registered, load_model_at
from denoise.serving.input_noise import input_noise_level, model_noise_range, noise_note
from denoise.serving.load import default_model_uri
from denoise.serving.tiling import denoise_batch, denoise_image


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Files to denoise: each file given, and each folder's images and videos (not recursive).

    Raises InputError for a missing path, an unsupported file type or a folder with no media.
    """
    files: list[Path] = []
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                entry
                for entry in path.iterdir()
                if entry.is_file()
                and not entry.name.startswith(".")
                and entry.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                raise InputError(f"{path}: no images or videos in this folder (not recursive)")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise InputError(
                    f"{path}: unsupported file type {path.suffix or '(none)'} (images: "
                    f"{' '.join(IMAGE_SUFFIXES)}; videos: {' '.join(VIDEO_SUFFIXES)})"
                )
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def plan_outputs(files: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """Pair each input with its output path.

    One input and an output with a media extension: that file. Otherwise output is a folder
    and each input keeps its name in it. Raises InputError for two inputs with one name, an
    output that would overwrite its input, or an image paired with a video.
    """
    single_file = (
        len(files) == 1
        and not output.is_dir()
        and output.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
    )
    if single_file:
        source = files[0]
        if (source.suffix.lower() in VIDEO_SUFFIXES) != (output.suffix.lower() in VIDEO_SUFFIXES):
            raise InputError(f"{output}: an image and a video cannot be each other's output")
        pairs = [(source, output)]
    elif output.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and not output.is_dir():
        raise InputError(f"{output}: several inputs need an output folder, not a file name")
    else:
        pairs = [(source, output / source.name) for source in files]
    targets: dict[Path, Path] = {}
    for source, target in pairs:
        if target.resolve() == source.resolve():
            raise InputError(f"{target}: the output would overwrite its input; choose another -o")
        if target.resolve() in targets:
            raise InputError(
                f"{source} and {targets[target.resolve()]} would both be written to {target}"
            )
        targets[target.resolve()] = source
    return pairs


def check_outputs(pairs: list[tuple[Path, Path]]) -> None:
    """Raise InputError, naming the output, for one that cannot be written.

    Each output's folder must exist or be creatable (no file in the way) and take a new file,
    which a probe file, made and removed at once, proves where permission bits cannot (root, a
    read-only mount, /proc); no output may be an existing folder.
    """
    writable: set[Path] = set()
    for source, target in pairs:
        if target.parent not in writable:
            existing = target.parent
            while not os.path.lexists(existing) and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise InputError(
                    f"{target}: cannot be written, {existing} is not a folder; choose another -o "
                    "(a folder, or a file name with an image or video extension for one input)"
                )
            try:
                with tempfile.NamedTemporaryFile(dir=existing, prefix=".denoise-probe-"):
                    pass
            except OSError as error:
                raise InputError(
                    f"{target}: cannot be written in {existing} ({error.strerror}); "
                    "choose another -o"
                ) from None
            writable.add(target.parent)
        if target.is_dir():
            raise InputError(
                f"{target}: a folder is in the way of the output for {source}; move it or "
                "choose another -o"
            )


@dataclasses.dataclass(frozen=True)
class Applied:
    """One denoised file."""

    source: Path
    output: Path
    width: int
    height: int
    frames: int  # 1 for an image
    fps: float | None  # None for an image
    video: str | None = None  # how a video was written: codec, exact rate, audio kept
    note: str | None = None  # one line on what a video could not keep


@dataclasses.dataclass(frozen=True)
class ApplySummary:
    """What `denoise apply` did: the model it used and every output."""

    model_uri: str  # the images' model (the videos' when there are only videos)
    outputs: list[Applied]
    video_model_uri: str | None = None  # the videos' model, when there are videos
    backend: str = ""  # what ran the model (serving.backends.describe): "OpenVINO, bfloat16"


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def _inference_options(config: Apply) -> dict[str, Any]:
    """denoise_batch's keyword arguments from params.apply."""
    return {
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "batch_size": config.batch_size,
        "ensemble": config.self_ensemble,
        "whole_megapixels": config.whole_megapixels,
    }


def _denoise_rows_packed(model: Any, grey: np.ndarray, config: Apply) -> np.ndarray:
    """Denoise a grey image whose every three neighbours along a row make one RGB pixel.

    grey: float32 (H, W) in [0, 1]. Each of the three offsets of the packing gives every pixel
    one estimate; returns their mean, float32 (H, W) in [0, 1].
    """
    height, width = grey.shape
    total = np.zeros_like(grey)
    for offset in range(3):
        padded = np.pad(grey, ((0, 0), (offset, -(width + offset) % 3)), mode="reflect")
        packed = padded.reshape(height, -1, 3)
        denoised = denoise_image(model, packed, **_inference_options(config))
        total += denoised.reshape(height, -1)[:, offset : offset + width]
    return total / 3.0


def denoise_channels(model: Any, noisy: np.ndarray, config: Apply) -> np.ndarray:
    """Denoise a grey, RGB or RGBA image with an RGB model; the result has the same channels.

    noisy: float32 (H, W, C) in [0, 1], C = 1 (grey), 3 (RGB) or 4 (RGBA, alpha last). The
    models learnt noise independent across R, G and B; grey copied into all three channels has
    the same noise in each, which they mostly keep. Three neighbouring grey pixels, packed into
    one RGB pixel, hold nearly the same content and independent noise, as the models learnt; so
    grey is denoised packed along rows and along columns at each of three offsets, and the six
    estimates of each pixel averaged. Alpha is no image content and is copied through.
    """
    if noisy.shape[2] == 1:
        grey = noisy[..., 0]
        along_rows = _denoise_rows_packed(model, grey, config)
        along_columns = _denoise_rows_packed(model, np.ascontiguousarray(grey.T), config).T
        return ((along_rows + along_columns) / 2.0)[..., None]
    denoised = denoise_image(model, noisy[..., :3], **_inference_options(config))
    return np.concatenate([denoised, noisy[..., 3:]], axis=2)


@contextlib.contextmanager
def _named(staging: Path, target: Path) -> Iterator[None]:
    """A VideoError about the hidden staging file names the output the user asked for."""
    try:
        yield
    except VideoError as error:
        raise VideoError(str(error).replace(str(staging), str(target))) from None


def apply_to_image(model: Any, source: Path, target: Path, config: Apply) -> Applied:
    """Denoise one image file at full resolution; write it atomically at its bit depth, with
    its channels (grey stays grey, alpha is kept where the output type stores it)."""
    noisy, dtype = read_image_float(source)
    denoised = denoise_channels(model, noisy, config)
    with atomic_path(target) as staging, _named(staging, target):
        write_image_float(staging, denoised, dtype)
    return Applied(source, target, noisy.shape[1], noisy.shape[0], 1, None)


def model_window(model: Any) -> int:
    """Frames a model takes per output frame: its input channels / 3 (1: an image model; a
    Predictor, which hides its input, counts as one)."""
    shape = getattr(model, "input_shape", None)
    return int(shape[-1]) // 3 if shape is not None else 1


def windows_of(frames: Iterable[np.ndarray], window: int, source: Path) -> Iterator[np.ndarray]:
    """Each frame's window of `window` frames stacked on channels (core.temporal), the ends
    reflected; a video too short for the window, or with frames of two sizes, is an
    InputError naming it."""
    try:
        yield from channel_windows(frames, window)
    except ValueError as error:  # too short, or frames of different sizes
        raise InputError(f"{source}: {error}") from None


def apply_to_video(model: Any, source: Path, target: Path, config: Apply) -> Applied:
    """Denoise every frame of a video; write a video of the same size, timing and frame count.

    With PyAV (the `video` extra) the output is H.264 (Motion-JPEG in .avi) with each frame's
    source timestamp and every audio stream copied; without it, OpenCV writes MPEG-4 Part 2
    at its float rate and no audio, and the note says so. A temporal model denoises each frame
    from the window of frames around it, read as the video plays: memory holds a window and a
    batch, whatever the video's length. The finished file is read back before it replaces
    anything (data.video.check_written).
    """
    info = probe(source)
    timed = container.TimedFrames(source) if container.available() else None
    frames: Iterable[np.ndarray] = progress(
        timed if timed is not None else read_video_rgb(source),
        description=f"denoise {source.name}",
        total=info.frame_count or None,
    )
    window = model_window(model)
    if window > 1:
        frames = windows_of(frames, window, source)
    written = 0
    # The writer closes (and checks its file) before atomic_path renames it into place.
    writer: contextlib.AbstractContextManager[Callable[[np.ndarray], None]]
    with atomic_path(target) as staging, _named(staging, target):
        if timed is not None:
            writer = container.video_writer(staging, source, timed, info.width, info.height)
        else:
            writer = rgb_video_writer(staging, info.fps, info.width, info.height)
        # Decoding reads ahead and encoding writes behind, in threads, beside the model's calls.
        with writer as write, write_behind(write) as write_later:
            for noisy in _chunks(read_ahead(frames), config.batch_size):
                denoised = denoise_batch(model, noisy, **_inference_options(config))
                for frame in denoised:
                    write_later(frame)
                written += len(denoised)
    video: str
    note: str | None
    if timed is None:
        codec = video_codec(target, info.width, info.height)
        video, note = (
            f"{codec} (OpenCV) at {info.fps:g} fps",
            (
                f"PyAV is not installed (pip install 'denoise[video]'): {target.name} is {codec} "
                f"through OpenCV at {info.fps:g} fps, without the source's audio"
            ),
        )
    else:
        done = write.written if isinstance(write, container.VideoOutput) else None
        if done is None:  # set when the writer's block ended cleanly
            raise VideoError(f"{target}: the video writer did not finish")
        audio = f", audio {' '.join(done.audio)} copied" if done.audio else ", no audio"
        video, note = f"{done.codec} at {done.rate} fps{audio}", done.note
    return Applied(source, target, info.width, info.height, written, info.fps, video, note)


def run(
    params: Params, inputs: list[Path], output: Path, model_uri: str | None = None
) -> ApplySummary:
    """Denoise images and videos with a model (default: the registered champions).

    Without model_uri, images get the image champion (register.model_name; the shipped model
    while there is none) and videos the video champion (register.video_model_name; the image
    model frame by frame while there is none). A temporal model given as model_uri denoises
    videos only. Inputs and outputs are checked before the model loads; each output is
    written atomically, so a failure part-way leaves complete outputs only.
    """
    pairs = plan_outputs(collect_inputs(inputs), Path(output))
    check_outputs(pairs)
    for source, target in pairs:
        if source.suffix.lower() in VIDEO_SUFFIXES:
            info = probe(source)
            video_codec(target, info.width, info.height)
        elif not can_read_image(source):
            raise InputError(f"{source}: not an image OpenCV can read")
    if model_uri == INIT_PRETRAINED:
        model_uri = str(pretrained_model_path())
    images = [pair for pair in pairs if pair[0].suffix.lower() in IMAGE_SUFFIXES]
    videos = [pair for pair in pairs if pair[0].suffix.lower() in VIDEO_SUFFIXES]
    shipped = (str(pretrained_model_path()), SHIPPED)
    image_champion = (default_model_uri(params), f"the image champion {default_model_uri(params)}")
    model: Any = None
    video_model: Any = None
    uri = video_uri = ""
    loaded: dict[str, Any] = {}
    if model_uri is not None:
        model, uri = load_model_at(params, model_uri), model_uri
        window = model_window(model)
        if images and window > 1:
            raise InputError(
                f"{images[0][0]}: a still image cannot go to {uri}, a temporal model of "
                f"{window} frames; give it videos, or choose an image model (--model)"
            )
        video_model, video_uri = model, uri
    else:
        if images:
            model, uri = first_registered(params, [image_champion, shipped], loaded)
        if videos:
            video_champion = (default_model_uri(params, video=True), "")
            frame_by_frame = (image_champion[0], f"{image_champion[1]} frame by frame")
            video_model, video_uri = first_registered(
                params, [video_champion, frame_by_frame, shipped], loaded
            )
    _say_noise_levels(params, [(pair[0], uri) for pair in images])
    _say_noise_levels(params, [(pair[0], video_uri) for pair in videos])
    outputs = []
    if images:
        for source, target in progress(images, description="denoise images"):
            outputs.append(apply_to_image(model, source, target, params.apply))
    for source, target in videos:
        outputs.append(apply_to_video(video_model, source, target, params.apply))
    used = model if images else video_model
    return ApplySummary(
        uri if images else video_uri, outputs, video_uri if videos else None, describe(used)
    )


def _say_noise_levels(params: Params, inputs: list[tuple[Path, str]]) -> None:
    """One line per input on stderr: its estimated noise level against the range the model
    (at the URI paired with it) was trained on (serving.input_noise)."""
    ranges: dict[str, tuple[float, float] | None] = {}
    for source, uri in inputs:
        if uri not in ranges:
            ranges[uri] = model_noise_range(uri)
        sigma = input_noise_level(source)
        print(noise_note(source, sigma, ranges[uri], params.apply.noise_tolerance), file=sys.stderr)
