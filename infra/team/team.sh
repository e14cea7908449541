#!/usr/bin/env bash
# The team's shared services as plain processes on loopback: PostgreSQL 15 (MLflow's tracking
# and auth databases, Prefect's database, each with a login role of its own), an S3-compatible
# object store (`rclone serve s3`, objects on disk, the team's keys checked), an MLflow server
# with basic auth and proxied artifacts in the store, a Prefect server with an auth string, the
# alerts of flows/alerts.py (with DENOISE_ALERT_WEBHOOK_URL), and a Prefect worker on the `gpu`
# pool that holds the client settings of an MLflow user of its own.
# compose.yaml beside this file runs the same MLflow, Prefect and worker command lines on a
# Docker host. See docs/team.md.
#
#   infra/team/team.sh init           write .env with generated secrets (mode 600; never over one)
#   infra/team/team.sh up             start every service (each waits, bounded, until it answers)
#   infra/team/team.sh down           stop every service; safe to run twice
#   infra/team/team.sh add-user NAME  a teammate's MLflow user: print the lines to hand over
#   infra/team/team.sh grant NAME     give an existing MLflow user what a pipeline run needs
#   infra/team/team.sh setup-mlflow   (compose.yaml) the experiment, models and worker user
#   infra/team/team.sh env            print the admin's client settings as `export` lines
#   infra/team/team.sh commands       print the MLflow, Prefect and worker command lines
#
# Settings and secrets come from the environment, else from the untracked .env at the
# repository root (DENOISE_TEAM_ENV_FILE; example.env lists them). The state (databases,
# objects, logs, pid files) is under DENOISE_TEAM_DIR [.team]. The worker runs flow runs in
# DENOISE_PROJECT_DIR [this working tree].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

env_file="${DENOISE_TEAM_ENV_FILE:-.env}"
# The secrets init generates and up checks (the Prefect auth string: its password part).
GENERATED=(DENOISE_TEAM_MLFLOW_DB_PASSWORD DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD
    DENOISE_TEAM_PREFECT_DB_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY PREFECT_SERVER_API_AUTH_STRING
    DENOISE_TEAM_WORKER_MLFLOW_PASSWORD)
MIN_LENGTH=16
# The worker's MLflow user.
WORKER_MLFLOW_USER=denoise-worker

fail() {
    echo "error: $*" >&2
    exit 2
}

init() {
    # Every change-me of example.env becomes 32 random letters and digits (URL-safe, and no
    # leading "-" for command-line tools).
    if [ -e "$env_file" ]; then
        fail "$env_file exists: team.sh init never overwrites it (move it away to start afresh)"
    fi
    (
        umask 077
        set -o noclobber
        python - infra/team/example.env >"$env_file" <<'PY'
import re, secrets, string, sys

alphabet = string.ascii_letters + string.digits
for line in open(sys.argv[1]).read().splitlines():
    if not line.startswith("#"):
        line = re.sub(
            "change-me", lambda _: "".join(secrets.choice(alphabet) for _ in range(32)), line
        )
    print(line)
PY
    )
    echo "wrote $env_file (mode 600) with generated secrets; start the services: make team-up"
}

load_env_file() {
    # load_env_file COMMAND: every command but `down` (which needs no secret, and must always
    # work) refuses a file that group or others may read or change.
    [ -f "$env_file" ] || return 0
    local mode
    mode="$(stat -c %a "$env_file")"
    if [ "$1" != down ] && [ $((8#$mode & 8#077)) -ne 0 ]; then
        fail "$env_file (mode $mode) can be read by others: chmod 600 $env_file"
    fi
    # Values already in the environment win over the file.
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'*) continue ;; esac
        name="${line%%=*}"
        if [ -z "${!name+set}" ]; then export "$line"; fi
    done <"$env_file"
}

if [ -d "${VENV:-.venv}/bin" ]; then
    PATH="$(cd "${VENV:-.venv}/bin" && pwd):$PATH"
fi
export PATH DVC_NO_ANALYTICS=1
case "${1:-}" in
    init)
        init
        exit 0
        ;;
    commands) ;;
    *) load_env_file "${1:-}" ;;
esac

state="${DENOISE_TEAM_DIR:-.team}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
pg_port="${DENOISE_TEAM_POSTGRES_PORT:-5432}"
s3_port="${DENOISE_TEAM_S3_PORT:-9000}"
mlflow_port="${DENOISE_TEAM_MLFLOW_PORT:-5000}"
prefect_port="${DENOISE_TEAM_PREFECT_PORT:-4200}"
bucket="${DENOISE_TEAM_BUCKET:-denoise}"
pg_bin="${DENOISE_TEAM_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
start_timeout="${DENOISE_TEAM_START_TIMEOUT:-180}"
project="${DENOISE_PROJECT_DIR:-$root}"
# Where team.sh runs as root, the system user the worker (and so every flow run) runs as.
worker_system_user="${DENOISE_TEAM_WORKER_USER:-denoise-worker}"

# The command lines compose.yaml runs too (tests/test_team.py compares them); every other
# setting reaches the servers through the environment.
MLFLOW_COMMAND=(mlflow server --app-name basic-auth --workers 1)
PREFECT_COMMAND=(prefect server start)
# --limit 1: one flow run at a time per worker, as DVC holds one lock per working tree.
WORKER_COMMAND=(prefect worker start --pool gpu --type process --limit 1)

need() {
    local name
    for name in "$@"; do
        if [ -z "${!name:-}" ]; then
            fail "$name is not set: run infra/team/team.sh init (make team-init), or put it in" \
                "the environment or in $env_file (infra/team/example.env lists the settings)"
        fi
    done
}

check_secrets() {
    # Refuse example.env's placeholders and short secrets, one line naming the setting.
    local name value
    need MLFLOW_AUTH_ADMIN_USERNAME "${GENERATED[@]}"
    for name in "${GENERATED[@]}"; do
        value="${!name}"
        if [ "$name" = PREFECT_SERVER_API_AUTH_STRING ]; then
            [[ "$value" == *:* ]] || fail "$name must be user:password"
            value="${value#*:}"
        fi
        if [[ "$value" == *change-me* ]]; then
            fail "$name is still example.env's placeholder: run infra/team/team.sh init" \
                "(make team-init) for generated secrets, or set one of your own"
        fi
        if [ "${#value}" -lt "$MIN_LENGTH" ]; then
            fail "$name is shorter than $MIN_LENGTH characters: run infra/team/team.sh" \
                "init (make team-init) for generated secrets, or set a longer one"
        fi
    done
    # Passwords and keys that go into connection URLs and rclone's key list unescaped.
    for name in DENOISE_TEAM_MLFLOW_DB_PASSWORD DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD \
        DENOISE_TEAM_PREFECT_DB_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
        if ! [[ "${!name}" =~ ^[A-Za-z0-9._~-]+$ ]]; then
            fail "$name may hold only letters, digits and . _ ~ - (it goes into URLs)"
        fi
    done
}

server_env() {
    check_secrets
    local database="postgresql+psycopg2://mlflow:${DENOISE_TEAM_MLFLOW_DB_PASSWORD}@127.0.0.1:${pg_port}"
    export MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:${s3_port}"
    export MLFLOW_HOST=127.0.0.1 MLFLOW_PORT="$mlflow_port"
    export MLFLOW_BACKEND_STORE_URI="${database}/mlflow"
    export MLFLOW_ARTIFACTS_DESTINATION="s3://${bucket}/mlflow"
    export MLFLOW_AUTH_CONFIG_PATH="$state/mlflow-auth.ini"
    # No background job runner (huey consumers for GenAI features): tracking and the registry
    # do not use it.
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
    export PREFECT_HOME="$state/prefect"
    export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$prefect_port"
    export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect:${DENOISE_TEAM_PREFECT_DB_PASSWORD}@127.0.0.1:${pg_port}/prefect"
    export PREFECT_SERVER_ANALYTICS_ENABLED=false
    export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
}

as_postgres() {
    # initdb and postgres refuse to run as root.
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

wait_http() {
    # wait_http NAME URL PROCESS [AUTH|any]: poll URL until it answers 200, at most
    # start_timeout seconds, while PROCESS (its pid file and log in the state folder) runs; a
    # PROCESS that exits is reported at once with the seconds since its start and its log's
    # last lines. With `any`, any HTTP answer will do (the object store answers an anonymous
    # request 400). With AUTH (a Prefect auth string), POST {} to URL, a workers filter, until
    # it lists a worker online.
    python - "$1" "$2" "$state/$3" "$start_timeout" "${4:-}" <<'PY'
import base64, json, os, sys, time, urllib.error, urllib.request

name, url, stem, auth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
timeout = float(sys.argv[4])
log, pid = f"{stem}.log", int(open(f"{stem}.pid").read())
started = float(open(f"{stem}.started").read())
request = urllib.request.Request(url)
if auth and auth != "any":
    request = urllib.request.Request(
        url, data=b"{}", method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()},
    )


def running() -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def tail() -> str:
    lines = open(log, errors="replace").read().splitlines()[-20:]
    return f"; last lines of {log}:\n" + "\n".join(lines)


deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if not running():
        sys.exit(f"error: {name} exited {time.time() - started:.1f} s after it started{tail()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            online = auth in ("", "any") or any(
                item["status"] == "ONLINE" for item in json.load(response)
            )
            if response.status == 200 and online:
                sys.exit(0)
    except urllib.error.HTTPError:
        if auth == "any":
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"error: {name} did not answer at {url} within {timeout:g} s{tail()}")
PY
}

# What this call of `up` started, stopped again when it fails.
started=()

start_process() {
    # start_process NAME COMMAND...: in a process group of its own, output in NAME.log.
    local name="$1"
    shift
    if [ -f "$state/$name.pid" ] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
        echo "$name is running (pid $(cat "$state/$name.pid"))"
        return 0
    fi
    date +%s.%N >"$state/$name.started"
    setsid "$@" >>"$state/$name.log" 2>&1 </dev/null &
    echo $! >"$state/$name.pid"
    started+=("$name")
}

stop_process() {
    local name="$1" pid
    [ -f "$state/$name.pid" ] || return 0
    pid="$(cat "$state/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$state/$name.pid"
    echo "$name stopped"
}

postgres_stop() {
    if [ -f "$state/postgres/PG_VERSION" ] \
        && as_postgres "$pg_bin/pg_ctl" -D "$state/postgres" status >/dev/null 2>&1; then
        as_postgres "$pg_bin/pg_ctl" -D "$state/postgres" -m fast -w -t 60 stop >/dev/null
        echo "postgres stopped"
    fi
}

postgres_up() {
    local data="$state/postgres" sockets="$state/postgres-run"
    if [ ! -x "$pg_bin/initdb" ]; then
        infra/apt-install.sh postgresql "PostgreSQL cannot start"
    fi
    if [ ! -x "$pg_bin/initdb" ]; then
        fail "PostgreSQL 15 is not installed ($pg_bin/initdb missing):" \
            "apt-get install postgresql, or set DENOISE_TEAM_POSTGRES_BIN"
    fi
    mkdir -p "$data" "$sockets"
    touch "$state/postgres.log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$data" "$sockets" "$state/postgres.log"
        if ! runuser -u postgres -- test -w "$data"; then
            fail "the postgres user cannot reach $data: every folder above it must be" \
                "searchable by others (chmod o+x), or set DENOISE_TEAM_DIR elsewhere"
        fi
    fi
    chmod 700 "$data" "$sockets"
    if [ ! -f "$data/PG_VERSION" ]; then
        # The superuser is the system user that runs the server (postgres as root), with no
        # password: it logs in over the local socket alone, and only team.sh uses it.
        as_postgres "$pg_bin/initdb" -D "$data" --auth-host=scram-sha-256 --auth-local=peer \
            -E UTF8 --locale=C.UTF-8 >>"$state/postgres.log" 2>&1
    fi
    if as_postgres "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres is running"
    else
        started+=(postgres)
        as_postgres "$pg_bin/pg_ctl" -D "$data" -l "$state/postgres.log" -w -t "$start_timeout" \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $sockets" start >/dev/null
    fi
    # One login role per service, owning its database alone, none a superuser; the passwords
    # are set on every start (rotation: change .env, team-down, team-up). They reach psql on
    # its standard input, never its command line.
    local role password
    {
        echo '\set ON_ERROR_STOP on'
        echo 'SET log_statement = none;'
        for role in mlflow mlflow_auth prefect; do
            case "$role" in
                mlflow) password="$DENOISE_TEAM_MLFLOW_DB_PASSWORD" ;;
                mlflow_auth) password="$DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD" ;;
                prefect) password="$DENOISE_TEAM_PREFECT_DB_PASSWORD" ;;
            esac
            cat <<SQL
SELECT 'CREATE ROLE $role' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')\gexec
ALTER ROLE $role WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD '$password';
SELECT 'CREATE DATABASE $role OWNER $role'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$role')\gexec
ALTER DATABASE $role OWNER TO $role;
REVOKE ALL ON DATABASE $role FROM PUBLIC;
SQL
        done
    } | as_postgres "$pg_bin/psql" -X -q -h "$sockets" -p "$pg_port" -d postgres \
        >>"$state/postgres.log" 2>&1 || fail "PostgreSQL: setting up the roles failed; see" \
        "$state/postgres.log"
    echo "postgres on 127.0.0.1:$pg_port (databases mlflow, mlflow_auth, prefect, each with" \
        "its own role)"
}

s3_up() {
    # rclone's S3 server on a folder: each top-level folder is a bucket. The keys reach it in
    # its environment (RCLONE_AUTH_KEY, one CSV field), never its command line.
    local objects="$state/objects"
    (umask 077 && mkdir -p "$objects/$bucket")
    local umask_was
    umask_was="$(umask)"
    umask 077
    export RCLONE_CONFIG=/dev/null RCLONE_AUTH_KEY="\"$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY\""
    start_process s3 rclone serve s3 --addr "127.0.0.1:${s3_port}" "$objects"
    unset RCLONE_CONFIG RCLONE_AUTH_KEY
    umask "$umask_was"
    wait_http "S3 store" "http://127.0.0.1:${s3_port}/" s3 any
    echo "S3 store (rclone serve s3) on http://127.0.0.1:$s3_port, bucket $bucket in $objects"
}

mlflow_up() {
    (
        umask 077
        cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://mlflow_auth:${DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD}@127.0.0.1:${pg_port}/mlflow_auth
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    )
    start_process mlflow "${MLFLOW_COMMAND[@]}"
    wait_http "MLflow server" "http://127.0.0.1:${mlflow_port}/health" mlflow
    # The experiment and registered models exist before anyone runs the pipeline (a non-admin
    # asking for a model that does not exist is answered 403), and the worker has its user.
    mlflow_admin setup "$WORKER_MLFLOW_USER"
    echo "mlflow on http://127.0.0.1:$mlflow_port (basic auth; worker user $WORKER_MLFLOW_USER)"
}

mlflow_admin() {
    # mlflow_admin setup|add-user|grant USER: as the MLflow admin, make the experiment and the
    # registered models of params.yaml (setup), a user (add-user, password generated, printed
    # on stdout), and grant USER what a pipeline run needs: EDIT on the experiment, MANAGE on
    # the registered models. Passwords travel in the environment.
    MLFLOW_TRACKING_URI="http://127.0.0.1:${mlflow_port}" \
        MLFLOW_TRACKING_USERNAME="$MLFLOW_AUTH_ADMIN_USERNAME" \
        MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" \
        DENOISE_USER_PASSWORD="${DENOISE_TEAM_WORKER_MLFLOW_PASSWORD:-}" \
        MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 \
        python - "$1" "$2" params.yaml <<'PY'
import base64, json, os, re, secrets, string, sys, urllib.error, urllib.parse, urllib.request

import yaml

action, user, params_path = sys.argv[1:4]
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", user):
    sys.exit(f"error: {user!r} is not a user name: letters, digits and . _ - (at most 64)")
params = yaml.safe_load(open(params_path))
experiment_name = params["tracking"]["experiment"]
models = [params["register"]["model_name"], params["register"]["video_model_name"]]
uri = os.environ["MLFLOW_TRACKING_URI"]
admin = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
headers = {
    "Authorization": "Basic " + base64.b64encode(admin.encode()).decode(),
    "Content-Type": "application/json",
}


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}".splitlines()[0][:300])
        self.status, self.code = status, code


def call(method: str, path: str, body: dict | None = None, **query: str) -> dict:
    url = f"{uri}/api/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            payload = json.loads(error.read())
        except ValueError:
            payload = {}
        raise Refused(error.code, payload.get("error_code", ""), payload.get("message", ""))


def found(method: str, path: str, **query: str) -> dict | None:
    try:
        return call(method, path, **query)
    except Refused as error:
        if error.status == 404:
            return None
        raise


def grant(resource_type: str, resource_id: str, permission: str) -> None:
    body = {"username": user, "resource_type": resource_type, "resource_id": resource_id}
    try:
        call("POST", "3.0/mlflow/users/permissions/grant", {**body, "permission": permission})
    except Refused as error:
        if error.code != "RESOURCE_ALREADY_EXISTS":
            raise
        call("POST", "3.0/mlflow/users/permissions/revoke", body)
        call("POST", "3.0/mlflow/users/permissions/grant", {**body, "permission": permission})


try:
    experiment = found("GET", "2.0/mlflow/experiments/get-by-name", experiment_name=experiment_name)
    if experiment is None:
        experiment_id = call("POST", "2.0/mlflow/experiments/create", {"name": experiment_name})[
            "experiment_id"
        ]
    else:
        experiment_id = experiment["experiment"]["experiment_id"]
    for model in models:
        if found("GET", "2.0/mlflow/registered-models/get", name=model) is None:
            call("POST", "2.0/mlflow/registered-models/create", {"name": model})
    password = os.environ["DENOISE_USER_PASSWORD"]
    if action == "add-user":
        alphabet = string.ascii_letters + string.digits
        password = "".join(secrets.choice(alphabet) for _ in range(32))
    exists = found("GET", "2.0/mlflow/users/get", username=user) is not None
    credentials = {"username": user, "password": password}
    if action == "add-user" and exists:
        sys.exit(f"error: MLflow user {user} exists: infra/team/team.sh grant {user} gives it what "
                 "a pipeline run needs")
    if action == "grant" and not exists:
        sys.exit(f"error: no MLflow user {user}: infra/team/team.sh add-user {user} makes one")
    if action == "setup" and exists:
        call("PATCH", "2.0/mlflow/users/update-password", credentials)
    elif action != "grant":
        call("POST", "2.0/mlflow/users/create", credentials)
    grant("experiment", experiment_id, "EDIT")
    for model in models:
        grant("registered_model", model, "MANAGE")
except (Refused, OSError) as error:
    sys.exit(f"error: MLflow at {uri}: {error}")
if action == "add-user":
    print(password)
PY
}

prefect_up() {
    mkdir -p "$PREFECT_HOME"
    start_process prefect "${PREFECT_COMMAND[@]}"
    wait_http "Prefect server" "http://127.0.0.1:${prefect_port}/api/health" prefect
    echo "prefect on http://127.0.0.1:$prefect_port (auth string)"
}

# The worker's command prefix: as root, setpriv to the worker's system user (it execs, so the
# pid file names the worker itself).
as_user=()

worker_user() {
    # Checked before anything starts: the system user exists, and can run this environment.
    mkdir -p "$state/worker"
    if [ "$(id -u)" -eq 0 ] && [ "$worker_system_user" != root ]; then
        if ! id -u "$worker_system_user" >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$worker_system_user"
        fi
        as_user=(setpriv --reuid="$worker_system_user" --regid="$worker_system_user"
            --init-groups --inh-caps=-all --)
        if ! "${as_user[@]}" env -i "$(command -v python)" -c '' 2>/dev/null; then
            fail "the worker's system user $worker_system_user cannot run" \
                "$(command -v python): install the environment where other users can read it," \
                "or set DENOISE_TEAM_WORKER_USER=root (flow runs then run as root)"
        fi
        if ! "${as_user[@]}" test -w "$project"; then
            echo "warning: the worker's system user $worker_system_user cannot write" \
                "$project: its flow runs there will fail (chown -R $worker_system_user a clone" \
                "and set DENOISE_PROJECT_DIR to it)" >&2
        fi
    fi
}

worker_up() {
    # A client like any other: the client settings with the worker's own MLflow user, none of
    # the servers' secrets (env -i), and the few runtime settings a GPU host sets for its jobs.
    # As root it runs as an unprivileged system user (setpriv execs: the pid file names the
    # worker itself).
    local passed=() name home="$state/worker"
    for name in LANG TMPDIR KERAS_BACKEND CUDA_VISIBLE_DEVICES XLA_FLAGS; do
        if [ -n "${!name:-}" ]; then passed+=("$name=${!name}"); fi
    done
    MLFLOW_TRACKING_USERNAME="$WORKER_MLFLOW_USER" \
        MLFLOW_TRACKING_PASSWORD="$DENOISE_TEAM_WORKER_MLFLOW_PASSWORD" client_settings
    if [ "${#as_user[@]}" -gt 0 ]; then
        chown -R "$worker_system_user": "$home"
    else
        passed+=("HOME=${HOME:-$home}")
    fi
    start_process worker "${as_user[@]}" env -i PATH="$PATH" DVC_NO_ANALYTICS=1 \
        HOME="$home" PREFECT_HOME="$home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        DENOISE_PROJECT_DIR="$project" "${passed[@]}" "${client[@]}" "${WORKER_COMMAND[@]}"
    wait_http "worker online in the gpu pool" \
        "http://127.0.0.1:${prefect_port}/api/work_pools/gpu/workers/filter" worker \
        "$PREFECT_SERVER_API_AUTH_STRING"
    echo "worker on the gpu pool (process type, one flow run at a time, MLflow user" \
        "$WORKER_MLFLOW_USER), in $project"
}

alerts_up() {
    # The Prefect automations of flows/alerts.py, as a client; without a webhook URL it says
    # so and applies nothing.
    mkdir -p "$state/alerts"
    env -i PATH="$PATH" HOME="${HOME:-/root}" PREFECT_HOME="$state/alerts" \
        PREFECT_API_URL="http://127.0.0.1:${prefect_port}/api" \
        PREFECT_API_AUTH_STRING="$PREFECT_SERVER_API_AUTH_STRING" \
        DENOISE_ALERT_WEBHOOK_URL="${DENOISE_ALERT_WEBHOOK_URL:-}" \
        python -m flows.alerts --params params.yaml
}

stop_started() {
    # After a failed up: stop what this call started, in reverse order.
    local index name
    for ((index = ${#started[@]} - 1; index >= 0; index--)); do
        name="${started[$index]}"
        if [ "$name" = postgres ]; then postgres_stop; else stop_process "$name"; fi
    done >&2
}

up() {
    server_env
    worker_user
    trap 'status=$?; if [ "$status" -ne 0 ]; then stop_started; fi' EXIT
    postgres_up
    s3_up
    mlflow_up
    prefect_up
    alerts_up
    worker_up
    trap - EXIT
    echo "logs in $state; clients: eval \"\$(infra/team/team.sh env)\" (docs/team.md)"
}

down() {
    stop_process worker
    stop_process prefect
    stop_process mlflow
    stop_process s3
    postgres_stop
}

client_settings() {
    # The settings every client (and the worker) needs, as NAME=VALUE words in `client`.
    need MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD PREFECT_SERVER_API_AUTH_STRING \
        AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    client=(
        MLFLOW_TRACKING_URI="http://127.0.0.1:${mlflow_port}"
        MLFLOW_TRACKING_USERNAME="${MLFLOW_TRACKING_USERNAME:-$MLFLOW_AUTH_ADMIN_USERNAME}"
        MLFLOW_TRACKING_PASSWORD="${MLFLOW_TRACKING_PASSWORD:-$MLFLOW_AUTH_ADMIN_PASSWORD}"
        PREFECT_API_URL="http://127.0.0.1:${prefect_port}/api"
        PREFECT_API_AUTH_STRING="$PREFECT_SERVER_API_AUTH_STRING"
        DENOISE_TEAM_S3_ENDPOINT="http://127.0.0.1:${s3_port}"
        DENOISE_TEAM_BUCKET="$bucket"
        AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
        AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
    )
}

client_env() {
    local setting
    client_settings
    for setting in "${client[@]}"; do
        printf 'export %s=%q\n' "${setting%%=*}" "${setting#*=}"
    done
}

add_user() {
    # A teammate's MLflow user: the lines to hand over (their MLflow user, and the shared
    # Prefect auth string and store keys, docs/team.md "Security model").
    local user="${1:?usage: team.sh add-user NAME}" password
    password="$(mlflow_admin add-user "$user")"
    MLFLOW_TRACKING_USERNAME="$user" MLFLOW_TRACKING_PASSWORD="$password" client_env
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) client_env ;;
    add-user) add_user "${2:-}" ;;
    setup-mlflow)
        # compose.yaml's services: the experiment, the models and the worker's MLflow user.
        check_secrets
        mlflow_admin setup "$WORKER_MLFLOW_USER"
        ;;
    grant)
        mlflow_admin grant "${2:?usage: team.sh grant NAME}"
        echo "MLflow user $2: EDIT on the experiment, MANAGE on the registered models"
        ;;
    commands)
        echo "${MLFLOW_COMMAND[*]}"
        echo "${PREFECT_COMMAND[*]}"
        echo "${WORKER_COMMAND[*]}"
        ;;
    *)
        echo "usage: $0 init|up|down|add-user NAME|grant NAME|setup-mlflow|env|commands" >&2
        exit 2
        ;;
esac
