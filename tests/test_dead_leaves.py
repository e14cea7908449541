"""Dead-leaves images: seeded and deterministic, radii as the power law says, colours from the
train images only, and a folder extract reads as one train-only still source."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT, project_values

from denoise.core.config import load_params, params_from_dict
from denoise.core.data_config import DeadLeaves
from denoise.core.errors import ConfigError, DataError
from denoise.data.dead_leaves import disc_radii, generate, load_palette
from denoise.data.sources import list_sources
from denoise.data.stills import PROVENANCE, build_dead_leaves

SIZE = 32
# Two train folders of flat colours: every pixel a dead-leaves image holds must be one of them.
COLOURS = {"photos": [(200, 30, 30), (30, 200, 30)], "wallpapers": [(30, 30, 200)]}


def _config(**changes: object) -> DeadLeaves:
    """The project's generator, small: 4 images, few discs, no texture, blur or supersampling
    unless asked."""
    config = load_params(PROJECT_ROOT / "params.yaml").samples.dead_leaves
    small = {
        "images": 4,
        "radius_max": 16.0,
        "max_discs": 3000,
        "supersample": 1,
        "texture_fraction": 0.0,
        "blur_max": 0.0,
    }
    return dataclasses.replace(config, **{**small, **changes})


def _raw(tmp_path: Path) -> Path:
    """paths.raw with the two colour folders, one image per colour (RGB as written)."""
    raw = tmp_path / "raw"
    for folder, colours in COLOURS.items():
        (raw / folder).mkdir(parents=True)
        for position, colour in enumerate(colours):
            image = np.full((8, 12, 3), colour, np.uint8)
            cv2.imwrite(str(raw / folder / f"{position}.png"), image[..., ::-1])
    return raw


def test_the_same_seed_draws_the_same_images_and_another_seed_others(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    palette = load_palette([raw / "photos", raw / "wallpapers"])
    config = _config(texture_fraction=0.5, blur_max=1.0, supersample=2)
    first = list(generate(config, SIZE, palette, seed=3, min_std=0.0))
    again = list(generate(config, SIZE, palette, seed=3, min_std=0.0))
    other = list(generate(config, SIZE, palette, seed=4, min_std=0.0))
    assert [index for index, _ in first] == [0, 1, 2, 3]
    assert all(image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8 for _, image in first)
    for (_, image), (_, same), (_, different) in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(image, same)
        assert not np.array_equal(image, different)
    # Image i depends on (seed, i) alone: asking for fewer images draws the same first ones.
    fewer = list(generate(dataclasses.replace(config, images=2), SIZE, palette, 3, 0.0))
    np.testing.assert_array_equal(fewer[1][1], first[1][1])


def test_radii_follow_the_power_law_between_their_bounds() -> None:
    radius_min, radius_max, alpha = 1.0, 100.0, 3.0
    radii = disc_radii(200_000, radius_min, radius_max, alpha, np.random.default_rng(0))
    assert radii.min() >= radius_min and radii.max() <= radius_max

    def cdf(radius: float) -> float:  # of the density proportional to r ** -alpha
        power = 1.0 - alpha
        return (radius_min**power - radius**power) / (radius_min**power - radius_max**power)

    for radius in (1.2, 1.5, 2.0, 4.0, 10.0, 30.0):
        assert abs(np.mean(radii <= radius) - cdf(radius)) < 0.005, radius
    # The density's log-log slope is -alpha.
    edges = np.geomspace(1.0, 20.0, 12)
    counts, _ = np.histogram(radii, edges)
    slope = np.polyfit(np.log(np.sqrt(edges[1:] * edges[:-1])), np.log(counts / np.diff(edges)), 1)
    assert abs(slope[0] + alpha) < 0.1


def test_colours_come_from_the_train_folders_only(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    palette = load_palette([raw / name for name in COLOURS])
    allowed = {colour for colours in COLOURS.values() for colour in colours}
    seen: set[tuple[int, ...]] = set()
    for _, image in generate(_config(images=6), SIZE, palette, seed=0, min_std=0.0):
        seen |= {tuple(int(value) for value in pixel) for pixel in image.reshape(-1, 3)}
    assert seen == allowed  # sharp discs, no blur: every colour, and no other
    # And params refuse a colour folder whose images are not train-only.
    values = project_values(
        {
            "samples": {"stills": ["photos", "dead_leaves"]},
            "extract": {"train_only": ["dead_leaves"]},
        }
    )
    with pytest.raises(ConfigError, match=r"colours_from\[0\]: 'photos' is not in extract"):
        params_from_dict(values)


def test_build_writes_a_still_folder_with_its_provenance(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    config = _config(images=3, colours_from=["photos", "wallpapers"])
    written, skipped = build_dead_leaves(raw / "dead_leaves", config, SIZE, 7, raw)
    assert (written, skipped) == (3, 0)
    provenance = json.loads((raw / "dead_leaves" / PROVENANCE).read_text())
    assert provenance["seed"] == 7 and provenance["parameters"] == dataclasses.asdict(config)
    # extract sees one still folder of three images (the hidden provenance file is no video)
    (source,) = [source for source in list_sources(raw) if source.path.name == "dead_leaves"]
    assert [path.name for path in source.images] == [f"leaves_{i:05d}.png" for i in range(3)]
    assert all(path.name != PROVENANCE for other in list_sources(raw) for path in (other.path,))
    with pytest.raises(DataError, match="jxl_photos missing under"):
        build_dead_leaves(
            tmp_path / "x", dataclasses.replace(config, colours_from=["jxl_photos"]), SIZE, 7, raw
        )
