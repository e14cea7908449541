-- compose.yaml: the databases team.sh creates, on the first start of an empty volume.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
