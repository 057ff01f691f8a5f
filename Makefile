# Two commands on a fresh machine: `make demo` and `make test`.
# Every install comes from requirements.lock (exact versions with hashes); `make lock` refreshes it
# from pyproject.toml's compatible ranges.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
LOCK := requirements.lock
UV_VERSION := 0.13.8

.PHONY: demo test bench lock clean install dashboard

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/edx-engine demo

# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (some CI images set it): the suite starts
# ~190 CLI subprocesses, each of which would compile the package's modules again (~0.3 CPU-s each).
test: $(BIN)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n auto --dist loadfile --durations=15

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py

# Refresh the lock: newest versions inside pyproject.toml's ranges, with hashes, for Linux x86_64 / Python 3.11
# (setuptools is locked too: the editable install of this project builds without fetching anything).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q uv==$(UV_VERSION)
	echo 'setuptools>=77,<81' | .venv-lock/bin/uv pip compile pyproject.toml - --extra test --extra spark --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line -o $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf edx-data demo-package
