"""The fault suite's fixtures: the side-by-side pair (tests/test_e2e_time.py) and `figures`, which records what
each test used (kills, events, hostile records, ...) as junit properties and prints them at the end of the run in
a "fault-injection suite" section of the terminal summary, with or without -s (visible in CI logs).
LEADFLOW_FAULTS_REPORT=PATH also writes them as JSON (benchmarks/faults.py reads it)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_e2e_time import pair  # noqa: F401 - the fixture: a reference and a trial deployment on the broker

from .sizes import SIZES

FIGURES = pytest.StashKey[list[tuple[str, str, dict[str, Any]]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the fault-injection suite (tests/faults; LEADFLOW_FAULTS=long)")
    config.stash[FIGURES] = []


Figures = Callable[..., None]


@pytest.fixture
def figures(request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> Iterator[Figures]:
    """`figures(kills=5, events=1234)`: what the test used; recorded even when it fails (as far as it got)."""
    seen: dict[str, Any] = {"variant": SIZES.variant}
    started = time.monotonic()

    def add(**values: Any) -> None:
        seen.update(values)

    yield add
    seen["duration_s"] = round(time.monotonic() - started, 1)
    for name, value in seen.items():
        record_property(name, value)
    report = getattr(request.node, "rep_call", None)
    outcome = report.outcome if report is not None else "error"
    request.config.stash[FIGURES].append((request.node.nodeid, outcome, seen))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, [])
    if not figures:
        return
    terminalreporter.section("fault-injection suite")
    for nodeid, outcome, seen in figures:
        shown = ", ".join(f"{k}={v}" for k, v in seen.items())
        terminalreporter.write_line(f"{nodeid.split('::')[-1]} [{outcome}]: {shown}")
    path = os.environ.get("LEADFLOW_FAULTS_REPORT")
    if path:
        rows = [{"test": nodeid, "outcome": outcome, **seen} for nodeid, outcome, seen in figures]
        with open(path, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1, default=str)
