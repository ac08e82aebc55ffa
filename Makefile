PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint train bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check mts_lightning tests benchmarks
	$(BIN)/ruff format --check mts_lightning tests benchmarks

test: lint
	WANDB_MODE=offline MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/layer.py

clean:
	rm -rf $(VENV) build *.egg-info
