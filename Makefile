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

# Trains on the embedded synthetic set (configs/synthetic.yaml) and prints the validation WA/UA
# and where the checkpoint, logs and plots went. Extra CLI arguments: make train ARGS='...'.
train: $(STAMP)
	MPLBACKEND=Agg $(BIN)/mts-lightning fit --config configs/synthetic.yaml $(ARGS)

test: lint
	WANDB_MODE=offline MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/layer.py

clean:
	rm -rf $(VENV) build *.egg-info
