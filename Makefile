# Two commands for a newcomer: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo
HOST ?= 127.0.0.1
PORT ?= 8080
# Test processes per run: each test owns its ports, temp dirs, database and queues.
# Three on two cores: the tests mostly wait on processes, servers and workers.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS)

.PHONY: run test test-sqlite test-postgres lint bench bench-lookup clean

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
	  CONVEYOR_TEST_POSTGRES_RUN_FOLLOWS=1 $(PYTEST) && \
	  echo "== the same suite on PostgreSQL" && \
	  CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(PYTEST); \
	else \
	  $(PYTEST); \
	fi

test-sqlite: $(STAMP)
	$(PYTEST)

# On a laptop without PostgreSQL this run skips with a visible reason; with CI=true it fails.
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
test-postgres: $(STAMP)
	@mode=$$(CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(BIN)/python scripts/postgres_gate.py) || exit 1; \
	if [ "$$mode" = run ]; then \
	  echo "== the same suite on PostgreSQL"; \
	  CONVEYOR_TEST_DATABASE_URL=$${CONVEYOR_TEST_DATABASE_URL:-$(PG_URL)} $(PYTEST); \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench-lookup: $(STAMP)
	$(BIN)/python bench/lookup.py

## Every benchmark, in one go (never part of `make test`); QUICK=1 for a few minutes'
## worth of each. The figures go in docs/benchmarks.md with the machine and the command.
## lookup.py needs PostgreSQL too (it measures SQLite, then PostgreSQL); distributed.py
## and memory.py (its celery soak) need PostgreSQL and Redis;
## peer_buildbot.py installs Buildbot in /tmp.
bench: $(STAMP)
	cd bench && ../$(BIN)/python task_cost.py --tasks $(if $(QUICK),20,100)
	cd bench && ../$(BIN)/python engine.py $(if $(QUICK),--latency-tasks 30 --trivial-runs 10 --throughput-tasks 100)
	cd bench && ../$(BIN)/python hooks.py --tasks $(if $(QUICK),30,200)
	cd bench && ../$(BIN)/python lookup.py $(if $(QUICK),--tasks 20000 --requests 500 --seconds 4 --rounds 2)
	cd bench && ../$(BIN)/python distributed.py $(if $(QUICK),--rounds 3 --latency-tasks 30 --throughput-tasks 450)
	cd bench && ../$(BIN)/python web_ui.py --rounds $(if $(QUICK),2,10)
	cd bench && ../$(BIN)/python peer_buildbot.py $(if $(QUICK),--quick)
	cd bench && ../$(BIN)/python memory.py $(if $(QUICK),--stored 20000 --soak 2000,--celery)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
