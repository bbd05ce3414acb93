# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml plugins/mlflow-outbox/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: run test lint typecheck check bench demo clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml plugins/mlflow-outbox/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]' -e plugins/mlflow-outbox
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	@echo "Starting mlgrid on http://127.0.0.1:8780 (SQLite in ./.mlgrid)."
	@echo "Admin token: ./.mlgrid/admin.token   In another terminal: $(BIN)/mlgrid demo"
	$(BIN)/mlgrid serve

# Browser tests drive Debian's chromium; install it when missing (needs root and apt).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; browser tests will be skipped"; \
	  else echo "chromium missing; browser tests will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python benchmarks/publish.py

clean:
	rm -rf $(VENV) .mlgrid .pytest_cache .mypy_cache .ruff_cache
