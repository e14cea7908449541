#!/usr/bin/env bash
# The serving image's entry point (infra/serving/Dockerfile), and a host's the same way:
# `mlflow models serve` of MODEL_URI from MLFLOW_TRACKING_URI in this environment.
#
# Environment (defaults in brackets):
#   MLFLOW_TRACKING_URI  the tracking server (required); MLFLOW_TRACKING_USERNAME and
#                        MLFLOW_TRACKING_PASSWORD for a server with logins
#   MODEL_URI            [models:/denoise@champion]
#   HOST, PORT           [127.0.0.1, 8080]; the image listens on 0.0.0.0
#   WORKERS              [1] uvicorn workers, each with its own copy of the model
set -euo pipefail
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
    echo "error: MLFLOW_TRACKING_URI is not set: point it at the tracking server" >&2
    exit 2
fi
exec mlflow models serve -m "${MODEL_URI:-models:/denoise@champion}" --env-manager local \
    --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" --workers "${WORKERS:-1}"
