"""`denoise push` against remotes that cannot take it: the remote is checked first, within the
services bounds, and DVC's failure is reduced to its cause, never its footer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

from denoise.core.config import Services
from denoise.core.errors import ServiceError, UnreachableError
from denoise.workspace import check_dvc_remote, dvc_cause

BIN = Path(sys.executable).parent
# The S3 client spends about 7 s on its own retries of a refused connection: the bound lets its
# error through, and still stops a remote that never answers.
BOUND = Services(timeout_seconds=3.0, retry_seconds=12.0)
# Any keys: the S3 client needs some before it connects.
KEYS = {"access_key_id": "test", "secret_access_key": "test-secret"}


def _sh(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git + DVC repository with one tracked file, the project's params.yaml with short
    service bounds, and no remote yet."""
    root = tmp_path / "repo"
    root.mkdir()
    for command in (("git", "init", "-q"), ("dvc", "init", "-q")):
        assert _sh(*command, cwd=root).returncode == 0
    (root / "data.txt").write_text("frames\n")
    assert _sh("dvc", "add", "-q", "data.txt", cwd=root).returncode == 0
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["services"] = {
        "timeout_seconds": BOUND.timeout_seconds,
        "retry_seconds": BOUND.retry_seconds,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _remote(root: Path, url: str, **options: str) -> None:
    assert _sh("dvc", "remote", "add", "-d", "target", url, cwd=root).returncode == 0
    for key, value in options.items():
        assert _sh("dvc", "remote", "modify", "target", key, value, cwd=root).returncode == 0


def _push_fails(root: Path) -> tuple[str, float]:
    """Run `denoise push`; it fails with one error line: return it and the seconds it took."""
    started = time.monotonic()
    result = _sh("denoise", "push", cwd=root)
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line, seconds


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_a_remote_under_a_regular_file_fails_the_check_with_its_cause(repository: Path) -> None:
    (repository.parent / "blocker").write_text("a file, not a folder\n")
    _remote(repository, str(repository.parent / "blocker" / "remote"))
    with pytest.raises(ServiceError, match="cannot write there \\(Not a directory"):
        check_dvc_remote(repository, "push", BOUND)
    line, _ = _push_fails(repository)
    assert "cannot write there (Not a directory" in line
    assert "Having any troubles" not in line


def test_a_refused_port_is_named_not_counted_in_files(repository: Path) -> None:
    _remote(repository, "s3://bucket/cache", endpointurl="http://127.0.0.1:1", **KEYS)
    line, _ = _push_fails(repository)
    assert "is unreachable (Could not connect to the endpoint URL" in line
    assert "files failed" not in line


def test_a_black_holed_remote_fails_within_the_services_bound(
    repository: Path, black_hole: int
) -> None:
    _remote(repository, "s3://bucket/cache", endpointurl=f"http://127.0.0.1:{black_hole}", **KEYS)
    line, seconds = _push_fails(repository)
    assert "no answer within the services bounds" in line
    # The bound is 15 s of waiting; the rest is start-up. Generous for a loaded machine.
    assert seconds < 90


def test_dvcs_failure_is_reduced_to_its_cause() -> None:
    output = (
        "Collecting\n"
        "ERROR: failed to push data to the cloud - [Errno 20] Not a directory: '/x/files'\n"
        "\n"
        "Having any troubles? Hit us up at https://dvc.org/support, we are always happy to help!\n"
    )
    assert (
        dvc_cause(output)
        == "failed to push data to the cloud - [Errno 20] Not a directory: '/x/files'"
    )
    assert dvc_cause("Everything is up to date.\n") == "Everything is up to date."
    assert dvc_cause("") == "no output"


def test_the_flow_retries_a_transfer_only_when_the_remote_did_not_answer() -> None:
    """DVC refusing (unsaved files, a full remote) fails the same way every time: no retry."""
    from prefect.states import Failed

    from flows.pipeline import dvc_transfer, transient
    from flows.stages import StageFailed

    assert dvc_transfer.retry_condition_fn is transient
    assert transient(dvc_transfer, None, Failed(data=UnreachableError("no answer")))
    assert not transient(dvc_transfer, None, Failed(data=ServiceError("no such folder")))
    assert transient(dvc_transfer, None, Failed(data=TimeoutError()))
    assert not transient(dvc_transfer, None, Failed(data=StageFailed("dvc pull failed: refused")))
    assert not transient(dvc_transfer, None, Failed(data=ValueError("bad params")))
