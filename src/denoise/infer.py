"""Apply a trained denoiser to images and videos of any size: pad, tile, blend, crop.

The pure core is `denoise_batch` / `denoise_image`: reflect-pad to the model's required
multiple, cut overlapping tiles of at most `tile_size` pixels, denoise them in batches, and
blend the tiles back with complementary raised-cosine ramps across each overlap, so no seam is
visible and the result matches whole-image inference to well above 50 dB PSNR. `run` is the
`denoise apply` command: files and folders in, denoised files out, written atomically.
log_denoiser logs a .keras model as the MLflow pyfunc model (denoise.pyfunc) that serves it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from denoise.atomic import atomic_path
from denoise.config import Apply, Params
from denoise.errors import InputError, ModelError
from denoise.progress import progress
from denoise.video import (
    can_read_image,
    probe,
    read_image_float,
    read_video_rgb,
    rgb_video_writer,
    video_codec,
    write_image_float,
)

# Every side is padded to at least this many pixels: dense_ae needs one whole 8 px patch.
_MINIMUM_SIDE = 16

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pnm")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
KERAS_SUFFIXES = (".keras",)

# A batch of tiles float32 (N, h, w, 3) in [0, 1] -> denoised, same shape.
Predictor = Callable[[np.ndarray], np.ndarray]


def required_multiple(model: Any) -> int:
    """Side multiple a model accepts: product of pooling and conv strides, lcm with patch strides.

    4 for paper_cae (two 2x poolings); dense_stride (4) for dense_ae, whose patch must be a
    multiple of its stride so that any padded size that is a multiple of the stride works;
    1 for dncnn; 2 ** (levels - 1) for drunet (one stride-2 conv per level down).
    """
    from keras import layers

    from denoise.models import ExtractPatches

    multiple = 1
    for layer in getattr(model, "layers", []):
        if isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D | layers.Conv2D):
            multiple *= int(layer.strides[0])
        elif isinstance(layer, ExtractPatches):
            if layer.patch % layer.stride:
                raise ValueError(
                    f"dense patch {layer.patch} is not a multiple of its stride {layer.stride}: "
                    "tiled inference cannot pad such a model's input"
                )
            multiple = math.lcm(multiple, layer.stride)
    return multiple


def keras_predictor(model: Any) -> Predictor:
    """Call a Keras model on a batch through its compiled predict step, on any backend.

    predict_on_batch runs the backend's compiled function (tf.function with relaxed shapes
    on TensorFlow, jit on JAX), not the layer-by-layer eager call: on a CPU it is 1.3 to 1.7
    times as fast for the same output (docs/benchmarks.md, session 9). On TensorFlow a batch of
    a new shape costs one trace (about 0.3 s), after which any shape reuses it.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    return predict


def self_ensemble(predict: Predictor) -> Predictor:
    """The x8 geometric self-ensemble of a predictor: the mean of its outputs on the 8 flips
    and quarter turns of the input, each turned back (as DRUNet's and EDSR's papers do).

    Eight model calls per batch (about 8 times the time of one on a CPU: docs/benchmarks.md,
    session 9); worth it where quality matters more than speed. A turned non-square batch is
    (N, W, H, 3): fully convolutional models take it, and the padding of denoise_batch makes
    both sides a multiple the model accepts.
    """

    def predict_mean(batch: np.ndarray) -> np.ndarray:
        total = np.zeros(batch.shape, np.float64)
        for turns in range(4):
            for flip in (False, True):
                view = np.rot90(batch, turns, axes=(1, 2))
                view = view[:, :, ::-1] if flip else view
                denoised = predict(np.ascontiguousarray(view))
                denoised = denoised[:, :, ::-1] if flip else denoised
                total += np.rot90(denoised, -turns, axes=(1, 2))
        return (total / 8.0).astype(np.float32)

    return predict_mean


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
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    multiple: int | None = None,
    ensemble: bool = False,
) -> np.ndarray:
    """Denoise images of any size with overlapping tiles of at most tile_size pixels.

    noisy: float32 (N, H, W, 3) RGB in [0, 1], any H and W. model: a Keras model, or a
    Predictor (then `multiple` defaults to 4). An image whose padded size fits in one tile is
    denoised whole. ensemble: denoise each tile with the x8 self_ensemble (8 model calls).
    Returns float32 (N, H, W, 3) clipped to [0, 1].
    """
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim != 4 or noisy.shape[-1] != 3 or 0 in noisy.shape:
        raise ValueError(f"expected RGB images (N, H, W, 3), got shape {noisy.shape}")
    predict: Predictor = model if not hasattr(model, "layers") else keras_predictor(model)
    if ensemble:
        predict = self_ensemble(predict)
    if multiple is None:
        multiple = required_multiple(model) if hasattr(model, "layers") else 4
    num_images, height, width = noisy.shape[:3]
    layout = _layout(height, width, tile_size, overlap, multiple)
    positions = [(row, column) for row in layout.rows for column in layout.columns]
    padded = np.stack([_pad(image, layout.padded_height, layout.padded_width) for image in noisy])
    blended = np.zeros_like(padded)
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
        if denoised_tiles.shape != tiles.shape:
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


def denoise_image(
    model: Any,
    noisy: np.ndarray,
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    multiple: int | None = None,
    ensemble: bool = False,
) -> np.ndarray:
    """Denoise one image of any size; noisy float32 (H, W, 3) RGB in [0, 1] -> same shape."""
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim != 3:
        raise ValueError(f"expected one RGB image (H, W, 3), got shape {noisy.shape}")
    return denoise_batch(model, noisy[None], tile_size, overlap, batch_size, multiple, ensemble)[0]


def _requirements() -> list[str]:
    """Pinned pip requirements of the pyfunc model: what the denoise package imports to run."""
    from importlib import metadata

    import keras

    backends = {
        "tensorflow": ("tensorflow-cpu", "tensorflow"),
        "jax": ("jax",),
        "torch": ("torch",),
    }
    names = ["mlflow", "cloudpickle", "keras", "numpy", "opencv-python-headless", "pyyaml", "rich"]
    names += backends.get(keras.backend.backend(), ())
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def log_denoiser(
    keras_path: Path,
    name: str = "model",
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    params: Params | None = None,
    registered_model_name: str | None = None,
) -> Any:
    """Log a saved .keras denoiser as an MLflow pyfunc model that denoises images of any size.

    Call it inside an active run (mlflow.start_run): the model is logged to that run under
    `name`, so runs:/<run id>/<name> and the returned ModelInfo.model_uri (models:/m-...) both
    load it; registered_model_name also registers it as a new version. Tiling comes from the
    arguments, else params.apply, else the Apply defaults; it is stored as model_config,
    with apply.self_ensemble.
    The signature is float32 (-1, -1, -1, 3) in and out (any batch, height and width), with a
    2x16x16x3 input example; the denoise package travels with the model (code_paths) and the
    pip requirements are pinned to this environment, so `mlflow models serve --env-manager
    local` works here and a fresh virtualenv can rebuild it elsewhere. Returns mlflow's ModelInfo.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from denoise.pyfunc import KERAS_ARTIFACT, DenoiserModel

    keras_path = Path(keras_path)
    if not keras_path.is_file():
        raise ModelError(f"{keras_path}: no such model file; run `denoise train` first")
    config = params.apply if params is not None else Apply()
    model_config = {
        "tile_size": tile_size if tile_size is not None else config.tile_size,
        "overlap": overlap if overlap is not None else config.overlap,
        "batch_size": batch_size if batch_size is not None else config.batch_size,
        "self_ensemble": config.self_ensemble,
        "precision": config.precision,
    }
    images = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3))])
    example = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=DenoiserModel(),
        artifacts={KERAS_ARTIFACT: str(keras_path)},
        model_config=model_config,
        signature=ModelSignature(inputs=images, outputs=images),
        input_example=example,
        code_paths=[str(Path(__file__).parent)],  # the denoise package
        pip_requirements=_requirements(),
        registered_model_name=registered_model_name,
    )


def default_model_uri(params: Params) -> str:
    """models:/<register.model_name>@champion, the model the register stage promoted."""
    from denoise.registry import CHAMPION

    return f"models:/{params.register.model_name}@{CHAMPION}"


def _is_local(uri: str) -> bool:
    return ":/" not in uri or Path(uri).exists()


def _check_tracking_store(tracking_uri: str) -> None:
    """Fail fast, with advice, when the tracking store is not there (MLflow retries for minutes)."""
    import requests

    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise ModelError(
                f"no MLflow tracking store at {tracking_uri}: run the pipeline first, set "
                "MLFLOW_TRACKING_URI, or pass --model path/to/model.keras"
            )
    elif tracking_uri.startswith(("http://", "https://")):
        try:
            requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=5)
        except requests.RequestException:
            raise ModelError(
                f"no MLflow tracking server answers at {tracking_uri}: start it, set "
                "MLFLOW_TRACKING_URI, or pass --model path/to/model.keras"
            ) from None


def load_denoiser(uri: str, tracking_uri: str | None = None) -> Any:
    """Load a model for denoise_batch: a Keras model where possible, else a Predictor.

    uri: a local .keras file, a local MLflow model folder, or a models:/ or runs:/ URI read
    from tracking_uri (default: MLflow's current one; another one becomes MLflow's current
    URI, and MLFLOW_TRACKING_URI, for the rest of the process). Raises ModelError with advice.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if _is_local(uri):
        path = Path(uri)
        if path.is_file() and path.suffix in KERAS_SUFFIXES:
            import keras

            import denoise.models  # noqa: F401  (registers the custom layers for loading)

            try:
                return keras.models.load_model(path, compile=False)
            except (OSError, ValueError) as error:
                raise ModelError(f"{path}: not a Keras model ({error})".split("\n")[0]) from None
        if not (path / "MLmodel").is_file():
            raise ModelError(
                f"{path}: no such model: pass a .keras file, an MLflow model folder, or a "
                "models:/<name>@<alias> or runs:/<run id>/model URI"
            )
    else:
        tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        _check_tracking_store(tracking_uri)
        if tracking_uri != mlflow.get_tracking_uri():
            mlflow.set_tracking_uri(tracking_uri)  # also sets MLFLOW_TRACKING_URI: a CLI edge
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if uri.startswith("models:/") and "@" in uri:
            name, alias = uri.removeprefix("models:/").split("@", 1)
            raise ModelError(
                f"no model registered as {name}@{alias} at {tracking_uri}: run the pipeline "
                f"first (denoise register) or pass --model ({reason})"
            ) from None
        raise ModelError(f"cannot load model {uri} from {tracking_uri}: {reason}") from None
    try:
        python_model = loaded.unwrap_python_model()
    except MlflowException:
        python_model = None
    keras_model = getattr(python_model, "model", None)
    if keras_model is not None and hasattr(keras_model, "layers"):
        return keras_model

    def predict(tiles: np.ndarray) -> np.ndarray:
        return np.asarray(loaded.predict(tiles), dtype=np.float32)

    return predict


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Files to denoise: each file given, and each folder's images and videos (not recursive).

    Raises InputError for a missing path, an unsupported file type or a folder with no media.
    """
    files: list[Path] = []
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                entry
                for entry in path.iterdir()
                if entry.is_file()
                and not entry.name.startswith(".")
                and entry.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                raise InputError(f"{path}: no images or videos in this folder (not recursive)")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise InputError(
                    f"{path}: unsupported file type {path.suffix or '(none)'} (images: "
                    f"{' '.join(IMAGE_SUFFIXES)}; videos: {' '.join(VIDEO_SUFFIXES)})"
                )
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def plan_outputs(files: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """Pair each input with its output path.

    One input and an output with a media extension: that file. Otherwise output is a folder
    and each input keeps its name in it. Raises InputError for two inputs with one name, an
    output that would overwrite its input, or an image paired with a video.
    """
    single_file = (
        len(files) == 1
        and not output.is_dir()
        and output.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
    )
    if single_file:
        source = files[0]
        if (source.suffix.lower() in VIDEO_SUFFIXES) != (output.suffix.lower() in VIDEO_SUFFIXES):
            raise InputError(f"{output}: an image and a video cannot be each other's output")
        pairs = [(source, output)]
    elif output.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and not output.is_dir():
        raise InputError(f"{output}: several inputs need an output folder, not a file name")
    else:
        pairs = [(source, output / source.name) for source in files]
    targets: dict[Path, Path] = {}
    for source, target in pairs:
        if target.resolve() == source.resolve():
            raise InputError(f"{target}: the output would overwrite its input; choose another -o")
        if target.resolve() in targets:
            raise InputError(
                f"{source} and {targets[target.resolve()]} would both be written to {target}"
            )
        targets[target.resolve()] = source
    return pairs


@dataclasses.dataclass(frozen=True)
class Applied:
    """One denoised file."""

    source: Path
    output: Path
    width: int
    height: int
    frames: int  # 1 for an image
    fps: float | None  # None for an image


@dataclasses.dataclass(frozen=True)
class ApplySummary:
    """What `denoise apply` did: the model it used and every output."""

    model_uri: str
    outputs: list[Applied]


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def _inference_options(config: Apply) -> dict[str, Any]:
    """denoise_batch's keyword arguments from params.apply."""
    return {
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "batch_size": config.batch_size,
        "ensemble": config.self_ensemble,
    }


def apply_to_image(model: Any, source: Path, target: Path, config: Apply) -> Applied:
    """Denoise one image file at full resolution; write it atomically at its bit depth."""
    noisy, dtype = read_image_float(source)
    denoised = denoise_image(model, noisy, **_inference_options(config))
    with atomic_path(target) as staging:
        write_image_float(staging, denoised, dtype)
    return Applied(source, target, noisy.shape[1], noisy.shape[0], 1, None)


def apply_to_video(model: Any, source: Path, target: Path, config: Apply) -> Applied:
    """Denoise every frame of a video; write a video of the same size, rate and frame count."""
    info = probe(source)
    frames = progress(
        read_video_rgb(source), description=f"denoise {source.name}", total=info.frame_count or None
    )
    written = 0
    # The writer closes before atomic_path renames the finished file into place.
    with (
        atomic_path(target) as staging,
        rgb_video_writer(staging, info.fps, info.width, info.height) as write,
    ):
        for noisy in _chunks(frames, config.batch_size):
            denoised = denoise_batch(model, noisy, **_inference_options(config))
            for frame in denoised:
                write(frame)
            written += len(denoised)
    return Applied(source, target, info.width, info.height, written, info.fps)


def run(
    params: Params, inputs: list[Path], output: Path, model_uri: str | None = None
) -> ApplySummary:
    """Denoise images and videos with a model (default: the registered champion).

    Inputs are checked before the model loads; each output is written atomically, so a failure
    part-way leaves complete outputs only.
    """
    from denoise import tracking

    pairs = plan_outputs(collect_inputs(inputs), Path(output))
    for source, target in pairs:
        if source.suffix.lower() in VIDEO_SUFFIXES:
            info = probe(source)
            video_codec(target, info.width, info.height)
        elif not can_read_image(source):
            raise InputError(f"{source}: not an image OpenCV can read")
    uri = model_uri or default_model_uri(params)
    model = load_denoiser(uri, None if _is_local(uri) else tracking.tracking_uri(params))
    if hasattr(model, "layers"):
        from denoise.models import at_precision

        model = at_precision(model, params.apply.precision)
    images = [pair for pair in pairs if pair[0].suffix.lower() in IMAGE_SUFFIXES]
    videos = [pair for pair in pairs if pair[0].suffix.lower() in VIDEO_SUFFIXES]
    outputs = []
    if images:
        for source, target in progress(images, description="denoise images"):
            outputs.append(apply_to_image(model, source, target, params.apply))
    for source, target in videos:
        outputs.append(apply_to_video(model, source, target, params.apply))
    return ApplySummary(uri, outputs)
