# TrailScope: `make run` starts the dashboard on the built-in sample; `make test` runs every test.
# Both set everything up on a fresh machine (Python 3.11 with venv, Debian for chromium).

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8050
# CPU wheel on machines without an NVIDIA GPU; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")

.PHONY: setup run test lint browser clean bench

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

# Debian's chromium + chromium-driver for the browser tests and PDF reports (no browser
# downloads), poppler-utils (pdftoppm) to check the PDFs, and redis-server, which the stream
# tests start themselves on a free loopback port (the Debian service it installs is stopped).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/pdftoppm -a -x /usr/bin/redis-server || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver poppler-utils redis-server; }

run: setup
	@$(VENV)/bin/trailscope datasets --json | $(PY) -c "import json,sys; sys.exit(0 if any(d['name']=='sample' for d in json.load(sys.stdin)) else 1)" \
	  || $(VENV)/bin/trailscope sample --name sample
	$(VENV)/bin/trailscope serve --host $(HOST) --port $(PORT) --dataset sample

# Real-data tests read the slices in tests/data/; those marked full_data read the complete files
# in $TRAILSCOPE_DATA (default ../shared/data) and are skipped, with the reason, without them.
test: setup browser
	$(VENV)/bin/ruff check app analytics models bench tests
	$(PY) -m pytest -q -ra --durations=15

lint: setup
	$(VENV)/bin/ruff check app analytics models bench tests

bench: setup
	$(PY) -m bench.import_bench
	$(PY) -m bench.analytics_bench

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
