"""Loading a denoiser: a .keras file, or an MLflow model URI (runs:/, models:/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.config import Params
from denoise.core.errors import ModelError, NotRegisteredError

KERAS_SUFFIXES = (".keras",)
# The registry aliases the register stage sets: the served model, and a runner-up.
CHAMPION, CHALLENGER = "champion", "challenger"
# A decision's reason when the version registered is the champion already (nothing moved).
ALREADY_CHAMPION = "already the champion"


def default_model_uri(params: Params, video: bool = False) -> str:
    """models:/<register.model_name>@champion, the model the register stage promoted (video:
    register.video_model_name's, the temporal champion)."""
    name = params.register.video_model_name if video else params.register.model_name
    return f"models:/{name}@{CHAMPION}"


def _is_local(uri: str) -> bool:
    return ":/" not in uri or Path(uri).exists()


def _check_tracking_store(tracking_uri: str) -> None:
    """Fail fast, with advice, when the tracking store is not there (MLflow retries for minutes)."""
    import requests

    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise NotRegisteredError(
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
    if _is_local(uri):
        path = Path(uri)
        if path.is_file() and path.suffix in KERAS_SUFFIXES:
            # lazy: Keras (and TensorFlow) load only when a Keras model is asked for, and
            # MLflow not at all
            from denoise.models.build import load_model

            try:
                return load_model(path)
            except (OSError, ValueError) as error:
                raise ModelError(f"{path}: not a Keras model ({error})".split("\n")[0]) from None
    import mlflow
    from mlflow.exceptions import MlflowException

    if _is_local(uri):
        path = Path(uri)
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
            raise NotRegisteredError(
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


@dataclasses.dataclass(frozen=True)
class RegisteredKeras:
    """A logged model's .keras file, downloaded: its path, the URI asked for, and the registry
    version it resolved to (None for a runs:/ URI)."""

    path: Path
    uri: str
    version: str | None


def download_keras(uri: str, tracking_uri: str, directory: Path) -> RegisteredKeras:
    """Download the .keras file a logged denoiser (tracking.models.log_denoiser) holds, byte for
    byte, into directory. Raises ModelError when the store, the model or the file is missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _check_tracking_store(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    version = None
    try:
        if uri.startswith("models:/") and "@" in uri:
            name, alias = uri.removeprefix("models:/").split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(directory), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # No such registered model or alias (yet): NotRegisteredError; anything else, such as a
        # server that stopped answering, is a plain ModelError.
        missing = getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
        kind = NotRegisteredError if missing else ModelError
        raise kind(f"cannot load model {uri} from {tracking_uri}: {reason}") from None
    files = sorted((Path(local) / "artifacts").glob(f"*{KERAS_SUFFIXES[0]}"))
    if len(files) != 1:
        raise ModelError(f"{uri}: holds {len(files)} .keras files, not one")
    return RegisteredKeras(files[0], uri, version)
