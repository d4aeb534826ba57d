# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-packages test test-unit demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

system-packages:
	bash scripts/system-packages.sh

# Test files run in parallel (--dist loadfile keeps a module's shared servers in one worker): most integration
# tests wait on sleeps, boots and SSH, so more workers than the 2 cores shortens the run.
TEST_WORKERS ?= 4

test: install system-packages
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

demo: install system-packages
	$(BIN)/python -m lablease.demo

# lablease and teuthology 1.3.0's own backend side by side on devcloud (a few minutes; teuthology's venv
# is installed from PyPI on first use). BENCH_ARGS e.g. "--teuthology-nodes 1,5,10 --lablease-nodes 1,5,20,50".
bench: install system-packages
	$(BIN)/python bench/bench_compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
