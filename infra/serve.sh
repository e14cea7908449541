#!/usr/bin/env bash
# Scheduled retraining on this machine: a Prefect server on loopback, the `gpu` work pool (a
# process pool here), the deployments of prefect.yaml and two workers: in the foreground one
# that runs the pipeline in this working tree, in the background one for the train-model
# jobs of `denoise run --fan-out`, each in a clone of its own. Ctrl-C stops the workers and the
# server. See docs/orchestration.md.
#
# Environment (defaults in brackets):
#   DENOISE_RETRAIN_CRON   the schedule, cron in UTC ["0 3 * * 1": Mondays 03:00]
#   DENOISE_PREFECT_PORT   the server's port [4200]
#   DENOISE_PROJECT_DIR    the clone the worker runs the flow in [this working tree]
#   PREFECT_HOME           the server's database and logs [~/.prefect]
#   DENOISE_ALERT_WEBHOOK_URL  where the alerts POST (flows/alerts.py) [unset: no alerts]
#   DENOISE_MODEL_JOBS     how many train-model jobs run at once [1]
#   DENOISE_JOBS_DIR       where the jobs make their clones [the system's temporary folder]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -d "${VENV:-.venv}/bin" ]; then
    PATH="$(cd "${VENV:-.venv}/bin" && pwd):$PATH"
fi
export PATH
export PREFECT_HOME="${PREFECT_HOME:-$HOME/.prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_CLI_PROMPT=false
export DVC_NO_ANALYTICS=1
port="${DENOISE_PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:${port}/api"
export DENOISE_RETRAIN_CRON="${DENOISE_RETRAIN_CRON:-0 3 * * 1}"
export DENOISE_PROJECT_DIR="${DENOISE_PROJECT_DIR:-$PWD}"

mkdir -p "$PREFECT_HOME"
echo "prefect server on http://127.0.0.1:${port} (log: $PREFECT_HOME/server.log)"
prefect server start --host 127.0.0.1 --port "$port" >>"$PREFECT_HOME/server.log" 2>&1 &
server=$!
models_worker=""
stop_server() {
    for process in $models_worker $server; do
        kill "$process" 2>/dev/null || true
        wait "$process" 2>/dev/null || true
    done
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# The first start migrates the database: slow on a small machine, so wait up to 180 s.
python - "$PREFECT_API_URL/health" <<'PY'
import sys, time, urllib.request

deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"no Prefect server at {sys.argv[1]} after 180 s")
    time.sleep(1)
PY

if prefect work-pool inspect gpu >/dev/null 2>&1; then
    echo "work pool gpu exists"
else
    prefect work-pool create gpu --type process
fi
prefect deploy --all
# The alerts (flows/alerts.py): applied when DENOISE_ALERT_WEBHOOK_URL is set.
python -m flows.alerts
echo "schedule: ${DENOISE_RETRAIN_CRON} (UTC); worker runs flows in ${DENOISE_PROJECT_DIR}"
# The train-model jobs' queue: each job works in a clone of its own, so several may run at once
# (one per GPU). Killed with the server when this script ends.
prefect worker start --pool gpu --work-queue models --limit "${DENOISE_MODEL_JOBS:-1}" &
models_worker=$!
# --limit 1: this worker runs one flow run at a time, so its working tree sees one at a time.
prefect worker start --pool gpu --work-queue default --limit 1
