# p2pgo — the two commands are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# This machine's pip config lists local indexes that warn on every missing package.
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest workers: CI has 2 cores.
PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(QUIET)
	$(PY) -m pip install -q torch==2.13.0 $(QUIET)
	$(PY) -m pip install -q -e '.[test]' $(QUIET)
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/p2pgo-tui

lint: $(STAMP)
	$(VENV)/bin/ruff check engine fl net p2pgo_tui tests benchmarks
	$(VENV)/bin/ruff format --check engine fl net p2pgo_tui tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	mkdir -p bench-out
	# One BLAS thread: numpy's threads fight the benchmarks' own on 2 cores.
	OPENBLAS_NUM_THREADS=1 $(PY) -m benchmarks | tee bench-out/latest.jsonl

clean:
	rm -rf $(VENV) bench-out .pytest_cache .mypy_cache .ruff_cache

# Flower's SecAgg+ for benchmarks/bench_secagg.py's side-by-side line, in its own venv:
# installing flwr into $(VENV) would downgrade rich, packaging and pycryptodome.
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed
.PHONY: bench-flower-venv
bench-flower-venv: $(FLOWER_STAMP)

$(FLOWER_STAMP):
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install -q --upgrade pip $(QUIET)
	$(FLOWER_VENV)/bin/python -m pip install -q flwr==1.42.0 $(QUIET)
	touch $(FLOWER_STAMP)
