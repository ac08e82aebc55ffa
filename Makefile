PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint train bench docs dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check mts_lightning tests benchmarks docs/conf.py docs/_ext
	$(BIN)/ruff format --check mts_lightning tests benchmarks docs/conf.py docs/_ext

# Trains on the embedded synthetic set (configs/synthetic.yaml) and prints the validation WA/UA
# and where the checkpoint, logs and plots went. Extra CLI arguments: make train ARGS='...'.
train: $(STAMP)
	MPLBACKEND=Agg $(BIN)/mts-lightning fit --config configs/synthetic.yaml $(ARGS)

# The whole gate: ruff, then every test.
test: lint
	WANDB_MODE=offline MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

# While you work: the tests marked neither slow nor e2e (pyproject.toml), no lint.
test-fast: $(STAMP)
	WANDB_MODE=offline MPLBACKEND=Agg $(BIN)/python -m pytest -q -m "not slow and not e2e" tests

bench: $(STAMP)
	$(BIN)/python benchmarks/layer.py

# The documentation site in docs/_build/html; warnings (broken references, missing pages,
# undocumented public names) are errors. -E rereads every page, so docstrings are fresh.
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -b html docs docs/_build/html

# The sdist and the wheel in dist/.
dist: $(STAMP)
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
