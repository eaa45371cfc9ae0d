# resnet-job — one entry point per task. `make run` and `make test` set up the venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: venv run test lint format bench search dashboard clean

venv: $(VENV)/.installed

# pip takes torch 2.14.1 / torchvision 0.29.1 from this machine's disk when offered.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

## run: one training run configured by environment variables (see README)
run: venv
	$(PY) -m job

## test: the whole test suite (real HTTP, subprocesses, signals; Docker/PostgreSQL when present)
test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## bench: side-by-side benchmark against the tutorial's own pipeline (needs the CIFAR archive)
bench: venv
	$(PY) -m bench

clean:
	rm -rf output .pytest_cache .ruff_cache
