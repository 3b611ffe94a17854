# Two commands for a newcomer: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test test-sqlite test-postgres lint bench-lookup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the server on the embedded default (SQLite, local executor) with a demo workflow.
run: $(STAMP)
	$(BIN)/conveyor demo --dir $(DEMO_DIR) --port $(PORT)
	$(BIN)/conveyor serve -c $(DEMO_DIR)/conveyor.yaml --host $(HOST) --port $(PORT)

## The whole suite: lint, then tests on SQLite, then again on PostgreSQL. When the
## PostgreSQL run follows, the celery tests wait for it (a fleet runs celery there).
test: $(STAMP) lint
	@mode=$$(CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(BIN)/python scripts/postgres_gate.py) || exit 1; \
	if [ "$$mode" = run ]; then \
	  CONVEYOR_TEST_POSTGRES_RUN_FOLLOWS=1 $(BIN)/pytest -q && \
	  echo "== the same suite on PostgreSQL" && \
	  CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(BIN)/pytest -q; \
	else \
	  $(BIN)/pytest -q; \
	fi

test-sqlite: $(STAMP)
	$(BIN)/pytest -q

# On a laptop without PostgreSQL this run skips with a visible reason; with CI=true it fails.
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
test-postgres: $(STAMP)
	@mode=$$(CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(BIN)/python scripts/postgres_gate.py) || exit 1; \
	if [ "$$mode" = run ]; then \
	  echo "== the same suite on PostgreSQL"; \
	  CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(BIN)/pytest -q; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench-lookup: $(STAMP)
	$(BIN)/python bench/lookup.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
