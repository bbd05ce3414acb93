# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps, both named after pyproject.toml's checksum (a change reinstalls): `make run` needs
# the runtime only (`pip install -e .`); `make test` adds the test tools (`.[test]`). Switching
# from one to the other installs only what is missing.
CKSUM      := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP  := $(VENV)/.installed-run-$(CKSUM)
TEST_STAMP := $(VENV)/.installed-test-$(CKSUM)
PYTEST_ARGS ?=

.PHONY: run test lint typecheck check bench demo clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(CKSUM)' -delete
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(RUN_STAMP)
	@echo "Starting mlgrid on http://127.0.0.1:8780 (SQLite in ./.mlgrid); admin token in ./.mlgrid/admin.token"
	@echo "In another terminal, from $(CURDIR):"
	@echo "    source .venv/bin/activate      # puts mlgrid and the examples' packages on PATH"
	@echo "    mlgrid demo                    # or, without activating: .venv/bin/mlgrid demo"
	@echo "    python examples/train_register.py   # the examples; those using Azure's SDK need: pip install -e '.[examples]'"
	$(BIN)/mlgrid serve

# Browser tests drive Debian's chromium; install it when missing (needs root and apt).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; browser tests will be skipped"; \
	  else echo "chromium missing; browser tests will be skipped"; fi; }

test: $(TEST_STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(RUN_STAMP)
	$(BIN)/python benchmarks/publish.py

clean:
	rm -rf $(VENV) .mlgrid .pytest_cache .mypy_cache .ruff_cache
