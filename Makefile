# leadflow: `make run` runs the main job on a local broker; `make test` runs every check and test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: install system kafka browser run test lint typecheck pytest faults bench bench-ingest bench-calibrate bench-faults bench-soak bench-core bench-memory clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "leadflow needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# System packages the tests need, from Debian when missing (a fresh machine lacks them): promtool and amtool
# (prometheus, prometheus-alertmanager) check the alert rules, the Alertmanager config and the dashboards' queries;
# Chromium and its WebDriver open the review page; Java and Maven fetch and run Apache Kafka, the reference broker;
# openssl makes the certificate of the notifier tests' SMTP server (STARTTLS).
APT_NEEDS := promtool:prometheus amtool:prometheus-alertmanager chromium:chromium chromedriver:chromium-driver \
	java:openjdk-17-jre-headless mvn:maven openssl:openssl
system:
	@missing=""; for need in $(APT_NEEDS); do \
	    command -v "$${need%%:*}" >/dev/null || missing="$$missing $${need#*:}"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
	    elif command -v sudo >/dev/null; then SUDO="sudo -n"; \
	    else echo "need root or sudo to apt-get install$$missing" >&2; exit 1; fi; \
	    echo "apt-get install$$missing"; \
	    $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The pinned Apache Kafka's jars, fetched once with Maven into ~/.cache/leadflow (streams/dev/kafka.py).
kafka: install system
	$(BIN)/python -c 'from leadflow.streams.dev.kafka import kafka_classpath; print("Apache Kafka:", kafka_classpath())'

browser: system

run: install
	$(BIN)/leadflow run $(RUN_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install system kafka
	$(BIN)/pytest

test: lint typecheck pytest

# Throughput (a, b, c, b again) and latency (l) on Apache Kafka (the jars are fetched on first use), then on tansu
# for comparison (~5 min); results appended to benchmarks/RESULTS.md.
bench: install
	$(BIN)/python -m benchmarks.throughput --broker kafka --write-results
	$(BIN)/python -m benchmarks.throughput --broker tansu --write-results

# The webhook gateway under an open-loop load from a second process, events landing on the embedded broker (~3 min).
bench-ingest: install
	$(BIN)/python -m benchmarks.ingest --write-results

# `leadflow calibrate` on 10,000 simulated leads against a replay of the same file, in one process (~1.5 min).
bench-calibrate: install
	$(BIN)/python -m benchmarks.calibrate --write-results

# The fault-injection suite alone, CI sizes (~9 min; also part of `make pytest`): kills, a broker outage, a worker
# lost from a group, duplicated and shuffled input, hostile records (README, Operating notes).
faults: install system kafka
	$(BIN)/pytest tests/faults

# Its long variants: 20 kills, a one-minute broker outage, 50,000 hostile records (~20 min); figures appended to
# benchmarks/RESULTS.md.
bench-faults: install system kafka
	$(BIN)/python -m benchmarks.faults --write-results

# Memory: 10,000 simulated journeys, then one hour of traffic (30 events/s of event time, events for unknown leads
# and redeliveries mixed in) through decode, the engine and the live tally, RSS sampled; against the unbounded
# baseline, each in its own process (~10 min on 2 CPUs).
bench-soak: install
	$(BIN)/python -m benchmarks.soak --write-results

# The pure core per event and per lead, before any Kafka: decode, the engine, decide by event type, the heap and
# changelog record of a lead (5,000 simulated journeys, ~1 min); issue 15's baseline.
bench-core: install
	$(BIN)/python -m benchmarks.core --write-results

# A lead at scale: its changelog value, the worker's RSS per lead and the restore of 200,000 leads, in memory:// and
# rocksdb:// (~3 min, ~5 GB of RAM); issue 15 item 2.
bench-memory: install
	$(BIN)/python -m benchmarks.memory --leads 1000000 --write-results

clean:
	rm -rf $(VENV) .leadflow .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
