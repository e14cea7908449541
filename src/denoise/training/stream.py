"""The training input: an endless stream of random clean patches from the frame shards."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from denoise.core.config import Params
from denoise.core.errors import DataError


class PatchStream(keras.utils.PyDataset):
    """An endless stream of (clean, clean) batches of random patches, float32 (B, P, P, 3) in
    [0, 1], randomly flipped. The model fitted on it starts with a TrainingNoise layer, which
    turns the input half noisy in the training step. Batch `index` is a pure function of
    (seed, first_batch + index): Keras reads the stream in order across epochs (fit with
    steps_per_epoch), and a resumed run starts at first_batch = epochs_done * steps_per_epoch,
    so it sees exactly the batches the uninterrupted run would have seen, whatever prefetching
    Keras does.
    """

    def __init__(
        self,
        frames_dir: Path,
        rows: pd.DataFrame,
        params: Params,
        first_batch: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if rows.empty:
            raise DataError(f"{frames_dir}: no train frames; check extract.split")
        self.frames_dir = frames_dir
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
        self.patch = min(params.train.patch_size, height, width)
        self.patch -= self.patch % 4
        self.batch_size = params.train.batch_size
        self.seed = params.seed
        self.first_batch = first_batch

    @property
    def num_batches(self) -> None:
        return None  # endless: fit's steps_per_epoch cuts it into epochs

    def _draw(self, index: int) -> tuple[np.random.Generator, np.ndarray]:
        """Batch `index`'s generator, after it drew the batch's frames (positions in rows)."""
        rng = np.random.default_rng([self.seed, self.first_batch + index])
        if self._sources is None:
            return rng, rng.integers(len(self._frames), size=self.batch_size)
        sources = rng.integers(len(self._sources), size=self.batch_size)
        return rng, np.array([rng.choice(self._sources[source]) for source in sources])

    def frames(self, index: int) -> np.ndarray:
        """The positions in `rows` of the frames batch `index` crops its patches from."""
        return self._draw(index)[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
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
        return clean, clean
