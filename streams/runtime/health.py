"""Whether a worker is alive, whether it is ready, and a log that stays readable during an outage (issue 13).

- **Liveness** (`/healthz`): the event loop answers. Nothing else: a worker that cannot reach the broker is
  alive, and restarting it would not bring the broker back.
- **Readiness** (`/readyz`): the worker does its job. `reasons(snapshot)` is the pure decision: the tables are
  recovered, the consumer is a member of the group with its assignment and gets fetch answers, the producer
  sends, and the broker answers a metadata request. `Health` takes the snapshot from the running Faust app and
  probes the broker in the background (`BrokerProbe`), which also feeds `leadflow_broker_reachable`.
- **Log limiter** (`LogLimiter`): a logging filter that lets the first record of a kind (logger, level, message
  template) through, suppresses the repeats for a window, and then writes one summary line ("... repeated 812
  times in the last 30 s"): a dead broker makes aiokafka and Faust log ~40 error lines a second otherwise.

Faust's and aiokafka's state is read through their (private) attributes, each read guarded: a worker that is
starting or stopping has some of them missing, which counts as "not known yet", never as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from leadflow.streams.runtime.settings import Settings

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 2.0  # how often the broker is asked for its metadata
PROBE_TIMEOUT_S = 3.0  # a probe without an answer by then counts as unreachable
FETCH_STALE_S = 30.0  # no fetch answer for this long, with nothing fetched waiting: the consumer is not fetching
PRODUCER_STUCK_S = 15.0  # a record batch unsent for this long: the producer cannot send
LOG_WINDOW_S = 30.0  # one line per kind of warning or error per window; the repeats are summarized
LOG_KINDS = 1000  # most kinds of record the limiter tracks at once; beyond, records pass unlimited
RETRY_AFTER_S = 5  # what a 503 asks clients to wait


# ---- the readiness decision (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What readiness is decided on, as seen at one instant."""

    stopping: bool = False  # the worker is shutting down
    assigned: bool = False  # the consumer received a partition assignment (possibly empty) since it started
    rebalancing: bool = False  # a rebalance is in progress (from its start until the tables are recovered)
    recovering: bool = False  # tables are being recovered from their changelogs
    recovered: bool = False  # the first recovery after start finished (Faust's "Worker ready")
    partitions: int = 0  # partitions assigned to the consumer (actives and standbys)
    fetch_age_s: float | None = None  # since the newest fetch answer on any assigned partition; None: none yet
    fetched_waiting: bool = False  # fetched records wait to be handed to the streams (busy, not starved)
    broker_reachable: bool | None = None  # the last probe's answer; None: not probed yet
    broker_silent_s: float | None = None  # since the broker last answered a probe (None: never)
    unsent_records: int = 0  # records queued in the producer (its buffer and its batches)
    unsent_age_s: float = 0.0  # age of the oldest unsent batch (0 when none)


def reasons(snapshot: Snapshot) -> list[str]:
    """Why the worker is not ready (empty: ready). Each reason is a sentence an operator can act on."""
    s = snapshot
    found: list[str] = []
    if s.stopping:
        found.append("the worker is shutting down")
    if s.broker_reachable is False:
        since = f" for {s.broker_silent_s:.0f} s" if s.broker_silent_s is not None else " since the worker started"
        found.append(f"the broker does not answer{since}: check that it is up and reachable")
    if not s.assigned:
        found.append("the consumer has no partition assignment yet (joining the group)")
    elif s.recovering or s.rebalancing or not s.recovered:
        found.append("recovering the tables from their changelogs (rebalance in progress)")
    elif s.partitions and not s.fetched_waiting and s.fetch_age_s is not None and s.fetch_age_s > FETCH_STALE_S:
        found.append(f"the consumer has had no fetch answer for {s.fetch_age_s:.0f} s")
    if s.unsent_records and s.unsent_age_s > PRODUCER_STUCK_S:
        found.append(f"the producer holds {s.unsent_records} records, the oldest unsent for {s.unsent_age_s:.0f} s")
    return found


def readiness_body(found: list[str], app_id: str) -> dict[str, Any]:
    """The JSON of /readyz: `ready` or `not ready` with the reasons."""
    if not found:
        return {"status": "ready", "app": app_id}
    return {"status": "not ready", "app": app_id, "reasons": found}


# ---- the running worker's state --------------------------------------------------------------------------------


def _consumer_state(app: Any, now_ms: float) -> tuple[int, float | None, bool]:
    """(assigned partitions, seconds since the newest fetch answer, fetched records waiting) from aiokafka."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return 0, None, False
    try:
        assigned = consumer.assignment()
        client = consumer._thread._ensure_consumer()
        records = client._fetcher._records
    except Exception:  # not started yet, or restarting during a rebalance
        return 0, None, False
    newest: float | None = None
    waiting = False
    for tp in assigned:
        with contextlib.suppress(Exception):
            polled = client.last_poll_timestamp(tp)
            if polled:
                newest = polled if newest is None else max(newest, polled)
            waiting = waiting or tp in records
    return len(assigned), None if newest is None else max(now_ms - newest, 0.0) / 1000, waiting


def unsent(app: Any, now: float) -> tuple[int, float, int]:
    """(records unsent, age in seconds of the oldest unsent batch, records in Faust's producer buffer)."""
    producer = getattr(app, "_producer", None)
    if producer is None:
        return 0, 0.0, 0
    buffered = 0
    with contextlib.suppress(Exception):
        buffered = int(producer.buffer.size)
    records, oldest = buffered, None
    accumulator = getattr(getattr(producer, "_producer", None), "_message_accumulator", None)
    if accumulator is not None:
        with contextlib.suppress(Exception):
            batches = [b for queue in list(accumulator._batches.values()) for b in list(queue)]
            batches += list(accumulator._pending_batches)
            for batch in batches:
                records += int(batch.record_count)
                oldest = batch._ctime if oldest is None else min(oldest, batch._ctime)
    return records, 0.0 if oldest is None else max(now - oldest, 0.0), buffered


class BrokerProbe:
    """Asks the broker for its metadata every PROBE_INTERVAL_S on a fresh connection (the workers' TLS / SASL
    settings): the answer, or its absence within PROBE_TIMEOUT_S, is `reachable`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        from leadflow.streams.runtime.topics import client_options

        self.bootstrap = settings.bootstrap
        self.options = client_options(settings)
        self.clock = clock
        self.reachable: bool | None = None
        self.last_answer: float | None = None  # clock() of the last answer
        self.last_answer_wall: float | None = None  # time.time() of the last answer
        self.started = clock()

    async def probe(self) -> bool:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **self.options
        )
        try:
            await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT_S)
        except Exception as error:  # refused, timed out, TLS or SASL failure: all unreachable
            if self.reachable is not False:
                log.warning("the broker %s does not answer: %s", self.bootstrap, error or type(error).__name__)
            self.reachable = False
        else:
            if self.reachable is False:
                log.warning("the broker %s answers again", self.bootstrap)
            self.reachable = True
            self.last_answer, self.last_answer_wall = self.clock(), time.time()
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        return bool(self.reachable)

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(PROBE_INTERVAL_S)

    def silent_s(self) -> float:
        """Seconds since the last answer (since the probe started when there was none)."""
        return self.clock() - (self.last_answer if self.last_answer is not None else self.started)


class Health:
    """Readiness of one running worker: the Faust app's state, the broker probe, the producer's queue."""

    def __init__(self, app: Any, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.probe = BrokerProbe(settings, clock)
        self.assigned = False
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the broker probe on the running loop, once. Called from the first assignment and the web views:
        Faust starts its own tasks and timers only after the first table recovery."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.probe.run(), name="leadflow-broker-probe")

    async def on_assigned(self, *args: Any, **kwargs: Any) -> None:
        self.assigned = True
        self.start()

    def snapshot(self) -> Snapshot:
        app = self.app
        recovery = getattr(getattr(app, "tables", None), "recovery", None)
        completed = getattr(recovery, "completed", None)
        partitions, fetch_age, waiting = _consumer_state(app, time.time() * 1000)
        records, age, _ = unsent(app, time.monotonic())
        return Snapshot(
            stopping=self.stopping or bool(getattr(app, "should_stop", False)),
            assigned=self.assigned,
            rebalancing=bool(getattr(app, "rebalancing", False)),
            recovering=bool(getattr(app, "in_recovery", False)),
            recovered=bool(completed is not None and completed.is_set()),
            partitions=partitions,
            fetch_age_s=fetch_age,
            fetched_waiting=waiting,
            broker_reachable=self.probe.reachable,
            broker_silent_s=self.probe.silent_s() if self.probe.reachable is False else None,
            unsent_records=records,
            unsent_age_s=age,
        )

    def reasons(self) -> list[str]:
        return reasons(self.snapshot())

    def is_ready(self) -> bool:
        return not self.reasons()

    def recovering(self) -> bool:
        """The tables are not (yet) what the changelog holds: before the first recovery, or during one."""
        s = self.snapshot()
        return not s.assigned or s.recovering or s.rebalancing or not s.recovered


# ---- which worker holds a partition --------------------------------------------------------------------------


def owner_url(app: Any, changelog_topic: str, partition: int) -> str | None:
    """The advertised web URL (Faust's canonical_url) of the worker that holds `partition` of a table's changelog
    as an active replica, from the group's last assignment (Faust's partition assignor); None when unknown."""
    try:
        for url, topics in app.assignor.tables_metadata().items():
            if partition in topics.get(changelog_topic, ()):
                return str(url)
    except Exception:  # no assignment yet
        return None
    return None


# ---- the log limiter ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Kind:
    since: float  # when the current window started (the first record of the kind in it passed)
    text: str  # that record's message, for the summary
    suppressed: int = 0


SUMMARY = "leadflow_log_summary"  # attribute of the summary records (the limiter lets them through)


class LogLimiter(logging.Filter):
    """Per kind of record (logger, level, message template) at `level` or above: the first passes, the repeats
    within `window_s` are counted, not written; the first after the window passes after a summary line
    ("<message> ... repeated N times in the last 30 s"); `flush` writes the summaries of kinds that went quiet.

    One limiter per handler (`install`): it writes its summaries to that handler."""

    def __init__(
        self,
        handler: logging.Handler | None = None,
        *,
        window_s: float = LOG_WINDOW_S,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = LOG_KINDS,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.window_s = window_s
        self.level = level
        self.clock = clock
        self.max_kinds = max_kinds
        self.kinds: dict[tuple[str, int, str], _Kind] = {}
        self.lock = threading.Lock()  # the consumer thread logs too
        self.summaries: list[logging.LogRecord] = []  # written here when there is no handler (tests)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or getattr(record, SUMMARY, False):
            return True
        now = self.clock()
        key = (record.name, record.levelno, str(record.msg))
        due: list[logging.LogRecord] = []
        with self.lock:
            kind = self.kinds.get(key)
            if kind is None:
                if len(self.kinds) >= self.max_kinds:
                    due = self._expire(now)
                if len(self.kinds) < self.max_kinds:
                    self.kinds[key] = _Kind(now, _text(record))
                passed = True
            elif now - kind.since < self.window_s:
                kind.suppressed += 1
                passed = False
            else:
                if kind.suppressed:
                    due.append(self._summary(key, kind, now))
                kind.since, kind.text, kind.suppressed = now, _text(record), 0
                passed = True
        self._write(due)
        return passed

    def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of kinds whose window is over, or of every kind (`everything`: at exit), and forget
        those kinds; returns how many summaries were written."""
        with self.lock:
            due = self._expire(self.clock(), everything=everything)
        self._write(due)
        return len(due)

    def _expire(self, now: float, *, everything: bool = False) -> list[logging.LogRecord]:
        due = []
        for key, kind in list(self.kinds.items()):
            if everything or now - kind.since >= self.window_s:
                if kind.suppressed:
                    due.append(self._summary(key, kind, now))
                del self.kinds[key]
        return due

    def _summary(self, key: tuple[str, int, str], kind: _Kind, now: float) -> logging.LogRecord:
        name, level, _ = key
        seconds = min(now - kind.since, self.window_s)
        record = logging.LogRecord(
            name, level, __file__, 0,
            "%s ... repeated %d times in the last %.0f s (one line per kind every %.0f s)",
            (kind.text, kind.suppressed, seconds, self.window_s), None,
        )  # fmt: skip
        setattr(record, SUMMARY, True)
        return record

    def _write(self, records: Iterable[logging.LogRecord]) -> None:
        for record in records:
            if self.handler is not None:
                self.handler.handle(record)
            else:
                self.summaries.append(record)


def _text(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a record whose arguments do not fit its template
        text = str(record.msg)
    return text if len(text) <= 300 else text[:300] + "..."


def install(logger: logging.Logger, **options: Any) -> list[LogLimiter]:
    """A limiter on every handler of `logger` (the root logger: every propagated record goes through them)."""
    limiters = []
    for handler in logger.handlers:
        if not any(isinstance(f, LogLimiter) for f in handler.filters):
            limiter = LogLimiter(handler, **options)
            handler.addFilter(limiter)
            limiters.append(limiter)
    return limiters


def limiters(logger: logging.Logger | None = None) -> list[LogLimiter]:
    logger = logger or logging.getLogger()
    return [f for h in logger.handlers for f in h.filters if isinstance(f, LogLimiter)]


def flush_limiters(*, everything: bool = False) -> None:
    for limiter in limiters():
        limiter.flush(everything=everything)


def applied_offsets(applied: Mapping[int, int], committed: Mapping[int, int], actives: Iterable[int]) -> dict[int, int]:
    """Per active partition: the offset after the last record the agent applied, or the committed offset when
    it has applied none of that partition yet (pure)."""
    return {p: max(applied[p] + 1 if p in applied else 0, committed.get(p, 0)) for p in actives}
