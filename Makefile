# unilk developer entry points. Every target sets up what it needs first and is safe to re-run.
#   make demo   set up .venv and run the demo
#   make test   set up .venv and run the default test suite
#   make lint   ruff check + format check
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.unilk-installed
PYTEST_ARGS ?=
# ldconfig lives in /sbin, which a normal user's PATH often lacks
LDCONFIG ?= $(or $(shell command -v ldconfig 2>/dev/null),/sbin/ldconfig)
# two test processes of one thread each: on 2 cores this halves the suite's time against one process of two threads
# (PyTorch's intra-op threads barely help the suite's small tensors); PYTEST_ARGS="-n 0" runs in one process
PYTEST_PARALLEL ?= -n 2

.PHONY: setup demo test test-all lint format system-deps clean

setup: system-deps $(STAMP)

# open3d needs libusb-1.0 at import time; install it only when it is missing. apt-get's own output (progress, debconf's
# "delaying package configuration") is kept in a temporary file and shown only if it fails.
system-deps:
	@if $(LDCONFIG) -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
		echo "[setup] libusb-1.0-0 present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "[setup] installing libusb-1.0-0 (needed by open3d) with apt-get"; \
		log=$$(mktemp); \
		if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0; } >"$$log" 2>&1; then \
			echo "[setup] apt-get failed; its output:"; cat "$$log"; rm -f "$$log"; exit 1; \
		fi; \
		rm -f "$$log"; \
	else \
		echo "[setup] WARNING: libusb-1.0-0 is missing and cannot be installed here (need root + apt-get);"; \
		echo "[setup]          point-cloud files read through open3d will fail until it is installed."; \
	fi

$(VENV)/bin/python:
	@echo "[setup] creating virtual environment $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip

# Reinstall only when the dependency pins or the package metadata change. The dev extra includes the ray extra (the
# Ray engine's tests run on a local 2-CPU cluster, no network) and DuckDB + Polars (the docs' shard-reading examples).
$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	@echo "[setup] installing unilk (editable) with pinned dependencies from constraints.txt"
	@# setuptools warns on every editable install that a folder named like the package may shadow it: here adapters/
	@# and datasets/ are mapped to unilk.adapters and unilk.datasets on purpose, so the notice is not for the user
	@PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)
	@echo "[setup] done"

demo: setup
	$(BIN)/unilk demo

test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-all: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "slow or not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
