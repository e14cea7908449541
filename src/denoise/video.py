"""Decode, sample and resize video frames with OpenCV. BGR never leaves this module."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from denoise.errors import VideoError

# Largest per-pixel channel difference (0-255) still counted as grey: codecs round chroma.
_GREY_TOLERANCE = 2


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int  # as the container header says; may differ from what decodes
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Frame:
    index: int  # position in the decoded stream
    timestamp: float  # seconds from the start
    rgb: np.ndarray  # uint8 (size, size, 3)


def probe(path: Path) -> VideoInfo:
    """Open a video and read its header, or raise VideoError naming the file."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: not a video OpenCV can read (unknown format or corrupt)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            path=path,
            fps=fps if fps and np.isfinite(fps) and fps > 0 else 25.0,
            frame_count=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def centre_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Crop the largest centred square and resize it to size x size with area interpolation.

    image: (H, W, C) or (H, W), any dtype OpenCV resizes; channel order is kept.
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _keep_indices(fps: float, frame_stride: int, target_fps: float | None) -> Iterator[bool]:
    """Yield, for each decoded frame in order, whether the sampler keeps it."""
    index = 0
    next_time = 0.0
    while True:
        if target_fps is None:
            yield index % frame_stride == 0
        else:
            timestamp = index / fps
            keep = timestamp + 1e-9 >= next_time
            if keep:
                next_time += 1.0 / target_fps
            yield keep
        index += 1


def read_frames(
    path: Path,
    size: int,
    frame_stride: int = 1,
    target_fps: float | None = None,
    allow_greyscale: bool = False,
    min_decoded_fraction: float = 0.5,
) -> Iterator[Frame]:
    """Decode a video, keep every `frame_stride`-th frame (or resample to `target_fps`).

    Yields RGB uint8 frames of size x size. Raises VideoError (naming the file) for a video
    that cannot be opened, decodes to no frames, decodes to fewer than `min_decoded_fraction` of
    the frames its header announces (truncated), is smaller than `size`, or is greyscale while
    `allow_greyscale` is false. The checks that need the whole stream run after the last frame,
    so a consumer must not commit its output before the iterator is exhausted.
    """
    info = probe(path)
    if min(info.width, info.height) < size:
        raise VideoError(
            f"{path}: video is {info.width}x{info.height}, smaller than the "
            f"{size}x{size} frames extract.size asks for"
        )
    capture = cv2.VideoCapture(str(path))
    keep = _keep_indices(info.fps, frame_stride, target_fps)
    decoded = 0
    colour_seen = False
    try:
        while True:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            decoded += 1
            if not next(keep):
                continue
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            small = centre_crop_resize(bgr, size)
            if not colour_seen:
                spread = np.ptp(small.astype(np.int16), axis=2).max()
                colour_seen = bool(spread > _GREY_TOLERANCE)
            yield Frame(
                decoded - 1, (decoded - 1) / info.fps, cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
            )
    finally:
        capture.release()
    if decoded == 0:
        raise VideoError(f"{path}: video has no decodable frames")
    if info.frame_count > 0 and decoded < min_decoded_fraction * info.frame_count:
        raise VideoError(
            f"{path}: truncated or corrupt video: decoded {decoded} of the "
            f"{info.frame_count} frames its header announces"
        )
    if not colour_seen and not allow_greyscale:
        raise VideoError(
            f"{path}: greyscale video (all three channels equal); the models expect colour. "
            "Set extract.allow_greyscale: true to replicate it to RGB"
        )


def write_video(path: Path, frames_rgb: np.ndarray, fps: float, codec: str = "MJPG") -> None:
    """Write RGB uint8 frames (N, H, W, 3) to a video file with OpenCV."""
    height, width = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write {codec} video here")
    try:
        for rgb in frames_rgb:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) image; the format follows the file extension."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise VideoError(f"{path}: OpenCV could not write this image")


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), or raise VideoError naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
