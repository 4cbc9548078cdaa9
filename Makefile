# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of torch is installed first and pinned, so that nothing pulls the multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: install dev demo test lint bench

install:
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .

dev:
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[dev,importers]"

demo: install
	$(PYTHON) -m splatnlp.mechinterp demo

test: dev
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check splatnlp tests benchmarks

bench: install
	$(PYTHON) benchmarks/bench_matcher.py
