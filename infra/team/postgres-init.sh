#!/bin/sh
# compose.yaml: on the first start of an empty volume, one login role per service, each owning
# the database of its name and nothing else, none a superuser (as team.sh does). The image's
# superuser `postgres` then loses its password: it logs in over the container's local socket
# alone. Passwords come from the environment (letters, digits and . _ ~ - only).
set -eu
psql -v ON_ERROR_STOP=1 -X -q --username postgres --dbname postgres <<SQL
CREATE ROLE mlflow LOGIN PASSWORD '${DENOISE_TEAM_MLFLOW_DB_PASSWORD}';
CREATE ROLE mlflow_auth LOGIN PASSWORD '${DENOISE_TEAM_MLFLOW_AUTH_DB_PASSWORD}';
CREATE ROLE prefect LOGIN PASSWORD '${DENOISE_TEAM_PREFECT_DB_PASSWORD}';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow_auth;
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE mlflow, mlflow_auth, prefect FROM PUBLIC;
ALTER ROLE postgres PASSWORD NULL;
SQL
