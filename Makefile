# make train: set up .venv and train the default model; make test: set up .venv and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the newest this machine's pip may install (see README).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup train test lint docs docs-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

train: setup
	$(BIN)/python scripts/train.py $(ARGS)
	@echo "Every other command in the README runs in the project's environment; enter it once per shell:"
	@echo "    source $(BIN)/activate"

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff's linter and formatter, configured in pyproject.toml; CI runs this before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs' generated blocks from docs/results/ and configs/ (digits.studies.docs); docs-check changes
# nothing and fails on a stale block, a broken link or anchor, a refused command or a measured number in prose.
docs: setup
	$(BIN)/python -m digits.studies.docs

docs-check: setup
	$(BIN)/python -m digits.studies.docs --check

clean:
	rm -rf $(VENV) .pytest_cache
