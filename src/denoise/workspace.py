"""The project's git + DVC working tree: the services `denoise run` needs, `denoise push` and
`denoise restore`.

`denoise run` checks, with --pull or --push, the DVC remote before the flow starts (the flow's
process checks the Prefect API before its first task); the preflight stage checks the rest.
`denoise restore` returns the tree to the last commit's pipeline state after a failed or
killed run: dvc.lock, the .dvc files, the outputs git keeps (cache: false) and the outputs
DVC caches, refetched from the remote when a cache entry is missing or corrupt (DVC drops an
entry whose hash is wrong).
`denoise push` is `dvc push --run-cache` with the objects the run cache needs that DVC leaves
behind, so that a clone which pulls the run cache restores every stage instead of running it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from denoise.core.atomic import remove_stale
from denoise.core.config import Params, Services
from denoise.core.errors import DenoiseError, ServiceError, UnreachableError

LOCK_FILE = "dvc.lock"
SET_ASIDE = "-set-aside"  # data/raw-set-aside/: inputs the last commit does not hold


# Exit status of `python -m flows.pipeline` when a service check failed before the flow: its
# one-line error is already printed, so `denoise run` adds none.
SERVICE_CHECK_EXIT = 3


def check_dvc_remote(
    root: Path,
    command: str,
    settings: Services,
    name: str | None = None,
    empty_ok: bool = False,
) -> None:
    """Raise ServiceError unless the DVC remote `name` (None: the default) can be reached for
    `command` (push or pull), within settings.timeout_seconds + retry_seconds: an
    UnreachableError when it did not answer. A local remote to push to must take a real
    write; one to pull from must exist, unless empty_ok (a first run has pushed nothing)."""
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        remote = repo.cloud.get_remote(name, command)
    except Exception as error:  # DVC's own NoRemoteError and config errors
        raise ServiceError(f"DVC remote for dvc {command}: {str(error).splitlines()[0]}") from None
    url = repo.config["remote"][remote.name].get("url", remote.path)
    where = f"DVC remote {remote.name!r} ({url})"
    if remote.fs.protocol == "local":
        folder = Path(remote.path)
        if command == "pull" and not folder.is_dir() and not empty_ok:
            raise ServiceError(
                f"{where}: no such folder; push to it first, or point it elsewhere "
                "(DENOISE_DVC_REMOTE, make remote)"
            )
        if command == "push":
            try:  # what push itself would do; os.access passes a parent that is a file
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".denoise-write-check-"):
                    pass
            except OSError as error:
                raise ServiceError(
                    f"{where}: cannot write there ({error.strerror or error}: "
                    f"{error.filename or folder})"
                ) from None
        return
    # A daemon thread: one still waiting on a remote that never answers does not hold the
    # process open after the error (an executor's worker would be joined at exit).
    answer: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def ask() -> None:
        try:
            answer.set_result(remote.fs.exists(remote.path))
        except BaseException as error:
            answer.set_exception(error)

    threading.Thread(target=ask, name="dvc-remote-check", daemon=True).start()
    try:
        answer.result(timeout=settings.timeout_seconds + settings.retry_seconds)
    except concurrent.futures.TimeoutError:
        raise UnreachableError(f"{where}: no answer within the services bounds") from None
    except Exception as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise UnreachableError(
            f"{where} is unreachable ({reason}); check its URL and credentials"
        ) from None


@dataclasses.dataclass(frozen=True)
class Pushed:
    output: str  # what `dvc push --run-cache` printed
    sent: int  # objects of run-cache entries sent besides
    missing: int  # objects of older run-cache entries no longer in the local cache


# DVC's closing lines, printed after any error: never the cause.
_DVC_FOOTER = ("Having any troubles?", "Hit us up at", "https://dvc.org/support")


def dvc_cause(output: str) -> str:
    """The line of a failed DVC command's output that says why: its first `ERROR:` line
    (prefix dropped), else its last line that is not DVC's footer."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_DVC_FOOTER)]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[0 if errors else -1]


def push(root: Path, settings: Services, remote: str | None = None) -> Pushed:
    """Check the remote (check_dvc_remote), then `dvc push --run-cache`, then every object the
    run cache's entries name.

    DVC keeps a stage's uncached outputs (the reports git keeps, declared as plots and metrics
    in dvc.yaml) in the local cache for its run cache, but `dvc push --run-cache` sends only
    the entries, not those objects; without them a clone that pulls the run cache runs train,
    evaluate and register again. Objects already on the remote are not sent twice.
    """
    from dvc.repo import Repo

    check_dvc_remote(root, "push", settings, remote)
    arguments = ["push", "--run-cache", *(["--remote", remote] if remote else [])]
    result = _dvc(root, *arguments)
    if result.returncode != 0:
        cause = dvc_cause(f"{result.stdout}\n{result.stderr}")
        raise DenoiseError(f"dvc {' '.join(arguments)} failed: {cause}")
    sent = missing = 0
    with Repo(str(root)) as repo:
        runs = Path(repo.stage_cache.cache_dir)
        entries = [(path.parent.name, path.name) for path in runs.glob("*/*/*") if path.is_file()]
        for objects in repo.stage_cache.get_used_objs(entries).values():
            transfer = repo.cloud.push(objects, remote=remote)
            sent, missing = sent + len(transfer.transferred), missing + len(transfer.failed)
    return Pushed(result.stdout.strip(), sent, missing)


def _git(root: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise DenoiseError(f"restore: git {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def _dvc(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [dvc, *arguments], cwd=root, capture_output=True, text=True, check=False, env=env
    )


def _uncached_outs(root: Path, repo: Any) -> list[str]:
    """The stage outputs DVC does not cache (git keeps them), relative to root."""
    return sorted(
        str(Path(out.fs_path).relative_to(root))
        for stage in repo.index.stages
        for out in stage.outs
        if not out.use_cache
    )


def _lost_outputs(root: Path) -> list[str]:
    """The stages and .dvc files whose outputs differ from dvc.lock (`dvc status`'s "changed
    outs"); edited params or code, which restore leaves alone, do not count."""
    result = _dvc(root, "status", "--json")
    if result.returncode != 0:
        raise DenoiseError(f"restore: dvc status failed: {result.stderr.strip()[-300:]}")
    lines = result.stdout.strip().splitlines()
    status = json.loads(lines[-1]) if lines else {}
    return sorted(
        name
        for name, changes in status.items()
        if any(isinstance(change, dict) and "changed outs" in change for change in changes)
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _drop_corrupt_cache_entries(root: Path, repo: Any, files: list[str]) -> list[str]:
    """Remove the cache entries of the outputs that files (dvc.lock, .dvc files) record whose
    content does not hash to their name; return their hashes. DVC trusts its cache on checkout,
    so a corrupt entry would come back as the output; dropped, `dvc fetch` gets it again."""
    cache = repo.cache.local
    outs = []
    for path in (root / name for name in files):
        document = yaml.safe_load(path.read_text()) if path.is_file() else None
        stages = (document or {}).get("stages", {"": document or {}})
        outs += [out for stage in stages.values() for out in stage.get("outs", [])]
    expected = [str(out["md5"]) for out in outs if out.get("md5")]
    corrupt = []
    for oid in expected:
        manifest = Path(cache.oid_to_path(oid))
        entries = []
        if oid.endswith(".dir") and manifest.is_file():
            try:
                entries = [str(entry["md5"]) for entry in json.loads(manifest.read_text())]
            except (ValueError, KeyError, TypeError):
                entries = []
        for entry in [*entries, oid]:
            path = Path(cache.oid_to_path(entry))
            if path.is_file() and _md5(path) != entry.removesuffix(".dir"):
                path.unlink()
                corrupt.append(entry)
    return corrupt


def _set_aside_new_inputs(root: Path, repo: Any, dvc_files: list[str]) -> list[Path]:
    """Move the files in each .dvc-tracked folder that its committed version does not hold
    (videos added since, not yet committed) to <folder>-set-aside/, at the same relative
    paths: `dvc checkout --force` would delete them, and they may be in no cache. Returns their
    new paths. Hidden files are left alone."""
    cache = repo.cache.local
    moved = []
    for name in dvc_files:
        for out in (yaml.safe_load((root / name).read_text()) or {}).get("outs", []):
            oid, folder = str(out.get("md5", "")), (root / name).parent / str(out["path"])
            manifest = Path(cache.oid_to_path(oid))
            if not oid.endswith(".dir") or not folder.is_dir():
                continue
            if not manifest.is_file():
                _dvc(root, "fetch", name)
            if not manifest.is_file():
                continue  # nothing to compare with: checkout fails, and restore says so
            known = {str(entry["relpath"]) for entry in json.loads(manifest.read_text())}
            aside = folder.with_name(f"{folder.name}{SET_ASIDE}")
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if path.is_file() and not path.name.startswith("."):
                    if relative.as_posix() in known:
                        continue
                    destination = aside / relative
                    while destination.exists():
                        destination = destination.with_name(f"{destination.name}.1")
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, destination)
                    moved.append(destination.relative_to(root))
    return moved


@dataclasses.dataclass(frozen=True)
class RestoreSummary:
    restored: list[str]  # files git put back
    refetched: bool  # whether the DVC remote supplied missing or corrupt cache entries
    corrupt: list[str]  # cache entries whose content did not match their hash (dropped)
    set_aside: list[Path]  # inputs the commit does not hold, moved to <folder>-set-aside/
    edited: list[str]  # params.yaml, dvc.yaml or code that still differ from the commit


def restore(root: Path, params: Params) -> RestoreSummary:
    """Put back the last commit's dvc.lock, .dvc files and uncached outputs, check out the
    cached outputs (refetching what the cache lacks), and check that `dvc status` is clean.

    Leaves params.yaml, dvc.yaml and code as they are (the user's edits), and reports them;
    moves inputs added since the commit aside rather than deleting them.
    """
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        with repo.lock:  # a running `dvc repro` holds it: never restore under it
            pass
    except Exception as error:
        raise DenoiseError(
            f"restore: a DVC command runs in this tree ({error}); wait for it"
        ) from None
    tracked = _git(root, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    if LOCK_FILE not in tracked:
        raise DenoiseError(f"restore: {LOCK_FILE} is not committed; there is no state to return to")
    uncached = [
        out
        for out in _uncached_outs(root, repo)
        if any(name == out or name.startswith(f"{out}/") for name in tracked)
    ]
    paths = [LOCK_FILE, *(name for name in tracked if name.endswith(".dvc")), *uncached]
    _git(root, "checkout", "HEAD", "--", *paths)
    for out in uncached:  # files a failed stage wrote beside the committed ones
        if (root / out).is_dir():
            _git(root, "clean", "-fdq", "--", out)
    remove_stale(*(root / path for path in params.paths.every()))
    corrupt = _drop_corrupt_cache_entries(
        root, repo, [name for name in paths if name not in uncached]
    )
    set_aside = _set_aside_new_inputs(root, repo, [name for name in paths if name.endswith(".dvc")])
    refetched = False
    checkout = _dvc(root, "checkout", "--force")
    if corrupt or checkout.returncode != 0 or _lost_outputs(root):
        # Cache entries missing or dropped as corrupt: fetch them from the remote, again.
        refetched = _dvc(root, "fetch").returncode == 0
        _dvc(root, "checkout", "--force")
    lost = _lost_outputs(root)
    if lost:
        raise DenoiseError(
            f"restore: the outputs of {', '.join(lost)} are in neither the DVC cache nor the "
            "remote; `dvc repro` rebuilds them"
        )
    edited = [
        name for name in _git(root, "diff", "--name-only", "HEAD").splitlines() if name not in paths
    ]
    return RestoreSummary(
        restored=paths, refetched=refetched, corrupt=corrupt, set_aside=set_aside, edited=edited
    )
