"""A tracked lead's cost at scale (issue 15 item 2): its changelog record, the worker's memory, the restore.

Run from the repository root::

    .venv/bin/python -m benchmarks.memory --write-results              # 200,000 leads
    .venv/bin/python -m benchmarks.memory --leads 1000000              # the goal's scale (needs ~20 GB today)

Input: the leads table as the worker leaves it. The simulated journeys of ``--distinct`` leads (seed 7, the default
funnel shape, the default policy) go through the whole core in one process (core.engine, as `leadflow replay`);
their final records, encoded as the worker's table writes them to its changelog (streams.runtime.table_codec.ModelCodec:
JSON, defaults left out), are repeated under new lead ids up to ``--leads`` values.

Cases, each in a fresh interpreter so that one case's heap does not hide the other's:

  memory   ``memory://``, the default store: every value decoded into a lead record held in a dict, as a worker
           rebuilds its table from the changelog at start (ModelCodec.loads). RSS per lead = the process's RSS
           growth / leads; restore = seconds to decode them all.
  rocksdb  ``rocksdb://`` (rocksdict, the production store): the values written to a database in a temporary
           directory in batches, as Faust's rocksdb store writes a restored changelog, then read back and decoded
           one by one, as the deadline index rebuild after a rebalance reads every lead. RSS per lead, write
           seconds (the restore), read-and-decode seconds, bytes on disk per lead.

The changelog figures are for the values themselves (the record key is the lead id).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.core import changelog_record, decode_all, percentile, records, run_engine
from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.schemas.state import RECORD_ADAPTER
from leadflow.streams.runtime.heap import tune_gc

SECTION_TITLE = "lead memory at scale"
PAGE = os.sysconf("SC_PAGE_SIZE")
ROCKSDB_BATCH = 1000  # values per write batch, as a restore writes them (Faust's rocksdb store: one batch per fetch)


def distinct_values(leads: int) -> list[tuple[bytes, bytes]]:
    """(lead id, changelog value) of every lead the simulated journeys leave in the table."""
    engine = run_engine(decode_all(records(leads)), defaultdict(list))
    return [(lead_id.encode(), changelog_record(record)) for lead_id, record in engine.records.items()]


def values(distinct: list[tuple[bytes, bytes]], leads: int) -> Iterator[tuple[bytes, bytes]]:
    """`leads` values: the distinct ones again and again, each time under new lead ids of the same length."""
    for n in range(leads):
        lead_id, value = distinct[n % len(distinct)]
        new_id = b"%s~%07d" % (lead_id[: max(1, len(lead_id) - 8)], n)
        yield new_id, value.replace(b'"' + lead_id + b'"', b'"' + new_id + b'"')


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


def measure_memory(distinct: list[tuple[bytes, bytes]], leads: int) -> dict[str, float]:
    tune_gc()
    loads = RECORD_ADAPTER.validate_json
    before = rss()
    started = time.perf_counter()
    table = {key: loads(value) for key, value in values(distinct, leads)}
    restore_s = time.perf_counter() - started
    grown = rss() - before
    assert len(table) == leads
    return {"rss_per_lead": grown / leads, "restore_s": restore_s}


def measure_rocksdb(distinct: list[tuple[bytes, bytes]], leads: int) -> dict[str, float]:
    from rocksdict import Options, Rdict, WriteBatch

    tune_gc()
    directory = Path(tempfile.mkdtemp(prefix="leadflow-bench-rocksdb-"))
    try:
        before = rss()
        db = Rdict(str(directory), options=Options(raw_mode=True))
        started = time.perf_counter()
        batch = WriteBatch(raw_mode=True)
        for n, (key, value) in enumerate(values(distinct, leads), start=1):
            batch.put(key, value)
            if n % ROCKSDB_BATCH == 0:
                db.write(batch)
                batch = WriteBatch(raw_mode=True)
        db.write(batch)
        db.flush()
        write_s = time.perf_counter() - started
        loads = RECORD_ADAPTER.validate_json
        started = time.perf_counter()
        read = sum(1 for _, value in db.items() if loads(value) is not None)
        read_s = time.perf_counter() - started
        grown = rss() - before
        db.close()
        on_disk = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
        assert read == leads
        return {"rss_per_lead": grown / leads, "write_s": write_s, "read_s": read_s, "disk_per_lead": on_disk / leads}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_child(work: Callable[..., dict[str, float]], *args: Any) -> dict[str, float]:
    """Run one case in a fresh interpreter (spawn): its RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(work, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=200_000, help="leads in the table (default 200,000)")
    parser.add_argument("--distinct", type=int, default=5_000, help="simulated journeys behind them (default 5,000)")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="a sentence to add to the RESULTS.md section")
    args = parser.parse_args(argv)

    distinct = distinct_values(args.distinct)
    sizes = [len(value) for _, value in distinct]
    memory = in_child(measure_memory, distinct, args.leads)
    rocksdb = in_child(measure_rocksdb, distinct, args.leads)
    n = args.leads
    record = (
        f"Changelog value per lead (JSON, defaults left out; {len(distinct):,} distinct leads): mean "
        f"{statistics.fmean(sizes):,.0f} bytes, p50 {percentile(sizes, 0.5):,.0f}, p99 {percentile(sizes, 0.99):,.0f}, "
        f"max {max(sizes):,}."
    )
    table = [
        "| store | leads | RSS per lead | restore | read and decode all | on disk per lead |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `memory://` | {n:,} | {memory['rss_per_lead']:,.0f} B | {memory['restore_s']:.1f} s (decode) | — | — |",
        f"| `rocksdb://` | {n:,} | {rocksdb['rss_per_lead']:,.0f} B | {rocksdb['write_s']:.1f} s (write) | "
        f"{rocksdb['read_s']:.1f} s | {rocksdb['disk_per_lead']:,.0f} B |",
    ]
    print(record, "", *table, sep="\n")
    if args.write_results:
        info = machine_info()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = "\n".join(
            [
                f"## {now}: {SECTION_TITLE}, {n:,} leads",
                "",
                f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}.",
                f"Command: `python -m benchmarks.memory --leads {n} --distinct {args.distinct} --write-results`.",
                *([args.note] if args.note else []),
                "",
                record,
                "",
                *table,
                "",
            ]
        )
        append_section(section, rf"{SECTION_TITLE}, {n:,} leads")
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
