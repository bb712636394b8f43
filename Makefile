# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make demo   -- the main job (creates .venv and installs on first use)
#   make test   -- lint, type checks and the whole test suite
# The probe silences each candidate's stderr: a pyenv shim of a version that is not installed
# exists on PATH but only prints an error when run.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run in two processes (pytest-xdist; each test has its own NATS server and database, so
# they do not share state), and the slowest are listed at the end, so the suite's time stays in view.
PYTEST_ARGS ?= --numprocesses=auto --maxprocesses=4 --dist=worksteal --durations=25

.PHONY: install demo up browser test check lint types pytest bench schema docs clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (none found on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/agora demo

up: $(STAMP)
	$(BIN)/agora up

# The end-to-end test drives the dashboard in Debian's Chromium (never a downloaded browser).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (for tests/e2e)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium chromium-driver \
		|| { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; \
	else \
		echo "tests/e2e needs Chromium and chromedriver: sudo apt-get install -y chromium chromium-driver"; \
		exit 1; \
	fi

test: check pytest

check: lint types

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.publish

schema: $(STAMP)
	$(BIN)/agora schema --out schemas

clean:
	rm -rf $(VENV) .agora .pytest_cache .ruff_cache .mypy_cache tests/e2e/artifacts

# Generated files: the event and table references, and the deploy manifests' projection workers.
docs: $(STAMP)
	$(BIN)/python -m agora.docgen > docs/events.md
	$(BIN)/python -m agora.docgen tables > docs/tables.md
	$(BIN)/python -m agora.deploygen
