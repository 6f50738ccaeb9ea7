# Kaiwa: `make run` serves the chat on embedded defaults, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-prod run test test-fast lint e2e clean lock audit

install: $(VENV)/.installed

# The venv's own pip (whatever version `python3 -m venv` brings) installs only
# the pinned installer of requirements-bootstrap.lock, checked by sha256: uv,
# and setuptools to build Kaiwa itself. uv then installs the locks, so a new
# upstream release cannot change how a lock that installed once is read.
BOOTSTRAP = $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-bootstrap.lock
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python

# requirements-dev.lock holds the runtime pins of requirements.lock plus the
# test and lint tools and the benchmark's dependencies (pyproject.toml's dev and
# bench extras), every file with its sha256 (uv then refuses any other).
$(VENV)/.installed: requirements-bootstrap.lock requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BOOTSTRAP)
	$(UV_INSTALL) --require-hashes -r requirements-dev.lock
	$(UV_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

# A production host's venv: the runtime pins of requirements.lock only (about
# 180 MB against the developer's 840), every file checked against its sha256.
install-prod:
	$(PYTHON) -m venv $(VENV)
	$(BOOTSTRAP)
	$(UV_INSTALL) --require-hashes -r requirements.lock
	$(UV_INSTALL) --no-deps --no-build-isolation --reinstall-package kaiwa .

# The one place debug is turned on: a developer's machine on embedded defaults.
run: install
	DJANGO_DEBUG=1 $(BIN)/kaiwa serve

# mypy's Django plugin imports config.settings to read the apps and models; the
# settings fail closed without a secret, so mypy gets a placeholder one.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SECRET_KEY=mypy-only-placeholder-not-a-secret-0123456789abcdefghij $(BIN)/mypy kaiwa config bench

test: install lint
	$(BIN)/pytest

# The quick tier while working: ruff, and every test but the e2e, browser and
# fault-injection ones (no server process, no Chromium, no crash runs).
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not e2e and not browser and not faults"

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Re-pin after editing pyproject.toml's dependencies (needs the registry).
lock: install
	$(BIN)/uv pip compile requirements-bootstrap.in --python-version 3.11 --generate-hashes --no-header --annotation-style line -o requirements-bootstrap.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header --annotation-style line -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 --generate-hashes --no-header --annotation-style line -c requirements.lock -o requirements-dev.lock

# Dependency audit of the runtime pins against the package index's advisory
# data (the release step's check; see docs/security.md). Needs its JSON API.
audit: install
	$(BIN)/pip-audit --strict --require-hashes --disable-pip -r requirements.lock
