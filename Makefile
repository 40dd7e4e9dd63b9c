# antenna-elt: every command a user needs. `make help` lists them.
# Everything is installed into .venv/ and .stack/ (both ignored); nothing global but
# what apt provides when a prerequisite is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AE := $(BIN)/antenna-elt
STAMP := $(VENV)/.installed
export DBT_PROFILES_DIR ?= $(CURDIR)/.stack/dbt
# dbt (and psql) find the local PostgreSQL's generated password in libpq's password file,
# never on a command line (`antenna-elt stack env` prints the same for a shell). A server
# of your own (PGHOST/PGPORT set) keeps your own PGPASSWORD, PGPASSFILE or ~/.pgpass.
ifeq ($(strip $(PGHOST)$(PGPORT)),)
export PGPASSFILE ?= $(or $(ANTENNA_ELT_HOME),$(CURDIR)/.stack)/secrets/pgpass
endif
DBT := $(BIN)/dbt
PROFILE := $(DBT_PROFILES_DIR)/profiles.yml

.PHONY: help install up down status unit test lint conventions looker demo bench docs dbt-build dashboards run live airflow clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) $(PROFILE) ## create .venv and install the project and its tools (idempotent)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(PROFILE): profiles.yml.example
	@mkdir -p $(DBT_PROFILES_DIR)
	cp profiles.yml.example $@

up: install ## start the local Kafka broker and PostgreSQL server (no-op when running)
	$(AE) stack up

down: ## stop what the project started: Airflow, Superset, Kafka and PostgreSQL
	@if [ -x $(AE) ]; then $(AE) airflow down; $(AE) dashboards down; $(AE) stack down; fi

status: install ## show what the local stack is running
	$(AE) stack status

lint: install ## ruff, mypy, the import contracts (lint-imports), sqlfluff (through the embedded DuckDB target: no server) and the dbt conventions
	$(BIN)/ruff check ingest bench orchestration
	$(BIN)/ruff format --check ingest bench orchestration
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/sqlfluff lint models tests
	$(AE) conventions

conventions: install ## the team's dbt conventions (dbt-bouncer.yml) on each target's manifest; prints test and doc coverage
	$(AE) conventions

looker: install ## regenerate the LookML project in looker/ from the dbt project (commit the result)
	$(AE) looker

unit: install ## the fast unit tier (seconds, no services): loop, flush policy, retry, lake commit log and hour closer, schema, settings
	$(BIN)/pytest ingest/tests/unit

# two workers: the suite waits on Kafka, PostgreSQL and subprocesses much of the time
TEST_WORKERS ?= 2

test: install up lint unit ## every test: the unit tier, then the integration suite against real Kafka and PostgreSQL, dbt builds on both targets
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope ingest/tests/integration

DEMO_SEED ?= 42
DEMO_LEDGER := .stack/ledgers/demo-seed$(DEMO_SEED).json

demo: install up ## simulate an hour of traffic (in ~10 s), ingest it into PostgreSQL and the lake, dbt build on both, send quota alerts, show the marts
	$(AE) simulate --duration 1h --speedup 360 --seed $(DEMO_SEED) \
		--malformed-share 0.005 --duplicate-share 0.01 --late-share 0.02 --ledger $(DEMO_LEDGER)
	$(AE) ingest postgres --until-caught-up
	$(DBT) build --target postgres --quiet --warn-error-options '{"silence": ["NoNodesForSelectionCriteria"]}'
	$(AE) notify
	$(AE) report --ledger $(DEMO_LEDGER)
	@echo; echo "Batch layer: the same events as hourly Parquet, the same marts in DuckDB"
	$(AE) ingest lake --until-caught-up --max-latency 5
	$(DBT) build --target duckdb --quiet --warn-error-options '{"silence": ["NoNodesForSelectionCriteria"]}'
	$(BIN)/python -m antenna_elt.demo_compare
	@echo; echo "Dashboards over these marts: make dashboards (Superset on http://127.0.0.1:8088)"

dbt-build: install up ## dbt build on PostgreSQL (the default target)
	$(DBT) build

docs: install up ## generate the dbt docs and serve them on http://127.0.0.1:8080
	$(DBT) docs generate
	$(DBT) docs serve --host 127.0.0.1 --port 8080 --no-browser

run: install up ## the pipeline by itself: both ingestors supervised, dbt builds back to back, alerts (Ctrl-C stops)
	$(AE) run

live: install up ## see it move: the simulator at real speed, antenna-elt run and the dashboards (Ctrl-C stops)
	$(AE) dashboards up
	@echo; echo "Open the Network, live dashboard (URL above); it refreshes every 10 s. Ctrl-C stops."
	$(AE) simulate --speedup 1 --duration 24h --quiet & sim=$$!; trap "kill $$sim 2>/dev/null" EXIT; \
		$(AE) run --speed-interval 5

airflow: install up ## Apache Airflow on http://127.0.0.1:8090 with the project's DAGs (idempotent); prints the password
	$(AE) airflow up

dashboards: install up ## Superset on http://127.0.0.1:8088 with the dashboards imported from dashboards/ (idempotent); prints the URLs
	$(AE) dashboards up

bench: install up ## benchmarks: ingest throughput vs consume-only ceiling, memory, dbt build times, the differential fuzz at 100k messages
	$(BIN)/python -m bench

clean: down ## remove the local stack's data, the virtualenv and dbt artefacts
	rm -rf .stack $(VENV) target logs
