# One-command setup, demo and tests. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
GRAPHFRAMES_VERSION := 0.11.0
# The vendored GraphFrames source (the fallback when Maven Central does not serve the JARs) and
# its sha256; in CI the clone has shared/ beside it.
GRAPHFRAMES_SRC ?= ../shared/vendor/graphframes-$(GRAPHFRAMES_VERSION)-src.tar.gz
GRAPHFRAMES_SRC_SHA256 := 70c7e1576183572266d484e6bdef5a2299a22dacaf0a9dc92cadfb3de14f028c
DATA ?= ../shared/data
RUN_DIR ?= runs/demo

.PHONY: setup setup-bench jars demo test test-dag test-all lint typecheck package airflow-env bench-lightgcn clean

setup: $(STAMP) jars

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The GraphFrames JARs (same version as graphframes-py) into .cache/jars: from Maven Central, else
# compiled from GRAPHFRAMES_SRC (about 1-1.5 min on 2 cores, once: a stamp keeps the result).
# Fails when neither works.
jars: $(STAMP)
	GRAPHFRAMES_VERSION=$(GRAPHFRAMES_VERSION) GRAPHFRAMES_SRC=$(GRAPHFRAMES_SRC) \
		GRAPHFRAMES_SRC_SHA256=$(GRAPHFRAMES_SRC_SHA256) GRAPHPIPE_PYTHON=$(PY) bash scripts/build_jars.sh

setup-bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'

demo: setup
	$(PY) -m jobs.pipeline --config deploy/configs/local.yaml --run-dir $(RUN_DIR) \
		--set ingest.train_path=$(DATA)/gowalla/train.txt --set ingest.test_path=$(DATA)/gowalla/test.txt
	$(PY) -m jobs.report --run-dir $(RUN_DIR)

test: setup
	$(PY) -m pytest -q

# The real Airflow runs of the daily DAG (seven spark-submits, 5-10 minutes on 2 cores) and the KG
# DAG (four, 2-4 minutes): CI runs them after `make test`.
test-dag: setup
	$(PY) -m pytest -q -m slow tests/test_airflow.py

test-all: setup
	$(PY) -m pytest -q -m ''

lint: setup
	$(VENV)/bin/ruff check pipelines jobs gnn bench tests
	$(VENV)/bin/ruff format --check pipelines jobs gnn bench tests

typecheck: setup
	$(VENV)/bin/mypy

# Wheel + --py-files zip + the GraphFrames JARs (for --jars) into dist/ (PACK_ENV=1 also packs the venv
# for spark-submit --archives).
package: setup
	bash scripts/package.sh

# Airflow's own venv (.venv-airflow) and metadata DB; the Airflow tests build it on first use too.
airflow-env: setup
	bash scripts/airflow_env.sh >/dev/null

clean:
	rm -rf runs dist .pytest_cache
