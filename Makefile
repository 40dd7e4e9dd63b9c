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
DBT := $(BIN)/dbt
PROFILE := $(DBT_PROFILES_DIR)/profiles.yml

.PHONY: help install up down status test lint demo bench docs clean

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

down: ## stop the local Kafka and PostgreSQL that `make up` started
	@if [ -x $(AE) ]; then $(AE) stack down; fi

status: install ## show what the local stack is running
	$(AE) stack status

lint: install ## ruff, mypy and sqlfluff
	$(BIN)/ruff check ingest bench
	$(BIN)/ruff format --check ingest bench
	$(BIN)/mypy

test: install up lint ## every test: Python suite against real Kafka and PostgreSQL, dbt builds on both targets
	$(BIN)/pytest

clean: down ## remove the local stack's data, the virtualenv and dbt artefacts
	rm -rf .stack $(VENV) target logs
