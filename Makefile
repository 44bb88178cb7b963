# Two commands matter: `make demo` and `make test`. Both build .venv from scratch when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint typecheck unit bench chaos clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m orchestrator.demo

bench: $(STAMP)  # make bench BENCH_ARGS='--quick' (or --scenario NAME, --repeat N)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

chaos: $(STAMP)  # the long fault runs: thousands of servers, several seeds, figures printed
	MGN_CHAOS_LONG=1 $(BIN)/pytest -q -s tests/test_chaos.py

clean:
	rm -rf $(VENV) reports .mgn-cutover build *.egg-info
