# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps, both named after the project files' checksum (a change reinstalls): `make run` needs
# the runtime only (`pip install -e .`); `make test` adds the test tools (`.[test]`) and the MLflow
# outbox plugin its tests load into a real `mlflow server`. Switching from one to the other installs
# only what is missing.
CKSUM      := $(shell cat pyproject.toml plugins/mlflow-outbox/pyproject.toml | cksum | cut -d' ' -f1)
RUN_STAMP  := $(VENV)/.installed-run-$(CKSUM)
TEST_STAMP := $(VENV)/.installed-test-$(CKSUM)
PYTEST_ARGS ?=

.PHONY: run test lint typecheck check bench demo clean chromium bubblewrap azure-sdk-tests azurite

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(RUN_STAMP): $(BIN)/python pyproject.toml plugins/mlflow-outbox/pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(CKSUM)' -delete
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]' -e plugins/mlflow-outbox
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

# User code (jobs, entry scripts, models) runs in bubblewrap namespaces when it is installed: as
# root on top of a per-process uid, otherwise as the sandbox itself (docs/security.md).
bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
	      || echo "bubblewrap could not be installed; see docs/security.md"; \
	  else echo "bubblewrap missing; see docs/security.md"; fi; }

# azure-eventgrid's own tests ship only in its source distribution;
# tests/integration/test_azure_sdk_suite.py runs them live against mlgrid. Fetched once here,
# at install time (never by the tests); keep the version equal to the pin in pyproject.toml.
AZURE_EVENTGRID_VERSION := 4.22.1
AZURE_SDK_DIR := .azure-eventgrid-sdist
AZURE_SDK_TESTS := $(AZURE_SDK_DIR)/azure_eventgrid-$(AZURE_EVENTGRID_VERSION)/tests

azure-sdk-tests: $(AZURE_SDK_TESTS)

$(AZURE_SDK_TESTS): | $(TEST_STAMP)
	rm -rf $(AZURE_SDK_DIR) && mkdir -p $(AZURE_SDK_DIR)
	$(BIN)/python -m pip download --quiet --no-binary :all: --no-deps -d $(AZURE_SDK_DIR) \
	  azure-eventgrid==$(AZURE_EVENTGRID_VERSION)
	tar -xzf $(AZURE_SDK_DIR)/azure_eventgrid-$(AZURE_EVENTGRID_VERSION).tar.gz -C $(AZURE_SDK_DIR)

# Azurite, Microsoft's Azure Storage emulator: the blob-store tests run against the real Blob API
# with it (tests/support/azurite.py starts it). Installed once here with npm into .azurite/
# (never by the tests); without npm the tests that need it are skipped (failed under CI).
AZURITE_VERSION := 3.35.0
AZURITE_DIR := .azurite
AZURITE_BIN := $(AZURITE_DIR)/node_modules/.bin/azurite-blob

azurite: $(AZURITE_BIN)

$(AZURITE_BIN):
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(AZURITE_DIR) && \
	  npm install --silent --no-audit --no-fund --prefix $(AZURITE_DIR) azurite@$(AZURITE_VERSION); \
	else echo "npm missing: the Azure Blob Storage tests will be skipped"; fi

test: $(TEST_STAMP) chromium bubblewrap azure-sdk-tests azurite
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Every benchmark, one table (figure, value, floor, ratio); quick by default, FULL=1 for the long
# versions. Extra arguments for benchmarks/run.py go in BENCH_ARGS (e.g. BENCH_ARGS="--only publish").
FULL ?=
BENCH_ARGS ?=
bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run.py $(if $(FULL),--full) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mlgrid .pytest_cache .mypy_cache .ruff_cache $(AZURE_SDK_DIR) $(AZURITE_DIR)
