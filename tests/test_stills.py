"""Train-only still folders: photographs become size x size tiles, flat ones dropped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from denoise.data import stills


def test_a_wide_photo_becomes_a_centred_grid_of_tiles() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
    grid = stills.tiles(photo, 30)  # resized to 60 x 107: 2 rows, 3 columns, 17 px trimmed
    assert [(row, col) for row, col, _ in grid] == [(r, c) for r in range(2) for c in range(3)]
    resized = cv2.resize(photo, (107, 60), interpolation=cv2.INTER_AREA)
    for row, col, tile in grid:
        assert tile.shape == (30, 30, 3)
        left = 8 + 30 * col
        np.testing.assert_array_equal(tile, resized[30 * row : 30 * row + 30, left : left + 30])


def test_flat_and_blown_out_tiles_are_dropped_and_the_rest_written_as_png(tmp_path: Path) -> None:
    photo = np.full((20, 40, 3), 128, np.uint8)  # short side 2 x 10: no resize, 2 x 4 tiles
    photo[:, 20:] = np.random.default_rng(1).integers(0, 256, size=(20, 20, 3))  # textured right
    bright = np.random.default_rng(2).integers(240, 256, size=(10, 10, 3))  # mean 0.97, std 0.018
    photo[:10, 20:30] = bright
    written, dropped = stills.write_tiles(photo, "half", tmp_path, 10, min_std=0.01)
    assert (written, dropped) == (3, 5)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["half_0_3.png", "half_1_2.png", "half_1_3.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "half_1_3.png")), photo[10:, 30:])


def test_every_packaged_photograph_has_its_licence() -> None:
    """Each photograph a tiled folder lists has the licence its package's copyright file gives."""
    for packages in (stills.WALLPAPERS, stills.JXL_PHOTOS):
        for package, members in packages.items():
            for member in members:
                assert stills.licence(package, member), (package, member)
    assert stills.licence("lomiri-wallpapers-16.04", "x/Dragonfly_by_Bolly.jpg") == "CC-BY-SA-4.0"
    wesaturate = stills.JXL_PHOTOS["libjxl-testdata"][2]
    assert stills.licence("libjxl-testdata", wesaturate) == "CC0-1.0"
    assert "opencv-doc" not in stills.JXL_PHOTOS
