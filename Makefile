# Baton's few verbs. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install only when pyproject.toml is newer than this stamp (pip is slow even when idle).
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -q -p no:cacheprovider
# Only suites that exist: pytest fails on a missing path, and others add them over time.
TEST_DIRS := $(wildcard tests/unit tests/sim tests/runner tests/integration tests/security tests/fuzz tests/fault tests/cluster tests/observability tests/console tests/bench)
PACKAGES  := contracts messaging orchestrator participants baton_sdk baton examples sagas

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install services lint test demo bench bench-cluster faults faults-cluster sim clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

services:
	bash scripts/services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES)

test: install services
	$(BIN)/pytest $(PYTEST_ARGS) $(TEST_DIRS)

demo: install services
	$(BIN)/baton demo

bench: install services
	$(BIN)/baton bench

# The long fault run: the fault suite reads BATON_FAULTS_LONG=1 to use more sagas and more
# kills; the per-test timeout from pyproject.toml is raised to match.
# It ends with a table and, on its last line, one JSON object of totals (tests/fault/report.py).
faults: install services
	@rm -f .baton/faults.json; start=$$(date +%s); \
	BATON_FAULTS_LONG=1 BATON_FAULTS_REPORT=.baton/faults.json \
		$(BIN)/pytest $(PYTEST_ARGS) --timeout=1800 tests/fault; status=$$?; \
	$(BIN)/python -m tests.fault.report .baton/faults.json $$(( $$(date +%s) - start )) \
		|| status=1; exit $$status

# Scale-out figures: baton bench on one node, then on the clusters (quorum queues, WAIT 1)
# with 1, 2 and 3 orchestrator replicas, and without WAIT (tests/bench/scale_out.py).
bench-cluster: install services
	$(BIN)/python -m tests.bench.scale_out

# The long cluster run: a three-node RabbitMQ cluster (quorum queues) and a Redis Cluster of
# three primaries with a replica each, started on spare ports by the suite itself
# (tests/support/rabbit_cluster.py, redis_cluster.py), thousands of sagas through over a
# hundred node faults. Last line: one JSON object of totals, with the clusters' sizes.
faults-cluster: install services
	@rm -f .baton/faults-cluster.json; start=$$(date +%s); \
	BATON_FAULTS_LONG=1 BATON_FAULTS_REPORT=.baton/faults-cluster.json \
		$(BIN)/pytest $(PYTEST_ARGS) --timeout=3600 tests/cluster/test_cluster_faults.py; status=$$?; \
	$(BIN)/python -m tests.fault.report .baton/faults-cluster.json $$(( $$(date +%s) - start )) \
		|| status=1; exit $$status

# The long simulation: thousands of seeded worlds (no services needed; both cores). It ends
# with one JSON object of totals; a failing seed is printed with its replay command.
SIM_SEEDS ?= 5000
sim: install
	$(BIN)/baton sim --seeds $(SIM_SEEDS) --json

# Back to a fresh clone's state (the next `make test` rebuilds .venv).
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
