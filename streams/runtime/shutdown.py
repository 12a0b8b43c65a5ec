"""A worker that stops within a bound, broker up or down, and says what it could not flush (issue 13).

Faust stops in order on SIGTERM: it commits, flushes the producer, leaves the group. With the broker down each
of those waits for the broker (request timeouts, retries), so a worker could take minutes and be SIGKILLed by
its supervisor without a word. `BoundedWorker` (Faust's `Worker` setting) arms a watchdog thread when the stop
signal comes: if the orderly stop has not finished `shutdown_timeout_s` later (LEADFLOW_SHUTDOWN_TIMEOUT_S,
15 s by default), it logs what was not flushed (records still queued in the producer, per partition the records
read but not committed: the next owner reads them again and drops the duplicates) and ends the process with
exit code 1. A thread, not a task: the event loop may be the thing that is stuck.

It also installs the log limiter (streams.runtime.health) on the root logger's handlers once Faust has set them up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any

import faust

from leadflow.streams.runtime import health

log = logging.getLogger(__name__)

EXIT_FORCED = 1  # the orderly stop did not finish within the bound


def unflushed(app: Any) -> list[str]:
    """What the worker holds that is not on the broker, one line each (best effort: read from another thread)."""
    lines = []
    records, age, buffered = health.unsent(app, time.monotonic())
    if records:
        lines.append(
            f"{records} records not acknowledged by the broker ({buffered} still in Faust's producer buffer; the "
            f"oldest batch waits for {age:.0f} s): outputs and changelog records of events whose offsets are not "
            "committed, so they are produced again when those events are processed again"
        )
    consumer = getattr(app, "_consumer", None)
    if consumer is not None:
        try:
            read = dict(consumer._read_offset)
            committed = dict(consumer._committed_offset)
        except Exception:
            read, committed = {}, {}
        behind = {
            f"{tp.topic}/{tp.partition}": offset + 1 - (committed.get(tp) or 0)
            for tp, offset in sorted(read.items())
            if offset is not None and offset + 1 > (committed.get(tp) or 0)
        }
        if behind:
            listed = ", ".join(f"{name}: {count}" for name, count in behind.items())
            lines.append(f"records read but not committed (read again by the next owner, duplicates dropped): {listed}")
    return lines


class Watchdog:
    """Ends the process `bound_s` after `arm()` unless `disarm()` came first."""

    def __init__(self, app: Any, bound_s: float) -> None:
        self.app = app
        self.bound_s = bound_s
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.started: float | None = None

    def arm(self) -> None:
        if self.thread is not None:
            return
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._watch, name="leadflow-shutdown-watchdog", daemon=True)
        self.thread.start()

    def disarm(self) -> None:
        self.done.set()

    def _watch(self) -> None:
        if self.done.wait(self.bound_s):
            return
        lines = unflushed(self.app) or ["nothing unsent or uncommitted was found"]
        log.error(
            "the worker did not stop within %.0f s of the stop signal (is the broker reachable?): exiting now. "
            "Not flushed: %s",
            self.bound_s,
            "; ".join(lines),
        )
        health.flush_limiters(everything=True)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):  # exiting anyway
                handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FORCED)


def stop_bound(app: Any) -> float:
    """How long the worker's stop may take: its own settings' `shutdown_timeout_s`, which `create_app` keeps on the
    app (a worker built in code with its own Settings), else the environment's."""
    bound = getattr(app, "shutdown_timeout_s", None)
    if bound is None:
        from leadflow.streams.runtime.settings import Settings

        bound = Settings().shutdown_timeout_s
    return float(bound)


class BoundedWorker(faust.Worker):
    """Faust's worker with a bounded stop and rate-limited warning and error logs."""

    watchdog: Watchdog | None = None

    def _arm(self) -> None:
        if self.watchdog is None:
            bound = stop_bound(self.app)
            self.watchdog = Watchdog(self.app, bound)
            log.info("stopping: the worker ends within %.0f s (LEADFLOW_SHUTDOWN_TIMEOUT_S)", bound)
            self.watchdog.arm()

    def _on_sigterm(self) -> None:
        self._arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm()
        super()._on_sigint()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        health.install(logger)

    def stop_and_shutdown(self) -> None:
        self._arm()  # however the stop began (a crash too), it is bounded
        super().stop_and_shutdown()
        health.flush_limiters(everything=True)
        if self.watchdog is not None:
            self.watchdog.disarm()
