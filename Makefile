# One command for the pipeline (make run), one for the tests (make test). Each sets up what it
# needs (virtual environment, install, sample videos) and is safe to run again.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
# Test processes (pytest-xdist), each running whole modules: the suite mostly waits on
# subprocess chains and servers (one busy core on average), so two workers suit two cores.
TEST_WORKERS ?= 2

.PHONY: setup remote samples run serve ui push pull team-up team-down test test-fast lint lineage plots-template screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The default DVC remote is ../denoise-dvc-remote (beside the working tree); set
# DENOISE_DVC_REMOTE to put it elsewhere (kept in the untracked .dvc/config.local).
remote: setup
	@if [ -n "$$DENOISE_DVC_REMOTE" ]; then \
		dvc remote modify --local local url "$$DENOISE_DVC_REMOTE"; \
	else \
		dvc remote modify --local --unset local url 2>/dev/null || true; \
	fi

samples: setup
	infra/apt-install.sh opencv-doc "a synthetic sample video will be used"
	denoise samples

run: samples remote
	denoise run

# Scheduled retraining here: a Prefect server on loopback (http://127.0.0.1:4200), the `gpu`
# work pool, the deployments of prefect.yaml and a worker; Ctrl-C stops it all. Set
# DENOISE_RETRAIN_CRON to change the weekly schedule (docs/orchestration.md).
serve: samples remote
	infra/serve.sh

# The MLflow UI on the local tracking store (http://127.0.0.1:5000).
ui: setup
	denoise ui

# The team's shared services on loopback: PostgreSQL, an S3 store, MLflow with basic auth,
# Prefect with an auth string (settings in .env, see infra/team/example.env and docs/team.md).
team-up: setup
	infra/team/team.sh up

team-down:
	infra/team/team.sh down

# With the run cache: a clone or worker that pulls it skips stages that ran elsewhere
# (`denoise push` also sends the objects of the reports git keeps, which `dvc push` leaves).
push: remote
	denoise push

pull: remote
	dvc pull --run-cache

test: setup
	infra/apt-install.sh opencv-doc "a synthetic sample video will be used"
	infra/apt-install.sh chromium "the Data Docs browser test will skip"
	infra/apt-install.sh chromium-driver "the MLflow UI browser test will skip"
	infra/apt-install.sh docker-compose "the compose file check in tests/test_team.py will fail"
	python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup
	python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: setup
	ruff check src tests flows bench
	ruff format --check src tests flows bench
	mypy
	lint-imports

# docs/lineage.md: its text, then DVC's own drawings of the stages and of the files they write
# (tests/test_docs.py fails when they are stale).
lineage: setup
	{ sed '/^## Stages/,$$d' docs/lineage.md; \
	  printf '## Stages (`dvc dag --md`)\n\n'; dvc dag --md; \
	  printf '\n## Files (`dvc dag --outs --md`)\n\n'; dvc dag --outs --md; } > docs/lineage.md.tmp
	mv docs/lineage.md.tmp docs/lineage.md

# infra/plots/offline.html: DVC's plots page with Vega, Vega-Lite and vega-embed inlined, so
# `dvc plots show` renders offline (.dvc/config names it). Needs npm; rerun after a DVC upgrade.
plots-template: setup
	python infra/plots/build_template.py

# docs/images/mlflow-*.png, the README's pictures of the MLflow UI: after `make run`.
screenshots: setup
	infra/apt-install.sh chromium "no screenshots"
	infra/apt-install.sh chromium-driver "no screenshots"
	python infra/screenshots.py

clean:
	rm -rf data/frames data/evalsets reports/validation models checkpoints reports/evaluation
