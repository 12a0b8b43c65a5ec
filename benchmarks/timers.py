"""SLA timer benchmark: (1) the deadline index's sweep costs what is due, not what is open; (2) breaches reach
`leads.sla` soon after their deadline, end to end on the embedded broker.

    python -m benchmarks.timers [--open 1000000] [--leads 200] [--write-results]

(1) builds the index directly (1M open deadlines would take the embedded broker too long to fill) and times
`pop_due` for k due entries among n open ones, as ratios against the smallest n in the same run.
(2) runs a real worker with a policy whose hand-raiser first-contact allowance is a few seconds, produces
hand-raisers, and reads each breach's broker timestamp (record CreateTime) minus its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from leadflow.core.deadlines import DeadlineIndex
from leadflow.schemas.outputs import SLA_ADAPTER, SlaBreached
from leadflow.streams.dev.broker import EmbeddedBroker, free_port
from leadflow.streams.dev.worker_process import WorkerProcess, wait_until_committed
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import create_leadflow_topics, embedded_producer_settings

RESULTS = Path(__file__).with_name("RESULTS.md")
PARTITIONS = 4


def sweep_cost(open_count: int, due: int, repeats: int = 5) -> float:
    """Median seconds for one sweep that takes `due` entries out of an index holding `open_count` + `due`."""
    rng = random.Random(7)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    times = []
    for _ in range(repeats):
        index = DeadlineIndex()
        for i in range(open_count):
            index.set(f"open-{i}", now + timedelta(seconds=1 + rng.random() * 86_400))
        for i in range(due):
            index.set(f"due-{i}", now - timedelta(seconds=rng.random() * 60))
        start = time.perf_counter()
        taken = index.pop_due(now)
        times.append(time.perf_counter() - start)
        assert len(taken) == due
    return statistics.median(times)


def index_table(max_open: int) -> str:
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= max_open]
    lines = ["| open deadlines | due | sweep (median of 5) | vs 10k open, same due |", "|---:|---:|---:|---:|"]
    for due in (10, 100, 1000):
        base = None
        for n in sizes:
            cost = sweep_cost(n, due)
            base = base or cost
            lines.append(f"| {n:,} | {due:,} | {cost * 1e6:,.0f} µs | {cost / base:.2f}x |")
    return "\n".join(lines)


def fast_policy(path: Path, seconds: float) -> Path:
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    # No grace: the latency measured is the machinery's (sweep, round trip), not the policy's wait for late
    # producers, which adds processing.sla_grace_seconds (30 s by default) to every breach.
    document["processing"]["sla_grace_seconds"] = 0
    for sla in document["slas"]:
        if sla["name"] == "first_contact":
            sla["overrides"] = [{"when": "hand_raiser", "allowance": {"minutes": seconds / 60}}]
    path.write_text(yaml.safe_dump(document))
    return path


async def breach_latency(leads: int, allowance_s: float, workdir: Path) -> list[float]:
    """Seconds from each deadline to its breach record's broker timestamp."""
    with EmbeddedBroker(workdir) as broker:
        prefix = f"bench-{uuid.uuid4().hex[:6]}."
        settings = Settings(
            broker=broker.url,
            embedded=True,
            app_id=f"lf-bench-{uuid.uuid4().hex[:6]}",
            partitions=PARTITIONS,
            topic_events=f"{prefix}events",
            topic_transitions=f"{prefix}transitions",
            topic_deadletter=f"{prefix}deadletter",
            topic_sla=f"{prefix}sla",
            web_port=free_port(),
            data_dir=workdir / "data",
            policy=fast_policy(workdir / "policy.yaml", allowance_s),
        )
        await create_leadflow_topics(settings)
        worker = WorkerProcess(settings.as_env(), workdir / "worker.log").start()
        try:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **embedded_producer_settings())
            await producer.start()
            produced: dict[int, int] = {}
            try:
                for i in range(leads):
                    lead, at = f"bench-{i}", datetime.now(UTC)
                    for n, (kind, data) in enumerate((("lead.created", {}), ("activity", {"action": "demo_request"}))):
                        body = {"event_id": f"{lead}-{n}", "lead_id": lead, "type": kind, "source": "bench",
                                "occurred_at": (at + timedelta(milliseconds=n)).isoformat(), "data": data}  # fmt: skip
                        meta = await producer.send_and_wait(
                            settings.topic_events, orjson.dumps(body), key=lead.encode()
                        )
                        produced[meta.partition] = max(produced.get(meta.partition, 0), meta.offset + 1)
            finally:
                await producer.stop()
            await wait_until_committed(broker.bootstrap, settings.app_id, settings.topic_events, produced,
                                       timeout_s=120, worker=worker)  # fmt: skip
            return await read_breaches(broker.bootstrap, settings.topic_sla, leads, timeout_s=allowance_s + 60)
        finally:
            worker.stop()


async def read_breaches(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    latencies: dict[str, float] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout_s
        while len(latencies) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    output = SLA_ADAPTER.validate_json(message.value or b"")
                    if isinstance(output, SlaBreached):
                        latencies[output.id] = message.timestamp / 1000 - output.deadline.timestamp()
    finally:
        await consumer.stop()
    if len(latencies) != expected:
        raise RuntimeError(f"{len(latencies)} breaches of {expected} within {timeout_s:.0f} s")
    return sorted(latencies.values())


def quantile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, round(share * (len(values) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open", type=int, default=1_000_000, help="largest number of open deadlines")
    parser.add_argument("--leads", type=int, default=200, help="hand-raisers in the end-to-end run")
    parser.add_argument("--allowance-s", type=float, default=5.0)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)

    table = index_table(args.open)
    print(table)
    with tempfile.TemporaryDirectory(prefix="leadflow-timers-") as workdir:
        latencies = asyncio.run(breach_latency(args.leads, args.allowance_s, Path(workdir)))
    p50, p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
    summary = (
        f"End to end: {len(latencies)} breaches, each {len(latencies) and args.allowance_s:g} s after its MQL; "
        f"breach record timestamp minus deadline: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms (sweep every 0.25 s)."
    )
    print(summary)
    if args.write_results:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), platform.processor()
        )  # fmt: skip
        with RESULTS.open("a") as out:
            out.write(
                f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: SLA timers\n\n"
                f"Machine: `{platform.machine()}`, {cpu}; Python {platform.python_version()}.\n\n"
                f"Deadline index sweep (built directly, `benchmarks/timers.py`):\n\n{table}\n\n{summary}\n"
            )
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
