"""The inputs under paths.raw: which videos and still-image folders there are, and whether
they open, read without pandas or Keras (the preflight stage checks them on every run)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.data.video import IMAGE_SUFFIXES, can_read_image, probe


@dataclasses.dataclass(frozen=True)
class Source:
    """One input under paths.raw: a video file, or a folder of still images (`images`)."""

    path: Path
    images: tuple[Path, ...] = ()  # in name order; empty for a video


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _files_under(folder: Path, ancestors: frozenset[Path]) -> Iterator[Path]:
    """The non-hidden files under folder, linked folders followed (named by the link's path).

    ancestors: the real paths of folder and the folders above it. A link to one of them (a
    loop), a link to nothing and a folder that cannot be read are named in a warning and
    skipped.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        _warn(f"{folder}: cannot be read ({error.strerror}); skipped")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            real = entry.resolve()
            if real in ancestors:
                _warn(f"{entry}: a link to {real}, a folder that holds it; skipped")
                continue
            if entry.is_symlink():
                # DVC walks without following links: the folder's files are neither hashed
                # (a change reruns nothing) nor pushed.
                _warn(
                    f"{entry}: a link to {real}, followed; DVC does not version what it holds "
                    "(copy the folder in to version it)"
                )
            yield from _files_under(entry, ancestors | {real})
        elif entry.is_file():
            yield entry
        elif entry.is_symlink():
            _warn(f"{entry}: a link to {os.readlink(entry)}, which does not exist; skipped")


def list_sources(raw_dir: Path) -> list[Source]:
    """The videos and still-image folders under raw_dir, in name order.

    Every non-hidden file (DVC's .dvc files excepted) whose suffix is an image type belongs to
    its folder's still-image source; every other one is a video. A linked folder (a photo
    library elsewhere) is followed and named by its link, with a warning on stderr that DVC
    does not version it; what cannot be followed is named in a warning and skipped.
    """
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: no such directory (run `denoise samples` or add videos)")
    files = sorted(
        path
        for path in _files_under(raw_dir, frozenset({raw_dir.resolve()}))
        if path.suffix != ".dvc"
    )
    if not files:
        raise DataError(
            f"{raw_dir}: no videos or image folders (run `denoise samples`, or copy a video or "
            "a folder of images there)"
        )
    videos = [Source(path) for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]
    folders: dict[Path, list[Path]] = {}
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.parent == raw_dir:
                raise DataError(
                    f"{path}: still images must be in a folder under {raw_dir} (one folder per "
                    "series of photos), not directly in it"
                )
            folders.setdefault(path.parent, []).append(path)
    stills = [Source(folder, tuple(images)) for folder, images in folders.items()]
    return sorted(videos + stills, key=lambda source: source.path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sources(params: Params, open_files: bool = False) -> list[Source]:
    """The sources under paths.raw, after checking that extract.train_only and extract.roles
    name only them.

    open_files: also check that each video opens and each image has a decoder (headers only),
    so a bad file is named before any stage deletes an output.
    """
    raw_dir = Path(params.paths.raw)
    sources = list_sources(raw_dir)
    names = {source.path.relative_to(raw_dir).as_posix() for source in sources}
    for key, named in (("train_only", params.extract.train_only), ("roles", params.extract.roles)):
        for name in named:
            if name not in names:
                raise DataError(
                    f"extract.{key} names {name!r}, which is not a video or image folder "
                    f"under {raw_dir} (sources: {', '.join(sorted(names)) or 'none'})"
                )
    for source in sources if open_files else []:
        for image in source.images:
            if not can_read_image(image):
                raise DataError(
                    f"{image}: not an image OpenCV can read (unknown format or corrupt)"
                )
        if not source.images:
            probe(source.path)
    return sources
