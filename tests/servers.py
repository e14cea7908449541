"""Real servers on loopback for integration tests: an MLflow tracking server, a model server.

Each runs in its own process group with its output in a log file, so a test can stop it and
everything it started (workers) at once, and show the log when it fails to come up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

MLFLOW = [sys.executable, "-m", "mlflow"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(process: subprocess.Popen[bytes], lines: int = 30) -> str:
    log = getattr(process, "log_path", None)
    if log is None or not Path(log).is_file():
        return ""
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll url until it answers 200; raise RuntimeError (with the server's log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server exited with status {process.returncode} before {url} answered:\n"
                f"{_log_tail(process)}"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = _log_tail(process) if process is not None else ""
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail}")


def start(
    command: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    inherit: bool = True,
) -> subprocess.Popen[bytes]:
    """Start command in a new process group, stdout and stderr into log_path; its environment
    is this one's updated with env (inherit=False: env alone)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**(os.environ if inherit else {}), **(env or {})},
            start_new_session=True,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process and its group: SIGTERM, then SIGKILL after timeout seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def start_mlflow_server(root: Path, timeout: float = 120.0) -> tuple[str, subprocess.Popen[bytes]]:
    """An `mlflow server` on 127.0.0.1 with SQLite and proxied artifacts, both under root.

    Returns (tracking URL, process); waits (bounded) until /health answers.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        *MLFLOW,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    # No background job runner (seven huey consumers, for GenAI features): tracking and the
    # registry do not use it, and it doubles the start-up time on a small machine.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = start(command, root / "mlflow-server.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout, process)
    except BaseException:
        stop(process)
        raise
    return url, process


def start_model_server(
    model_uri: str,
    tracking_uri: str,
    log_path: Path,
    timeout: float = 240.0,
    arguments: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[str, subprocess.Popen[bytes]]:
    """`mlflow models serve` of model_uri in this environment, on 127.0.0.1, with more
    arguments (`--timeout 5`) and environment variables (SERVING_MODEL_CONFIG) when given.

    Returns (base URL, process); waits (bounded) until /ping answers, i.e. the model loaded.
    """
    port = free_port()
    command = [
        *MLFLOW,
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *arguments,
    ]
    # The scoring server runs `uvicorn` by name: put this environment's scripts first on PATH,
    # as an activated virtual environment would.
    scripts = str(Path(sys.executable).parent)
    variables = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    process = start(command, log_path, env=variables)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ping", timeout, process)
    except BaseException:
        stop(process)
        raise
    return url, process


class WebhookReceiver:
    """An HTTP server on loopback, in a thread, that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[dict] = []  # type: ignore[type-arg]
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    received.append(json.loads(body))
                except ValueError:
                    received.append({"unparsed": body.decode(errors="replace")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *arguments: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate, seconds: float) -> dict:  # type: ignore[no-untyped-def,type-arg]
        """The first body that predicate accepts, waiting at most seconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for body in list(self.received):
                if predicate(body):
                    return body
            time.sleep(0.5)
        raise AssertionError(f"no such alert within {seconds:.0f} s; received {self.received}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
