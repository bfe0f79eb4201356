# Two entry points for a fresh machine: `make serve` and `make test`.
# Each installs what it needs into .venv first (Python 3.11 or newer as `python3`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: install
	$(BIN)/todo-api serve

test: install
	$(BIN)/python -m pytest
