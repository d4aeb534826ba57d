# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-packages test test-unit demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

system-packages:
	bash scripts/system-packages.sh

test: install system-packages
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

demo: install system-packages
	$(BIN)/python -m lablease.demo

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
