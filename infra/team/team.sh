#!/usr/bin/env bash
# The team's shared services as plain processes on loopback: PostgreSQL 15 (MLflow's tracking
# and auth databases, Prefect's database), an S3-compatible object store (moto's emulator),
# an MLflow server with basic auth and proxied artifacts in the store, a Prefect server with an
# auth string, the alerts of flows/alerts.py (with DENOISE_ALERT_WEBHOOK_URL), and a Prefect
# worker on the `gpu` pool that sees only the client settings.
# compose.yaml beside this file runs the same MLflow, Prefect and worker command lines on a
# Docker host. See docs/team.md.
#
#   infra/team/team.sh up        start every service (each waits, bounded, until it answers)
#   infra/team/team.sh down      stop every service; safe to run twice
#   infra/team/team.sh env       print the client settings as `export` lines (eval them)
#   infra/team/team.sh commands  print the MLflow, Prefect and worker command lines, one a line
#
# Settings and secrets come from the environment, else from the untracked .env at the
# repository root (example.env lists them). The state (databases, objects, logs, pid files) is
# under DENOISE_TEAM_DIR [.team]. The worker runs flow runs in DENOISE_PROJECT_DIR [this
# working tree].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

if [ -f .env ]; then
    # Values already in the environment win over the file.
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'*) continue ;; esac
        name="${line%%=*}"
        if [ -z "${!name+set}" ]; then export "$line"; fi
    done <.env
fi
if [ -d "${VENV:-.venv}/bin" ]; then
    PATH="$(cd "${VENV:-.venv}/bin" && pwd):$PATH"
fi
export PATH DVC_NO_ANALYTICS=1

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
            echo "error: $name is not set: put it in the environment or in .env" \
                "(infra/team/example.env lists the settings)" >&2
            exit 2
        fi
    done
}

url_safe() {
    # A password that goes into a connection URL unescaped.
    if ! [[ "${!1}" =~ ^[A-Za-z0-9._~-]+$ ]]; then
        echo "error: $1 may hold only letters, digits and . _ ~ - (it goes into URLs)" >&2
        exit 2
    fi
}

server_env() {
    need DENOISE_TEAM_DB_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
        MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY \
        PREFECT_SERVER_API_AUTH_STRING
    url_safe DENOISE_TEAM_DB_PASSWORD
    local database="postgresql+psycopg2://denoise:${DENOISE_TEAM_DB_PASSWORD}@127.0.0.1:${pg_port}"
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
    export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://denoise:${DENOISE_TEAM_DB_PASSWORD}@127.0.0.1:${pg_port}/prefect"
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
    # wait_http NAME URL PROCESS [AUTH]: poll URL until it answers 200, at most start_timeout
    # seconds, while PROCESS (its pid file and log in the state folder) runs. With AUTH (a
    # Prefect auth string), POST {} to URL, a workers filter, until it lists a worker online.
    python - "$1" "$2" "$state/$3" "$start_timeout" "${4:-}" <<'PY'
import base64, json, os, sys, time, urllib.request

name, url, stem, auth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
timeout = float(sys.argv[4])
log, pid = f"{stem}.log", int(open(f"{stem}.pid").read())
request = urllib.request.Request(url)
if auth:
    request = urllib.request.Request(
        url, data=b"{}", method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()},
    )
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            online = not auth or any(item["status"] == "ONLINE" for item in json.load(response))
            if response.status == 200 and online:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
tail = open(log, errors="replace").read().splitlines()[-20:]
sys.exit(f"error: {name} did not answer at {url} within {timeout:g} s; log {log}:\n" + "\n".join(tail))
PY
}

start_process() {
    # start_process NAME COMMAND...: in a process group of its own, output in NAME.log.
    local name="$1"
    shift
    if [ -f "$state/$name.pid" ] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
        echo "$name is running (pid $(cat "$state/$name.pid"))"
        return 1
    fi
    setsid "$@" >>"$state/$name.log" 2>&1 </dev/null &
    echo $! >"$state/$name.pid"
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

postgres_up() {
    local data="$state/postgres" sockets="$state/postgres-run"
    if [ ! -x "$pg_bin/initdb" ]; then
        infra/apt-install.sh postgresql "PostgreSQL cannot start"
    fi
    if [ ! -x "$pg_bin/initdb" ]; then
        echo "error: PostgreSQL 15 is not installed ($pg_bin/initdb missing):" \
            "apt-get install postgresql, or set DENOISE_TEAM_POSTGRES_BIN" >&2
        exit 1
    fi
    mkdir -p "$data" "$sockets"
    touch "$state/postgres.log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$data" "$sockets" "$state/postgres.log"
        if ! runuser -u postgres -- test -w "$data"; then
            echo "error: the postgres user cannot reach $data: every folder above it must be" \
                "searchable by others (chmod o+x), or set DENOISE_TEAM_DIR elsewhere" >&2
            exit 1
        fi
    fi
    chmod 700 "$data"
    if [ ! -f "$data/PG_VERSION" ]; then
        local password_file="$state/postgres-run/initdb-password"
        (umask 077 && printf '%s\n' "$DENOISE_TEAM_DB_PASSWORD" >"$password_file")
        [ "$(id -u)" -ne 0 ] || chown postgres: "$password_file"
        # The superuser is `denoise`, password-protected on TCP; the socket is for its owner.
        as_postgres "$pg_bin/initdb" -D "$data" -U denoise --pwfile="$password_file" \
            --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 \
            >>"$state/postgres.log" 2>&1
        rm -f "$password_file"
    fi
    if as_postgres "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres is running"
    else
        as_postgres "$pg_bin/pg_ctl" -D "$data" -l "$state/postgres.log" -w -t "$start_timeout" \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $sockets" start >/dev/null
    fi
    PGPASSWORD="$DENOISE_TEAM_DB_PASSWORD" python - "$pg_port" <<'PY'
import os, sys, psycopg2

connection = psycopg2.connect(
    host="127.0.0.1", port=int(sys.argv[1]), user="denoise",
    password=os.environ["PGPASSWORD"], dbname="postgres", connect_timeout=10,
)
connection.autocommit = True
with connection.cursor() as cursor:
    for name in ("mlflow", "mlflow_auth", "prefect"):
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
PY
    echo "postgres on 127.0.0.1:$pg_port (databases mlflow, mlflow_auth, prefect)"
}

s3_up() {
    if start_process s3 moto_server -H 127.0.0.1 -p "$s3_port"; then :; fi
    wait_http "S3 store" "http://127.0.0.1:${s3_port}/moto-api/" s3
    python - "$MLFLOW_S3_ENDPOINT_URL" "$bucket" <<'PY'
import sys, boto3

s3 = boto3.client("s3", endpoint_url=sys.argv[1])
if sys.argv[2] not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
    s3.create_bucket(Bucket=sys.argv[2])
PY
    echo "S3 store (moto emulator) on http://127.0.0.1:$s3_port, bucket $bucket"
}

mlflow_up() {
    (
        umask 077
        cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://denoise:${DENOISE_TEAM_DB_PASSWORD}@127.0.0.1:${pg_port}/mlflow_auth
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    )
    if start_process mlflow "${MLFLOW_COMMAND[@]}"; then :; fi
    wait_http "MLflow server" "http://127.0.0.1:${mlflow_port}/health" mlflow
    echo "mlflow on http://127.0.0.1:$mlflow_port (basic auth)"
}

prefect_up() {
    mkdir -p "$PREFECT_HOME"
    if start_process prefect "${PREFECT_COMMAND[@]}"; then :; fi
    wait_http "Prefect server" "http://127.0.0.1:${prefect_port}/api/health" prefect
    echo "prefect on http://127.0.0.1:$prefect_port (auth string)"
}

worker_up() {
    # A client like any other: the client settings, none of the servers' secrets (env -i), and
    # the few runtime settings a GPU host sets for its jobs.
    local passed=() name
    for name in HOME LANG TMPDIR KERAS_BACKEND CUDA_VISIBLE_DEVICES XLA_FLAGS; do
        if [ -n "${!name:-}" ]; then passed+=("$name=${!name}"); fi
    done
    client_settings
    mkdir -p "$state/worker"
    if start_process worker env -i PATH="$PATH" DVC_NO_ANALYTICS=1 \
        PREFECT_HOME="$state/worker" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        DENOISE_PROJECT_DIR="${DENOISE_PROJECT_DIR:-$root}" "${passed[@]}" "${client[@]}" \
        "${WORKER_COMMAND[@]}"; then :; fi
    wait_http "worker online in the gpu pool" \
        "http://127.0.0.1:${prefect_port}/api/work_pools/gpu/workers/filter" worker \
        "$PREFECT_SERVER_API_AUTH_STRING"
    echo "worker on the gpu pool (process type, one flow run at a time)," \
        "in ${DENOISE_PROJECT_DIR:-$root}"
}

alerts_up() {
    # The Prefect automations of flows/alerts.py, as a client; without a webhook URL it says
    # so and applies nothing.
    client_settings
    mkdir -p "$state/worker"
    env -i PATH="$PATH" HOME="${HOME:-/root}" PREFECT_HOME="$state/worker" \
        DENOISE_ALERT_WEBHOOK_URL="${DENOISE_ALERT_WEBHOOK_URL:-}" "${client[@]}" \
        python -m flows.alerts --params params.yaml
}

up() {
    server_env
    postgres_up
    s3_up
    mlflow_up
    prefect_up
    alerts_up
    worker_up
    echo "logs in $state; clients: eval \"\$(infra/team/team.sh env)\" (docs/team.md)"
}

down() {
    stop_process worker
    stop_process prefect
    stop_process mlflow
    stop_process s3
    if [ -f "$state/postgres/PG_VERSION" ] \
        && as_postgres "$pg_bin/pg_ctl" -D "$state/postgres" status >/dev/null 2>&1; then
        as_postgres "$pg_bin/pg_ctl" -D "$state/postgres" -m fast -w -t 60 stop >/dev/null
        echo "postgres stopped"
    fi
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

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) client_env ;;
    commands)
        echo "${MLFLOW_COMMAND[*]}"
        echo "${PREFECT_COMMAND[*]}"
        echo "${WORKER_COMMAND[*]}"
        ;;
    *)
        echo "usage: $0 up|down|env|commands" >&2
        exit 2
        ;;
esac
