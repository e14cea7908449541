"""Build a train-only photo folder from the photographs in Debian's wallpaper packages.

Usage:  .venv/bin/python bench/wallpapers.py data/raw/wallpapers [--size 200]
then train with `-S 'extract.train_only=[wallpapers]'` (docs/benchmarks.md, Recipes).

The three sample videos show objects before plain backgrounds; on the scikit-image photographs
a network trained on them alone trails NLM. This adds variety: 32 colour photographs (leaves,
grass, rock, water, fur, wood, landscapes) from Debian bookworm's lomiri-wallpapers-16.04,
lomiri-wallpapers-20.04, mate-backgrounds and plasma-workspace-wallpapers. None is one of the
photographs the quality benchmark scores. Illustrations and renders in those packages are left
out by name below.

Each photograph is resized (area) so that its short side is 2 x size, then cut into size x size
tiles on a grid. A tile flatter than --min-std (bokeh, sky) teaches a denoiser nothing and would
fail the frames suite's min_std check, so it is dropped. Tiles are PNG, named
<photo>_<row>_<col>.png. Downloads the packages with `apt-get download` (needs Debian's archive).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

# package -> photographs in it, by the path under its data tree
PHOTOS = {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (under paths.raw)")
    parser.add_argument("--size", type=int, default=200, help="tile side (extract.size)")
    parser.add_argument("--min-std", type=float, default=0.04, help="drop flatter tiles (0-1)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kept = dropped = 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *PHOTOS], cwd=tmp, check=True)
        for package, members in PHOTOS.items():
            (deb,) = Path(tmp).glob(f"{package}_*.deb")
            tree = Path(tmp) / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            for member in members:
                image = cv2.imread(str(tree / member), cv2.IMREAD_COLOR)
                if image is None:
                    raise SystemExit(f"error: cannot read {member} from {deb.name}")
                # a plasma wallpaper is named by its folder: <name>/contents/images/<size>.jpg
                stem = Path(member).parents[2].name if "/contents/" in member else Path(member).stem
                written, flat = write_tiles(image, stem, args.out, args.size, args.min_std)
                kept, dropped = kept + written, dropped + flat
    print(f"{kept} tiles written to {args.out}, {dropped} flatter than {args.min_std} dropped")


if __name__ == "__main__":
    main()
