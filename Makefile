# One-command setup, demo and tests. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
GRAPHFRAMES_VERSION := 0.12.3
DATA ?= ../shared/data
RUN_DIR ?= runs/demo

.PHONY: setup setup-bench jars demo test test-all lint typecheck bench-lightgcn clean

setup: $(STAMP) jars

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Resolve the GraphFrames JARs (same version as graphframes-py) from Maven Central into .cache/jars.
jars: $(STAMP)
	GRAPHFRAMES_VERSION=$(GRAPHFRAMES_VERSION) bash scripts/fetch_jars.sh

setup-bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'

demo: setup
	$(PY) -m jobs.pipeline --config deploy/configs/local.yaml --run-dir $(RUN_DIR) \
		--set ingest.train_path=$(DATA)/gowalla/train.txt --set ingest.test_path=$(DATA)/gowalla/test.txt

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ''

lint: setup
	$(VENV)/bin/ruff check pipelines jobs gnn bench tests

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf runs .pytest_cache
