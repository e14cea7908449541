"""Whole-image inference of any size: pad, tile, denoise in batches, blend, crop.

`denoise_batch` / `denoise_image` reflect-pad to the model's required multiple and run a frame
that fits (one tile, or at most `whole_megapixels`) whole, in one call; otherwise they cut
overlapping tiles of at most `tile_size` pixels, denoise them in batches, and blend the tiles
back with complementary raised-cosine ramps across each overlap, so no seam is visible and the
result matches whole-image inference to well above 50 dB PSNR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

# Every side is padded to at least this many pixels: dense_ae needs one whole 8 px patch.
_MINIMUM_SIDE = 16


# A batch of tiles float32 (N, h, w, 3) in [0, 1] -> denoised, same shape; a temporal model's
# tiles of windows (N, h, w, 3 * window) -> their middle frames denoised (N, h, w, 3).
Predictor = Callable[[np.ndarray], np.ndarray]


def keras_predictor(model: Any) -> Predictor:
    """Call a Keras model on a batch through its compiled predict step, on any backend.

    predict_on_batch runs the backend's compiled function (tf.function with relaxed shapes
    on TensorFlow, jit on JAX), not the layer-by-layer eager call: on a CPU it is 1.3 to 1.7
    times as fast for the same output (docs/benchmarks.md). On TensorFlow a batch of
    a new shape costs one trace (about 0.3 s), after which any shape reuses it.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    return predict


def self_ensemble(predict: Predictor) -> Predictor:
    """The x8 geometric self-ensemble of a predictor: the mean of its outputs on the 8 flips
    and quarter turns of the input, each turned back (as DRUNet's and EDSR's papers do).

    Eight model calls per batch (about 8 times the time of one on a CPU: docs/benchmarks.md);
    worth it where quality matters more than speed. A turned non-square batch is (N, W, H, 3):
    fully convolutional models take it, and the padding of denoise_batch makes both sides a
    multiple the model accepts.
    """

    def predict_mean(batch: np.ndarray) -> np.ndarray:
        total = np.zeros((*batch.shape[:3], 3), np.float64)  # RGB out, whatever goes in
        for turns in range(4):
            for flip in (False, True):
                view = np.rot90(batch, turns, axes=(1, 2))
                view = view[:, :, ::-1] if flip else view
                denoised = predict(np.ascontiguousarray(view))
                denoised = denoised[:, :, ::-1] if flip else denoised
                total += np.rot90(denoised, -turns, axes=(1, 2))
        return (total / 8.0).astype(np.float32)

    return predict_mean


def _announced(predict: Predictor, before_call: Callable[[], None]) -> Predictor:
    """predict, calling before_call first each time."""

    def predict_after(batch: np.ndarray) -> np.ndarray:
        before_call()
        return predict(batch)

    return predict_after


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start of every tile along one axis of `length` pixels; the last tile ends at the end."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, stride), length - tile]


def _ramp(overlap: int) -> np.ndarray:
    """Rising weights (overlap,) for the later of two neighbouring tiles; 1 - ramp for the other.

    The outer third on each side is exactly 0 (or 1): pixels that close to a tile's edge saw
    the tile's zero padding, so they are left to the neighbour entirely (with the default
    32 px overlap, 10 px: the reach of one input pixel in paper_cae; 7 px in dense_ae).
    """
    margin = overlap // 3
    rising = overlap - 2 * margin
    position = (np.arange(rising, dtype=np.float64) + 0.5) / max(rising, 1)
    cosine = 0.5 - 0.5 * np.cos(np.pi * position)
    return np.concatenate([np.zeros(margin), cosine, np.ones(margin)])


def _axis_weights(starts: list[int], tile: int, overlap: int) -> list[np.ndarray]:
    """Blend weights (tile,) of each tile along one axis; they sum to 1 at every pixel.

    Neighbours cross over on an `overlap`-wide ramp centred in their shared region (wider
    than `overlap` only for the last tile, which is moved back to end at the image's edge).
    """
    weights = [np.ones(tile) for _ in starts]
    ramp = _ramp(overlap)
    for index in range(1, len(starts)):
        shared_start, shared_end = starts[index], starts[index - 1] + tile
        ramp_start = (shared_start + shared_end - overlap) // 2
        ramp_end = ramp_start + overlap
        earlier, later = weights[index - 1], weights[index]
        offset_earlier, offset_later = starts[index - 1], starts[index]
        earlier[ramp_start - offset_earlier : ramp_end - offset_earlier] *= 1.0 - ramp
        earlier[ramp_end - offset_earlier :] = 0.0
        later[ramp_start - offset_later : ramp_end - offset_later] *= ramp
        later[: ramp_start - offset_later] = 0.0
    return weights


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where the tiles of one padded image lie."""

    padded_height: int
    padded_width: int
    tile_height: int
    tile_width: int
    rows: list[int]
    columns: list[int]
    row_weights: list[np.ndarray]
    column_weights: list[np.ndarray]


def _layout(height: int, width: int, tile_size: int, overlap: int, multiple: int) -> _Layout:
    padded_height = _round_up(max(height, _MINIMUM_SIDE), multiple)
    padded_width = _round_up(max(width, _MINIMUM_SIDE), multiple)
    tile = max(tile_size // multiple * multiple, multiple)
    overlap = _round_up(overlap, multiple)
    if tile <= overlap:
        raise ValueError(f"tile size {tile} must be larger than the overlap {overlap}")
    tile_height, tile_width = min(tile, padded_height), min(tile, padded_width)
    rows = _tile_starts(padded_height, tile_height, tile - overlap)
    columns = _tile_starts(padded_width, tile_width, tile - overlap)
    return _Layout(
        padded_height,
        padded_width,
        tile_height,
        tile_width,
        rows,
        columns,
        _axis_weights(rows, tile_height, overlap),
        _axis_weights(columns, tile_width, overlap),
    )


def _pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad (H, W, C) at the bottom and right to (height, width, C)."""
    pad_rows, pad_columns = height - image.shape[0], width - image.shape[1]
    if pad_rows == 0 and pad_columns == 0:
        return image
    widths = ((0, pad_rows), (0, pad_columns), (0, 0))
    if min(image.shape[:2]) == 1:
        return np.pad(image, widths, mode="edge")  # nothing to reflect in a single row
    return np.pad(image, widths, mode="reflect")


def denoise_batch(
    model: Any,
    noisy: np.ndarray,
    tile_size: int,
    overlap: int,
    batch_size: int,
    multiple: int | None = None,
    ensemble: bool = False,
    before_call: Callable[[], None] | None = None,
    whole_megapixels: float = 0.0,
) -> np.ndarray:
    """Denoise images of any size with overlapping tiles of at most tile_size pixels.

    noisy: float32 (N, H, W, 3) RGB in [0, 1], any H and W, or a temporal model's windows
    (N, H, W, 3 * window) (core.temporal.as_channels). model: a Keras model, or a
    Predictor (then `multiple` defaults to its `required_multiple`, else 4). An image whose
    padded size fits in one tile, or is at most whole_megapixels, is denoised whole, as many
    per call as fit in whole_megapixels (at most batch_size): no overlap computed twice and
    no blending. ensemble: denoise each tile with the x8 self_ensemble (8 model calls).
    before_call: called before each model call; what it raises stops the work (the served
    model's timeout). Returns float32 (N, H, W, 3) clipped to [0, 1].
    """
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim != 4 or noisy.shape[-1] % 3 or 0 in noisy.shape:
        raise ValueError(f"expected RGB images (N, H, W, 3), got shape {noisy.shape}")
    predict: Predictor = model if not hasattr(model, "layers") else keras_predictor(model)
    if before_call is not None:
        predict = _announced(predict, before_call)
    if ensemble:
        predict = self_ensemble(predict)
    if multiple is None and hasattr(model, "layers"):
        # lazy: denoise.models.build imports Keras, which `denoise apply` needs only once its inputs
        # and outputs are known to be good
        from denoise.models.build import required_multiple

        multiple = required_multiple(model)
    elif multiple is None:
        multiple = int(getattr(model, "required_multiple", 4))
    num_images, height, width = noisy.shape[:3]
    layout = _layout(height, width, tile_size, overlap, multiple)
    area = layout.padded_height * layout.padded_width
    one_tile = len(layout.rows) == len(layout.columns) == 1
    if one_tile or area <= whole_megapixels * 1e6:
        per_call = batch_size if one_tile else int(whole_megapixels * 1e6 // area)
        return _denoise_whole(predict, noisy, layout, min(batch_size, max(per_call, 1)))
    positions = [(row, column) for row in layout.rows for column in layout.columns]
    padded = np.stack([_pad(image, layout.padded_height, layout.padded_width) for image in noisy])
    blended = np.zeros((*padded.shape[:3], 3), np.float32)
    total_weight = np.zeros((*padded.shape[:3], 1), np.float32)
    jobs = [(image, row, column) for image in range(num_images) for row, column in positions]
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first : first + batch_size]
        tiles = np.stack(
            [
                padded[image, row : row + layout.tile_height, column : column + layout.tile_width]
                for image, row, column in chunk
            ]
        )
        denoised_tiles = predict(tiles)
        if denoised_tiles.shape != (*tiles.shape[:3], 3):
            raise ValueError(
                f"the model returned {denoised_tiles.shape} for tiles of shape {tiles.shape}"
            )
        for (image, row, column), denoised in zip(chunk, denoised_tiles, strict=True):
            weight = np.outer(
                layout.row_weights[layout.rows.index(row)],
                layout.column_weights[layout.columns.index(column)],
            ).astype(np.float32)
            window = (
                image,
                slice(row, row + layout.tile_height),
                slice(column, column + layout.tile_width),
            )
            blended[window] += denoised * weight[:, :, None]
            total_weight[window] += weight[:, :, None]
    # The weights sum to 1 wherever tiles overlap by at most half a tile; dividing covers the rest.
    denoised_images = blended[:, :height, :width] / np.maximum(
        total_weight[:, :height, :width], 1e-6
    )
    return np.clip(denoised_images, 0.0, 1.0)


def _denoise_whole(
    predict: Predictor, noisy: np.ndarray, layout: _Layout, per_call: int
) -> np.ndarray:
    """Denoise whole padded images, per_call at a time: float32 (N, H, W, C) -> (N, H, W, 3)."""
    height, width = noisy.shape[1:3]
    denoised_images = np.empty((*noisy.shape[:3], 3), np.float32)
    size = (layout.padded_height, layout.padded_width)
    for first in range(0, len(noisy), per_call):
        chunk = noisy[first : first + per_call]
        padded = chunk if size == (height, width) else np.stack([_pad(one, *size) for one in chunk])
        denoised = predict(padded)
        if denoised.shape != (*padded.shape[:3], 3):
            raise ValueError(
                f"the model returned {denoised.shape} for images of shape {padded.shape}"
            )
        if len(padded) == len(noisy) and size == (height, width):
            return np.clip(denoised, 0.0, 1.0)  # one call, no padding: no crop to copy
        denoised_images[first : first + per_call] = denoised[:, :height, :width]
    return np.clip(denoised_images, 0.0, 1.0, out=denoised_images)


def denoise_image(
    model: Any,
    noisy: np.ndarray,
    tile_size: int,
    overlap: int,
    batch_size: int,
    multiple: int | None = None,
    ensemble: bool = False,
    before_call: Callable[[], None] | None = None,
    whole_megapixels: float = 0.0,
) -> np.ndarray:
    """Denoise one image of any size; noisy float32 (H, W, 3) RGB in [0, 1] -> same shape."""
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim != 3:
        raise ValueError(f"expected one RGB image (H, W, 3), got shape {noisy.shape}")
    return denoise_batch(
        model,
        noisy[None],
        tile_size,
        overlap,
        batch_size,
        multiple,
        ensemble,
        before_call,
        whole_megapixels,
    )[0]
