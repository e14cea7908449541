# One command for the pipeline (make run), one for the tests (make test). Each sets up what it
# needs (virtual environment, install, sample videos) and is safe to run again.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup remote samples run push pull test test-fast lint clean

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
	infra/get-sample-videos.sh
	denoise samples

run: samples remote
	denoise run

push: remote
	dvc push

pull: remote
	dvc pull

test: setup
	infra/get-sample-videos.sh
	python -m pytest

test-fast: setup
	python -m pytest -m "not slow"

lint: setup
	ruff check src tests flows bench
	ruff format --check src tests flows bench
	mypy

clean:
	rm -rf data/frames data/evalsets models checkpoints reports/evaluation
