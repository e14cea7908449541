"""preflight stage: check everything a run needs before any stage deletes an output.

DVC deletes a stage's outputs as it starts the stage, so a typo in params.yaml, an unreadable
video or a tracking server that is down would cost the last good outputs if a stage found it.
Every other stage depends on this one's output, so a bare `dvc repro` runs it first; the flow
runs it as its first task, and `denoise run` runs the same checks before it starts the flow.

Loading params.yaml (the CLI does, before run()) validates every value. Then: no path param
lies under a regular file, the raw inputs open, the tracking server answers, temporary files
of killed stages are removed, and the MLflow runs of killed or crashed processes on this host
end FAILED. The output is constant, so downstream stages never rerun because this one did.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from denoise.core.atomic import remove_stale, write_json
from denoise.core.config import Params
from denoise.core.errors import ConfigError
from denoise.data.sources import check_sources
from denoise.tracking.runs import fail_abandoned_runs
from denoise.tracking.server import check_server

# Written as the stage's output: a new entry would change it, and rerun every stage once.
CHECKS = ["params.yaml is valid", "raw inputs open", "tracking server answers"]


@dataclasses.dataclass(frozen=True)
class PreflightSummary:
    sources: int
    removed: list[Path]  # temporary files and folders of killed stages
    abandoned_runs: list[str]  # MLflow runs of dead processes, now FAILED


def check_paths(params: Params) -> None:
    """Raise ConfigError naming the first path param that lies under a regular file: no stage
    could make its folder there (a stage would fail only once it came to write)."""
    for field in dataclasses.fields(params.paths):
        path = Path(getattr(params.paths, field.name))
        above = next((parent for parent in path.parents if parent.is_file()), None)
        if above is not None:
            raise ConfigError(
                f"params.yaml: paths.{field.name}: {path} lies under {above}, a regular file, "
                "where no folder can be made; choose a path under a folder"
            )


def check(params: Params, sources: bool = True) -> int:
    """The checks alone (`denoise run` runs them before the flow); the number of sources.

    sources: check the raw inputs (`denoise run --pull` leaves them to the stage, after the pull).
    """
    check_paths(params)
    found = check_sources(params, open_files=True) if sources else []
    check_server(params)
    return len(found)


def run(params: Params) -> PreflightSummary:
    """Check; then, holding DVC's repository lock as every stage does, remove what killed stages
    left and end their MLflow runs; write paths.preflight (the same content every time)."""
    sources = check(params)
    removed = remove_stale(*params.paths.every())
    abandoned = fail_abandoned_runs(params)
    write_json(params.paths.preflight, {"checks": CHECKS})
    return PreflightSummary(sources, removed, abandoned)
