"""Dead-leaves images: synthetic, licence-free training material with natural-image statistics.

After Achddou, Gousseau and Ladjal, "Synthetic images as a regularity prior for image
restoration neural networks" (2021): discs of random radius fall on the image, each hiding
what lies under it, until the image is covered. Radii follow a power law r ** -alpha between
radius_min and radius_max (alpha = 3 makes the images scale invariant, as natural images are);
each disc's colour is a random pixel of a random train image, so the colours are those of
natural photographs. Drawn front to back: a disc only fills what the discs before it (those on
top) left bare. Some discs carry a texture (a sine grating between two colours); the image is
drawn `supersample` times larger and area-resized, so edges are soft as a lens makes them, then
blurred a little (a random depth of field).

Every image is a pure function of (seed, its index), so a folder can be rebuilt exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from denoise.core.data_config import DeadLeaves
from denoise.core.errors import DataError
from denoise.core.noise import set_rng
from denoise.data.video import IMAGE_SUFFIXES

RNG_NAME = "dead_leaves"  # with the seed and the image's index, names each image's rng


@dataclasses.dataclass(frozen=True)
class Palette:
    """The pixels colours are drawn from: each source image equally likely, then a pixel.

    pixels: uint8 (N, 3) RGB, every image's pixels one after the other; starts, sizes: where
    each image's run begins and how long it is.
    """

    pixels: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """count colours: float32 (count, 3) RGB in [0, 1]."""
        image = rng.integers(len(self.sizes), size=count)
        offset = (rng.random(count) * self.sizes[image]).astype(np.int64)
        return self.pixels[self.starts[image] + offset].astype(np.float32) / 255.0


def load_palette(folders: list[Path]) -> Palette:
    """Every pixel of every image in the folders (the train images colours come from)."""
    images = []
    for folder in folders:
        paths = sorted(
            path
            for path in folder.glob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        )
        if not paths:
            raise DataError(f"{folder}: no images to take dead-leaves colours from; build it first")
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{path}: not an image OpenCV can read")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).reshape(-1, 3))
    sizes = np.array([len(pixels) for pixels in images], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return Palette(np.concatenate(images), starts, sizes)


def disc_radii(
    count: int, radius_min: float, radius_max: float, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """Radii with density proportional to r ** -alpha on [radius_min, radius_max] (alpha > 1),
    by inverting the distribution function: float64 (count,)."""
    power = 1.0 - alpha
    low, high = radius_min**power, radius_max**power
    return (low + rng.random(count) * (high - low)) ** (1.0 / power)


def render(config: DeadLeaves, size: int, palette: Palette, rng: np.random.Generator) -> np.ndarray:
    """One dead-leaves image: uint8 (size, size, 3) RGB."""
    scale = config.supersample
    side = size * scale
    count = config.max_discs
    radii = disc_radii(count, config.radius_min, config.radius_max, config.alpha, rng) * scale
    centres = rng.random((count, 2)) * side
    colours = palette.draw(count, rng)
    textured = rng.random(count) < config.texture_fraction
    second = palette.draw(count, rng)
    periods = scale * np.exp(
        rng.uniform(np.log(config.texture_period_min), np.log(config.texture_period_max), count)
    )
    angles, phases = rng.uniform(0, np.pi, count), rng.uniform(0, 2 * np.pi, count)
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = palette.draw(1, rng)[0]  # what no disc covers (rare at max_discs)
    bare = np.ones((side, side), bool)
    left_bare = side * side
    for disc in range(count):
        radius, (row, col) = radii[disc], centres[disc]
        top, bottom = max(int(row - radius), 0), min(int(row + radius) + 2, side)
        first, last = max(int(col - radius), 0), min(int(col + radius) + 2, side)
        rows = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
        cols = np.arange(first, last, dtype=np.float32)[None, :] + 0.5
        paint = ((rows - row) ** 2 + (cols - col) ** 2 <= radius**2) & bare[top:bottom, first:last]
        painted = int(paint.sum())
        if painted == 0:
            continue
        window = canvas[top:bottom, first:last]
        if textured[disc]:
            along = np.cos(angles[disc]) * cols + np.sin(angles[disc]) * rows
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * along / periods[disc] + phases[disc])
            fill = colours[disc] + (second[disc] - colours[disc]) * mix[..., None]
            window[paint] = fill[paint]
        else:
            window[paint] = colours[disc]
        bare[top:bottom, first:last] &= ~paint
        left_bare -= painted
        if left_bare == 0:
            break
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) if scale > 1 else canvas
    blur = rng.uniform(0.0, config.blur_max)
    if blur > 0.05:  # below, the kernel is a single tap
        image = cv2.GaussianBlur(image, (0, 0), blur)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def generate(
    config: DeadLeaves, size: int, palette: Palette, seed: int, min_std: float
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, image) for config.images images, uint8 (size, size, 3) RGB. Image `index` comes
    from an rng of (seed, its index) alone; one whose std-dev (0-1 scale) is under min_std (a
    disc covering nearly all of it) is skipped, and the next index drawn."""
    written, index = 0, 0
    while written < config.images:
        image = render(config, size, palette, set_rng(seed, RNG_NAME, str(index)))
        if image.std() / 255.0 >= min_std:
            yield index, image
            written += 1
        index += 1


def write_dead_leaves(
    config: DeadLeaves, size: int, palette: Palette, seed: int, out: Path, min_std: float
) -> int:
    """Write generate()'s images as out/leaves_<index>.png; how many were skipped as flat."""
    last = -1
    for index, image in generate(config, size, palette, seed, min_std):
        cv2.imwrite(str(out / f"leaves_{index:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        last = index
    return last + 1 - config.images
