"""Decode, sample and resize video frames and still images with OpenCV. BGR never leaves this
module.

Over 400 lines: every OpenCV read and write of frames and images, with the one set of rules
for channels, bit depths and checks of what was written, so that BGR stays in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import cv2
import numpy as np

from denoise.core.atomic import write_limit_error
from denoise.core.errors import DataError, VideoError

# Largest per-pixel channel difference (0-255) still counted as grey: codecs round chroma.
# The one list of each: what extract reads as still images (every other file is a video) and
# what `denoise apply` takes and writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pnm")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
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


def centre_crop_resize(image: np.ndarray, size: int, native_scale: bool = False) -> np.ndarray:
    """Crop the largest centred square and resize it to size x size with area interpolation;
    native_scale: crop the centred size x size square instead, never resized (a noisy
    source's frames keep their own noise, which area interpolation would average away).

    image: (H, W, C) or (H, W), any dtype OpenCV resizes; channel order is kept.
    """
    height, width = image.shape[:2]
    if native_scale:
        top, left = (height - size) // 2, (width - size) // 2
        return np.ascontiguousarray(image[top : top + size, left : left + size])
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _has_colour(image: np.ndarray) -> bool:
    """Whether some pixel's channels differ by more than codec rounding. image: uint8 (H, W, 3)."""
    return bool(np.ptp(image.astype(np.int16), axis=2).max() > _GREY_TOLERANCE)


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
    native_scale: bool = False,
) -> Generator[Frame, None, None]:
    """Decode a video, keep every `frame_stride`-th frame (or resample to `target_fps`).

    Yields RGB uint8 frames of size x size (native_scale: cropped, not resized). Raises
    VideoError (naming the file) for a video that cannot be opened, decodes to no frames,
    decodes to fewer than `min_decoded_fraction` of the frames its header announces
    (truncated), is smaller than `size`, or is greyscale while `allow_greyscale` is false. The
    checks that need the whole stream run after the last frame, so a consumer must not commit
    its output before the iterator is exhausted.
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
            small = centre_crop_resize(bgr, size, native_scale)
            colour_seen = colour_seen or _has_colour(small)
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


def read_still(
    path: Path, size: int, allow_greyscale: bool = False, native_scale: bool = False
) -> np.ndarray:
    """Read a still image as a frame: RGB uint8 (size, size, 3), cropped and resized as video
    frames are (native_scale: cropped only).

    16-bit images are scaled to 8 bits and float images clipped to [0, 1] first; an alpha
    channel is dropped. Raises DataError (naming the file) for an image OpenCV cannot read, one
    of another bit depth, one smaller than `size`, or a greyscale one (all three channels equal)
    while `allow_greyscale` is false.
    """
    bgr = _read_bgr_any_depth(path)
    if bgr is None:
        raise DataError(f"{path}: not an image OpenCV can read (unknown format or corrupt)")
    if bgr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(bgr.dtype, np.floating):
        raise DataError(f"{path}: {bgr.dtype} pixels; extract reads 8-bit, 16-bit or float images")
    height, width = bgr.shape[:2]
    if min(height, width) < size:
        raise DataError(
            f"{path}: image is {width}x{height}, smaller than the "
            f"{size}x{size} frames extract.size asks for"
        )
    small = centre_crop_resize(bgr, size, native_scale)
    if small.dtype == np.uint16:
        small = np.round(small / 257.0).astype(np.uint8)  # 65535 / 255
    elif small.dtype != np.uint8:
        small = np.round(np.clip(np.nan_to_num(small), 0.0, 1.0) * 255.0).astype(np.uint8)
    if not allow_greyscale and not _has_colour(small):
        raise DataError(
            f"{path}: greyscale image (all three channels equal); the models expect colour. "
            "Set extract.allow_greyscale: true to replicate it to RGB"
        )
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


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


# Codec per output container. .avi uses OpenCV's own Motion-JPEG writer, which keeps any frame
# size; the others go through FFmpeg (MPEG-4 Part 2), whose writer only makes even sizes.
_VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}
# Bit depths kept on output, per file type; every other type is written as 8-bit.
_DEPTHS_KEPT = {".png": ("uint16",), ".tif": ("uint16", "float32"), ".tiff": ("uint16", "float32")}
# File types that keep an alpha channel, and those that keep one grey channel (PPM needs three;
# WebP stores grey as three whatever it is given).
_ALPHA_KEPT = (".png", ".tif", ".tiff", ".webp", ".bmp")
_GREY_KEPT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pnm")


def read_video_rgb(path: Path) -> Iterator[np.ndarray]:
    """Decode every frame at full resolution as float32 RGB (H, W, 3) in [0, 1].

    Raises VideoError (naming the file) when the video cannot be opened or decodes to nothing.
    """
    probe(path)
    capture = cv2.VideoCapture(str(path))
    decoded = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            decoded += 1
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    finally:
        capture.release()
    if decoded == 0:
        raise VideoError(f"{path}: video has no decodable frames")


def video_codec(path: Path, width: int, height: int) -> str:
    """The codec a video of this size is written with at path, or VideoError saying why not.

    The codec follows the extension (see _VIDEO_CODECS); an odd size needs .avi.
    """
    suffix = path.suffix.lower()
    if suffix not in _VIDEO_CODECS:
        raise VideoError(
            f"{path}: cannot write {suffix or 'extensionless'} video (known: "
            f"{', '.join(_VIDEO_CODECS)})"
        )
    if suffix != ".avi" and (width % 2 or height % 2):
        raise VideoError(
            f"{path}: OpenCV's FFmpeg writer cannot keep the odd size {width}x{height} in "
            f"{suffix}; write .avi instead (Motion-JPEG keeps any size)"
        )
    return _VIDEO_CODECS[suffix]


@contextlib.contextmanager
def rgb_video_writer(
    path: Path, fps: float, width: int, height: int
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield a function that appends a float32 RGB (H, W, 3) frame in [0, 1] to a new video.

    Raises VideoError where video_codec does, or when OpenCV cannot open the writer. OpenCV's
    writer reports no failed write, so the finished file is read back: one that does not hold
    every frame written raises OSError (a size limit or a full disk explains it) or VideoError.
    """
    codec = video_codec(path, width, height)
    fourcc = cv2.VideoWriter.fourcc(*codec)
    if path.suffix.lower() == ".avi":
        writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, (width, height))
    else:
        writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write {codec} video here")

    def write(rgb: np.ndarray) -> None:
        if rgb.shape != (height, width, 3):
            raise ValueError(f"frame shape {rgb.shape} is not ({height}, {width}, 3)")
        frame = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    written = 0

    def counted(rgb: np.ndarray) -> None:
        nonlocal written
        write(rgb)
        written += 1

    try:
        yield counted
    finally:
        writer.release()
    check_written(path, written, width * height * 3)


def check_written(path: Path, written: int, frame_bytes: int) -> None:
    """Raise unless the finished video at path decodes to the `written` frames: an OSError
    where a size limit or a full disk explains it (one more frame of frame_bytes would not
    fit), else a VideoError."""
    readable = _count_frames(path)
    if readable != written:
        limit = write_limit_error(path, path.stat().st_size + frame_bytes)
        if limit is not None:
            raise limit
        raise VideoError(f"{path}: holds {readable} readable frames of the {written} written")


def _count_frames(path: Path) -> int:
    """Frames OpenCV decodes from a video file (0 if it cannot open it)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.isOpened() and capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def can_read_image(path: Path) -> bool:
    """Whether OpenCV has a decoder for this file's contents (it reads the header only)."""
    return bool(cv2.haveImageReader(str(path)))


def _read_oriented(path: Path) -> np.ndarray | None:
    """Read an image in its stored dtype as grey (H, W) or BGR (H, W, 3), EXIF rotation applied,
    alpha dropped; None when OpenCV cannot read it."""
    try:
        return cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        return None


def _read_bgr_any_depth(path: Path) -> np.ndarray | None:
    """Read an image as BGR (H, W, 3) in its stored dtype, or None when OpenCV cannot.

    Greyscale is replicated to three channels, an alpha channel dropped, EXIF rotation applied.
    """
    image = _read_oriented(path)
    if image is not None and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image


def _with_alpha(path: Path, bgr: np.ndarray) -> np.ndarray:
    """bgr (H, W, 3) with the file's alpha channel appended as BGRA, when it has one.

    Only an unchanged read keeps alpha, and it skips EXIF rotation: the stored image is turned
    and flipped until its colour channels match bgr, which OpenCV did rotate. Should no turn
    match, bgr comes back without alpha, as it was read.
    """
    try:
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return bgr
    if stored is None or stored.ndim != 3 or stored.shape[2] != 4:
        return bgr
    for turns in range(4):
        for view in (np.rot90(stored, turns), np.rot90(stored[:, ::-1], turns)):
            if view.shape[:2] == bgr.shape[:2] and np.array_equal(view[..., :3], bgr):
                return np.ascontiguousarray(view)
    return bgr


def read_image_float(path: Path) -> tuple[np.ndarray, np.dtype]:
    """Read an image of any bit depth as float32 (H, W, C) in [0, 1], and its stored dtype.

    C is the stored channel count: 1 (grey), 3 (RGB) or 4 (RGBA, alpha last). 8- and 16-bit
    images are scaled from their integer range and float images clipped; EXIF rotation is
    applied. Raises VideoError (naming the file) for an image OpenCV cannot read.
    """
    image = _read_oriented(path)
    if image is None:
        raise VideoError(f"{path}: not an image OpenCV can read")
    dtype = image.dtype
    if image.ndim == 2:
        image = image[..., None]
    else:
        image = _with_alpha(path, image)
        to_rgb = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, to_rgb)
    if dtype == np.uint8:
        return image.astype(np.float32) / 255.0, dtype
    if dtype == np.uint16:
        return image.astype(np.float32) / 65535.0, dtype
    return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0), dtype


def write_image_float(path: Path, image: np.ndarray, dtype: np.dtype | None = None) -> None:
    """Write float32 (H, W, C) in [0, 1] as `dtype` where the file type keeps it, else 8-bit.

    C is 1 (grey), 3 (RGB) or 4 (RGBA, alpha last). 16-bit survives in PNG and TIFF, float32 in
    TIFF; alpha in PNG, TIFF, WebP and BMP (other types drop it); one grey channel in every type
    but PPM and WebP (which get it as RGB). The format follows the extension. An 8- or 16-bit
    channel read by read_image_float and written at its depth comes back bit for bit.
    """
    suffix = path.suffix.lower()
    if image.shape[2] == 4 and suffix not in _ALPHA_KEPT:
        image = image[..., :3]
    if image.shape[2] == 1 and suffix not in _GREY_KEPT:
        image = np.repeat(image, 3, axis=2)
    kept = _DEPTHS_KEPT.get(suffix, ())
    name = np.dtype(dtype).name if dtype is not None else "uint8"
    clipped = np.clip(image, 0.0, 1.0)
    if name == "uint16" and name in kept:
        stored = np.round(clipped * 65535.0).astype(np.uint16)
    elif name == "float32" and name in kept:
        stored = clipped.astype(np.float32)
    else:
        stored = np.round(clipped * 255.0).astype(np.uint8)
    if stored.shape[2] == 1:
        stored = stored[..., 0]
    else:
        to_bgr = cv2.COLOR_RGBA2BGRA if stored.shape[2] == 4 else cv2.COLOR_RGB2BGR
        stored = cv2.cvtColor(stored, to_bgr)
    if not cv2.imwrite(str(path), stored):
        # No error code: a size limit or a full disk is the likely cause when either is short
        # of the pixels' size (atomic_path then names the output and the space).
        limit = write_limit_error(path, stored.nbytes)
        if limit is not None:
            raise limit
        raise VideoError(f"{path}: OpenCV could not write this image")
