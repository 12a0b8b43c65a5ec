"""The pure core's cost per event and per lead, before any Kafka (issue 15's baseline and its progress).

Run from the repository root::

    .venv/bin/python -m benchmarks.core --write-results             # 5,000 leads of simulated journeys
    .venv/bin/python -m benchmarks.core --leads 20000

Input: simulated lead journeys (``streams.dev.simulator.journeys``, seed 7, the default funnel shape) as the bytes a
producer sends, in event-time order; the default policy (SLAs, routing, hand-offs on). Cases, in one run, over the
same records:

  a  plain loop: orjson.loads and one dict update per lead (the floor: no validation, no logic)
  d  decode: ``core.intake.decode`` of every record (envelope, schema, repeated keys, the internal-event proof)
  e  engine: the decoded events through ``core.engine.Engine`` (what ``leadflow replay`` runs after decoding:
     decide, SLA clocks in event time, the router, hand-offs), every call of ``decide`` timed by event type

Then the leads it holds: the Python heap of the engine's lead records (tracemalloc, per lead) and the size of each
lead's changelog record (as the worker's table writes it: JSON without defaults, compactly encoded by
schemas.record_encoding). events/s = records / wall seconds
of the case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import statistics
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.core import engine as engine_module
from leadflow.core.engine import Engine
from leadflow.core.intake import decode
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import DeadLetter
from leadflow.schemas.policy import load_policy
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.runtime.heap import tune_gc

SEED = 7
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SECTION_TITLE = "core speed"
RECEIVED_AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def records(leads: int) -> list[tuple[bytes, bytes]]:
    return [(e["lead_id"].encode(), orjson.dumps(e)) for e in journeys(seed=SEED, n_leads=leads, start=START)]


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def plain_loop(sent: list[tuple[bytes, bytes]]) -> dict[str, int]:
    per_lead: dict[str, int] = defaultdict(int)
    for _, value in sent:
        per_lead[orjson.loads(value)["lead_id"]] += 1
    return per_lead


def decode_all(sent: list[tuple[bytes, bytes]]) -> list[LeadEvent]:
    events = []
    for offset, (key, value) in enumerate(sent):
        event = decode(key, value, topic="bench", partition=0, offset=offset, received_at=RECEIVED_AT)
        assert not isinstance(event, DeadLetter), event.errors
        events.append(event)
    return events


def run_engine(events: list[LeadEvent], by_type: dict[str, list[float]]) -> Engine:
    """Every input event through the engine; each call of `decide` (inputs, timers, router answers) timed."""
    decide = engine_module.decide

    def timed_decide(record: Any, event: LeadEvent, *args: Any) -> Any:
        started = time.perf_counter()
        decision = decide(record, event, *args)
        by_type[event.type].append(time.perf_counter() - started)
        return decision

    engine_module.decide = timed_decide  # type: ignore[assignment]  # this run only
    try:
        engine = Engine(load_policy())
        for event in events:
            engine.feed(event)
        engine.finish()
        return engine
    finally:
        engine_module.decide = decide  # type: ignore[assignment]


def changelog_record(record: LeadRecord) -> bytes:
    """The value the worker writes to the leads table's changelog (streams.runtime.table_codec.ModelCodec: JSON
    without defaults in the compact encoding of schemas.record_encoding)."""
    return LEAD_RECORD_ENCODING.encode(record)


def heap_per_lead(events: list[LeadEvent]) -> tuple[float, int]:
    """Bytes of Python heap the engine's lead records hold, per lead (the records alone: traced while only they
    are kept), and how many leads."""
    engine = run_engine(events, defaultdict(list))
    kept = list(engine.records.values())
    del engine
    gc.collect()
    tracemalloc.start()
    copies = [LEAD_RECORD_ENCODING.decode(changelog_record(r)) for r in kept]  # the records as restored
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / len(copies), len(copies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5_000, help="simulated journeys (default 5,000)")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="a sentence to add to the RESULTS.md section")
    args = parser.parse_args(argv)
    tune_gc()  # as every leadflow command runs (streams.runtime.heap)

    sent = records(args.leads)
    load_before = os.getloadavg()[0]
    _, plain_s = timed(lambda: plain_loop(sent))
    events, decode_s = timed(lambda: decode_all(sent))
    by_type: dict[str, list[float]] = defaultdict(list)
    engine, engine_s = timed(lambda: run_engine(events, by_type))
    sizes = [len(changelog_record(r)) for r in engine.leads()]
    heap, leads = heap_per_lead(events)
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"

    n = len(sent)
    rows = [
        ("a", "plain loop: orjson.loads + dict update per lead", plain_s),
        ("d", "decode (core.intake.decode)", decode_s),
        ("e", "engine (core.engine: decide, clocks, router)", engine_s),
        ("d+e", "decode + engine", decode_s + engine_s),
    ]
    table = [
        "| case | what | events | seconds | events/s | µs per event | vs (a) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(
            f"| {c} | {what} | {n:,} | {s:.3f} | {n / s:,.0f} | {s / n * 1e6:,.1f} | {plain_s / s:.4f}x |"
            for c, what, s in rows
        ),
    ]
    calls = [
        "| event type | decide calls | mean µs | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| `{kind}` | {len(t):,} | {statistics.fmean(t) * 1e6:,.1f} | {percentile(t, 0.5) * 1e6:,.1f} | "
            f"{percentile(t, 0.99) * 1e6:,.1f} |"
            for kind, t in sorted(by_type.items(), key=lambda item: -len(item[1]))
        ),
    ]
    memory = (
        f"Leads held at the end: {leads:,}. Python heap of their records (as a restore builds them, tracemalloc): "
        f"{heap:,.0f} bytes per lead. Changelog record (compact encoding): mean {statistics.fmean(sizes):,.0f} "
        f"bytes, p50 {percentile(sizes, 0.5):,.0f}, p99 {percentile(sizes, 0.99):,.0f}, max {max(sizes):,}."
    )
    print("\n".join(table), "\n", "\n".join(calls), "\n", memory, f"\nload average {load}", sep="\n")
    if args.write_results:
        info = machine_info()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        title = f"{SECTION_TITLE}, {args.leads:,} leads ({n:,} events), one process"
        section = "\n".join(
            [
                f"## {now}: {title}",
                "",
                f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}.",
                f"Command: `python -m benchmarks.core --leads {args.leads} --write-results`. Load average (1 min) "
                f"{load}.",
                "Input: streams.dev.simulator.journeys seed 7, default funnel shape, in event-time order; default "
                "policy.",
                *([args.note] if args.note else []),
                "",
                *table,
                "",
                *calls,
                "",
                memory,
                "",
            ]
        )
        append_section(section, rf"{SECTION_TITLE}, {args.leads:,} leads \([^\n]*")
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
