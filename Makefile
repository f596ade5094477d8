# The two commands of the README, the set-up they share, and the maintenance targets.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
COVERAGE := build/coverage

.PHONY: demo test test-slow coverage lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lpmac demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m slow

# Code coverage (Verilator line, branch and toggle) and functional coverage of the protocol
# from the accelerator, fast-backend and host tests; the report goes to build/coverage/
# (sim/coverage.py, sim/coverage_report.py). The report is written even when a test fails,
# and the exit status is the tests'.
coverage: $(STAMP)
	rm -rf $(COVERAGE)
	LPMAC_COVERAGE=$(abspath $(COVERAGE))/data $(BIN)/python -m pytest -n 2 --dist loadgroup \
		tests/accel tests/fastsim tests/host; \
	status=$$?; \
	$(BIN)/python -m sim.coverage_report $(COVERAGE)/data --out $(COVERAGE) --compact \
		|| exit $$?; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build .pytest_cache
