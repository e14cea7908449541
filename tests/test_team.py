"""The team services of infra/team/team.sh, started for real on free loopback ports.

One module fixture runs `team.sh up` (PostgreSQL 15, the S3 store, MLflow with basic auth,
Prefect with an auth string) in a temporary state folder with secrets made up for the run, and
`team.sh down` at the end. A server that cannot be installed or started fails the tests with
its log; nothing here skips.
"""

from __future__ import annotations

import contextlib
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
from repository import STAGES, build_repository, sh
from servers import free_port

TEAM = PROJECT_ROOT / "infra" / "team"
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 240
ALWAYS_RUN = {"preflight", "init"}  # always_changed stages (tests/test_pipeline.py)
# Stages a clone restores from the team's run cache: all but the always_changed ones. Their
# uncached outputs are DVC plots and metrics, which the run cache keeps (dvc.yaml).
RESTORED = set(STAGES) - ALWAYS_RUN
MODEL_NAME = "denoise"  # params.yaml: register.model_name


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

    def database(self, name: str = "mlflow"):  # type: ignore[no-untyped-def]
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1",
            port=int(self.settings["DENOISE_TEAM_POSTGRES_PORT"]),
            user="denoise",
            password=self.settings["DENOISE_TEAM_DB_PASSWORD"],
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
def test_the_worker_polls_the_gpu_pool_with_the_client_settings_alone(team: Team) -> None:
    auth = tuple(team.client["PREFECT_API_AUTH_STRING"].split(":", 1))
    pool = requests.get(f"{team.prefect}/work_pools/gpu", auth=auth, timeout=30)
    assert pool.status_code == 200 and pool.json()["type"] == "process"
    workers = requests.post(
        f"{team.prefect}/work_pools/gpu/workers/filter", json={}, auth=auth, timeout=30
    )
    assert [worker["status"] for worker in workers.json()] == ["ONLINE"]
    # The worker runs users' flows: it holds the client settings and none of the servers'.
    pid = int((Path(team.settings["DENOISE_TEAM_DIR"]) / "worker.pid").read_text())
    names = {
        entry.split(b"=", 1)[0].decode()
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if entry
    }
    assert set(team.client) <= names
    server_only = {
        "DENOISE_TEAM_DB_PASSWORD",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "MLFLOW_BACKEND_STORE_URI",
    }
    assert not names & server_only


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


def _dvc_env(team: Team, log: Path) -> dict[str, str]:
    """The team's MLflow, and a `denoise` first on PATH that notes each stage it runs in log."""
    wrapper = log.parent / f"{log.stem}-bin"
    wrapper.mkdir()
    (wrapper / "denoise").write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(log))}\nexec {BIN / "denoise"} "$@"\n'
    )
    (wrapper / "denoise").chmod(0o755)
    return {
        **team.mlflow_env,
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


@pytest.fixture(scope="module")
def reproduced(team: Team, tmp_path_factory: pytest.TempPathFactory) -> Reproduced:
    """A tiny repository whose remote `team` is committed; then `dvc repro` with only the
    environment pointing at the team MLflow, and `denoise push -r team` (dvc push --run-cache
    with the objects of the run cache's git-kept reports)."""
    folder = tmp_path_factory.mktemp("team-repo")
    root = build_repository(folder / "repo")
    _add_team_remote(team, root)
    sh("git", "add", ".dvc/config", cwd=root)
    sh("git", "commit", "-qm", "the team remote", cwd=root)
    env = _dvc_env(team, folder / "stages.log")
    sh("dvc", "repro", cwd=root, env=env)
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
    sh("dvc", "repro", "--pull", cwd=clone, env=env)
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
    versions = _client(as_admin).search_model_versions(f"name = '{MODEL_NAME}'")
    other = next(version.version for version in versions if version.version != champion.version)
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
    connection = [
        "-h",
        "127.0.0.1",
        "-p",
        as_admin.settings["DENOISE_TEAM_POSTGRES_PORT"],
        "-U",
        "denoise",
    ]
    env = {"PGPASSWORD": as_admin.settings["DENOISE_TEAM_DB_PASSWORD"]}
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
    with contextlib.closing(as_admin.database("postgres")) as admin, admin.cursor() as cursor:
        cursor.execute("DROP DATABASE mlflow WITH (FORCE)")
        cursor.execute("CREATE DATABASE mlflow")
    assert _query(as_admin, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    sh(str(pg_bin / "pg_restore"), *connection, "-d", "mlflow", str(dump), cwd=tmp_path, env=env)
    assert _snapshot(as_admin) == before
