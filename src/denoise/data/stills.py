"""Train-only still folders for variety: photographs from Debian packages, by name, each with
its licence, and the seeded dead-leaves images (denoise.data.dead_leaves).

The three sample videos show objects before plain backgrounds; on the scikit-image photographs
a network trained on them alone trails NLM. Two folders add variety, both listed exactly here:
- `photos`: 22 colour photographs from opencv-doc's examples/data, copied as they are (extract
  centre-crops and resizes them like every frame);
- `wallpapers`: 32 colour photographs (leaves, grass, rock, water, fur, wood, landscapes) from
  Debian bookworm's lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, mate-backgrounds and
  plasma-workspace-wallpapers (illustrations and renders left out by name), each resized (area)
  so its short side is 2 x extract.size and cut into extract.size tiles on a centred grid. A
  tile flatter than MIN_TILE_STD (bokeh, sky), or with its mean outside TILE_MEAN_RANGE
  (blown out or black), teaches a denoiser little and would fail the frames suite's min_std or
  mean checks, so it is dropped. Tiles are PNG, <photo>_<row>_<col>.png;
- `jxl_photos`: 5 colour photographs of Debian bookworm's libjxl-testdata (flowers, a room,
  tulips, a lake shore, blossom), tiled as the wallpapers are;
- `dead_leaves`: samples.dead_leaves.images synthetic images, colours from train folders only.
None is one of the photographs the evaluation scores (noise.photographs, noise.held_out):
tests/test_pretrained.py checks it by pixel hash. The other images of opencv-doc and
libjxl-testdata stay out of every training set. Each folder holds a hidden PROVENANCE file
(extract reads no hidden file): every photograph's package, path, licence and SHA-256, or the
generator's parameters and seed; the model card copies it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from denoise.core.atomic import atomic_directory
from denoise.core.data_config import DeadLeaves
from denoise.core.errors import DataError
from denoise.core.schema import STILL_FOLDERS
from denoise.data.dead_leaves import load_palette, write_dead_leaves
from denoise.data.sources import file_sha256

PHOTOS_FOLDER, WALLPAPERS_FOLDER, JXL_PHOTOS_FOLDER, DEAD_LEAVES_FOLDER = STILL_FOLDERS
MIN_TILE_STD = 0.04  # 0-1 scale
TILE_MEAN_RANGE = (0.04, 0.96)  # 0-1 scale; inside the frames suite's default [0.02, 0.98]
PROVENANCE = ".provenance.json"  # in each still folder: where its images come from
OPENCV_DOC_LICENCE = (
    "Apache-2.0 AND BSD-3-Clause as packaged (opencv-doc's copyright file, default `Files: *` "
    "stanza only; it does not establish who owns the third-party images)"
)
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


# libjxl-testdata's copyright file: `Files: *` is BSD-3-clause-Google (the JPEG XL Project
# Authors), `Files: external/wesaturate/*` CC0. Its other images (wide-gamut charts, splines,
# 64-pixel thumbnails, PNG suite) are test patterns or too small.
JXL_PHOTOS = {
    "libjxl-testdata": [
        f"usr/share/libjxl-testdata/{name}"
        for name in (
            "jxl/flower/flower.png",
            "jxl/hdr_room.png",
            "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png",
            "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png",
            "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png",
        )
    ]
}
# Per photograph, from each package's copyright file (lomiri's by the author in the file name).
_LOMIRI_LICENCES = {
    "Aitzol_Berasategi": "CC-BY-4.0",
    "freespace": "CC-BY-4.0",
    "Jakkub_Mede": "CC-BY-4.0",
    "Sander_Klootwijk": "CC-BY-SA-4.0",
    "Bolly": "CC-BY-SA-4.0",
    "Peter_Nerlich": "CC-BY-SA-4.0",
    "Clements_Engelhardt": "CC0-1.0",
    "Lukas_Baubkus": "CC-BY-SA-3.0",
}


def licence(package: str, member: str) -> str:
    """The licence of one packaged photograph, as its package's copyright file gives it."""
    if package.startswith("lomiri-wallpapers"):
        return _LOMIRI_LICENCES[Path(member).stem.split("_by_")[1]]
    if package == "mate-backgrounds":
        return "GPL-2+"
    if package == "plasma-workspace-wallpapers":
        return "GPL-2+ (copyright file); LGPL-3 (the wallpaper's metadata.json)"
    if package == "libjxl-testdata":
        if "/wesaturate/" in member:
            return "CC0-1.0"
        return "BSD-3-Clause (the JPEG XL Project Authors)"
    if package == "opencv-doc":
        return OPENCV_DOC_LICENCE
    raise DataError(f"{package}: no licence recorded for {member}")


def write_provenance(folder: Path, content: dict[str, Any]) -> None:
    """Write folder/PROVENANCE: what the folder holds and where it comes from."""
    (folder / PROVENANCE).write_text(json.dumps(content, indent=1) + "\n")


def read_provenance(folder: Path) -> dict[str, Any]:
    """A still folder's PROVENANCE, or DataError when samples did not write one."""
    path = folder / PROVENANCE
    if not path.is_file():
        raise DataError(f"{path}: missing; rebuild the folder with `denoise samples`")
    content: dict[str, Any] = json.loads(path.read_text())
    return content


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
    scale) is under min_std or whose mean is outside TILE_MEAN_RANGE; returns (written,
    dropped)."""
    written = dropped = 0
    low, high = TILE_MEAN_RANGE
    for row, col, tile in tiles(image, size):
        if tile.std() / 255 < min_std or not low <= tile.mean() / 255 <= high:
            dropped += 1
            continue
        cv2.imwrite(str(out / f"{stem}_{row}_{col}.png"), tile)
        written += 1
    return written, dropped


def _package_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def copy_photos(target: Path, source_dir: Path = OPENCV_DOC_DATA) -> int:
    """Copy OPENCV_DOC_PHOTOS into target (written whole, atomically, with its PROVENANCE);
    the count copied."""
    missing = [name for name in OPENCV_DOC_PHOTOS if not (source_dir / name).is_file()]
    if missing:
        raise DataError(
            f"{source_dir}: missing {', '.join(missing)}; install Debian's opencv-doc package"
        )
    with atomic_directory(target) as staging:
        version = _package_version("opencv-doc")
        photographs = []
        for name in OPENCV_DOC_PHOTOS:
            shutil.copyfile(source_dir / name, staging / name)
            photographs.append(
                {
                    "package": f"opencv-doc {version}",
                    "path": str(source_dir / name),
                    "licence": OPENCV_DOC_LICENCE,
                    "sha256": file_sha256(source_dir / name),
                }
            )
        write_provenance(staging, {"photographs": photographs})
    return len(OPENCV_DOC_PHOTOS)


def build_wallpapers(target: Path, size: int) -> tuple[int, int]:
    """The WALLPAPERS folder: build_tiles of those packages."""
    return build_tiles(target, size, WALLPAPERS)


def build_jxl_photos(target: Path, size: int) -> tuple[int, int]:
    """The JXL_PHOTOS folder: build_tiles of libjxl-testdata's photographs."""
    return build_tiles(target, size, JXL_PHOTOS)


def build_tiles(target: Path, size: int, packages: dict[str, list[str]]) -> tuple[int, int]:
    """Download the packages (`apt-get download`) and write their listed photographs' tiles
    into target (whole, atomically, with its PROVENANCE); returns (tiles written, flat tiles
    dropped)."""
    kept = dropped = 0
    photographs = []
    with tempfile.TemporaryDirectory() as downloads, atomic_directory(target) as staging:
        try:
            subprocess.run(
                ["apt-get", "download", *packages], cwd=downloads, check=True, capture_output=True
            )
        except (OSError, subprocess.CalledProcessError) as error:
            raise DataError(
                f"cannot download {', '.join(packages)} with apt-get (Debian's archive): {error}"
            ) from None
        for package, members in packages.items():
            (deb,) = Path(downloads).glob(f"{package}_*.deb")
            tree = Path(downloads) / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            version = subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
            ).stdout.strip()
            for member in members:
                image = cv2.imread(str(tree / member), cv2.IMREAD_COLOR)
                if image is None:
                    raise DataError(f"cannot read {member} from {deb.name}")
                # a plasma wallpaper is named by its folder: <name>/contents/images/<size>.jpg
                stem = Path(member).parents[2].name if "/contents/" in member else Path(member).stem
                written, flat = write_tiles(image, stem, staging, size, MIN_TILE_STD)
                kept, dropped = kept + written, dropped + flat
                photographs.append(
                    {
                        "package": f"{package} {version}",
                        "path": f"/{member}",
                        "licence": licence(package, member),
                        "sha256": file_sha256(tree / member),
                        "tiles": written,
                    }
                )
        write_provenance(staging, {"photographs": photographs})
    return kept, dropped


def build_dead_leaves(
    target: Path, config: DeadLeaves, size: int, seed: int, raw_dir: Path
) -> tuple[int, int]:
    """Write the dead-leaves images into target (whole, atomically, with its PROVENANCE: the
    generator's parameters and seed), colours from the raw_dir folders config.colours_from;
    returns (images written, flat ones skipped)."""
    missing = [name for name in config.colours_from if not (raw_dir / name).is_dir()]
    if missing:
        raise DataError(
            f"samples.dead_leaves.colours_from: {', '.join(missing)} missing under {raw_dir}; "
            "add them to samples.stills"
        )
    palette = load_palette([raw_dir / name for name in config.colours_from])
    with atomic_directory(target) as staging:
        skipped = write_dead_leaves(config, size, palette, seed, staging, MIN_TILE_STD)
        write_provenance(
            staging,
            {
                "generator": "denoise.data.dead_leaves",
                "parameters": dataclasses.asdict(config),
                "seed": seed,
                "size": size,
                "colour_sources": {
                    name: file_sha256(raw_dir / name / PROVENANCE)
                    if (raw_dir / name / PROVENANCE).is_file()
                    else None
                    for name in config.colours_from
                },
                "licence": "none needed: generated (colours drawn from the train folders named)",
            },
        )
    return config.images, skipped
