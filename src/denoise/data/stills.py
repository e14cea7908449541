"""Train-only still folders for variety: photographs from Debian packages, by name.

The three sample videos show objects before plain backgrounds; on the scikit-image photographs
a network trained on them alone trails NLM. Two folders add variety, both listed exactly here:
- `photos`: 22 colour photographs from opencv-doc's examples/data, copied as they are (extract
  centre-crops and resizes them like every frame);
- `wallpapers`: 32 colour photographs (leaves, grass, rock, water, fur, wood, landscapes) from
  Debian bookworm's lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, mate-backgrounds and
  plasma-workspace-wallpapers (illustrations and renders left out by name), each resized (area)
  so its short side is 2 x extract.size and cut into extract.size tiles on a centred grid. A
  tile flatter than MIN_TILE_STD (bokeh, sky) teaches a denoiser nothing and would fail the
  frames suite's min_std check, so it is dropped. Tiles are PNG, <photo>_<row>_<col>.png.
None is one of the photographs the evaluation scores (noise.photographs).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from denoise.core.atomic import atomic_directory
from denoise.core.errors import DataError
from denoise.core.schema import STILL_FOLDERS

PHOTOS_FOLDER, WALLPAPERS_FOLDER = STILL_FOLDERS
MIN_TILE_STD = 0.04  # 0-1 scale
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_DOC_PHOTOS = (
    "aero1.jpg",
    "aero3.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "leuvenA.jpg",
    "licenseplate_motion.jpg",
    "messi5.jpg",
    "orange.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
)

# package -> photographs in it, by the path under its data tree
WALLPAPERS = {
    "lomiri-wallpapers-16.04": [
        f"usr/share/backgrounds/{name}.jpg"
        for name in (
            "Bridge_by_Sander_Klootwijk",
            "Dragonfly_by_Bolly",
            "Picture_0B_by_freespace",
            "Picture_1A_by_freespace",
            "Wine_by_Jakkub_Mede",
            "aitzgorri_by_Aitzol_Berasategi",
            "free_by_Peter_Nerlich",
            "friends_by_Aitzol_Berasategi",
            "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi",
        )
    ],
    "lomiri-wallpapers-20.04": ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"],
    "mate-backgrounds": [
        f"usr/share/backgrounds/mate/nature/{name}.jpg"
        for name in (
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    ],
    "plasma-workspace-wallpapers": [
        f"usr/share/wallpapers/{name}/contents/images/{resolution}.jpg"
        for name, resolution in (
            ("BytheWater", "1920x1080"),
            ("ColorfulCups", "2560x1600"),
            ("EveningGlow", "1920x1080"),
            ("FallenLeaf", "1920x1080"),
            ("OneStandsOut", "1920x1080"),
            ("Path", "1920x1080"),
        )
    ],
}


def tiles(image: np.ndarray, size: int) -> list[tuple[int, int, np.ndarray]]:
    """Resize so the short side is 2 x size, then cut size x size tiles on a centred grid."""
    height, width = image.shape[:2]
    scale = 2 * size / min(height, width)
    resized = cv2.resize(
        image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
    )
    rows, cols = resized.shape[0] // size, resized.shape[1] // size
    top = (resized.shape[0] - rows * size) // 2
    left = (resized.shape[1] - cols * size) // 2
    return [
        (
            r,
            c,
            resized[top + r * size : top + (r + 1) * size, left + c * size : left + (c + 1) * size],
        )
        for r in range(rows)
        for c in range(cols)
    ]


def write_tiles(
    image: np.ndarray, stem: str, out: Path, size: int, min_std: float
) -> tuple[int, int]:
    """Write the image's tiles as out/<stem>_<row>_<col>.png, except those whose std-dev (0-1
    scale) is under min_std; returns (written, dropped)."""
    written = dropped = 0
    for row, col, tile in tiles(image, size):
        if tile.std() / 255 < min_std:
            dropped += 1
            continue
        cv2.imwrite(str(out / f"{stem}_{row}_{col}.png"), tile)
        written += 1
    return written, dropped


def copy_photos(target: Path, source_dir: Path = OPENCV_DOC_DATA) -> int:
    """Copy OPENCV_DOC_PHOTOS into target (written whole, atomically); the count copied."""
    missing = [name for name in OPENCV_DOC_PHOTOS if not (source_dir / name).is_file()]
    if missing:
        raise DataError(
            f"{source_dir}: missing {', '.join(missing)}; install Debian's opencv-doc package"
        )
    with atomic_directory(target) as staging:
        for name in OPENCV_DOC_PHOTOS:
            shutil.copyfile(source_dir / name, staging / name)
    return len(OPENCV_DOC_PHOTOS)


def build_wallpapers(target: Path, size: int) -> tuple[int, int]:
    """Download the WALLPAPERS packages (`apt-get download`) and write their photographs' tiles
    into target (whole, atomically); returns (tiles written, flat tiles dropped)."""
    kept = dropped = 0
    with tempfile.TemporaryDirectory() as downloads, atomic_directory(target) as staging:
        try:
            subprocess.run(
                ["apt-get", "download", *WALLPAPERS], cwd=downloads, check=True, capture_output=True
            )
        except (OSError, subprocess.CalledProcessError) as error:
            raise DataError(
                f"cannot download {', '.join(WALLPAPERS)} with apt-get (Debian's archive): {error}"
            ) from None
        for package, members in WALLPAPERS.items():
            (deb,) = Path(downloads).glob(f"{package}_*.deb")
            tree = Path(downloads) / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            for member in members:
                image = cv2.imread(str(tree / member), cv2.IMREAD_COLOR)
                if image is None:
                    raise DataError(f"cannot read {member} from {deb.name}")
                # a plasma wallpaper is named by its folder: <name>/contents/images/<size>.jpg
                stem = Path(member).parents[2].name if "/contents/" in member else Path(member).stem
                written, flat = write_tiles(image, stem, staging, size, MIN_TILE_STD)
                kept, dropped = kept + written, dropped + flat
    return kept, dropped
