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

# The whole gate: ruff, then every test, in two pytest processes side by side, one core and
# one torch thread each (most of the time goes to single-threaded Python: parsing configs,
# drawing figures): tests/experiment, whose log is printed when both are done, and the rest.
# Fails when either fails.
PYTEST := WANDB_MODE=offline MPLBACKEND=Agg OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q
test: lint
	@log=$$(mktemp); \
	$(PYTEST) tests/experiment > $$log 2>&1 & experiment=$$!; \
	trap 'kill $$experiment 2>/dev/null; rm -f $$log' INT TERM; \
	$(PYTEST) tests --ignore=tests/experiment; rest=$$?; \
	wait $$experiment; experiment_status=$$?; \
	echo "===== tests/experiment (run beside the rest) ====="; cat $$log; rm -f $$log; \
	test $$rest -eq 0 && test $$experiment_status -eq 0

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
