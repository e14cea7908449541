"""samples: put the bundled sample videos in paths.raw.

The real default comes from Debian's opencv-doc package (hand-held objects before a plain
background, like the paper's canvas footage). Where that package is missing, a procedurally
rendered "objects on a canvas" video is written instead, named synthetic-canvas.avi.
"""

from __future__ import annotations

import dataclasses
import gzip
import shutil
from pathlib import Path

import cv2
import numpy as np

from denoise.core.atomic import atomic_path

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
# Where Debian's opencv-doc keeps each sample video (some gzipped).
SEARCH_PATHS = (OPENCV_DOC / "examples" / "data", OPENCV_DOC / "opencv4" / "html")
SYNTHETIC_NAME = "synthetic-canvas.avi"


@dataclasses.dataclass(frozen=True)
class SamplesSummary:
    copied: list[str]
    present: list[str]
    missing: list[str]
    synthetic: str | None
    stills: dict[str, str] = dataclasses.field(default_factory=dict)  # folder -> what it holds


def find_sample(name: str, search_paths: tuple[Path, ...] = SEARCH_PATHS) -> Path | None:
    """The installed copy of a sample video, plain or gzipped, or None."""
    for directory in search_paths:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _copy_sample(source: Path, target: Path) -> None:
    with atomic_path(target) as staging:
        if source.suffix == ".gz":
            with gzip.open(source, "rb") as packed, staging.open("wb") as plain:
                shutil.copyfileobj(packed, plain)
        else:
            shutil.copyfile(source, staging)


@dataclasses.dataclass(frozen=True)
class _CanvasObject:
    kind: str  # circle, square or triangle
    colour: np.ndarray  # RGB in [0, 1]
    radius: float  # pixels
    start: np.ndarray  # (row, col) of the centre at frame 0
    velocity: np.ndarray  # pixels per frame
    textured: bool  # striped rather than flat


def render_canvas_video(
    num_frames: int, size: tuple[int, int] = (480, 640), seed: int = 0
) -> np.ndarray:
    """Procedural "objects on a canvas" footage: uint8 (N, H, W, 3) RGB.

    Textured shapes move over a woven-looking canvas under slowly changing light while the
    camera drifts, so frames have edges, texture and flat regions, like the paper's data.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    margin = 40
    big_h, big_w = height + 2 * margin, width + 2 * margin
    rows, cols = np.mgrid[0:big_h, 0:big_w].astype(np.float32)
    weave = 0.04 * np.sin(rows * 0.9) * np.sin(cols * 0.9)
    canvas = np.empty((big_h, big_w, 3), np.float32)
    for channel, base in enumerate((0.86, 0.82, 0.74)):
        canvas[..., channel] = base + weave - 0.08 * (rows / big_h) + 0.03 * (cols / big_w)
    stripes = (np.sin(cols * 0.35) > 0).astype(np.float32)
    objects = [
        _CanvasObject(
            kind=kind,
            colour=rng.uniform(0.1, 0.9, 3),
            radius=float(rng.uniform(30, 70)),
            start=rng.uniform([margin + 60, margin + 60], [big_h - 60, big_w - 60]),
            velocity=rng.uniform(-3.0, 3.0, 2),
            textured=bool(rng.random() < 0.5),
        )
        for kind in ("circle", "square", "triangle", "circle", "square")
    ]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for index in range(num_frames):
        scene = canvas.copy()
        for item in objects:
            centre = item.start + item.velocity * index
            centre = (
                np.abs(
                    (centre - margin) % (2 * (np.array([big_h, big_w]) - 2 * margin))
                    - (np.array([big_h, big_w]) - 2 * margin)
                )
                + margin
            )
            cy, cx, radius = float(centre[0]), float(centre[1]), item.radius
            if item.kind == "circle":
                mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
            elif item.kind == "square":
                mask = (np.abs(rows - cy) <= radius * 0.8) & (np.abs(cols - cx) <= radius * 0.8)
            else:
                mask = (rows - cy <= radius * 0.7) & (
                    np.abs(cols - cx) <= (rows - cy + radius) * 0.6
                )
            colour = item.colour[None, :] * (
                0.75 + 0.25 * stripes[mask][:, None] if item.textured else 1.0
            )
            scene[mask] = colour
        light = 0.85 + 0.15 * np.sin(2 * np.pi * index / max(num_frames, 1))
        drift_y = margin + 0.8 * margin * np.sin(2 * np.pi * index / 97.0)
        drift_x = margin + 0.8 * margin * np.cos(2 * np.pi * index / 131.0)
        shift = np.array([[1, 0, -drift_x], [0, 1, -drift_y]], np.float32)
        view = cv2.warpAffine(scene * light, shift, (width, height), flags=cv2.INTER_LINEAR)
        frames[index] = np.clip(view * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames
