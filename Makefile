# DSS developer and operator commands. `make run` and `make test` work on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMAIL ?= dev@example.org
GROUP ?= hca
PYTEST_ARGS ?=
HCA_VENV ?= .hca-venv
TOOLS_VENV := .tools-venv
TOOLS_STAMP := $(TOOLS_VENV)/.installed
# The local stack's Node servers (dynalite), from package-lock.json.
NODE_STAMP := node_modules/.installed

.PHONY: help setup run test lint token bench requirements spec-check clean-local hca-cli hca-config deploy-infra deploy

help:
	@echo "make run          set up, then start the local DSS (API on http://127.0.0.1:5000)"
	@echo "make test         set up, lint, then run the whole test suite against its own local stack"
	@echo "make lint         ruff on the code, mypy and the import layers (lint-imports) on dss/ (pyproject.toml)"
	@echo "make token        print a development bearer token (EMAIL=... GROUP=...)"
	@echo "make bench        measure the local stack (not part of the tests)"
	@echo "make requirements regenerate the pinned requirements from the .in files"
	@echo "make hca-cli      install the real hca CLI (hca 8.0.0) in its own virtualenv, $(HCA_VENV)"
	@echo "make hca-config   configure it for the running local DSS: eval \"\$$(make -s hca-config)\""
	@echo "make deploy-infra apply infra/ (Terraform) for the stage of environment.local"
	@echo "make deploy       package the Lambdas and deploy them (after deploy-infra)"

setup: $(STAMP) $(TOOLS_STAMP) $(NODE_STAMP)

# The virtualenv is rebuilt whenever a pinned requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# dynalite, the local DynamoDB server that keeps its tables on disk (Node.js and npm: see README).
# A machine without npm gets Debian's nodejs and npm (as root, which CI is).
$(NODE_STAMP): package.json package-lock.json
	command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov and cfn-lint pin packages differently from the DSS, so they get a virtualenv of their own.
$(TOOLS_STAMP): requirements-tools.txt $(STAMP)
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(TOOLS_VENV)/bin/python -r requirements-tools.txt
	touch $@

run: $(STAMP) $(NODE_STAMP)
	$(PY) -m dss.local.stack run --root $${DSS_LOCAL_DIR:-.local}

# Lint first: it fails in seconds, before the local stack starts. tests/ is not linted (yet).
test: $(STAMP) $(TOOLS_STAMP) $(NODE_STAMP) lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dss scripts daemons chalice infra
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

token: $(STAMP)
	@$(PY) scripts/dev_token.py --email "$(EMAIL)" --group "$(GROUP)" --root $${DSS_LOCAL_DIR:-.local}

bench: $(STAMP)
	$(PY) scripts/bench.py

spec-check: $(STAMP)
	$(PY) -c "import yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open('dss-api.yml')))"

# The real hca CLI pins PyJWT<2, so it gets its own virtualenv (see scripts/install_hca_cli.sh).
hca-cli: $(STAMP)
	bash scripts/install_hca_cli.sh $(HCA_VENV)

# Prints the shell lines that point the hca CLI at the local DSS (run `make run` first).
hca-config: $(STAMP)
	@$(PY) scripts/hca_local_config.py --env-file $${DSS_LOCAL_DIR:-.local}/env --hca-venv $(HCA_VENV)

# A cloud stage: settings from `environment` and environment.local; see README, Deployment.
deploy-infra: $(STAMP)
	bash scripts/deploy.sh infra

deploy: $(STAMP)
	bash scripts/deploy.sh lambdas

requirements: $(STAMP)
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements.txt.in -o requirements.txt
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements-dev.txt.in -o requirements-dev.txt
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements-tools.txt.in -o requirements-tools.txt

clean-local:
	rm -rf .local
