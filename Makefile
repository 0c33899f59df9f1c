# make train: set up .venv with the package alone and train the default model; make test: add what the
# product's tests need and run them; make test-lab: add the lab (lab/) and run its tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.14.1 / torchvision 0.29.1 are the newest this machine's pip may install (see README).
TORCH := torch==2.14.1 torchvision==0.29.1
PIP := $(BIN)/pip install --quiet

.PHONY: setup setup-test setup-lab train test test-slow test-lab lint docs docs-check clean

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test
setup-lab: $(VENV)/.installed-lab

# The package and what training needs: no TensorFlow, JAX, ONNX, selenium or optuna.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

# The commands' extras (demo, export, sweep, slurm) and the test tools (dev).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[test]"
	touch $@

# The lab: its package (lab/, editable) and its extra (TensorFlow, JAX, PyTorch's test material).
$(VENV)/.installed-lab: $(VENV)/.installed-test lab/pyproject.toml
	$(PIP) -e ".[lab]" -e lab
	touch $@

train: setup
	$(BIN)/python scripts/train.py $(ARGS)
	@echo "Every other command in the README runs in the project's environment; enter it once per shell:"
	@echo "    source $(BIN)/activate"

# The product's tests (tests/) in at most 5 minutes on 2 cores: the proof, mostly in this process (-m "not slow").
test: setup-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The product's slow tier: real processes (DDP, signals, each script's exit codes, the wheel, the demo server)
# and the outside tools (TensorBoard's server, Optuna, submitit, MLflow, W&B, Chromium).
test-slow: setup-test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The lab's tests (lab/tests/): the studies, run small.
test-lab: setup-lab
	$(BIN)/python -m pytest lab/tests $(PYTEST_ARGS)

# ruff's linter and formatter and the import layering (import-linter, pyproject.toml; it reads the lab too).
# CI runs this first.
lint: setup-lab
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The docs' generated blocks from docs/results/ and configs/ (digits_lab.docs); docs-check changes
# nothing and fails on a stale block, a broken link or anchor, a refused command or a measured number in prose.
docs: setup-lab
	$(BIN)/python -m digits_lab.docs

docs-check: setup-lab
	$(BIN)/python -m digits_lab.docs --check

clean:
	rm -rf $(VENV) .pytest_cache build
