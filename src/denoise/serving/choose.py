"""Which model denoises: a model at a URI or file, loaded at params.apply.precision, and the
registered champion with the shipped model while none is registered (denoise apply and the
Python API choose alike)."""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

from denoise.core.config import Params
from denoise.core.errors import ModelError, NotRegisteredError
from denoise.core.locations import tracking_uri
from denoise.models.pretrained import pretrained_model_path
from denoise.serving.backends import (
    OPENVINO,
    ConversionError,
    OpenVINOModel,
    converted_folder,
    load_openvino,
    resolve_backend,
)
from denoise.serving.load import KERAS_SUFFIXES, _is_local, download_keras, load_denoiser


def load_model_at(params: Params, uri: str) -> Any:
    """The model at uri, on params.apply.backend (serving.backends): its OpenVINO copy, or
    the Keras model at params.apply.precision. With backend auto, a model with no .keras file
    (a plain pyfunc) runs as it was logged."""
    if resolve_backend(params.apply.backend) == OPENVINO:
        try:
            fast = _openvino_at(params, uri)
        except ConversionError as error:
            if params.apply.backend == OPENVINO:
                raise
            print(f"note: {error}; using Keras", file=sys.stderr)
            fast = None
        if fast is not None:
            return fast
    model = load_denoiser(uri, None if _is_local(uri) else tracking_uri(params))
    if hasattr(model, "layers"):
        # lazy: Keras loads only once the inputs are known to be good
        from denoise.models.precision import at_precision

        model = at_precision(model, params.apply.precision)
    return model


def _openvino_at(params: Params, uri: str) -> OpenVINOModel | None:
    """The OpenVINO copy of the model at uri, or None (backend auto) where it holds no .keras
    file; backend openvino makes that a ModelError."""
    converted = converted_folder(params.apply.converted_dir)
    path = Path(uri)
    if _is_local(uri) and path.is_file() and path.suffix in KERAS_SUFFIXES:
        return load_openvino(path, converted)
    if _is_local(uri):
        files = sorted((path / "artifacts").glob(f"*{KERAS_SUFFIXES[0]}"))
        if len(files) == 1:
            return load_openvino(files[0], converted)
    else:
        with tempfile.TemporaryDirectory(prefix="denoise-model-") as directory:
            try:
                registered = download_keras(uri, tracking_uri(params), Path(directory))
                return load_openvino(registered.path, converted)
            except NotRegisteredError:
                return None  # the Keras path names what is missing, as it always has
            except ConversionError:
                raise
            except ModelError:
                if params.apply.backend == OPENVINO:
                    raise
    if params.apply.backend == OPENVINO:
        raise ModelError(f"{uri}: no .keras file to convert for OpenVINO; use --backend keras")
    return None


def first_registered(
    params: Params, choices: list[tuple[str, str]], loaded: dict[str, Any]
) -> tuple[Any, str]:
    """The model of the first (uri, what it is) of choices that loads, and its URI: each one
    not registered is said on stderr, with what is used instead (the last must load). loaded:
    what each URI tried so far gave (a model, or the NotRegisteredError), so that images and
    videos load a model they share once."""

    def attempt(uri: str) -> Any:
        if uri not in loaded:
            try:
                loaded[uri] = load_model_at(params, uri)
            except NotRegisteredError as error:
                loaded[uri] = error
        return loaded[uri]

    for (uri, _), (_, instead) in itertools.pairwise(choices):
        found = attempt(uri)
        if not isinstance(found, NotRegisteredError):
            return found, uri
        print(f"no {uri} yet ({found}); using {instead}", file=sys.stderr)
    last = choices[-1][0]
    found = attempt(last)
    if isinstance(found, NotRegisteredError):
        raise found
    return found, last


SHIPPED = "the shipped pretrained model"


def shipped_fallback(params: Params, uris: list[str]) -> tuple[Any, str]:
    """The model of the first of uris that is registered, else the shipped model (each one
    not registered is said in one line on stderr), and what was loaded."""
    choices = [(uri, uri) for uri in uris] + [(str(pretrained_model_path()), SHIPPED)]
    return first_registered(params, choices, {})
