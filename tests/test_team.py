"""The team services of infra/team/team.sh, started for real on free loopback ports.

One module fixture runs `team.sh up` (PostgreSQL 15, rclone's S3 store, MLflow with basic auth,
Prefect with an auth string) in a temporary state folder with secrets made up for the run, and
`team.sh down` at the end. A server that cannot be installed or started fails the tests with
its log; only the check of an unreadable environment skips where the environment is readable
(or the tests run without root).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import PROJECT_ROOT, tiny_params, write_params, write_tiny_video
from repository import build_repository, sh
from servers import free_port

from flows.stages import read_stages

TEAM = PROJECT_ROOT / "infra" / "team"
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 240
ALWAYS_RUN = {"preflight", "init"}  # always_changed stages (tests/test_pipeline.py)
# The team repository trains one model: each model logs its files (the .keras file and the
# denoise package) to the team's store one request at a time, and register reads them back.
TEAM_MODELS = ["paper_cae"]
# Stages a clone restores from the team's run cache: all but the always_changed ones. Their
# uncached outputs are DVC plots and metrics, which the run cache keeps (dvc.yaml).
RESTORED = set(read_stages(PROJECT_ROOT).expand(TEAM_MODELS)) - ALWAYS_RUN
MODEL_NAME = "denoise"  # params.yaml: register.model_name
# Each service's PostgreSQL login role (the owner of the database of its name) and its password.
DATABASE_PASSWORDS = {
    "mlflow": "DENOISE_TEAM_MLFLOW_DB_PASSWORD",
    "mlflow_auth": "DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD",
    "prefect": "DENOISE_TEAM_PREFECT_DB_PASSWORD",
}
WORKER_MLFLOW_USER = "denoise-worker"  # team.sh


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

    @property
    def mlflow_env(self) -> dict[str, str]:
        """All a client of the team's MLflow needs: the URI and credentials."""
        return {
            name: self.client[name]
            for name in (
                "MLFLOW_TRACKING_URI",
                "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD",
            )
        }

    def database(self, name: str = "mlflow", role: str | None = None):  # type: ignore[no-untyped-def]
        """A connection to database name as role (default: the database's own role)."""
        import psycopg2

        role = role or name
        connection = psycopg2.connect(
            host="127.0.0.1",
            port=int(self.settings["DENOISE_TEAM_POSTGRES_PORT"]),
            user=role,
            password=self.settings[DATABASE_PASSWORDS[role]],
            dbname=name,
            connect_timeout=10,
        )
        connection.autocommit = True
        return connection

    def s3(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.client["DENOISE_TEAM_S3_ENDPOINT"],
            aws_access_key_id=self.client["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.client["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )


def made_up_secrets() -> dict[str, str]:
    """Every secret team.sh needs, random and 24 or more characters."""
    return {
        **{name: secrets.token_hex(12) for name in DATABASE_PASSWORDS.values()},
        "AWS_ACCESS_KEY_ID": secrets.token_hex(10),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
        "PREFECT_SERVER_API_AUTH_STRING": f"admin:{secrets.token_urlsafe(18)}",
        "DENOISE_TEAM_WORKER_MLFLOW_PASSWORD": secrets.token_urlsafe(18),
    }


def _worker_system_user() -> str:
    """team.sh's default, denoise-worker, where such a user could run this environment's
    Python; else root (this environment is in a folder only root can reach)."""
    if os.geteuid() != 0:
        return "denoise-worker"  # not root: the worker runs as the caller, the setting unused
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run(
        [*as_nobody, "env", "-i", sys.executable, "-c", ""],
        capture_output=True,
        check=False,
    )
    return "denoise-worker" if probe.returncode == 0 else "root"


def _team_sh(*arguments: str, settings: dict[str, str], timeout: float) -> str:
    result = _run_team_sh(*arguments, settings=settings, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"team.sh {' '.join(arguments)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def _run_team_sh(
    *arguments: str, settings: dict[str, str], timeout: float, inherit: bool = True
) -> subprocess.CompletedProcess[str]:
    """team.sh with settings in its environment (inherit=False: with PATH and HOME alone)."""
    base = dict(os.environ) if inherit else {"HOME": os.environ.get("HOME", "/root")}
    environment = {
        **base,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        **settings,
    }
    return subprocess.run(
        [str(TEAM / "team.sh"), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
        **made_up_secrets(),
        "DENOISE_TEAM_WORKER_USER": _worker_system_user(),
    }
    try:
        _team_sh("up", settings=settings, timeout=4 * START_TIMEOUT_SECONDS)
        client = _parse_exports(_team_sh("env", settings=settings, timeout=30))
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
        services["worker"]["command"],
    ]


def test_the_compose_file_is_valid_and_needs_every_secret() -> None:
    # Debian's docker-compose (the Makefile's test target installs it) validates without Docker.
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: apt-get install docker-compose (make test does)"
    example = dict(
        line.split("=", 1)
        for line in (TEAM / "example.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    command = [compose, "-p", "denoise-team", "-f", str(TEAM / "compose.yaml"), "config"]
    environment = {"PATH": os.environ["PATH"], **example}
    checked = subprocess.run(
        [*command, "-q"], env=environment, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    # Each secret is required (${NAME:?}): leaving one out fails before anything starts.
    del environment["PREFECT_SERVER_API_AUTH_STRING"]
    missing = subprocess.run(
        [*command, "-q"], env=environment, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "PREFECT_SERVER_API_AUTH_STRING" in missing.stderr


# The secrets team.sh init generates and up checks (example.env's change-me values).
GENERATED_SETTINGS = (
    *DATABASE_PASSWORDS.values(),
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "PREFECT_SERVER_API_AUTH_STRING",
    "DENOISE_TEAM_WORKER_MLFLOW_PASSWORD",
)


def _settings_file(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )


def _tiny_project(folder: Path) -> Path:
    """folder with tiny params and a 12-frame video: what `denoise preflight` checks."""
    params = tiny_params(folder)
    Path(params.paths.raw).mkdir(parents=True)
    write_tiny_video(Path(params.paths.raw) / "tiny.avi")
    return write_params(params, folder / "params.yaml")


def _preflight(
    params: Path, team: Team, user: str | None = None, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`denoise preflight` against the team's MLflow as user (None: no credentials)."""
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": team.mlflow,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    if user is not None and password is not None:
        environment |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    return subprocess.run(
        ["denoise", "preflight", "--params", str(params)],
        cwd=params.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    return errors[0]


def test_init_writes_generated_secrets_readable_by_the_owner_alone_and_never_over_a_file(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "team.env"
    settings = {"DENOISE_TEAM_ENV_FILE": str(env_file)}
    written = _run_team_sh("init", settings=settings, timeout=60, inherit=False)
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = _settings_file(env_file)
    assert set(GENERATED_SETTINGS) <= set(values)
    assert not [name for name, value in values.items() if "change-me" in value]
    generated = [values[name].rpartition(":")[2] for name in GENERATED_SETTINGS]
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", value) for value in generated), generated
    assert len(set(generated)) == len(generated)
    before = env_file.read_text()
    again = _run_team_sh("init", settings=settings, timeout=60, inherit=False)
    assert str(env_file) in _one_error(again)
    assert env_file.read_text() == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("placeholder", "DENOISE_TEAM_MLFLOW_DB_PASSWORD"),
        ("short admin password", "MLFLOW_AUTH_ADMIN_PASSWORD"),
        ("short Prefect auth string", "PREFECT_SERVER_API_AUTH_STRING"),
        ("readable by others", "chmod 600"),
    ],
)
def test_up_refuses_weak_settings_in_one_line_before_starting_anything(
    tmp_path: Path, change: str, named: str
) -> None:
    env_file = tmp_path / "team.env"
    state = tmp_path / "state"
    settings = {"DENOISE_TEAM_ENV_FILE": str(env_file), "DENOISE_TEAM_DIR": str(state)}
    assert _run_team_sh("init", settings=settings, timeout=60, inherit=False).returncode == 0
    text = env_file.read_text()
    values = _settings_file(env_file)
    if change == "placeholder":
        example = _settings_file(TEAM / "example.env")
        text = text.replace(values[named], example[named])
    elif change == "short admin password":
        text = text.replace(values[named], "A" * 15)
    elif change == "short Prefect auth string":
        text = text.replace(values[named], "admin:" + "A" * 15)
    else:
        env_file.chmod(0o644)
    env_file.write_text(text)
    error = _one_error(_run_team_sh("up", settings=settings, timeout=60, inherit=False))
    assert named in error
    assert not list(state.glob("*.pid")) and not (state / "postgres").exists()


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
def test_the_worker_polls_the_gpu_pool_as_its_own_mlflow_user_without_admin_credentials(
    team: Team,
) -> None:
    auth = tuple(team.client["PREFECT_API_AUTH_STRING"].split(":", 1))
    pool = requests.get(f"{team.prefect}/work_pools/gpu", auth=auth, timeout=30)
    assert pool.status_code == 200 and pool.json()["type"] == "process"
    workers = requests.post(
        f"{team.prefect}/work_pools/gpu/workers/filter", json={}, auth=auth, timeout=30
    )
    # A worker of an earlier `up` (a test restarts the team) stays listed ONLINE until its
    # heartbeat lapses: this `up`'s worker is among the online ones.
    assert "ONLINE" in [worker["status"] for worker in workers.json()]
    # The worker runs users' flows (anyone with the Prefect auth string can make it run code):
    # it holds the client settings with an MLflow user of its own, and none of the servers'
    # secrets nor the MLflow admin's credentials.
    pid = int((Path(team.settings["DENOISE_TEAM_DIR"]) / "worker.pid").read_text())
    environment = dict(
        entry.decode().split("=", 1)
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"=" in entry
    )
    assert set(team.client) <= set(environment)
    server_only = {
        *DATABASE_PASSWORDS.values(),
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "MLFLOW_BACKEND_STORE_URI",
        "DENOISE_TEAM_WORKER_MLFLOW_PASSWORD",
    }
    assert not set(environment) & server_only
    admin_user, admin_password = team.admin
    assert environment["MLFLOW_TRACKING_USERNAME"] == WORKER_MLFLOW_USER != admin_user
    assert not [name for name, value in environment.items() if admin_password in value]
    worker = (WORKER_MLFLOW_USER, environment["MLFLOW_TRACKING_PASSWORD"])
    found = requests.get(
        f"{team.mlflow}/api/2.0/mlflow/users/get",
        params={"username": WORKER_MLFLOW_USER},
        auth=worker,
        timeout=30,
    )
    assert found.status_code == 200 and found.json()["user"]["is_admin"] is False
    for resource_type, resource_id, permission in (
        ("experiment", _experiment_id(team), "EDIT"),
        ("registered_model", MODEL_NAME, "MANAGE"),
    ):
        answer = requests.get(
            f"{team.mlflow}/api/3.0/mlflow/users/permissions/get",
            params={
                "username": WORKER_MLFLOW_USER,
                "resource_type": resource_type,
                "resource_id": resource_id,
            },
            auth=worker,
            timeout=30,
        )
        assert answer.json()["permission"] == permission, (resource_type, answer.text)
    uid = next(
        line.split()[1]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    if team.settings["DENOISE_TEAM_WORKER_USER"] != "root":
        assert uid != "0", "as root, team.sh runs the worker as an unprivileged system user"


def _experiment_id(team: Team) -> str:
    """The experiment team.sh up made (params.yaml: tracking.experiment)."""
    answer = requests.get(
        f"{team.mlflow}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "denoise"},
        auth=team.admin,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["experiment"]["experiment_id"])


@pytest.mark.slow
def test_each_database_role_reaches_its_own_database_alone_and_no_server_program(
    team: Team,
) -> None:
    import psycopg2
    from psycopg2 import errors

    for role in DATABASE_PASSWORDS:
        with contextlib.closing(team.database(role)) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            assert cursor.fetchone() == (False, False, False, False), role
            cursor.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (role,)
            )
            assert cursor.fetchone() == (role,)
            cursor.execute("CREATE TEMPORARY TABLE probe (line text)")
            with pytest.raises(errors.InsufficientPrivilege):
                cursor.execute("COPY probe FROM PROGRAM 'id'")
        for other in set(DATABASE_PASSWORDS) - {role}:
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                team.database(other, role=role).close()
    # The superuser has no password: TCP refuses it, whatever is sent.
    superuser = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    for password in ("", *(team.settings[name] for name in DATABASE_PASSWORDS.values())):
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(
                host="127.0.0.1",
                port=int(team.settings["DENOISE_TEAM_POSTGRES_PORT"]),
                user=superuser,
                password=password,
                dbname="postgres",
                connect_timeout=10,
            ).close()


@pytest.mark.slow
def test_the_object_store_refuses_anonymous_and_wrong_key_requests(team: Team) -> None:
    import boto3
    from botocore.exceptions import ClientError

    bucket = team.settings["DENOISE_TEAM_BUCKET"]
    endpoint = team.client["DENOISE_TEAM_S3_ENDPOINT"]
    key = f"probe/{secrets.token_hex(4)}.txt"
    assert requests.get(f"{endpoint}/{bucket}", timeout=30).status_code in (400, 403)
    assert requests.put(f"{endpoint}/{bucket}/{key}", data=b"x", timeout=30).status_code in (
        400,
        403,
    )
    right = (team.client["AWS_ACCESS_KEY_ID"], team.client["AWS_SECRET_ACCESS_KEY"])
    for access_key, secret_key in ((right[0], right[1] + "x"), ("someone-else", right[1])):
        wrong = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )
        for call in (
            lambda client: client.list_objects_v2(Bucket=bucket),
            lambda client: client.put_object(Bucket=bucket, Key=key, Body=b"x"),
            lambda client: client.delete_bucket(Bucket=bucket),
        ):
            with pytest.raises(ClientError) as refused:
                call(wrong)
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    store = team.s3()
    store.put_object(Bucket=bucket, Key=key, Body=b"kept")
    assert store.get_object(Bucket=bucket, Key=key)["Body"].read() == b"kept"
    store.delete_object(Bucket=bucket, Key=key)


@pytest.mark.slow
def test_preflight_without_credentials_fails_at_once_naming_them(
    team: Team, tmp_path: Path
) -> None:
    # refused credentials are final: no retries before the line
    result = _preflight(_tiny_project(tmp_path), team)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "MLFLOW_TRACKING_USERNAME" in errors[0] and "MLFLOW_TRACKING_PASSWORD" in errors[0]
    assert "401" in errors[0]


@pytest.mark.slow
def test_a_run_with_the_wrong_prefect_auth_string_stops_before_the_flow(
    team: Team, tmp_path: Path
) -> None:
    root = build_repository(tmp_path / "project")
    user, _, password = team.client["PREFECT_API_AUTH_STRING"].partition(":")
    environment = {
        "PREFECT_API_URL": team.prefect,
        "PREFECT_API_AUTH_STRING": f"{user}:{password}x",
    }
    result = sh("denoise", "run", cwd=root, check=False, env=environment, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: Prefect API {team.prefect}: credentials refused (HTTP 401); set "
        "PREFECT_API_AUTH_STRING to the server's auth string"
    )


def _query(team: Team, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with contextlib.closing(team.database()) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


@pytest.fixture
def as_admin(team: Team, monkeypatch: pytest.MonkeyPatch) -> Team:
    """This process's MLflow credentials are the team admin's (clients name the server: an
    earlier test may have called mlflow.set_tracking_uri, which outranks the environment)."""
    for name, value in team.mlflow_env.items():
        monkeypatch.setenv(name, value)
    return team


def _client(team: Team):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=team.mlflow, registry_uri=team.mlflow)


@dataclasses.dataclass(frozen=True)
class Reproduced:
    root: Path  # the tiny repository after `dvc repro` against the team MLflow, not committed
    env: dict[str, str]  # what its stages ran with


def _lock_stages(root: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _dvc_env(team: Team, log: Path, user: dict[str, str] | None = None) -> dict[str, str]:
    """The team's MLflow (as user, the lines `team.sh add-user` printed; default: the admin),
    and a `denoise` first on PATH that notes each stage it runs in log."""
    wrapper = log.parent / f"{log.stem}-bin"
    wrapper.mkdir()
    (wrapper / "denoise").write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(log))}\nexec {BIN / "denoise"} "$@"\n'
    )
    (wrapper / "denoise").chmod(0o755)
    return {
        **team.mlflow_env,
        **{name: value for name, value in (user or {}).items() if name.startswith("MLFLOW_")},
        "PATH": f"{wrapper}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def _add_team_remote(team: Team, root: Path) -> None:
    sh("dvc", "remote", "add", "team", f"s3://{team.settings['DENOISE_TEAM_BUCKET']}/dvc", cwd=root)
    sh(
        "dvc",
        "remote",
        "modify",
        "team",
        "endpointurl",
        team.client["DENOISE_TEAM_S3_ENDPOINT"],
        cwd=root,
    )
    for option, name in (
        ("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ):
        # "--": a random key may start with "-"
        sh("dvc", "remote", "modify", "--local", "team", option, "--", team.client[name], cwd=root)


def _parse_exports(printed: str) -> dict[str, str]:
    settings = {}
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        settings[name] = shlex.split(value)[0]
    return settings


@pytest.fixture(scope="module")
def teammates(team: Team) -> dict[str, dict[str, str]]:
    """Two MLflow users made by `team.sh add-user`, no admins: the lines each was handed."""
    return {
        name: _parse_exports(_team_sh("add-user", name, settings=team.settings, timeout=120))
        for name in ("alice", "bob")
    }


@pytest.fixture(scope="module")
def reproduced(
    team: Team, teammates: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Reproduced:
    """A tiny repository whose remote `team` is committed; then `dvc repro` by teammate alice
    (not an admin) with only the environment pointing at the team MLflow, and `denoise push -r
    team` (dvc push --run-cache with the objects of the run cache's git-kept reports)."""
    folder = tmp_path_factory.mktemp("team-repo")
    root = build_repository(folder / "repo", models=TEAM_MODELS)
    _add_team_remote(team, root)
    sh("git", "add", ".dvc/config", cwd=root)
    sh("git", "commit", "-qm", "the team remote", cwd=root)
    env = _dvc_env(team, folder / "stages.log", teammates["alice"])
    sh("dvc", "repro", cwd=root, env=env, timeout=1800)
    pushed = sh("denoise", "push", "-r", "team", cwd=root, env=env).stdout
    assert "run cache:" in pushed and "more objects sent" in pushed
    return Reproduced(root, env)


@pytest.mark.slow
def test_dvc_repro_tracks_runs_in_postgresql_and_models_in_the_object_store(
    reproduced: Reproduced, as_admin: Team, tmp_path: Path
) -> None:
    params = dict(_query(as_admin, "SELECT DISTINCT key, value FROM params"))
    assert params, "run params are rows of the mlflow database"
    metrics = {key for (key,) in _query(as_admin, "SELECT DISTINCT key FROM metrics")}
    assert metrics, "run metrics are rows of the mlflow database"
    listed = as_admin.s3().list_objects_v2(
        Bucket=as_admin.settings["DENOISE_TEAM_BUCKET"], Prefix="mlflow/"
    )
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith("/MLmodel") for key in keys), keys[:20]
    champion = _client(as_admin).get_model_version_by_alias(MODEL_NAME, "champion")
    (aliased,) = _query(
        as_admin,
        f"SELECT version FROM registered_model_aliases WHERE name = '{MODEL_NAME}' "
        "AND alias = 'champion'",
    )
    assert str(aliased[0]) == champion.version
    # A client process of its own, configured by the environment alone (in this process an
    # earlier test's mlflow.set_tracking_uri would win over it for models:/ URIs).
    download = (
        "import sys\nfrom mlflow.artifacts import download_artifacts\n"
        f"print(download_artifacts('models:/{MODEL_NAME}@champion', dst_path=sys.argv[1]))"
    )
    result = sh(
        sys.executable, "-c", download, str(tmp_path), cwd=tmp_path, env=as_admin.mlflow_env
    )
    local = Path(result.stdout.strip().splitlines()[-1])
    assert (local / "MLmodel").is_file()


@pytest.mark.slow
def test_a_clone_with_the_pulled_run_cache_reruns_no_stage(
    reproduced: Reproduced, team: Team, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(reproduced.root), str(clone), cwd=tmp_path)
    assert not (clone / "dvc.lock").exists(), "the clone is at its pre-run state"
    sh("dvc", "remote", "default", "--local", "team", cwd=clone)
    for option, name in (
        ("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ):
        # "--": a random key may start with "-"
        sh("dvc", "remote", "modify", "--local", "team", option, "--", team.client[name], cwd=clone)
    env = _dvc_env(team, tmp_path / "stages.log")
    # Without a dvc.lock there is nothing to check out but data/raw: --allow-missing.
    sh("dvc", "pull", "--run-cache", "--allow-missing", cwd=clone, env=env)
    # --pull: a stage found in the run cache gets its outputs from the remote.
    sh("dvc", "repro", "--pull", cwd=clone, env=env, timeout=1800)
    ran = set((tmp_path / "stages.log").read_text().split())
    assert ran <= ALWAYS_RUN, f"stages that ran again: {sorted(ran - ALWAYS_RUN)}"
    assert set(yaml.safe_load((clone / "dvc.lock").read_text())["stages"]) >= RESTORED
    # The same lineage and reports as the run that filled the cache, without running it.
    assert _lock_stages(clone) == _lock_stages(reproduced.root)
    for name in ("reports/metrics.json", "reports/registry.json", "reports/summary.json"):
        assert (clone / name).read_text() == (reproduced.root / name).read_text(), name
    assert sorted(path.name for path in (clone / "models").iterdir()) == sorted(
        path.name for path in (reproduced.root / "models").iterdir()
    )


@pytest.mark.slow
def test_a_user_without_permission_cannot_move_the_champion(
    reproduced: Reproduced, as_admin: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    champion = _client(as_admin).get_model_version_by_alias(MODEL_NAME, "champion")
    # Another version to move the alias to (the repository trains one model): the admin
    # registers the champion's logged model (models:/<model id>) once more.
    model_id = champion.source.removeprefix("models:/")
    other = (
        _client(as_admin)
        .create_model_version(
            MODEL_NAME, champion.source, run_id=champion.run_id, model_id=model_id
        )
        .version
    )
    assert other != champion.version
    user, password = f"viewer-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    get_app_client("basic-auth", tracking_uri=as_admin.mlflow).create_user(user, password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    viewer = _client(as_admin)
    assert viewer.get_model_version_by_alias(MODEL_NAME, "champion").version == champion.version
    with pytest.raises(MlflowException) as refused:
        viewer.set_registered_model_alias(MODEL_NAME, "champion", other)
    assert refused.value.get_http_status_code() == 403
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", as_admin.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", as_admin.admin[1])
    assert _client(as_admin).get_model_version_by_alias(MODEL_NAME, "champion").version == (
        champion.version
    )


def _snapshot(team: Team) -> tuple[list[str], dict[str, str], str]:
    """(run ids, their status by id, the champion's version) as the team MLflow serves them."""
    client = _client(team)
    experiment = client.get_experiment_by_name("denoise")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion").version
    return (
        sorted(run.info.run_id for run in runs),
        {run.info.run_id: run.info.status for run in runs},
        champion,
    )


@pytest.mark.slow
def test_the_mlflow_database_comes_back_from_a_dump(
    reproduced: Reproduced, as_admin: Team, tmp_path: Path
) -> None:
    before = _snapshot(as_admin)
    assert before[0], "the repository's runs are there to back up"
    pg_bin = Path(os.environ.get("DENOISE_TEAM_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
    # As the database's own role, as docs/team.md does it: no superuser over TCP.
    connection = [
        "-h",
        "127.0.0.1",
        "-p",
        as_admin.settings["DENOISE_TEAM_POSTGRES_PORT"],
        "-U",
        "mlflow",
    ]
    env = {"PGPASSWORD": as_admin.settings[DATABASE_PASSWORDS["mlflow"]]}
    dump = tmp_path / "mlflow.dump"
    sh(
        str(pg_bin / "pg_dump"),
        *connection,
        "-Fc",
        "-f",
        str(dump),
        "mlflow",
        cwd=tmp_path,
        env=env,
    )
    _query(as_admin, "DROP SCHEMA public CASCADE; CREATE SCHEMA public; SELECT 1")
    assert _query(as_admin, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    sh(str(pg_bin / "pg_restore"), *connection, "-d", "mlflow", str(dump), cwd=tmp_path, env=env)
    assert _snapshot(as_admin) == before


@pytest.mark.slow
def test_objects_and_runs_survive_team_down_and_up(reproduced: Reproduced, as_admin: Team) -> None:
    bucket = as_admin.settings["DENOISE_TEAM_BUCKET"]

    def stored() -> dict[str, str]:
        pages = as_admin.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}

    before, runs = stored(), _snapshot(as_admin)
    assert any(key.startswith("dvc/") for key in before), "the DVC remote is in the store"
    assert any(key.startswith("mlflow/") for key in before), "MLflow's artifacts are too"
    _team_sh("down", settings=as_admin.settings, timeout=180)
    _team_sh("up", settings=as_admin.settings, timeout=4 * START_TIMEOUT_SECONDS)
    assert stored() == before
    assert _snapshot(as_admin) == runs


@pytest.mark.slow
def test_a_failed_up_names_the_service_that_exited_and_stops_what_it_started() -> None:
    state = Path(tempfile.mkdtemp(prefix="denoise-team-"))
    state.chmod(0o755)
    settings = {
        "DENOISE_TEAM_DIR": str(state),
        "DENOISE_TEAM_POSTGRES_PORT": str(free_port()),
        "DENOISE_TEAM_S3_PORT": str(free_port()),
        "DENOISE_TEAM_PREFECT_PORT": str(free_port()),
        "DENOISE_TEAM_START_TIMEOUT": str(START_TIMEOUT_SECONDS),
        **made_up_secrets(),
        "DENOISE_TEAM_WORKER_USER": _worker_system_user(),
    }
    try:
        # MLflow's port is taken: its server exits within seconds of starting.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            settings["DENOISE_TEAM_MLFLOW_PORT"] = str(taken.getsockname()[1])
            began = time.monotonic()
            result = _run_team_sh("up", settings=settings, timeout=4 * START_TIMEOUT_SECONDS)
            took = time.monotonic() - began
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        exited = re.fullmatch(
            r"error: MLflow server exited ([0-9.]+) s after it started; last lines of (\S+):",
            errors[0],
        )
        assert exited, errors[0]
        # Reported when it exited, with the real seconds, not after the start timeout.
        assert float(exited.group(1)) <= took < START_TIMEOUT_SECONDS
        assert Path(exited.group(2)) == state / "mlflow.log"
        tail = result.stderr.split(errors[0], 1)[1].strip().splitlines()
        assert tail and tail[0] in (state / "mlflow.log").read_text()
        # What this call started is stopped: the store, MLflow and PostgreSQL.
        assert not list(state.glob("*.pid"))
        for port in ("DENOISE_TEAM_S3_PORT", "DENOISE_TEAM_POSTGRES_PORT"):
            with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
                probe.connect(("127.0.0.1", int(settings[port])))
    finally:
        _run_team_sh("down", settings=settings, timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def test_a_worker_user_that_cannot_run_this_environment_stops_up_before_anything_starts() -> None:
    """As root, team.sh runs flow runs as an unprivileged system user. Where that user cannot
    run this environment's Python (installed in a folder only root can reach), `up` refuses in
    one line naming the user, the interpreter and both ways out, and starts nothing."""
    if os.geteuid() != 0:
        pytest.skip("not root: team.sh runs the worker as its caller, no system user")
    if _worker_system_user() != "root":
        pytest.skip(
            "this environment is readable by other users: the worker test checks that the "
            "worker runs unprivileged instead"
        )
    state = Path(tempfile.mkdtemp(prefix="denoise-team-"))
    state.chmod(0o755)
    ports = ("POSTGRES", "S3", "MLFLOW", "PREFECT")
    settings = {
        "DENOISE_TEAM_DIR": str(state),
        **{f"DENOISE_TEAM_{name}_PORT": str(free_port()) for name in ports},
        **made_up_secrets(),
        "DENOISE_TEAM_WORKER_USER": "denoise-worker",
    }
    try:
        result = _run_team_sh("up", settings=settings, timeout=120)
        assert result.returncode != 0
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: the worker's system user denoise-worker cannot run "), line
        assert "other users can read it" in line and "DENOISE_TEAM_WORKER_USER=root" in line
        assert not list(state.glob("*.pid")), "nothing started"
        for name in ports:
            with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
                probe.connect(("127.0.0.1", int(settings[f"DENOISE_TEAM_{name}_PORT"])))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _user_without_grants(team: Team) -> tuple[str, str]:
    """An MLflow user the admin made by hand: READ by default, nothing granted."""
    user, password = f"viewer-{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    made = requests.post(
        f"{team.mlflow}/api/2.0/mlflow/users/create",
        json={"username": user, "password": password},
        auth=team.admin,
        timeout=30,
    )
    assert made.status_code == 200, made.text
    return user, password


@pytest.mark.slow
def test_preflight_names_the_missing_permission_and_the_command_that_grants_it(
    team: Team, tmp_path: Path
) -> None:
    user, password = _user_without_grants(team)
    project = _tiny_project(tmp_path)
    result = _preflight(project, team, user, password)
    error = _one_error(result)
    assert f"user {user} has READ permission on experiment denoise" in error
    assert error.endswith(f"infra/team/team.sh grant {user}")
    _team_sh("grant", user, settings=team.settings, timeout=120)
    granted = _preflight(project, team, user, password)
    assert granted.returncode == 0, granted.stderr


@pytest.mark.slow
def test_a_refused_model_lookup_is_one_line_naming_the_command(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from denoise.core.errors import ModelError
    from denoise.serving.load import download_keras

    user, password = _user_without_grants(team)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # MLflow answers a non-admin 403 for a model that does not exist (the admin: 404).
    with pytest.raises(ModelError) as refused:
        download_keras("models:/not-registered@champion", team.mlflow, tmp_path)
    line = str(refused.value)
    assert "\n" not in line and "(HTTP 403)" in line
    assert line.endswith(f"infra/team/team.sh grant {user}")


@pytest.mark.slow
def test_a_second_teammate_fine_tunes_from_and_replaces_the_first_ones_champion(
    reproduced: Reproduced, as_admin: Team, teammates: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """Alice (not an admin) ran the pipeline (the reproduced fixture); Bob, another teammate,
    fine-tunes her champion's architecture from her champion in a clone, and his version
    becomes the champion when it scores better (margin 0 here)."""
    from denoise.core.config import load_params

    champion = _client(as_admin).get_model_version_by_alias(MODEL_NAME, "champion")
    architecture = champion.tags["denoise.model"]
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(reproduced.root), str(clone), cwd=tmp_path)
    sh("dvc", "remote", "default", "--local", "team", cwd=clone)
    for option, name in (
        ("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ):
        # "--": a random key may start with "-"
        key = as_admin.client[name]
        sh("dvc", "remote", "modify", "--local", "team", option, "--", key, cwd=clone)
    settings = yaml.safe_load((clone / "params.yaml").read_text())
    settings["train"]["models"] = [architecture]
    profile = settings["train"]["profiles"][settings["train"]["profile"]]
    profile["per_model"] = {
        architecture: {"init_from": "champion", "epochs": 3, "steps_per_epoch": 8}
    }
    settings["register"]["promotion_margin_db"] = 0.0
    (clone / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    params = load_params(clone / "params.yaml")
    env = _dvc_env(as_admin, tmp_path / "stages.log", teammates["bob"])
    sh("dvc", "pull", "--run-cache", "--allow-missing", cwd=clone, env=env)
    sh("dvc", "repro", "--pull", cwd=clone, env=env, timeout=1800)
    started = json.loads((clone / params.paths.init / f"{architecture}.json").read_text())
    assert started["init"]["resolved"] == (
        f"models:/{MODEL_NAME}@champion (version {champion.version})"
    )
    (decision,) = [
        decision
        for decision in json.loads((clone / params.paths.registry).read_text())["decisions"]
        if decision["registered_model"] == MODEL_NAME and not decision["earlier"]
    ]
    assert decision["champion_version"] == champion.version
    now = _client(as_admin).get_model_version_by_alias(MODEL_NAME, "champion")
    if decision["score"] > decision["champion_score"]:
        assert decision["alias"] == "champion" and now.version == decision["version"]
        assert int(now.version) > int(champion.version)
    else:  # not better: the first teammate's champion stays
        assert now.version == champion.version
