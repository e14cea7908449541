"""Logging trained models to MLflow as pyfunc denoisers."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.config import Params, default_params
from denoise.core.errors import ModelError
from denoise.core.noise_level import NOISE_RANGE
from denoise.models.pretrained import PRETRAINED_DIR
from denoise.serving.pyfunc import BACKEND_KEY, KERAS_ARTIFACT, DenoiserModel
from denoise.tracking.lineage import dvc_out_md5


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
    window: int = 1,
    noise_range: list[float] | None = None,
) -> Any:
    """Log a saved .keras denoiser as an MLflow pyfunc model that denoises images of any size.

    Call it inside an active run (mlflow.start_run): the model is logged to that run under
    `name`, so runs:/<run id>/<name> and the returned ModelInfo.model_uri (models:/m-...) both
    load it; registered_model_name also registers it as a new version. Tiling comes from the
    arguments, else params.apply, else the shipped params.yaml's; it is stored as model_config,
    with apply.self_ensemble, apply.precision and the served model's limits.
    The signature is float32 (-1, -1, -1, 3) in and out (any batch, height and width), with a
    2x16x16x3 input example; a temporal model's (window > 1) input is (-1, window, -1, -1, 3)
    and its example 2 x window x 16 x 16 x 3. The denoise package travels with the model
    (code_paths) and the pip requirements are pinned to this environment, so `mlflow models
    serve --env-manager local` works here and a fresh virtualenv can rebuild it elsewhere.
    The Keras backend it was trained on is recorded (model_config and the MLmodel metadata):
    a serving environment uses it where installed and otherwise one it has, and so is the
    noise range it was trained on (0-255, the metadata's noise_range; null: unknown), which
    `denoise apply` compares its inputs' noise level with. Returns mlflow's ModelInfo.
    """
    import keras
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    keras_path = Path(keras_path)
    if not keras_path.is_file():
        raise ModelError(f"{keras_path}: no such model file; run `denoise train` first")
    config = (params or default_params()).apply
    model_config = {
        "tile_size": tile_size if tile_size is not None else config.tile_size,
        "overlap": overlap if overlap is not None else config.overlap,
        "batch_size": batch_size if batch_size is not None else config.batch_size,
        "self_ensemble": config.self_ensemble,
        "precision": config.precision,
        # What the served model refuses (serving.guard); SERVING_MODEL_CONFIG overrides them.
        "max_request_megabytes": config.max_request_megabytes,
        "max_megapixels": config.max_megapixels,
        "value_margin": config.value_margin,
        # Served on the same backend where the serving environment has it, else on one it has.
        BACKEND_KEY: keras.backend.backend(),
    }
    images = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3))])
    frames = (window,) if window > 1 else ()
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *frames, -1, -1, 3))])
    example = np.random.default_rng(0).random((2, *frames, 16, 16, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="denoise-code-") as code:
        # The denoise package travels with the model; the shipped pretrained model does not.
        package = Path(code) / "denoise"
        shutil.copytree(
            Path(__file__).parents[1],
            package,
            ignore=shutil.ignore_patterns("__pycache__", PRETRAINED_DIR.name),
        )
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=DenoiserModel(),
            artifacts={KERAS_ARTIFACT: str(keras_path)},
            model_config=model_config,
            signature=ModelSignature(inputs=inputs, outputs=images),
            input_example=example,
            code_paths=[str(package)],
            pip_requirements=_requirements(),
            metadata={BACKEND_KEY: model_config[BACKEND_KEY], NOISE_RANGE: noise_range},
            registered_model_name=registered_model_name,
        )


MODEL_ARTIFACT = "model"
INIT_TAG = "denoise.init_from"  # on a training run and its model version: what it started from
MODEL_URI_TAG = "denoise.model_uri"  # on a training run: the logged model (models:/m-...)
# On a run that logged a model trained against another tracking store: the run that trained it.
TRAINED_RUN_TAG = "denoise.trained_run"


def log_trained_model(
    params: Params, model: Any, keras_path: Path, summary: dict[str, Any], history_csv: Path
) -> None:
    """Into the active run: the model (pyfunc, any image size), its summary and curves."""
    import mlflow

    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    mlflow.log_text("\n".join(lines), "model_summary.txt")
    mlflow.log_dict(summary, "summary.json")
    mlflow.log_artifact(str(history_csv), artifact_path="curves")
    mlflow.log_metrics(
        {
            "best_epoch": summary["best_epoch"],
            "parameters": summary["parameters"],
            "train_seconds": summary["train_seconds"],
            "train_patches_per_second": summary["train_patches_per_second"],
            "rollbacks": len(summary["rollbacks"]),
        }
    )
    window = int(model.input_shape[-1]) // 3
    log_model_file(params, keras_path, window, summary.get(NOISE_RANGE))


def log_model_file(
    params: Params, keras_path: Path, window: int, noise_range: list[float] | None = None
) -> None:
    """Into the active run: the model saved at keras_path, as the register stage finds it;
    window: its frames per output frame (1: an image model); noise_range: what it was trained
    on (0-255), or None where unknown."""
    import mlflow

    info = log_denoiser(
        keras_path, name=MODEL_ARTIFACT, params=params, window=window, noise_range=noise_range
    )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)


def logged_model_uri(run_id: str) -> str:
    """The model a training run logged, as the register stage and scoring load it."""
    from mlflow.tracking import MlflowClient

    tags = MlflowClient().get_run(run_id).data.tags
    return tags.get(MODEL_URI_TAG) or f"runs:/{run_id}/{MODEL_ARTIFACT}"


def log_epoch(epoch: int, metrics: dict[str, float], samples: list[Any]) -> None:
    """One epoch's metrics, and its sample triptychs as images keyed by frame, at step=epoch."""
    import mlflow

    mlflow.log_metrics(metrics, step=epoch)
    for index, image in enumerate(samples):
        mlflow.log_image(image, key=f"validation-frame-{index}", step=epoch, synchronous=True)


def log_frames_inputs(params: Params, manifest: Any, clips: Any | None = None) -> None:
    """The raw videos and the frames a model was trained on, as MLflow datasets with DVC hashes.

    manifest: the frames manifest (pandas DataFrame, one row per frame); clips: for a model
    trained on clips, the clips manifest (one row per clip), logged as its training data.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    videos = manifest.groupby("video", as_index=False).agg(
        video_sha256=("video_sha256", "first"), frames=("frame_index", "size")
    )
    raw_md5 = dvc_out_md5(params.paths.raw) or None
    frames_md5 = dvc_out_md5(params.paths.frames) or None
    with warnings.catch_warnings():
        # MLflow warns that a local path matches its local-artifact source type twice, and
        # that integer columns cannot hold missing values; neither applies to a manifest.
        warnings.simplefilter("ignore", UserWarning)
        raw = from_pandas(videos, source=params.paths.raw, name="raw-videos", digest=raw_md5)
        frames = from_pandas(manifest, source=params.paths.frames, name="frames", digest=frames_md5)
        mlflow.log_input(raw, context="raw")
        if clips is None:
            mlflow.log_input(frames, context="training")
        else:
            source = f"{params.paths.frames}/clips"
            trained = from_pandas(clips, source=source, name="clips", digest=frames_md5)
            mlflow.log_input(frames, context="frames")
            mlflow.log_input(trained, context="training")
