"""The team services of infra/team/team.sh, started for real on free loopback ports.

One module fixture runs `team.sh up` (PostgreSQL 15, the S3 store, MLflow with basic auth,
Prefect with an auth string) in a temporary state folder with secrets made up for the run, and
`team.sh down` at the end. A server that cannot be installed or started fails the tests with
its log; nothing here skips.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import PROJECT_ROOT, tiny_params, write_params, write_tiny_video
from servers import free_port

TEAM = PROJECT_ROOT / "infra" / "team"
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 240


@dataclasses.dataclass(frozen=True)
class Team:
    """The running services: the script's settings and the clients' settings."""

    settings: dict[str, str]  # what team.sh read: ports, state folder, secrets
    client: dict[str, str]  # what `team.sh env` printed for clients

    @property
    def mlflow(self) -> str:
        return self.client["MLFLOW_TRACKING_URI"]

    @property
    def prefect(self) -> str:
        return self.client["PREFECT_API_URL"]

    @property
    def admin(self) -> tuple[str, str]:
        return self.client["MLFLOW_TRACKING_USERNAME"], self.client["MLFLOW_TRACKING_PASSWORD"]


def _team_sh(*arguments: str, settings: dict[str, str], timeout: float) -> str:
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        **settings,
    }
    result = subprocess.run(
        [str(TEAM / "team.sh"), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"team.sh {' '.join(arguments)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    # Not under pytest's temporary folders: those are private to root, and PostgreSQL runs as
    # the unprivileged `postgres` user, which must reach its data folder.
    state = Path(tempfile.mkdtemp(prefix="denoise-team-"))
    state.chmod(0o755)
    settings = {
        "DENOISE_TEAM_DIR": str(state),
        "DENOISE_TEAM_POSTGRES_PORT": str(free_port()),
        "DENOISE_TEAM_S3_PORT": str(free_port()),
        "DENOISE_TEAM_MLFLOW_PORT": str(free_port()),
        "DENOISE_TEAM_PREFECT_PORT": str(free_port()),
        "DENOISE_TEAM_BUCKET": "denoise-test",
        "DENOISE_TEAM_START_TIMEOUT": str(START_TIMEOUT_SECONDS),
        "DENOISE_TEAM_DB_PASSWORD": secrets.token_urlsafe(16),
        "AWS_ACCESS_KEY_ID": secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
        "PREFECT_SERVER_API_AUTH_STRING": f"admin:{secrets.token_urlsafe(16)}",
    }
    try:
        _team_sh("up", settings=settings, timeout=4 * START_TIMEOUT_SECONDS)
        printed = _team_sh("env", settings=settings, timeout=30)
        client = {}
        for line in printed.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            client[name] = shlex.split(value)[0]
        yield Team(settings, client)
    finally:
        _team_sh("down", settings=settings, timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def test_compose_runs_the_command_lines_of_the_script() -> None:
    printed = subprocess.run(
        [str(TEAM / "team.sh"), "commands"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DENOISE_TEAM_DIR": tempfile.mkdtemp(prefix="denoise-team-")},
    ).stdout.splitlines()
    services = yaml.safe_load((TEAM / "compose.yaml").read_text())["services"]
    assert [shlex.split(line) for line in printed] == [
        services["mlflow"]["command"],
        services["prefect"]["command"],
    ]


# A credential in a tracked file: a cloud access key, a password inside a URL, or a secret
# setting with a value other than the `change-me` placeholder or a ${VARIABLE}.
_ACCESS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_URL_PASSWORD = re.compile(r"://[^/\s:@\"'<>]+:([^@\s/\"'<>]+)@")
_SECRET_SETTING = re.compile(
    r"^\s*(?:export\s+)?(?:[A-Z][A-Z0-9_]*_)?(PASSWORD|SECRET|AUTH_STRING|ACCESS_KEY_ID)[A-Z_]*"
    r"\s*[=:]\s*\"?([^\"\s#]+)",
    re.MULTILINE,
)


def _placeholder(value: str) -> bool:
    return value.startswith(("$", "{")) or "change-me" in value or value in {"''", '""'}


def test_no_tracked_file_holds_a_credential() -> None:
    # The patterns catch what they are for (spelled at run time, so this file holds none).
    made_up = secrets.token_urlsafe(12)
    assert _URL_PASSWORD.search(f"postgresql://denoise:{made_up}@db:5432/mlflow")
    assert _SECRET_SETTING.search(f"MLFLOW_AUTH_ADMIN_PASSWORD={made_up}")
    assert _ACCESS_KEY.search("AKIA" + "ABCDEFGHIJKLMNOP")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    found = []
    for name in filter(None, listed):
        path = PROJECT_ROOT / name
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: access key" for _ in _ACCESS_KEY.finditer(text)]
        found += [
            f"{name}: password in a URL"
            for match in _URL_PASSWORD.finditer(text)
            if not _placeholder(match.group(1))
        ]
        found += [
            f"{name}: {match.group(0).strip()}"
            for match in _SECRET_SETTING.finditer(text)
            if not _placeholder(match.group(2))
        ]
    assert found == []
    example = (TEAM / "example.env").read_text()
    assert len(_SECRET_SETTING.findall(example)) >= 6, "example.env names every secret"


@pytest.mark.slow
def test_mlflow_refuses_requests_without_or_with_wrong_credentials(team: Team) -> None:
    url = f"{team.mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = team.admin
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, auth=(user, password + "x"), timeout=30).status_code == 401
    assert requests.get(url, auth=("nobody", password), timeout=30).status_code == 401
    assert requests.get(url, auth=(user, password), timeout=30).status_code == 200


@pytest.mark.slow
def test_prefect_api_refuses_requests_without_or_with_the_wrong_auth_string(team: Team) -> None:
    url = f"{team.prefect}/flows/filter"
    user, _, password = team.client["PREFECT_API_AUTH_STRING"].partition(":")
    assert requests.post(url, json={}, timeout=30).status_code == 401
    assert requests.post(url, json={}, auth=(user, password + "x"), timeout=30).status_code == 401
    assert requests.post(url, json={}, auth=(user, password), timeout=30).status_code == 200


@pytest.mark.slow
def test_preflight_without_credentials_fails_at_once_naming_them(
    team: Team, tmp_path: Path
) -> None:
    params = tiny_params(tmp_path)
    Path(params.paths.raw).mkdir(parents=True)
    write_tiny_video(Path(params.paths.raw) / "tiny.avi")
    write_params(params, tmp_path / "params.yaml")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")
    }
    environment |= {
        "MLFLOW_TRACKING_URI": team.mlflow,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["denoise", "preflight", "--params", str(tmp_path / "params.yaml")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,  # refused credentials are final: no retries before the line
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "MLFLOW_TRACKING_USERNAME" in errors[0] and "MLFLOW_TRACKING_PASSWORD" in errors[0]
    assert "401" in errors[0]
