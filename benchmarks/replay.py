"""Offline replay throughput: `leadflow replay` against a plain read + parse + dict loop over the same file.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.replay --write-results            # 1,000,000 simulated journey events
    .venv/bin/python -m benchmarks.replay --events 200000 --sort-buffer 50000

Input: a JSONL file of simulated lead journeys (``streams.dev.simulator.journeys``, seeded), generated once into
``--cache-dir`` (default: the system temp dir) and reused while it exists (the cache is keyed by seed and size
only: delete it after changing the simulator). Leads are generated in blocks of
10,000, each block's arrivals starting where the previous block's began plus its arrival span, so journeys of
consecutive blocks overlap in time and the file is *not* in event-time order: the replay's external sort has
real work to do (with the default sort buffer of 200,000 lines, a 1M-event file spills 4 sorted runs).

Cases, in one run, over the same file (read once beforehand, so both find it in the page cache):

  a  plain loop: read lines, orjson.loads, one dict update per lead (the floor: no validation, no logic)
  b  ``streams.cli.replay.replay`` in process: read and sort (external merge sort), decode every line
     (core.intake), the whole worker in one process (core.engine: decide, SLA clocks in event time,
     routing, hand-offs), then the funnel report of every lead record (core.report)

events/s = events in the file / wall seconds of the case; (b)'s phases are printed too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.streams.cli.replay import DEFAULT_SORT_BUFFER, ReplayOptions, replay
from leadflow.streams.dev.simulator import journeys

SEED = 7
BLOCK_LEADS = 10_000
MEAN_GAP_S = 2.0
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SECTION_TITLE = "replay throughput"


@dataclass
class CaseResult:
    case: str
    label: str
    events: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


# -- input -------------------------------------------------------------------------------------------------
def journey_events(n: int, seed: int = SEED) -> Iterator[dict[str, Any]]:
    """The first `n` events of simulated journeys, block after block of 10,000 leads (see the module doc)."""
    emitted, block = 0, 0
    while emitted < n:
        start = START + dt.timedelta(seconds=block * BLOCK_LEADS * MEAN_GAP_S)
        for event in journeys(seed + block, BLOCK_LEADS, start, mean_gap_s=MEAN_GAP_S, id_prefix=f"b{block:03d}"):
            yield event
            emitted += 1
            if emitted == n:
                return
        block += 1


def events_file(n: int, cache_dir: Path) -> tuple[Path, float | None]:
    """The cached file of `n` events (generated when missing); returns (path, seconds to generate or None)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"journeys-seed{SEED}-{n}.jsonl"
    if path.exists():
        return path, None
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    with partial.open("wb", buffering=1 << 20) as out:
        for event in journey_events(n):
            out.write(orjson.dumps(event) + b"\n")
    partial.rename(path)
    return path, time.perf_counter() - started


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


# -- cases -------------------------------------------------------------------------------------------------
def plain_loop(path: Path) -> CaseResult:
    """(a) read lines, orjson.loads each, one dict update per lead."""
    started = time.perf_counter()
    leads: dict[str, tuple[str, str, int]] = {}
    events = 0
    with path.open("rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            lead = event["lead_id"]
            seen = leads.get(lead)
            leads[lead] = (event["type"], event["occurred_at"], seen[2] + 1 if seen else 1)
            events += 1
    seconds = time.perf_counter() - started
    return CaseResult("a", "read + orjson.loads + dict update per lead", events, seconds, [f"{len(leads):,} leads"])


def replay_case(path: Path, workdir: Path, sort_buffer: int) -> CaseResult:
    """(b) the replay itself, in process."""
    report_json = workdir / "replay-report.json"
    started = time.perf_counter()
    result = replay(ReplayOptions(events=path, report_json=report_json, sort_buffer=sort_buffer, temp_dir=workdir))
    seconds = time.perf_counter() - started
    report = result.reports[0]
    block = report["replay"]
    outputs = sum(block["outputs"].values())
    notes = [
        f"read + sort {result.read_s:.1f} s ({result.runs} runs spilled, buffer {sort_buffer:,} lines)",
        f"decode + engine {result.replay_s:.1f} s ({result.events / result.replay_s:,.0f} ev/s)",
        f"report {result.report_s:.1f} s",
        f"{report['leads']:,} leads, {outputs:,} outputs, {block['decisions'].get('applied', 0):,} decisions applied "
        f"(with the engine's own timer and router events), {block['malformed']['count']} malformed",
    ]
    return CaseResult("b", "leadflow replay (sort, decode, engine, report)", result.events, seconds, notes)


# -- report ------------------------------------------------------------------------------------------------


def format_table(results: list[CaseResult]) -> str:
    base = next(r for r in results if r.case == "a")
    lines = [
        "| case | what | events | seconds | events/s | vs (a) | notes |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.case} | {r.label} | {r.events:,} | {r.seconds:.2f} | {r.eps:,.0f} | {r.eps / base.eps:.3f}x "
            f"| {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def results_section(
    table: str, events: int, size: int, *, peak_rss_mb: float, generated_s: float | None, load: str, extra: str
) -> str:
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    generated = f"generated in {generated_s:.0f} s" if generated_s is not None else "reused from the cache"
    return (
        f"## {now}: {SECTION_TITLE}, {events:,} events, one process\n\n"
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}.\n"
        f"Input: simulated lead journeys (`benchmarks/replay.py`: streams.dev.simulator.journeys, seed {SEED}, blocks "
        f"of {BLOCK_LEADS:,} leads overlapping in time, so not in event-time order), {size / 1e6:,.0f} MB of JSONL "
        f"({generated}); default policy. Peak RSS of the run {peak_rss_mb:,.0f} MB. Load average (1 min) {load}.\n"
        f"{extra}\n{table}\n"
    )


def write_results(section: str, events: int) -> None:
    """Append the section to RESULTS.md, replacing an earlier replay section of the same day and size."""
    append_section(section, rf"{SECTION_TITLE}, {events:,} events, one process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the file (default 1,000,000)")
    parser.add_argument("--sort-buffer", type=int, default=DEFAULT_SORT_BUFFER, help="the replay's sort buffer")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "leadflow-bench-replay")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="a sentence to add to the RESULTS.md section")
    args = parser.parse_args(argv)

    path, generated_s = events_file(args.events, args.cache_dir)
    size = path.stat().st_size
    how = f"generated in {generated_s:.1f} s" if generated_s is not None else "cached"
    print(f"input {path} ({args.events:,} events, {size / 1e6:,.0f} MB, {how})", flush=True)
    warm(path)
    load_before = os.getloadavg()[0]
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-replay-") as workdir:
        cases: list[tuple[str, Callable[[], CaseResult]]] = [
            ("a", partial(plain_loop, path)),
            ("b", partial(replay_case, path, Path(workdir), args.sort_buffer)),
        ]
        for name, case in cases:
            print(f"case {name} ...", flush=True)
            results.append(case())
            print(f"  {results[-1].eps:,.0f} events/s in {results[-1].seconds:.1f} s", flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    a, b = results
    table = format_table(results)
    print(table)
    print(
        f"replay / plain loop: {b.eps / a.eps:.4f} ({a.eps / b.eps:,.1f}x slower); peak RSS {peak_rss_mb:,.0f} MB; "
        f"load average {load}"
    )
    if args.write_results:
        extra = f"{args.note}\n" if args.note else ""
        section = results_section(
            table, args.events, size, peak_rss_mb=peak_rss_mb, generated_s=generated_s, load=load, extra=extra
        )
        write_results(section, args.events)
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
