"""How fast `denoise apply` and the Python API are, on Keras and on OpenVINO.

Usage:  .venv/bin/python bench/apply_speed.py [--model pretrained] [--backends keras openvino]
                                              [--frames 3 13] [--repeats 5] [--out out.json]

For each backend, on a 1280x720 frame (scikit-image's astronaut, resized, AWGN sigma 25):
- `bare`: the model call alone on the frame (Keras predict_on_batch, or the compiled OpenVINO
  model), median of --repeats after two untimed calls;
- `whole` and `tiled`: Denoiser.denoise on the frame, whole in one call (apply.whole_megapixels)
  and in apply.tile_size tiles (whole_megapixels 0): the tiling overhead;
- `API start-up`: a fresh `python -c` from process start to the first frame's work beginning
  (Denoiser.load returned), and its first frame's time (the first call traces or compiles);
- `apply s/frame`: `denoise apply` on two 720p videos of --frames frames (H.264 through PyAV
  where installed), each a fresh process: (t_long - t_short) / (long - short) frames, which
  leaves out start-up; `apply start-up`: t_short less its frames at that rate.
The OpenVINO copy is made (and timed) first where there is none, so start-ups find it kept.
--rounds N repeats it all, the backends alternating, and reports medians. Prints the machine,
its CPU flags, the load average before and after each round, and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from report import cpu_model  # bench/report.py, beside this script

from denoise.core.markdown import markdown_table
from denoise.serving.backends import cpu_flags

HEIGHT, WIDTH = 720, 1280
FLAGS_SHOWN = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def noisy_frame(seed: int = 0, shift: int = 0) -> np.ndarray:
    """float32 (720, 1280, 3) in [0, 1]: astronaut resized, sigma 25 noise, clipped (a file)."""
    from skimage import data

    clean = cv2.resize(data.astronaut(), (WIDTH + 64, HEIGHT), interpolation=cv2.INTER_AREA)
    clean = clean[:, shift : shift + WIDTH] / 255.0
    noise = np.random.default_rng(seed).normal(0.0, 25 / 255, clean.shape)
    return np.clip(clean + noise, 0.0, 1.0).astype(np.float32)


def write_video(path: Path, num_frames: int) -> Path:
    """A 720p, 25 fps MPEG-4 video of num_frames noisy frames panning across the picture."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (WIDTH, HEIGHT))
    for index in range(num_frames):
        frame = noisy_frame(index, shift=2 * index)
        writer.write(cv2.cvtColor(np.round(frame * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def median_seconds(call: Any, repeats: int) -> float:
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(model: str, backend: str, repeats: int) -> dict[str, float]:
    """bare, whole and tiled seconds per 720p frame, in this process."""
    import dataclasses

    from denoise import Denoiser

    denoiser = Denoiser.load(model, backend=backend)
    frame = noisy_frame()
    if hasattr(denoiser.model, "layers"):
        from denoise.serving.tiling import keras_predictor

        predict = keras_predictor(denoiser.model)
    else:
        predict = denoiser.model
    tiled = dataclasses.replace(denoiser, settings=dataclasses.replace(
        denoiser.settings, whole_megapixels=0.0))  # fmt: skip
    return {
        "bare": median_seconds(lambda: predict(frame[None]), repeats),
        "whole": median_seconds(lambda: denoiser.denoise(frame), repeats),
        "tiled": median_seconds(lambda: tiled.denoise(frame), max(1, repeats // 2)),
    }


STARTUP = """
import sys, time
from denoise import Denoiser
denoiser = Denoiser.load({model!r}, backend={backend!r})
loaded = time.time()
import numpy as np
denoiser.denoise(np.load({frame!r}))
print(loaded, time.time() - loaded, denoiser.backend)
"""


def api_startup(model: str, backend: str, frame: Path) -> dict[str, Any]:
    """Seconds from a fresh process's start to Denoiser.load's return, and its first frame."""
    script = STARTUP.format(model=model, backend=backend, frame=str(frame))
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded, first, *name = result.stdout.split()
    return {
        "api_startup": float(loaded) - start,
        "first_frame": float(first),
        "backend_name": " ".join(name),
    }


def apply_seconds(model: str, backend: str, video: Path, output: Path) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "denoise", "apply", str(video), "-o", str(output)]
    result = subprocess.run(
        [*command, "--model", model, "--backend", backend], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"denoise apply failed: {result.stderr.strip()}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--backends", nargs="+", default=["keras", "openvino"])
    parser.add_argument("--frames", type=int, nargs=2, default=[3, 13], help="short, long video")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything; medians")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    flags = cpu_flags()
    import openvino

    versions = f"Python {platform.python_version()}, OpenVINO {openvino.__version__}"
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, {versions}", flush=True)
    print(f"CPU flags: {' '.join(flag for flag in FLAGS_SHOWN if flag in flags)}", flush=True)
    print(f"Load average before: {load_average()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="apply-speed-"))
    frame = scratch / "frame.npy"
    np.save(frame, noisy_frame())
    short, long = args.frames
    videos = {count: write_video(scratch / f"clip{count}.mp4", count) for count in (short, long)}
    results: list[dict[str, Any]] = []
    if "openvino" in args.backends:
        from denoise import Denoiser

        start = time.perf_counter()
        Denoiser.load(args.model, backend="openvino")  # converts where no copy is kept yet
        print(f"OpenVINO copy ready in {time.perf_counter() - start:.1f} s", flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {backend: [] for backend in args.backends}
    for _ in range(args.rounds):  # the backends alternate, so a change of load hits both
        for backend in args.backends:
            row: dict[str, Any] = {"backend": backend}
            row |= api_startup(args.model, backend, frame)
            times = {
                count: apply_seconds(
                    args.model, backend, video, scratch / f"out-{backend}-{count}.mp4"
                )
                for count, video in videos.items()
            }
            row["apply_per_frame"] = (times[long] - times[short]) / (long - short)
            row["apply_startup"] = times[short] - short * row["apply_per_frame"]
            row |= in_process(args.model, backend, args.repeats)
            row["load"] = load_average()
            rounds[backend].append(row)
            print(f"  {row}", flush=True)
    for measured in rounds.values():
        numbers = [key for key, value in measured[0].items() if isinstance(value, float)]
        median = {key: statistics.median(row[key] for row in measured) for key in numbers}
        results.append(measured[0] | median | {"rounds": len(measured)})
    print(
        f"\nSeconds, one 1280x720 frame; apply on {short}- and {long}-frame 720p videos; "
        f"medians of {args.rounds} rounds:\n"
    )
    header = [
        "backend",
        "bare",
        "whole",
        "tiled",
        "apply s/frame",
        "apply / bare",
        "apply start-up",
        "API start-up",
        "API first frame",
    ]
    rows = [
        [
            row["backend_name"],
            f"{row['bare']:.2f}",
            f"{row['whole']:.2f}",
            f"{row['tiled']:.2f}",
            f"{row['apply_per_frame']:.2f}",
            f"{row['apply_per_frame'] / row['bare']:.2f}",
            f"{row['apply_startup']:.1f}",
            f"{row['api_startup']:.1f}",
            f"{row['first_frame']:.2f}",
        ]
        for row in results
    ]
    print(markdown_table(header, rows))
    print(f"\nLoad average after: {load_average()}")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
