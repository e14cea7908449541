"""The parts that keep a failure to one line and lose nothing: service checks against real HTTP
servers on loopback, the trainer's lock and the stage's lifeline across real processes, atomic
writes under a real file-size limit (`ulimit -f`), and the clean-up of a killed write's names.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT
from servers import free_port

from denoise.core import services
from denoise.core.atomic import atomic_directory, remove_stale
from denoise.core.config import Services, default_params
from denoise.core.errors import BusyError, ServiceError
from denoise.core.locks import exclusive

FAST = Services(timeout_seconds=2.0, retry_seconds=3.0)


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers GET with the next status of the server's script (the last one repeats)."""

    def do_GET(self) -> None:
        script: list[int] = self.server.script  # type: ignore[attr-defined]
        status = script.pop(0) if len(script) > 1 else script[0]
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answers)
    server.script, server.requests = [200], 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _service(url: str) -> services.Service:
    return services.Service(name="Test server", url=url, health_path="/health", fix="start it")


def _url(server: http.server.HTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_server_that_answers_passes(answering: http.server.HTTPServer) -> None:
    services.check(_service(_url(answering)), FAST)
    assert answering.requests == 1  # type: ignore[attr-defined]


def test_nothing_listening_fails_at_once_with_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        services.check(_service(url), Services(timeout_seconds=5.0, retry_seconds=30.0))
    assert time.monotonic() - started < 3, "a refused connection is not retried"
    message = str(caught.value)
    assert "\n" not in message
    assert message == f"Test server {url} is unreachable (connection refused); start it"


def test_a_transient_error_is_retried_until_the_server_answers(
    answering: http.server.HTTPServer,
) -> None:
    answering.script = [503, 502, 200]  # type: ignore[attr-defined]
    services.check(_service(_url(answering)), Services(timeout_seconds=2.0, retry_seconds=10.0))
    assert answering.requests == 3  # type: ignore[attr-defined]


def test_transient_errors_stop_within_the_retry_bound(answering: http.server.HTTPServer) -> None:
    answering.script = [503]  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"HTTP 503 .*still after retrying for 3 s"):
        services.check(_service(_url(answering)), FAST)
    assert time.monotonic() - started <= FAST.retry_seconds + 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_at_once_and_say_so(
    answering: http.server.HTTPServer, status: int
) -> None:
    answering.script = [status]  # type: ignore[attr-defined]
    with pytest.raises(ServiceError, match=f"credentials refused \\(HTTP {status}\\)"):
        services.check(_service(_url(answering)), FAST)
    assert answering.requests == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("seconds", [0, 2, 6, 30, 60])
def test_mlflows_retry_schedule_waits_at_most_the_bound(seconds: float) -> None:
    retries, factor = services.retry_schedule(
        dataclasses.replace(default_params().services, retry_seconds=seconds)
    )
    # urllib3 2: the first retry at once, then factor * 2**(n - 1) after the n-th failure.
    waits = [factor * 2 ** (n - 1) for n in range(2, retries + 1)]
    assert sum(waits) <= seconds
    assert retries >= 1


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from denoise.core.locks import exclusive
    with exclusive(sys.argv[1], "denoise train"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def _start(code: str, *arguments: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *arguments], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() in ("held", "watching")
    return process


def test_a_second_holder_is_refused_naming_the_first_ones_pid(tmp_path: Path) -> None:
    holder = _start(_HOLDER, str(tmp_path / "checkpoints"))
    try:
        with pytest.raises(BusyError) as caught, exclusive(tmp_path / "checkpoints", "test"):
            pass
        assert str(caught.value) == (
            f"{tmp_path / 'checkpoints'}: in use by denoise train (pid {holder.pid}); wait for "
            "it to finish, or stop it (the lock goes with the process)"
        )
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the killed holder's lock: no stale lock to clear by hand.
    with exclusive(tmp_path / "checkpoints", "test"):
        pass


_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    time.sleep(60)
    """
)
_STAGE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from denoise.core import lifeline
    from denoise.core.errors import StoppedError
    lifeline.watch(interval=0.2, grace=10)
    Path(sys.argv[1]).write_text("watching")
    try:
        try:
            time.sleep(60)
        except Exception:  # a library's broad handler, as AutoGraph's, must not end the stop
            Path(sys.argv[1]).write_text("swallowed")
            time.sleep(60)
    except StoppedError as error:
        Path(sys.argv[1]).write_text(f"stopped: {error}")
    """
)


def _wait_for(path: Path, prefix: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().startswith(prefix):
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path}: no {prefix!r} within {seconds} s")


def test_a_stage_whose_parent_is_killed_stops_itself(tmp_path: Path) -> None:
    """kill -9 of the parent (as of `dvc repro`) leaves the child running unless it watches."""
    report = tmp_path / "report"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _STAGE, str(report)])
    try:
        _wait_for(report, "watching", 60)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        stopped = _wait_for(report, "stopped", 10)
    finally:
        if parent.poll() is None:
            parent.kill()
    program = Path(sys.executable).name
    assert stopped == (
        f"stopped: {program} (pid {parent.pid}), which started this process, has ended; stopped"
    )


def test_sigterm_raises_in_the_stage_so_its_runs_end_killed(tmp_path: Path) -> None:
    report = tmp_path / "report"
    stage = subprocess.Popen([sys.executable, "-c", _STAGE, str(report)])
    _wait_for(report, "watching", 60)
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(timeout=10) == 0
    assert report.read_text() == "stopped: stopped by SIGTERM"


_SWALLOWED = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from denoise.core import lifeline
    from denoise.core.errors import StoppedError
    report, go = Path(sys.argv[1]), Path(sys.argv[2])
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])  # every thread, until __del__
    lifeline.watch(interval=0.2, grace=60)

    class Unblocks:
        def __del__(self):
            # The pending SIGTERM's handler runs here, where a raise is printed and ignored.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
            time.sleep(0.1)

    report.write_text("watching")
    try:
        while not go.exists():
            time.sleep(0.05)
        Unblocks()
        time.sleep(30)
        report.write_text("ran on")
    except StoppedError as error:
        report.write_text(f"stopped: {error}")
    """
)


def test_a_stop_raised_where_python_ignores_it_is_raised_again(tmp_path: Path) -> None:
    """A signal handler runs at whatever Python code comes next: in a __del__ or a garbage
    collection callback (as JAX's), its StoppedError is only printed, and the stage trained on
    until the lifeline's grace period (60 s) ended."""
    report, go = tmp_path / "report", tmp_path / "go"
    stage = subprocess.Popen(
        [sys.executable, "-c", _SWALLOWED, str(report), str(go)], stderr=subprocess.PIPE
    )
    try:
        _wait_for(report, "watching", 60)
        stage.send_signal(signal.SIGTERM)  # pending: blocked until the __del__
        go.touch()
        assert _wait_for(report, "stopped", 10) == "stopped: stopped by SIGTERM"
        assert stage.wait(timeout=10) == 0
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.stderr is not None
    assert "StoppedError" not in stage.stderr.read().decode(), "no 'Exception ignored' trace"


_CLEANS_UP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from denoise.core import lifeline
    from denoise.core.errors import StoppedError
    report = Path(sys.argv[1])
    lifeline.watch(interval=0.2, grace=60)
    report.write_text("watching")
    try:
        time.sleep(60)
    except StoppedError:
        report.write_text("closing")  # as the stage closes its MLflow runs KILLED
        time.sleep(2)
        report.write_text("closed")
    """
)


def test_a_second_stop_does_not_cut_the_first_ones_closing_short(tmp_path: Path) -> None:
    """A cancel sends SIGTERM to the whole process group; DVC ends, and the stage's lifeline
    sends it another while it closes its runs."""
    report = tmp_path / "report"
    stage = subprocess.Popen([sys.executable, "-c", _CLEANS_UP, str(report)])
    try:
        _wait_for(report, "watching", 60)
        stage.send_signal(signal.SIGTERM)
        _wait_for(report, "closing", 10)
        stage.send_signal(signal.SIGTERM)
        assert _wait_for(report, "closed", 10) == "closed"
        assert stage.wait(timeout=10) == 0
    finally:
        if stage.poll() is None:
            stage.kill()


_WRITER = textwrap.dedent(
    """
    import signal, sys
    import numpy as np
    from denoise.core.atomic import atomic_directory
    from denoise.core.errors import DenoiseError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the CLI does
    try:
        with atomic_directory(sys.argv[1]) as staging:
            np.save(staging / "frames.npy", np.ones(200_000, np.uint8))
    except DenoiseError as error:
        print(error)
        sys.exit(1)
    """
)


def test_a_write_past_the_file_size_limit_is_one_line_and_keeps_the_last_output(
    tmp_path: Path,
) -> None:
    target = tmp_path / "frames"
    with atomic_directory(target) as staging:
        np.save(staging / "frames.npy", np.zeros(1000, np.uint8))
    before = (target / "frames.npy").read_bytes()
    result = subprocess.run(
        ["bash", "-c", f'ulimit -f 64; exec "{sys.executable}" -c "$0" "$1"', _WRITER, target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"{target}: no space to write it: needs more than 64.0 KB")
    assert "file-size limit (ulimit -f) 64.0 KB" in lines[0]
    assert (target / "frames.npy").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"], "no temporary left"


def test_under_dvc_the_message_names_the_cache_and_the_checkout_that_restores(
    tmp_path: Path,
) -> None:
    """DVC deletes a stage's outputs before the stage runs: "intact" would be untrue there."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'ulimit -f 64; exec "{sys.executable}" -c "$0" "$1"',
            _WRITER,
            tmp_path / "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DVC_STAGE": "train@paper_cae"},
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip().endswith(
        "the previous output is in DVC's cache: `dvc checkout train@paper_cae` restores it)"
    )


def test_names_a_killed_write_left_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    leftovers = [
        tmp_path / ".frames.tmp-k2j4",
        tmp_path / ".frames.old-123",
        tmp_path / ".m.tmp-1.json",
    ]
    leftovers[0].mkdir()
    (leftovers[0] / "shard.npy").write_bytes(b"x")
    leftovers[1].mkdir()
    leftovers[2].write_text("{}")
    (tmp_path / ".other.tmp-1").write_text("not ours")
    removed = remove_stale(tmp_path / "frames", tmp_path / "m.json", tmp_path / "missing" / "x")
    assert sorted(removed) == sorted(leftovers)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.tmp-1", "frames"]


def test_pulling_from_a_remote_that_does_not_exist_fails_before_the_flow(tmp_path: Path) -> None:
    from repository import build_repository, sh

    root = build_repository(tmp_path / "project")
    result = sh("denoise", "run", "--pull", cwd=root, check=False)
    assert result.returncode == 1
    remote = (tmp_path / "denoise-dvc-remote").resolve()
    assert result.stderr.strip() == (
        f"error: DVC remote 'local' ({remote}): no such folder; "
        "push to it first, or point it elsewhere (DENOISE_DVC_REMOTE, make remote)"
    )


_RUN_HOLDER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from denoise.core import locks

    root = Path(sys.argv[1])
    with locks.pipeline_run(root, "denoise run") as descriptor:
        # The flow's process, as `denoise run` starts it: it inherits the lock, so taking it
        # there is no refusal.
        child = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; import sys; "
             "from denoise.core import locks; "
             "ctx = locks.pipeline_run(Path(sys.argv[1]), 'the flow'); ctx.__enter__(); "
             "print('inherited')", str(root)],
            env={**os.environ, locks.RUN_LOCK_FD: str(descriptor)},
            pass_fds=(descriptor,), capture_output=True, text=True,
        )
        print(child.stdout.strip() or child.stderr.strip(), flush=True)
        print("holding", flush=True)
        time.sleep(120)
    """
)


def test_a_second_run_in_the_tree_refuses_at_once_naming_the_first(tmp_path: Path) -> None:
    """`denoise run` takes the tree's pipeline lock before any check or change; the flow's
    process it starts inherits it. A second run gets one line naming the first's pid."""
    root = tmp_path / "project"
    for folder in (".dvc", "flows", "data"):
        (root / folder).mkdir(parents=True)
    (root / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    holder = subprocess.Popen(
        [sys.executable, "-c", _RUN_HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "inherited"
        assert holder.stdout.readline().strip() == "holding"
        before = sorted(str(path) for path in root.rglob("*"))
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "denoise", "run"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1 and "Traceback" not in second.stderr
    (line,) = second.stderr.splitlines()
    assert line.startswith("error: ") and f"in use by denoise run (pid {holder.pid})" in line
    assert sorted(str(path) for path in root.rglob("*")) == before
    # About 2 s, most of it the interpreter's start: 30 s allows for a loaded machine.
    assert seconds < 30
