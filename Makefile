# durable-streamsd: `make serve` installs and starts the server,
# `make test` installs everything the tests need and runs them all.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 4437
DATA_DIR ?= ./data
CONFORMANCE := tests/conformance

.PHONY: serve install install-test test pytest conformance lint typecheck bench bench-deps soak clean

# The request path is compiled in place (setup.py): an edited source is
# rebuilt before anything runs, so a stale extension never shadows it.
SOURCES := $(shell find src/durable_streamsd -name '*.py')

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml setup.py $(SOURCES)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) scripts/extra-requirements.py test | $(PY) -m pip install -q -r /dev/stdin
	touch $@

$(CONFORMANCE)/node_modules/.installed: $(CONFORMANCE)/package.json $(CONFORMANCE)/package-lock.json
	cd $(CONFORMANCE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test $(CONFORMANCE)/node_modules/.installed
	bash scripts/install-nginx.sh

serve: install
	$(VENV)/bin/durable-streamsd serve --data-dir $(DATA_DIR) --port $(PORT)

test: install-test lint typecheck pytest conformance

pytest: $(VENV)/.installed-test
	$(PY) -m pytest -q

# The upstream suite, minus the fork and subscription blocks (not built yet),
# against our server on disk. A short long-poll timeout keeps the run quick.
conformance: install-test
	$(PY) $(CONFORMANCE)/run_conformance.py --server-cmd "{python} -m durable_streamsd serve --data-dir {datadir} --host 127.0.0.1 --port {port} --long-poll-timeout 2"

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests $(wildcard bench)

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

# Side by side with the reference server; BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: install $(CONFORMANCE)/node_modules/.installed bench-deps
	$(PY) -m bench.run $(BENCH_ARGS)

bench-deps: $(VENV)/.installed
	@command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q matplotlib
	@case "$(BENCH_ARGS)" in *--py-spy*) test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q py-spy;; esac

# kill -9 soak with fuzz bursts; SOAK_SECONDS=20 for a quick check.
SOAK_SECONDS ?= 300
soak: $(VENV)/.installed-test
	$(PY) tests/soak/run_soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) $(CONFORMANCE)/node_modules
