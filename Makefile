# civicnet — `make help` lists the targets. Everything runs from a project-local .venv,
# created and filled from requirements.lock (exact versions, generated here with `make lock`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
HOME_DIR ?= var
SCALE ?= 0.002
STAMP := $(VENV)/.installed
COMPAT_VENV := .venv-duckdb14
COMPAT_STAMP := $(COMPAT_VENV)/.installed
export CIVICNET_DUCKDB14_PYTHON := $(abspath $(COMPAT_VENV))/bin/python

.PHONY: help install demo airflow airflow-up airflow-down test test-fast test-day-two lint bench bench-sweep lock locale clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

# A second, tiny environment with DuckDB 1.4: tests prove analysts on 1.4 can open extracts.
$(COMPAT_STAMP): $(STAMP)
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(UV) pip install -q --python $(COMPAT_VENV)/bin/python "duckdb==1.4.*"
	touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies

demo: $(STAMP) ## generate Shenzhen feeds and run every DAG through Airflow (HOME_DIR, SCALE)
	$(VENV)/bin/civicnet demo --home $(HOME_DIR) --scale $(SCALE)

airflow: $(STAMP) ## start Airflow's scheduler and UI on the demo home, http://127.0.0.1:8080 (HOME_DIR)
	$(VENV)/bin/civicnet --home $(HOME_DIR) airflow

airflow-up: $(STAMP) ## Airflow as a service on the home: PostgreSQL metadata, scheduler, DAG processor, API server, triggerer, 2 Celery workers on Redis (HOME_DIR)
	$(VENV)/bin/civicnet --home $(HOME_DIR) airflow up --workers 2

airflow-down: $(STAMP) ## stop every process `make airflow-up` started (HOME_DIR)
	$(VENV)/bin/civicnet --home $(HOME_DIR) airflow down

# `make test` runs on two workers (pytest-xdist), each given whole test files, slow ones first
# (tests/conftest.py): a module's fixtures (its home, its Airflow) are built once, the session's
# homes once per worker. TEST_WORKERS=0 runs in this process alone.
TEST_WORKERS ?= 2
test: $(STAMP) $(COMPAT_STAMP) ## run the whole test suite but the day-two runs (starts PostgreSQL/MariaDB if down)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	bash infra/services.sh
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-day-two: $(STAMP) ## the demo run twice on one home: exit 0 both times, the same figures (many minutes)
	bash infra/services.sh
	$(PY) -m pytest -q -m daytwo tests/integration/test_demo_twice.py

test-fast: $(STAMP) ## unit tests but the slow ones (seconds each; `make test` runs them)
	$(PY) -m pytest -q -m "not slow and not daytwo" tests/unit

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy schemas connectors quality warehouse civicnet

# The bench's peer, dlt, lives in its own environment: never in requirements.lock or pyproject.
DLT_VENV := .venv-dlt
DLT_STAMP := $(DLT_VENV)/.installed
DLT_VERSION := 1.31.0
BENCH_OUT ?= bench-out
# SCALE given on the command line (or in the environment) is the bench's; else the bench runs at 0.1
BENCH_SCALE := $(if $(filter command line environment,$(origin SCALE)),$(SCALE),0.1)
# runs at scale >= 0.5 hold this lock (flock) so only one big run uses the shared machine at a time
BENCH_LOCK ?= /work/locks/scale1.lock
BENCH_LOCK_ARG := $(if $(wildcard $(dir $(BENCH_LOCK))),--lock $(BENCH_LOCK))
$(DLT_STAMP): $(STAMP)
	test -x $(DLT_VENV)/bin/python || $(UV) venv -q --python $(PY) $(DLT_VENV)
	$(UV) pip install -q --python $(DLT_VENV)/bin/python "dlt[duckdb]==$(DLT_VERSION)" pyarrow
	touch $@

# `make bench SCALE=1.0` measures the whole city (17.49 M residents); SCALE defaults to 0.1 here, not
# to the demo's 0.002.
bench: $(STAMP) $(DLT_STAMP) ## every work case: pipeline vs fan-out and relay baselines and dlt (SCALE, default 0.1)
	$(PY) -m civicnet.bench --scale $(BENCH_SCALE) --home $(BENCH_OUT) $(BENCH_LOCK_ARG)

bench-sweep: $(STAMP) $(DLT_STAMP) ## the full load at scale 0.01, 0.1 and 1.0: seconds and peak memory against rows
	$(PY) -m civicnet.bench.sweep --home $(BENCH_OUT)-sweep --scales 0.01,0.1,1.0 $(BENCH_LOCK_ARG)

lock: ## regenerate requirements.lock from pyproject.toml (upgrade on purpose)
	test -x $(UV) || ($(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q "uv==$(UV_VERSION)")
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

LOCALE_DIR := schemas/locale
locale: $(STAMP) ## extract the messages of reports/pages/push client, update and compile the zh_CN catalogue
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --sort-output --project civicnet -o $(LOCALE_DIR)/civicnet.pot .
	$(VENV)/bin/pybabel update -i $(LOCALE_DIR)/civicnet.pot -d $(LOCALE_DIR) -D civicnet -l zh_CN --width 100 
	$(VENV)/bin/pybabel compile -d $(LOCALE_DIR) -D civicnet -l zh_CN --statistics
	rm -f $(LOCALE_DIR)/civicnet.pot

clean: ## remove the demo home and caches (keeps .venv)
	rm -rf $(HOME_DIR) bench-out bench-out-sweep .pytest_cache
