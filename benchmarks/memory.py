"""A tracked lead's cost at scale (issue 15 item 2): its changelog record, the worker's memory, the restore.

Run from the repository root::

    .venv/bin/python -m benchmarks.memory --write-results              # 200,000 leads
    .venv/bin/python -m benchmarks.memory --leads 1000000              # the goal's scale

Input: the leads table as the worker leaves it. The simulated journeys of ``--distinct`` leads (seed 7, the default
funnel shape, the default policy) go through the whole core in one process (core.engine, as `leadflow replay`);
their final records, encoded as the worker's table writes them to its changelog (streams.runtime.table_codec.ModelCodec:
JSON without defaults, in the compact encoding of schemas.record_encoding), are repeated under new lead ids up to
``--leads`` values, which each case encodes a thousand at a time outside its timed part. The value sizes are given
in that encoding and, for comparison, as the plain JSON the tables wrote before it; so are the costs of encoding and
decoding a value, and what a value around p90 spends its bytes on (each field's cost: the value without it).

Cases, each in a fresh interpreter so that one case's heap does not hide the other's, each run twice: on plain JSON
values (what the tables wrote before schemas.record_encoding: the baseline, which a worker still reads), then on
compact ones:

  memory   ``memory://``, the default store (streams.runtime.stores.MemoryStore, built by a Worker as the worker
           builds it): the changelog records handed to it as a restore does (apply_changelog_batch: kept as they
           come, nothing decoded), then every value read back decoded, as a walk of all leads that needs whole
           records does (the goal gauges, /funnel: the cache holds the most recently used only), then every
           partition walked as the deadline index rebuild walks it (streams.runtime.worker.Timers.walk: each value
           read as a view of its clocks and stage, schemas.state.LeadRecordView). RSS per lead = the process's RSS
           growth / leads, also once its cache is full (LEADFLOW_STORE_CACHE values decoded); restore = seconds to
           store them; read and decode all, rebuild walk = seconds for each walk.
  decoded  Faust's own memory store, what ``memory://`` was before streams.runtime.stores: every value decoded
           into a lead record held in a dict, as it rebuilt its table at start. Not run by default (1M leads need
           ~20 GB): ``--stores decoded``.
  rocksdb  ``rocksdb://`` (rocksdict, the production store): the values written to a database in a temporary
           directory in batches, as Faust's rocksdb store writes a restored changelog, then read back and decoded
           one by one, then read back as views (what the deadline index rebuild reads). RSS per lead, write
           seconds (the restore), read-and-decode and rebuild-walk seconds, bytes on disk per lead.

The changelog figures are for the values themselves (the record key is the lead id).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from benchmarks.core import changelog_record, decode_all, percentile, records, run_engine
from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.core.decision import wake_at
from leadflow.schemas.policy import load_policy
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import RECORD_ADAPTER
from leadflow.streams.runtime.heap import tune_gc
from leadflow.streams.runtime.worker import read_view

SECTION_TITLE = (
    "lead memory at scale, compact changelog values"  # before schemas.record_encoding: "lead memory at scale"
)
STORES = ("memory", "decoded", "rocksdb")
DEFAULT_STORES = ("memory", "rocksdb")
PAGE = os.sysconf("SC_PAGE_SIZE")
BATCH = 1000  # values per write batch, as a restore writes them (Faust's rocksdb store: one batch per fetch)


def distinct_values(leads: int) -> list[tuple[bytes, bytes]]:
    """(lead id, the record's JSON without defaults) of every lead the simulated journeys leave in the table."""
    engine = run_engine(decode_all(records(leads)), defaultdict(list))
    return [
        (lead_id.encode(), LEAD_RECORD_ENCODING.to_json(changelog_record(r))) for lead_id, r in engine.records.items()
    ]


def values(distinct: list[tuple[bytes, bytes]], leads: int, plain: bool) -> Iterator[tuple[bytes, bytes]]:
    """`leads` changelog values: the distinct ones again and again, each time under new lead ids of the same length,
    encoded as the table writes them (`plain`: as plain JSON, as the tables wrote them before the encoding)."""
    pack = bytes if plain else LEAD_RECORD_ENCODING.pack
    for n in range(leads):
        lead_id, json = distinct[n % len(distinct)]
        new_id = b"%s~%07d" % (lead_id[: max(1, len(lead_id) - 8)], n)
        yield new_id, pack(json.replace(b'"' + lead_id + b'"', b'"' + new_id + b'"'))


def batches(distinct: list[tuple[bytes, bytes]], leads: int, plain: bool) -> Iterator[list[tuple[bytes, bytes]]]:
    """`values` a thousand at a time, as a restore fetches them: each case encodes a batch outside its timed part
    and holds one batch at a time (holding all the input at once slowed the decoding of a million values by half)."""
    batch: list[tuple[bytes, bytes]] = []
    for value in values(distinct, leads, plain):
        batch.append(value)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


class ChangelogRecord:
    """A changelog record as Faust's recovery hands it to a store (the store reads its message only)."""

    def __init__(self, key: bytes, value: bytes, partition: int) -> None:
        self.message = SimpleNamespace(key=key, value=value, partition=partition)


def measure_memory(distinct: list[tuple[bytes, bytes]], leads: int, plain: bool) -> dict[str, float]:
    from leadflow.streams.runtime.settings import Settings
    from leadflow.streams.runtime.worker import Worker

    tune_gc()
    worker = Worker(Settings())
    store = worker.leads.data
    partitions = worker.settings.partitions
    restore_s = 0.0
    before = rss()
    for batch in batches(distinct, leads, plain):
        records = [ChangelogRecord(key, value, n % partitions) for n, (key, value) in enumerate(batch)]
        started = time.perf_counter()
        store.apply_changelog_batch(records, to_key=None, to_value=None)
        restore_s += time.perf_counter() - started
    grown = rss() - before
    started = time.perf_counter()
    read = sum(1 for value in store.values() if value is not None)
    read_s = time.perf_counter() - started
    assert read == leads == len(store)
    started = time.perf_counter()
    walked = 0
    for partition in range(partitions):
        for key in store.partition_keys(partition):
            wake_at(store.partition_get(partition, key, read_view), worker.policy)
            walked += 1
    walk_s = time.perf_counter() - started
    assert walked == leads
    for key in itertools.islice(store.keys(), store.cache_size):  # the working set, decoded: a full cache
        store[key]
    cached = rss() - before
    return {
        "rss_per_lead": grown / leads,
        "cached_per_lead": cached / leads,
        "restore_s": restore_s,
        "read_s": read_s,
        "walk_s": walk_s,
    }


def measure_decoded(distinct: list[tuple[bytes, bytes]], leads: int, plain: bool) -> dict[str, float]:
    tune_gc()
    loads = LEAD_RECORD_ENCODING.decode  # ModelCodec.loads: it reads both
    table = {}
    restore_s = 0.0
    before = rss()
    for batch in batches(distinct, leads, plain):
        started = time.perf_counter()
        for key, value in batch:
            table[key] = loads(value)
        restore_s += time.perf_counter() - started
    grown = rss() - before
    assert len(table) == leads
    return {"rss_per_lead": grown / leads, "restore_s": restore_s}


def measure_rocksdb(distinct: list[tuple[bytes, bytes]], leads: int, plain: bool) -> dict[str, float]:
    from rocksdict import Options, Rdict, WriteBatch

    tune_gc()
    policy = load_policy()
    directory = Path(tempfile.mkdtemp(prefix="leadflow-bench-rocksdb-"))
    try:
        before = rss()
        db = Rdict(str(directory), options=Options(raw_mode=True))
        write_s = 0.0
        for batch in batches(distinct, leads, plain):
            started = time.perf_counter()
            written = WriteBatch(raw_mode=True)
            for key, value in batch:
                written.put(key, value)
            db.write(written)
            write_s += time.perf_counter() - started
        started = time.perf_counter()
        db.flush()
        write_s += time.perf_counter() - started
        loads = LEAD_RECORD_ENCODING.decode  # ModelCodec.loads: it reads both
        started = time.perf_counter()
        read = sum(1 for _, value in db.items() if loads(value) is not None)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        walked = 0
        for _, value in db.items():
            wake_at(read_view(value), policy)
            walked += 1
        walk_s = time.perf_counter() - started
        assert walked == leads
        grown = rss() - before
        db.close()
        on_disk = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
        assert read == leads
        return {
            "rss_per_lead": grown / leads,
            "write_s": write_s,
            "read_s": read_s,
            "walk_s": walk_s,
            "disk_per_lead": on_disk / leads,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def value_sizes(distinct: list[tuple[bytes, bytes]]) -> str:
    """The distinct leads' changelog values: sizes in the compact encoding, and as the plain JSON written before."""
    plain = [len(json) for _, json in distinct]
    compact = [len(LEAD_RECORD_ENCODING.pack(json)) for _, json in distinct]

    def summary(sizes: list[int]) -> str:
        return (
            f"mean {statistics.fmean(sizes):,.0f} bytes, p50 {percentile(sizes, 0.5):,.0f}, p90 "
            f"{percentile(sizes, 0.9):,.0f}, p99 {percentile(sizes, 0.99):,.0f}, max {max(sizes):,}"
        )

    return (
        f"Changelog value per lead ({len(distinct):,} distinct leads), compact encoding (schemas.record_encoding, "
        f"format byte {LEAD_RECORD_ENCODING.format:#04x}): {summary(compact)}; as plain JSON, defaults left out (the "
        f"values before it): {summary(plain)}."
    )


def field_costs(distinct: list[tuple[bytes, bytes]], low: float = 0.85, high: float = 0.95) -> str:
    """What the values around p90 hold: for the distinct values between the `low` and `high` quantiles of compact
    size, the mean bytes each field costs in the compact encoding (the value's size less its size without the field;
    the fields of `state` and of the pending events one level down), largest first. Fields compress against each
    other (`base` against `state`: the two together are listed too), so the costs do not add up to the value's
    size."""
    ordered = sorted(distinct, key=lambda value: len(LEAD_RECORD_ENCODING.pack(value[1])))
    band = [orjson.loads(json) for _, json in ordered[int(low * len(ordered)) : int(high * len(ordered))]]
    costs: dict[str, list[int]] = defaultdict(list)

    def size(record: dict[str, Any]) -> int:
        return len(LEAD_RECORD_ENCODING.pack(orjson.dumps(record)))

    for record in band:
        whole = size(record)
        for name in record:
            costs[name].append(whole - size({k: v for k, v in record.items() if k != name}))
        costs["state and base"].append(whole - size({k: v for k, v in record.items() if k not in ("state", "base")}))
        for name in record.get("state") or {}:
            state = {k: v for k, v in record["state"].items() if k != name}
            costs[f"state.{name}"].append(whole - size({**record, "state": state}))
        for name in {k for p in record.get("pending", ()) for k in p if k != "event"}:
            pending = [{k: v for k, v in p.items() if k != name} for p in record["pending"]]
            costs[f"pending.{name}"].append(whole - size({**record, "pending": pending}))
    means = sorted(((statistics.fmean(c) * len(c) / len(band), name) for name, c in costs.items()), reverse=True)
    listed = ", ".join(f"{name} {mean:,.0f}" for mean, name in means if mean >= 1)
    mean_size = statistics.fmean(size(record) for record in band)
    return (
        f"What a value around p90 holds ({len(band):,} values between p{low * 100:.0f} and p{high * 100:.0f}, "
        f"{mean_size:,.0f} bytes on average): bytes each field costs, mean: {listed}."
    )


def value_costs(distinct: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Mean µs to encode a lead record into its changelog value and to decode it, against plain JSON (the best of
    three passes over the distinct values, nothing kept; run in a fresh interpreter)."""
    tune_gc()
    jsons = [json for _, json in distinct]
    leads = [RECORD_ADAPTER.validate_json(json) for json in jsons]
    encoded = [LEAD_RECORD_ENCODING.encode(lead) for lead in leads]

    def per_value(work: Callable[[Any], object], inputs: list[Any]) -> float:
        passes = []
        for _ in range(3):
            started = time.perf_counter()
            for one in inputs:
                work(one)
            passes.append(time.perf_counter() - started)
        return min(passes) / len(inputs) * 1e6

    return {
        "plain_dump": per_value(lambda lead: RECORD_ADAPTER.dump_json(lead, exclude_defaults=True), leads),
        "encode": per_value(LEAD_RECORD_ENCODING.encode, leads),
        "plain_load": per_value(RECORD_ADAPTER.validate_json, jsons),
        "decode": per_value(LEAD_RECORD_ENCODING.decode, encoded),
        "view": per_value(read_view, encoded),
    }


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
    parser.add_argument(
        "--stores",
        default=",".join(DEFAULT_STORES),
        help=f"the cases to run, of {','.join(STORES)} (default {','.join(DEFAULT_STORES)})",
    )
    args = parser.parse_args(argv)
    stores = [store for store in STORES if store in args.stores.split(",")]
    if not stores:
        parser.error(f"--stores names none of {', '.join(STORES)}")

    distinct = distinct_values(args.distinct)
    costs = in_child(value_costs, distinct)
    record = (
        f"{value_sizes(distinct)} Per value, mean: encode {costs['encode']:,.1f} µs (plain JSON "
        f"{costs['plain_dump']:,.1f}), decode {costs['decode']:,.1f} µs (plain JSON {costs['plain_load']:,.1f}), "
        f"read as the rebuild's view {costs['view']:,.1f} µs. {field_costs(distinct)}"
    )
    n = args.leads
    table = [
        "| store | values | leads | RSS per lead | restore | read and decode all | rebuild walk (views) "
        "| on disk per lead |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for plain, values_are in ((True, "plain JSON (before)"), (False, "compact (after)")):
        if "memory" in stores:
            memory = in_child(measure_memory, distinct, n, plain)
            table.append(
                f"| `memory://` | {values_are} | {n:,} | {memory['rss_per_lead']:,.0f} B "
                f"({memory['cached_per_lead']:,.0f} B with a full cache) | "
                f"{memory['restore_s']:.1f} s (store) | {memory['read_s']:.1f} s | {memory['walk_s']:.1f} s | — |"
            )
        if "decoded" in stores:
            decoded = in_child(measure_decoded, distinct, n, plain)
            table.append(
                f"| Faust's memory store (decoded) | {values_are} | {n:,} | {decoded['rss_per_lead']:,.0f} B | "
                f"{decoded['restore_s']:.1f} s (decode) | — | — | — |"
            )
        if "rocksdb" in stores:
            rocksdb = in_child(measure_rocksdb, distinct, n, plain)
            table.append(
                f"| `rocksdb://` | {values_are} | {n:,} | {rocksdb['rss_per_lead']:,.0f} B | "
                f"{rocksdb['write_s']:.1f} s (write) | {rocksdb['read_s']:.1f} s | {rocksdb['walk_s']:.1f} s | "
                f"{rocksdb['disk_per_lead']:,.0f} B |"
            )
    print(record, "", *table, sep="\n")
    if args.write_results:
        info = machine_info()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        only = "" if tuple(stores) == DEFAULT_STORES else f", {' and '.join(stores)} only"
        section = "\n".join(
            [
                f"## {now}: {SECTION_TITLE}, {n:,} leads{only}",
                "",
                f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}.",
                f"Command: `python -m benchmarks.memory --leads {n} --distinct {args.distinct} --stores "
                f"{','.join(stores)} --write-results`.",
                *([args.note] if args.note else []),
                "",
                record,
                "",
                *table,
                "",
            ]
        )
        append_section(section, rf"{SECTION_TITLE}, {n:,} leads{only}")
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
