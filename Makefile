# leadflow: `make run` runs the main job on an embedded broker; `make test` runs every check and test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: install browser run test lint typecheck pytest bench bench-ingest clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "leadflow needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# Headless Chromium and its WebDriver for the review page's browser test (tests/test_review_page.py), from
# Debian when missing (a fresh machine lacks them), as .ci/run does for promtool and amtool.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
	    elif command -v sudo >/dev/null; then SUDO="sudo -n"; \
	    else echo "need root or sudo to apt-get install chromium chromium-driver" >&2; exit 1; fi; \
	    $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        chromium chromium-driver >/dev/null; \
	fi

run: install
	$(BIN)/leadflow run $(RUN_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install browser
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python -m benchmarks.throughput --cases a,b,c --write-results

# The webhook gateway under an open-loop load from a second process, events landing on the embedded broker (~3 min).
bench-ingest: install
	$(BIN)/python -m benchmarks.ingest --write-results

clean:
	rm -rf $(VENV) .leadflow .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
