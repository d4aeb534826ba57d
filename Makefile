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

# The benchmarks' quick set (bench/bench_all.py; under 15 minutes on 2 cores): lablease and teuthology
# 1.3.0's own backend side by side on devcloud (teuthology's venv is installed from PyPI on first use),
# the same under a cloud rate limit, the lock server, DNS updates and the warm pool. Writes
# bench/results/*.json, Markdown tables and PNG plots. BENCH_ARGS e.g. "--only compare,lock" or "--full".
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: install system-packages $(BENCH_STAMP)
	$(BIN)/python bench/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
