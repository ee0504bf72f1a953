# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: setup demo test lint clean

# torch first: the CPU wheel, so a looser requirement does not pull the CUDA build
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) encode.py dataset=bach_chorales session=bach_chorales

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q -n 2 --durations=10

clean:
	rm -rf $(VENV) data outputs multirun wandb
