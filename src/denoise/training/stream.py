"""The training input: an endless stream of random clean patches from the frame shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.core.temporal import REFLECTED_FRAME, as_channels, reflected
from denoise.core.train_config import WithoutClean
from denoise.data.clips import CLIPS_MANIFEST
from denoise.data.extract import MANIFEST_NAME
from denoise.data.flow import frame_to_frame_target
from denoise.data.subsampling import neighbour_masks, subsample

ROLE = "role"  # the frame manifest's column: "clean" (a target) or "noisy" (no clean copy)


class _EndlessStream(keras.utils.PyDataset):
    """Batches drawn without end from a seed: batch `index` is a pure function of (seed,
    first_batch + index); fit's steps_per_epoch cuts them into epochs."""

    def __init__(self, params: Params, first_batch: int, height: int, width: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.patch = min(params.train.patch_size, height, width)
        self.patch -= self.patch % 4
        self.batch_size = params.train.batch_size
        self.seed = params.seed
        self.first_batch = first_batch

    @property
    def num_batches(self) -> None:
        return None  # endless

    def _generator(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.first_batch + index])


class PatchStream(_EndlessStream):
    """An endless stream of (clean, clean) batches of random patches, float32 (B, P, P, 3) in
    [0, 1], randomly flipped. The model fitted on it starts with a TrainingNoise layer, which
    turns the input half noisy in the training step; with host_noise, the stream does that
    itself for noise the step cannot draw (JPEG), and yields (noisy, clean). Batch `index` is
    a pure function of (seed, first_batch + index): Keras reads the stream in order across
    epochs (fit with steps_per_epoch), and a resumed run starts at first_batch = epochs_done *
    steps_per_epoch, so it sees exactly the batches the uninterrupted run would have seen,
    whatever prefetching Keras does.
    """

    def __init__(
        self,
        frames_dir: Path,
        rows: pd.DataFrame,
        params: Params,
        first_batch: int = 0,
        host_noise: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ) -> None:
        if rows.empty:
            raise DataError(f"{frames_dir}: no train frames; check extract.split")
        self.host_noise = host_noise  # training.noise.host_noise: (noisy, clean) batches
        self.frames_dir = frames_dir
        self.manifest = frames_dir / MANIFEST_NAME  # what it draws from (checkpoint fingerprints)
        shards = {
            name: np.load(frames_dir / name, mmap_mode="r") for name in rows["shard"].unique()
        }
        self._frames = [
            (shards[shard], int(offset))
            for shard, offset in zip(rows["shard"], rows["offset"], strict=True)
        ]
        # Positions of each source's frames, when sources rather than frames are drawn evenly.
        self._sources: list[np.ndarray] | None = None
        if params.train.active.sampling == "sources":
            codes, _ = pd.factorize(rows["video"])
            self._sources = [np.flatnonzero(codes == code) for code in range(codes.max() + 1)]
        height, width = self._frames[0][0].shape[1:3]
        super().__init__(params, first_batch, height, width)

    def _draw(self, index: int) -> tuple[np.random.Generator, np.ndarray]:
        """Batch `index`'s generator, after it drew the batch's frames (positions in rows)."""
        rng = self._generator(index)
        if self._sources is None:
            return rng, rng.integers(len(self._frames), size=self.batch_size)
        sources = rng.integers(len(self._sources), size=self.batch_size)
        return rng, np.array([rng.choice(self._sources[source]) for source in sources])

    def frames(self, index: int) -> np.ndarray:
        """The positions in `rows` of the frames batch `index` crops its patches from."""
        return self._draw(index)[1]

    def _patches(self, index: int) -> tuple[np.random.Generator, np.ndarray]:
        """Batch `index`'s generator after its draws, and its patches float32 (B, P, P, 3)."""
        rng, picks = self._draw(index)
        clean = np.empty((self.batch_size, self.patch, self.patch, 3), np.float32)
        for slot, pick in enumerate(picks):
            shard, offset = self._frames[pick]
            height, width = shard.shape[1:3]
            top = rng.integers(height - self.patch + 1)
            left = rng.integers(width - self.patch + 1)
            patch = shard[offset, top : top + self.patch, left : left + self.patch]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            clean[slot] = patch
        clean /= 255.0
        return rng, clean

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng, clean = self._patches(index)
        if self.host_noise is not None:  # drawn after the crops, from the batch's own rng
            return self.host_noise(clean, rng), clean
        return clean, clean


class NeighbourStream(PatchStream):
    """Neighbor2Neighbor batches from noisy frames: packed float32 (B, P, P, 5), the noisy
    patches as stored (no noise added) then the two neighbour masks
    (data.subsampling.neighbour_masks), and each patch's second sub-image (B, P/2, P/2, 3).
    The patches are PatchStream's, the masks drawn after them from the same generator."""

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng, noisy = self._patches(index)
        masks = np.stack([neighbour_masks(self.patch, self.patch, rng) for _ in noisy])
        second = np.stack(
            [subsample(patch, mask[..., 1]) for patch, mask in zip(noisy, masks, strict=True)]
        )
        return np.concatenate([noisy, masks], axis=-1), second


def noisy_sources(manifest: pd.DataFrame) -> set[str]:
    """The sources (manifest `video` names) whose role is noisy: the manifest's `role` column
    (data.extract), and none without one (every source clean, as before roles)."""
    if ROLE not in manifest.columns:
        return set()
    return set(manifest.loc[manifest[ROLE] == "noisy", "video"].unique())


class FrameToFrameStream(_EndlessStream):
    """Frame-to-frame batches from noisy clips (Ehret et al. 2019): noisy frames float32
    (B, P, P, 3) in [0, 1] as stored (no noise added), and packed targets (B, P, P, 4): a
    neighbouring frame (t - 1 or t + 1) warped onto each by optical flow, then the mask of the
    pixels the loss scores (data.flow.frame_to_frame_target; masked-out pixels are 0).

    Every pair's target and mask are made once, on the host, when the stream is built: flow
    never runs in the compiled step. A pair keeping fewer than without_clean.min_coverage of
    its pixels is dropped, and a clip with no pair left is skipped with a note (print_fn).
    Batch `index` is a pure function of (seed, first_batch + index), as PatchStream's.
    """

    def __init__(
        self,
        frames_dir: Path,
        clips: pd.DataFrame,
        params: Params,
        first_batch: int = 0,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        if clips.empty:
            raise DataError(f"{frames_dir}: no noisy train clips for frame-to-frame training")
        self.frames_dir = frames_dir
        self.manifest = frames_dir / CLIPS_MANIFEST
        self.clips = clips
        settings = params.train.without_clean
        self._clips: list[np.ndarray] = []
        self.kept: list[str] = []  # the files of the clips kept, in the order of self._clips
        # (clip, frame t, its target float16 (H, W, 3), its mask bool (H, W))
        self._pairs: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        for file, video, number in zip(clips["file"], clips["video"], clips["clip"], strict=True):
            clip = np.load(frames_dir / file, mmap_mode="r")
            frames = np.asarray(clip, dtype=np.float32) / 255.0
            pairs = []
            for frame in range(len(frames)):
                for neighbour in (frame - 1, frame + 1):
                    if not 0 <= neighbour < len(frames):
                        continue
                    target, mask = frame_to_frame_target(frames[frame], frames[neighbour], settings)
                    if mask.mean() >= settings.min_coverage:
                        pairs.append((len(self._clips), frame, target.astype(np.float16), mask))
            if not pairs:
                print_fn(
                    f"{video} clip {number}: the optical flow failed on every frame pair "
                    "(a scene cut, or too little texture); skipped"
                )
                continue
            self._clips.append(clip)
            self.kept.append(str(file))
            self._pairs.extend(pairs)
        if not self._pairs:
            raise DataError(
                f"{frames_dir}: no frame pair of the noisy train clips kept "
                f"train.without_clean.min_coverage ({settings.min_coverage:g}) of its pixels"
            )
        height, width = self._clips[0].shape[1:3]
        super().__init__(params, first_batch, height, width)

    @property
    def coverage(self) -> float:
        """The share of pixels the masks keep, over every pair kept."""
        return float(np.mean([pair[3].mean() for pair in self._pairs]))

    def _target(self, pair: int, window: tuple[slice, slice]) -> np.ndarray:
        """Pair `pair`'s packed target at window: float32 (P, P, 4), its warped neighbour then
        its mask (a benchmark's oracle replaces it with the clean frame, every pixel kept)."""
        _, _, target, mask = self._pairs[pair]
        return np.concatenate([target[window], mask[window][..., None]], axis=-1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self._generator(index)
        size = self.patch
        noisy = np.empty((self.batch_size, size, size, 3), np.float32)
        packed = np.empty((self.batch_size, size, size, 4), np.float32)
        for slot in range(self.batch_size):
            pair = int(rng.integers(len(self._pairs)))
            clip, frame, _, mask = self._pairs[pair]
            height, width = mask.shape
            top, left = rng.integers(height - size + 1), rng.integers(width - size + 1)
            window = (slice(top, top + size), slice(left, left + size))
            image = self._clips[clip][frame][window] / 255.0
            both = self._target(pair, window)
            if rng.random() < 0.5:
                image, both = image[:, ::-1], both[:, ::-1]
            if rng.random() < 0.5:
                image, both = image[::-1], both[::-1]
            noisy[slot], packed[slot] = image, both
        return noisy, packed


class ClipStream(_EndlessStream):
    """An endless stream of (clean windows, clean middle frames) from the train clips.

    Windows of `window` frames, float32 (B, P, P, 3 * window) in [0, 1] stacked on the channel
    axis oldest first, and their middle frames (B, P, P, 3); a window of 1 is a single-frame
    model's (B, P, P, 3) patches. Each patch draws a clip, a middle frame (any of the clip's,
    the window's ends reflected as at inference), a position, flips, and for a window whether
    it runs backwards. A frame a window holds by reflection is REFLECTED_FRAME throughout:
    the training noise gives it its mirror's noisy frame (training.noise), as the reflected
    noisy clip does at inference. The draws do not depend on the window, so models of
    different windows with one seed see the same middle frames at the same positions. As
    PatchStream, batch `index` is a pure function of (seed, first_batch + index).
    """

    def __init__(
        self,
        frames_dir: Path,
        clips: pd.DataFrame,
        params: Params,
        window: int,
        first_batch: int = 0,
    ) -> None:
        if clips.empty:
            raise DataError(f"{frames_dir}: no train clips; set extract.clips.per_split")
        self.frames_dir = frames_dir
        self.manifest = frames_dir / CLIPS_MANIFEST
        self.clips = clips  # the train clips' rows of the clips manifest
        self._clips = [np.load(frames_dir / file, mmap_mode="r") for file in clips["file"]]
        length, height, width = self._clips[0].shape[:3]
        if length < window:
            raise DataError(
                f"{frames_dir}: clips of {length} frames are shorter than the window of {window}"
            )
        self.window = window
        super().__init__(params, first_batch, height, width)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self._generator(index)
        size, radius = self.patch, self.window // 2
        windows = np.empty((self.batch_size, size, size, 3 * self.window), np.float32)
        mirrored = np.empty((self.batch_size, self.window), bool)
        middles = np.empty((self.batch_size, size, size, 3), np.float32)
        for slot in range(self.batch_size):
            clip = self._clips[rng.integers(len(self._clips))]
            length, height, width = clip.shape[:3]
            centre = int(rng.integers(length))
            top, left = rng.integers(height - size + 1), rng.integers(width - size + 1)
            flips = rng.random(3) < 0.5  # columns, rows, time
            frames = reflected(centre, radius, length)
            spots = np.arange(centre - radius, centre + radius + 1)
            outside = (spots < 0) | (spots >= length)
            if flips[2]:
                frames, outside = frames[::-1], outside[::-1]
            mirrored[slot] = outside
            patch = clip[frames, top : top + size, left : left + size]
            if flips[0]:
                patch = patch[:, :, ::-1]
            if flips[1]:
                patch = patch[:, ::-1]
            windows[slot] = as_channels(patch)
            middles[slot] = patch[radius]
        windows /= 255.0
        middles /= 255.0
        frames_first = windows.reshape(*windows.shape[:3], self.window, 3).transpose(0, 3, 1, 2, 4)
        frames_first[mirrored] = REFLECTED_FRAME  # a view: marks the windows' reflected frames
        return (windows if self.window > 1 else middles), middles


def held_out_frames(length: int, per_clip: int) -> np.ndarray:
    """The frames t of a clip of `length` frames whose pairs (t, t + 1) are held out: at most
    per_clip, evenly spaced inside it, in order."""
    return np.unique(np.linspace(0, length - 2, per_clip + 2)[1:-1].round().astype(int))


def frame_to_frame_validation(
    frames_dir: Path, clips: pd.DataFrame, settings: WithoutClean, per_clip: int = 3
) -> tuple[np.ndarray, np.ndarray] | None:
    """Held-out frame-to-frame pairs from noisy clips (validation ones): per clip, per_clip
    frames t evenly spaced inside it, each with frame t + 1 warped onto it and its mask.

    Returns (noisy float32 (M, H, W, 3) in [0, 1], packed float32 (M, H, W, 4): the warped
    neighbour then the mask), as FrameToFrameStream yields them; None when no pair keeps
    settings.min_coverage of its pixels (or there is no clip).
    """
    noisy, packed = [], []
    for file in clips["file"]:
        frames = np.load(frames_dir / file).astype(np.float32) / 255.0
        for frame in held_out_frames(len(frames), per_clip):
            target, mask = frame_to_frame_target(frames[frame], frames[frame + 1], settings)
            if mask.mean() >= settings.min_coverage:
                noisy.append(frames[frame])
                packed.append(np.concatenate([target, mask[..., None]], axis=-1))
    if not noisy:
        return None
    return np.stack(noisy), np.stack(packed).astype(np.float32)


def clip_validation(
    clean: np.ndarray, noisy: np.ndarray, window: int, per_clip: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Validation pairs from a clip set: per clip, per_clip middle frames evenly spaced inside
    it, as (noisy windows or, for a window of 1, noisy frames; clean middle frames).

    clean, noisy: float32 (N, T, H, W, 3). Returns float32 (M, H, W, 3 * window) and
    (M, H, W, 3), the window's ends reflected as at inference.
    """
    length = clean.shape[1]
    centres = np.unique(np.linspace(0, length - 1, per_clip + 2)[1:-1].round().astype(int))
    inputs, middles = [], []
    for clean_clip, noisy_clip in zip(clean, noisy, strict=True):
        for centre in centres:
            frames = reflected(int(centre), window // 2, length)
            inputs.append(as_channels(noisy_clip[frames]))
            middles.append(clean_clip[centre])
    return np.stack(inputs).astype(np.float32), np.stack(middles).astype(np.float32)
