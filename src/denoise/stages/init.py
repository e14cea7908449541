"""init stage: each model's starting point, as files DVC tracks: its settings and weights.

For every model to train, paths.init/<model>.json holds the settings its training reads
(training.settings.training_settings) and, when the model names init_from, what that resolved
to (the shipped model, a file, or a registry version) with the SHA-256 of the starting weights,
which are copied byte for byte to paths.init/<model>.keras. DVC runs this stage every time
(always_changed); train@<model> depends on <model>.json alone, so a new champion or a change to
one model's settings reruns that model's training, and an unchanged one nothing. dvc.lock shows
which version training started from. A source whose layers do not match the model stops here,
before DVC deletes anything downstream.

Running every time must cost little: when paths.init already holds what run would write (the
same settings, the same files, alias versions unchanged in the store), unchanged() says so in
about a second, loading neither Keras nor MLflow, and run leaves the files as they are.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from denoise.core.atomic import atomic_directory, json_text, write_json
from denoise.core.config import Params
from denoise.core.errors import ConfigError, ModelError, NotRegisteredError
from denoise.core.locations import init_file, tracking_uri
from denoise.core.schema import INIT_CHAMPION, INIT_PRETRAINED
from denoise.data.sources import file_sha256
from denoise.models.pretrained import pretrained_model_path
from denoise.serving.load import CHAMPION, default_model_uri, download_keras
from denoise.tracking import store
from denoise.tracking.runs import stage
from denoise.training.settings import model_init_from, training_settings

# A URI that names the same weights for ever: a run's artifact, or a registered version.
_FIXED_URI = re.compile(r"^(runs:/.+|models:/[^@/]+/\d+)$")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Where a model starts: the file to copy, and what it is in words (for lineage tags)."""

    path: Path
    description: str


@dataclasses.dataclass(frozen=True)
class InitSummary:
    sources: dict[str, dict[str, Any]]


def _pretrained() -> Resolved:
    return Resolved(pretrained_model_path(), f"{INIT_PRETRAINED} ({pretrained_model_path().name})")


def _registered(uri: str, params: Params, directory: Path) -> Resolved:
    found = download_keras(uri, tracking_uri(params), directory)
    version = f" (version {found.version})" if found.version else ""
    return Resolved(found.path, f"{uri}{version}")


def _matches(name: str, params: Params, resolved: Resolved) -> None:
    """ModelError naming both architectures unless the file's layers match model `name`."""
    from denoise.models.build import build_model, load_model, start_from  # Keras: seconds

    start_from(
        build_model(name, params.train), load_model(resolved.path), name, resolved.description
    )


def resolve(name: str, params: Params, directory: Path) -> Resolved | None:
    """Model `name`'s init_from as a checked .keras file (downloads go under directory).

    `champion` is the registry's champion when it matches the model, else the shipped model:
    the first run of a fresh clone fine-tunes the shipped model, later runs the champion. A
    temporal model's champion is the video champion (register.video_model_name); there is no
    shipped video model, so without a matching one it starts from scratch (None).
    """
    source = model_init_from(params.train, name)
    key = f"train.profiles.{params.train.profile}.per_model.{name}.init_from"
    if source == INIT_PRETRAINED:
        resolved = _pretrained()
    elif source == INIT_CHAMPION:
        # No champion yet, or one of another architecture: the shipped model. A tracking
        # server that does not answer is an error (ModelError), never a silent fallback.
        reason: ModelError | str
        try:
            temporal = params.train.window(name) > 1
            uri = default_model_uri(params, video=temporal)
            champion = _registered(uri, params, directory)
        except NotRegisteredError:
            reason = f"{uri} has no champion yet (a first run)"
        else:
            try:
                _matches(name, params, champion)
                return champion
            except ModelError as error:  # the champion's layers differ from the model's
                reason = error
        if temporal:
            print(f"note: {name} starts from scratch: {reason}")
            return None
        print(f"note: {name} starts from the shipped model: {reason}")
        resolved = _pretrained()
    elif source is not None and source.endswith(".keras"):
        if not Path(source).is_file():
            raise ConfigError(f"{key}: {source}: no such file")
        resolved = Resolved(Path(source), source)
    elif source is not None:
        resolved = _registered(source, params, directory)
    else:
        raise ValueError(f"{name} has no init_from")
    _matches(name, params, resolved)
    return resolved


def _resolves_to(name: str, params: Params, recorded: str | None) -> str | None:
    """What model `name`'s init_from resolves to now, in the words run records, found without
    Keras or MLflow (tracking/store.py reads alias versions); store.Unknown when only the full
    resolution can tell (such as a champion the record does not name: of another
    architecture, or new). recorded: what the last run resolved it to."""
    source = model_init_from(params.train, name)
    if source is None:
        return None
    if source == INIT_PRETRAINED or (source != INIT_CHAMPION and source.endswith(".keras")):
        return _pretrained().description if source == INIT_PRETRAINED else source
    if _FIXED_URI.match(source):
        return source
    uri, alias = source, None
    if source == INIT_CHAMPION:
        uri, alias = default_model_uri(params, video=params.train.window(name) > 1), CHAMPION
    elif source.startswith("models:/") and "@" in source:
        alias = source.split("@", 1)[1]
    if alias is None:  # such as models:/name/latest
        raise store.Unknown(source)
    version = store.alias_version(tracking_uri(params), uri[len("models:/") :].split("@")[0], alias)
    if version is None and source == INIT_CHAMPION:  # no champion yet: the fallback
        return None if params.train.window(name) > 1 else _pretrained().description
    if version is None or recorded != f"{uri} (version {version})":
        raise store.Unknown(f"{uri}: version {version}")
    return recorded


def _copied_from(source: str, resolved: str) -> Path | None:
    """The file a model's starting weights are copied from: the shipped model or a named
    .keras file; None for a registry version, whose files never change."""
    if source.endswith(".keras") and resolved == source:
        return Path(source)
    return _pretrained().path if resolved == _pretrained().description else None


def unchanged(params: Params) -> InitSummary | None:
    """The summary of what paths.init holds when it is what run would write, else None; reads
    params, the files and the store's alias versions, loads neither Keras nor MLflow."""
    written: set[Path] = set()
    sources: dict[str, dict[str, Any]] = {}
    try:
        for name in params.train.models:
            settings = init_file(params, name)
            recorded = json.loads(settings.read_text()).get("init")
            start = None
            resolved = _resolves_to(name, params, recorded and recorded.get("resolved"))
            if resolved is not None:
                weights = init_file(params, name, ".keras")
                source = model_init_from(params.train, name)
                start = sources[name] = {
                    "init_from": source,
                    "resolved": resolved,
                    "sha256": file_sha256(weights),
                }
                copied = _copied_from(str(source), resolved)
                if copied is not None and file_sha256(copied) != start["sha256"]:
                    return None
                written.add(weights)
            expected = {"settings": training_settings(params, name), "init": start}
            if settings.read_text() != json_text(expected):
                return None
            written.add(settings)
        if set(Path(params.paths.init).iterdir()) != written:
            return None
    except (OSError, ValueError, ModelError, store.Unknown):
        return None
    return InitSummary(sources)


def run(params: Params) -> InitSummary:
    """Write paths.init: <model>.json for each model to train, <model>.keras for each with
    init_from; when it holds that already (the same settings and starting points), leave it."""
    summary = unchanged(params)
    if summary is not None:
        return summary
    sources: dict[str, dict[str, Any]] = {}
    with stage(params, "init") as tracker:
        with (
            tempfile.TemporaryDirectory(prefix="denoise-init-") as downloads,
            atomic_directory(params.paths.init) as staging,
        ):
            for name in params.train.models:
                start, resolved = None, None
                if model_init_from(params.train, name) is not None:
                    resolved = resolve(name, params, Path(downloads) / name)
                if resolved is not None:
                    weights = staging / init_file(params, name, ".keras").name
                    shutil.copyfile(resolved.path, weights)
                    start = sources[name] = {
                        "init_from": model_init_from(params.train, name),
                        "resolved": resolved.description,
                        "sha256": file_sha256(weights),
                    }
                write_json(
                    staging / init_file(params, name).name,
                    {"settings": training_settings(params, name), "init": start},
                )
        tracker.log_to_parent(summary={"sources": sources})
    return InitSummary(sources)
