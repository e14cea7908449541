"""Learning without clean targets on a real video: frame-to-frame and Neighbor2Neighbor against
the oracle (clean targets), each fine-tuning the shipped model for the same steps.

Usage:  .venv/bin/python bench/without_clean.py [--video .../vtest.avi] [--noise correlated]
            [--steps 150] [--out <out-dir>]

The first --frames decoded frames of the video (Debian opencv-doc's vtest.avi by default),
centre-cropped and area-resized to --size, are the clean frames (a compressed video: its
codec artefacts count as clean). Noise, fixed seed, added and saved as 8 bits:
- correlated: white Gaussian blurred by 0.8 pixels, rescaled to sigma 20 (0-255 scale), new
  in every frame: what a Gaussian-trained model fails on;
- poisson_gaussian: variance = 0.01 x + 1.5e-4 (camera-high's shot and read, in display
  light: no tone curve), independent per pixel.
The first 5/6 of the frames train (one stride-1 clip), the rest are scored (PSNR against the
clean frames). Each method fine-tunes the shipped drunet_light with Adam at 1e-4, batch 8,
64-pixel patches, through the train stage's streams and fitted models (training.stream,
training.supervision). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from denoise.core import runtime

runtime.configure()

import keras

from denoise.core.config import default_params
from denoise.core.markdown import markdown_table
from denoise.models.build import load_model
from denoise.models.pretrained import pretrained_model_path
from denoise.training.settings import with_active
from denoise.training.stream import FrameToFrameStream, NeighbourStream
from denoise.training.supervision import (
    Neighbor2NeighborLoss,
    frame_to_frame_model,
    masked_mse,
    neighbor2neighbor_model,
)


def read_clean(video: Path, frames: int, size: int) -> np.ndarray:
    """The first `frames` frames, centre square, area-resized: float32 (N, size, size, 3)."""
    capture = cv2.VideoCapture(str(video))
    clean = []
    while len(clean) < frames:
        ok, bgr = capture.read()
        if not ok:
            raise SystemExit(f"{video}: fewer than {frames} frames")
        side = min(bgr.shape[:2])
        top, left = (bgr.shape[0] - side) // 2, (bgr.shape[1] - side) // 2
        rgb = cv2.cvtColor(bgr[top : top + side, left : left + side], cv2.COLOR_BGR2RGB)
        clean.append(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(clean).astype(np.float32) / 255.0


def add_noise(clean: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """clean float32 (N, H, W, 3) in [0, 1] -> uint8 noisy frames, as saved."""
    if kind == "correlated":
        white = rng.normal(0.0, 1.0, clean.shape).astype(np.float32)
        blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), 0.8) for frame in white])
        noisy = clean + blurred / blurred.std() * (20 / 255)
    else:
        noisy = clean + rng.normal(0.0, 1.0, clean.shape) * np.sqrt(0.01 * clean + 1.5e-4)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def psnr(network: keras.Model, noisy: np.ndarray, clean: np.ndarray) -> float:
    denoised = np.clip(network.predict(noisy, batch_size=4, verbose=0), 0.0, 1.0)
    errors = np.mean(np.square(denoised - clean), axis=(1, 2, 3))
    return float(np.mean(-10.0 * np.log10(errors)))


class OracleStream(FrameToFrameStream):
    """FrameToFrameStream's draws with the clean frame as target and every pixel kept."""

    clean: np.ndarray

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        noisy, packed = super().__getitem__(index)
        rng, size = self._generator(index), self.patch
        for slot in range(self.batch_size):  # the same draws as the parent's
            _, frame, _, mask = self._pairs[rng.integers(len(self._pairs))]
            top, left = (
                rng.integers(mask.shape[0] - size + 1),
                rng.integers(mask.shape[1] - size + 1),
            )
            target = self.clean[frame, top : top + size, left : left + size]
            if rng.random() < 0.5:
                target = target[:, ::-1]
            if rng.random() < 0.5:
                target = target[::-1]
            packed[slot] = np.concatenate([target, np.ones((size, size, 1))], axis=-1)
        return noisy, packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--video", type=Path, default=Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    )
    parser.add_argument("--noise", choices=["correlated", "poisson_gaussian"], default="correlated")
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=150)
    arguments = parser.parse_args()
    clean = read_clean(arguments.video, arguments.frames, arguments.size)
    noisy = add_noise(clean, arguments.noise, np.random.default_rng(0))
    split = arguments.frames * 5 // 6
    test_noisy, test_clean = noisy[split:].astype(np.float32) / 255.0, clean[split:]
    params = default_params()
    params = dataclasses.replace(
        params, train=with_active(params.train, patch_size=64, batch_size=8)
    )
    rows = [
        [
            "noisy input",
            "-",
            f"{psnr(keras.Sequential([keras.layers.Identity()]), test_noisy, test_clean):.2f}",
            "-",
        ]
    ]
    shipped = pretrained_model_path()
    rows.append(
        [
            "shipped drunet_light",
            "0",
            f"{psnr(load_model(shipped), test_noisy, test_clean):.2f}",
            "-",
        ]
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "clips").mkdir()
        np.save(root / "clips/train.npy", noisy[:split])
        np.save(root / "frames.npy", noisy[:split])
        clips = pd.DataFrame(
            {"video": ["video"], "split": ["train"], "clip": [0], "file": ["clips/train.npy"]}
        )
        frames = pd.DataFrame(
            {"video": "video", "shard": "frames.npy", "offset": range(split), "split": "train"}
        )
        start = time.perf_counter()
        frame_to_frame = FrameToFrameStream(root, clips, params)
        pairs, kept = len(frame_to_frame._pairs), frame_to_frame.coverage
        seconds = time.perf_counter() - start
        print(f"frame-to-frame: {pairs} pairs, {kept:.3f} of pixels kept, made in {seconds:.1f} s")
        oracle = OracleStream(root, clips, params)
        oracle.clean = clean[:split]
        for label, stream in [
            ("oracle (clean targets)", oracle),
            ("frame-to-frame", frame_to_frame),
            ("Neighbor2Neighbor", NeighbourStream(root, frames, params)),
        ]:
            keras.utils.set_random_seed(0)
            network = load_model(shipped)
            if isinstance(stream, NeighbourStream):
                model, loss = (
                    neighbor2neighbor_model(network, stream.patch),
                    Neighbor2NeighborLoss(params.train.without_clean.gamma),
                )
            else:
                model, loss = frame_to_frame_model(network), masked_mse
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
            start = time.perf_counter()
            model.fit(stream, epochs=1, steps_per_epoch=arguments.steps, verbose=0)
            seconds = time.perf_counter() - start
            rows.append(
                [
                    label,
                    str(arguments.steps),
                    f"{psnr(network, test_noisy, test_clean):.2f}",
                    f"{seconds:.0f}",
                ]
            )
    machine = platform.processor() or platform.machine()
    print(
        f"{arguments.video.name}, {arguments.noise} noise, {arguments.frames - split} test "
        f"frames of {arguments.size}x{arguments.size}; {machine}, keras {keras.__version__} "
        f"({keras.backend.backend()})"
    )
    print(markdown_table(["method", "steps", "PSNR dB", "train s"], rows))


if __name__ == "__main__":
    main()
