"""Frame-to-frame targets (Ehret et al. 2019): a neighbouring frame warped onto frame t by
optical flow, and the mask of the pixels where that warp can be trusted.

Pure NumPy and OpenCV. Flow is estimated on a pre-denoised copy (a Gaussian blur of the grey
frame), as the noise would otherwise dominate it. A pixel of frame t is kept when its flow
lands inside the neighbour, the backward flow there brings it back (forward-backward
consistency, Sundaram et al. 2010), and the blurred frames agree after the warp (which drops
what a consistent but wrong flow leaves, such as both sides of a scene cut).
"""

from __future__ import annotations

import cv2
import numpy as np

from denoise.core.errors import ConfigError
from denoise.core.train_config import WithoutClean


def _grey(frame: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (H, W) grey of an RGB frame in [0, 1], blurred by sigma pixels."""
    grey = cv2.cvtColor(np.clip(frame, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2GRAY)
    if sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    return np.round(grey * 255.0).astype(np.uint8)


def optical_flow(reference: np.ndarray, moving: np.ndarray, method: str) -> np.ndarray:
    """The flow from reference to moving: float32 (H, W, 2) in pixels, (dx, dy), such that
    reference[y, x] matches moving[y + dy, x + dx].

    reference, moving: uint8 (H, W) grey frames of one size.
    """
    if method == "dis":
        dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(reference, moving, np.zeros((*reference.shape, 2), np.float32))
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(reference, moving, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        raise ConfigError(f"train.without_clean.flow: must be dis or farneback, got {method!r}")
    return np.asarray(flow, dtype=np.float32)


def warp(
    image: np.ndarray, flow: np.ndarray, interpolation: str = "linear"
) -> tuple[np.ndarray, np.ndarray]:
    """`image` sampled at every pixel plus `flow`, and where that lies inside it.

    image: float32 (H, W, C) or (H, W). flow: float32 (H, W, 2), (dx, dy) in pixels, as
    optical_flow returns it. interpolation: "linear" (bilinear) or "nearest" (the nearest
    pixel: a noisy target keeps its noise whole instead of averaging neighbours). Returns the
    warped image (same shape and dtype; edge pixels repeated outside) and a bool (H, W) mask,
    True where the sample point lies within half a pixel of the image's pixel centres.
    """
    height, width = flow.shape[:2]
    columns, rows = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    map_x, map_y = columns + flow[..., 0], rows + flow[..., 1]
    method = cv2.INTER_NEAREST if interpolation == "nearest" else cv2.INTER_LINEAR
    warped = cv2.remap(image, map_x, map_y, method, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped.reshape(image.shape), inside


def consistency_mask(
    forward: np.ndarray, backward: np.ndarray, pixels: float, ratio: float
) -> np.ndarray:
    """Where the forward flow (t -> s) and the backward flow (s -> t) agree: bool (H, W).

    forward, backward: float32 (H, W, 2) in pixels. A pixel p of t is kept when p + F(p) lies
    inside s and |F(p) + B(p + F(p))|^2 <= pixels^2 + ratio * (|F(p)|^2 + |B(p + F(p))|^2).
    """
    back, inside = warp(backward, forward)
    mismatch = np.sum(np.square(forward + back), axis=-1)
    motion = np.sum(np.square(forward), axis=-1) + np.sum(np.square(back), axis=-1)
    return inside & (mismatch <= pixels**2 + ratio * motion)


def frame_to_frame_target(
    frame: np.ndarray, neighbour: np.ndarray, settings: WithoutClean
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour warped onto frame, and the mask of the pixels the loss may use.

    frame, neighbour: float32 (H, W, 3) RGB in [0, 1], noisy. Returns the warped neighbour,
    float32 (H, W, 3) (0 where masked out), and a bool (H, W) mask: inside, forward-backward
    consistent and photometrically consistent on the pre-denoised copies. settings:
    params.yaml's train.without_clean.
    """
    reference = _grey(frame, settings.prefilter_sigma)
    moving = _grey(neighbour, settings.prefilter_sigma)
    forward = optical_flow(reference, moving, settings.flow)
    backward = optical_flow(moving, reference, settings.flow)
    mask = consistency_mask(
        forward, backward, settings.consistency_pixels, settings.consistency_ratio
    )
    warped, _ = warp(neighbour.astype(np.float32), forward, settings.warp)
    moved, _ = warp(moving.astype(np.float32) / 255.0, forward)
    mask &= np.abs(moved - reference.astype(np.float32) / 255.0) <= settings.photometric_tolerance
    return np.where(mask[..., None], warped, 0.0).astype(np.float32), mask
