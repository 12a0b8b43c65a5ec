"""After a rebalance the timers rebuild only what changed (streams.runtime.worker.Timers.rebuild): a partition kept
keeps its deadline index, its lead census and its partition time; those of a partition gone are dropped; only the
leads of the partitions newly assigned are read from the table. No broker: leads are written to the table's store
as the agent (or a restore) writes them, and the assignment is what `active_events_partitions` says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_agent import hand_raiser, in_partition
from test_lead_census import finish, in_stage, same

from leadflow.core.decision import wake_at
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord, LeadRecordView
from leadflow.streams.runtime import worker as worker_module
from leadflow.streams.runtime.lead_census import LeadCensus, census
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.stores import DecodedCache, RocksDBStore
from leadflow.streams.runtime.worker import Worker

A, B, C = 0, 1, 2  # kept through the rebalance, newly assigned by it, taken away by it
STAMP = 1_700_000_000.0  # an event time the partition clock has applied (before the deadlines: 2023)


class Reads:
    """What the timers read of the leads table: the partitions whose keys they list, the keys whose values they
    read, and any read of the whole table (its keys, items or a lookup by key alone)."""

    def __init__(self, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listed: list[int] = []
        self.values: Counter[int] = Counter()  # partition -> values read in it
        self.views = 0  # values read as a view (schemas.state.LeadRecordView), not decoded whole
        self.whole: Counter[str] = Counter()
        store = worker.leads.data
        listed, value = store.partition_keys, store.partition_get

        def partition_keys(partition: int) -> list[bytes]:
            self.listed.append(partition)
            return listed(partition)

        def partition_get(partition: int, key: bytes, read: Callable[[bytes], Any] | None = None) -> Any:
            assert worker.partition_of(key) == partition, "a value read where its key lives"
            self.values[partition] += 1
            found = value(partition, key, read)
            self.views += isinstance(found, LeadRecordView)
            return found

        monkeypatch.setattr(store, "partition_keys", partition_keys)
        monkeypatch.setattr(store, "partition_get", partition_get)
        for name in ("_iterkeys", "_iteritems", "_itervalues", "_get"):
            monkeypatch.setattr(store, name, self.counting(name, getattr(store, name)))

    def counting(self, name: str, read: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.whole[name] += 1
            return read(*args)

        return counted


def keys_in(worker: Worker, partition: int, n: int, prefix: str) -> list[bytes]:
    """`n` lead keys of `partition` of the events topic."""
    found = (f"{prefix}-{i}".encode() for i in range(10_000))
    return [key for key in found if worker.partition_of(key) == partition][:n]


def write(worker: Worker, leads: dict[bytes, LeadRecord]) -> None:
    """Leads in the table, each in its partition, behind the timers' back (as a restore stores them)."""
    for key, record in leads.items():
        with in_partition(worker.partition_of(key)):
            worker.leads.data[key] = record


def leads_in(worker: Worker, partition: int, n: int, prefix: str = "lead") -> dict[bytes, LeadRecord]:
    keys = keys_in(worker, partition, n, f"{prefix}{partition}")
    return {key: hand_raiser(worker, key.decode()) for key in keys}


def indexed(worker: Worker, partition: int) -> dict[str, float]:
    index = worker.timers.indexes.get(partition)
    return dict(index.due_at) if index is not None else {}


def expected_index(worker: Worker, leads: dict[bytes, LeadRecord]) -> dict[str, float]:
    return {
        record.lead_id: instant.timestamp()
        for record in leads.values()
        if (instant := wake_at(record, worker.policy)) is not None
    }


def assigned(worker: Worker, monkeypatch: pytest.MonkeyPatch, partitions: list[int]) -> None:
    monkeypatch.setattr(worker, "active_events_partitions", lambda: partitions)


async def rebalance(worker: Worker, monkeypatch: pytest.MonkeyPatch, partitions: list[int]) -> None:
    """The group's signals, as Faust sends them, around a new assignment."""
    await worker.on_revoked()
    assigned(worker, monkeypatch, partitions)
    await worker.on_assigned()


@pytest.fixture
def at_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "REBUILD_CHUNK", 2)


@pytest.mark.usefixtures("at_scale")
async def test_a_rebalance_reads_only_the_leads_of_the_partitions_it_assigns(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, added, gone = leads_in(worker, A, 5), leads_in(worker, B, 3), leads_in(worker, C, 4)
    write(worker, kept | gone)
    assigned(worker, monkeypatch, [A, C])
    timers = worker.timers
    await timers.rebuild()
    assert timers.census.complete
    assert indexed(worker, A) == expected_index(worker, kept)
    assert indexed(worker, C) == expected_index(worker, gone)
    for partition in (A, C):
        timers.clock.applied(partition, STAMP)
    index_a, tally_a = timers.indexes[A], timers.census.tallies[A]
    now = max(expected_index(worker, kept).values()) + 1
    counts_a = timers.census.counts([A], datetime.fromtimestamp(now, UTC))

    write(worker, added)  # B's changelog, recovered
    worker.leads.data.cache.clear()  # as a restore leaves them: encoded only
    reads = Reads(worker, monkeypatch)
    await rebalance(worker, monkeypatch, [A, B])
    assert timers.stale
    await timers.rebuild()

    assert reads.listed == [B], "only the partition newly assigned is walked"
    assert reads.values == {B: len(added)}, "its leads, and only those, are read"
    assert reads.views == len(added), "as views: only what the index and the census need"
    assert not reads.whole, "nothing reads the whole table"
    assert not timers.stale
    assert timers.indexes[A] is index_a, "A's index is kept"
    assert indexed(worker, A) == expected_index(worker, kept)
    assert timers.census.tallies[A] is tally_a
    at = datetime.fromtimestamp(now, UTC)
    assert same(timers.census.counts([A], at), counts_a)
    assert timers.clock.time(A, now) == STAMP, "A's partition time is kept"
    assert indexed(worker, B) == expected_index(worker, added)
    assert same(timers.census.counts([B], at), census((r.state for r in added.values() if r.state), at))
    assert C not in timers.indexes, "nothing is kept of a partition gone"
    assert C not in timers.census.tallies
    assert timers.clock.time(C, now) is None
    assert set(timers.indexes) == {A, B}
    assert timers.walked == {A, B}
    assert timers.census.complete

    reads.listed.clear()
    await rebalance(worker, monkeypatch, [A, B])  # a rebalance that moves nothing
    await timers.rebuild()
    assert reads.listed == [], "nothing to walk"
    assert indexed(worker, A) == expected_index(worker, kept)
    assert indexed(worker, B) == expected_index(worker, added)


@pytest.mark.usefixtures("at_scale")
async def test_the_first_rebuild_walks_every_partition_assigned_and_no_other(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = {p: leads_in(worker, p, 3) for p in (A, B, C)}
    write(worker, leads[A] | leads[B] | leads[C])  # a standby replica's, or left from before: C is not this worker's
    assigned(worker, monkeypatch, [A, B])
    reads = Reads(worker, monkeypatch)
    await worker.timers.rebuild()
    assert sorted(reads.listed) == [A, B]
    assert reads.values == {A: 3, B: 3}
    assert {p: indexed(worker, p) for p in (A, B, C)} == {
        A: expected_index(worker, leads[A]),
        B: expected_index(worker, leads[B]),
        C: {},
    }


def walking(worker: Worker) -> Iterator[None]:
    """The rebuild, a chunk at a time: each `next` lets it read one more chunk."""
    walk: Coroutine[Any, Any, None] = worker.timers.rebuild()
    try:
        while True:
            walk.send(None)
            yield
    except StopIteration:
        return


@pytest.mark.usefixtures("at_scale")
async def test_a_rebalance_during_the_walk_leaves_the_partitions_not_walked_whole_to_the_next_rebuild(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = {p: leads_in(worker, p, 4) for p in (A, B, C)}  # two chunks each
    write(worker, leads[A] | leads[B] | leads[C])
    assigned(worker, monkeypatch, [A, B, C])
    timers = worker.timers
    walk = walking(worker)
    for _ in range(3):  # A's two chunks, then B's first
        next(walk)
    assert timers.walked == {A}
    await rebalance(worker, monkeypatch, [A, B, C])  # everything kept, but B was not walked whole
    assert next(walk, "abandoned") == "abandoned"
    assert timers.stale, "the next sweep rebuilds"
    assert timers.walked == {A}, "B and C are not walked"
    assert not timers.census.complete

    reads = Reads(worker, monkeypatch)
    await timers.rebuild()
    assert reads.listed == [B, C], "the partitions not walked whole are walked again, A is not"
    assert reads.values == {B: 4, C: 4}
    assert timers.walked == {A, B, C}
    assert timers.census.complete
    now = datetime.now(UTC)
    everything = leads[A] | leads[B] | leads[C]
    for p in (A, B, C):
        assert indexed(worker, p) == expected_index(worker, leads[p])
    states = (r.state for r in everything.values() if r.state)
    assert same(timers.census.counts([A, B, C], now), census(states, now))


@pytest.mark.usefixtures("at_scale")
async def test_a_partition_taken_away_during_its_walk_is_dropped_and_a_partition_that_comes_back_is_walked_again(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = {p: leads_in(worker, p, 4) for p in (A, B, C)}
    write(worker, leads[A] | leads[B] | leads[C])
    assigned(worker, monkeypatch, [A, B])
    timers = worker.timers
    walk = walking(worker)
    for _ in range(3):
        next(walk)
    await rebalance(worker, monkeypatch, [A, C])  # B, under way, goes
    assert B not in timers.indexes
    assert B not in timers.census.tallies
    assert timers.census.walk is None, "its count is abandoned"
    assert next(walk, "abandoned") == "abandoned"
    assert B not in timers.indexes, "the abandoned walk writes nothing more"

    reads = Reads(worker, monkeypatch)
    finish(timers.rebuild())
    assert reads.listed == [C]
    assert timers.walked == {A, C}

    # A goes and comes back between two rebuilds (another worker applied its events meanwhile): walked again.
    await rebalance(worker, monkeypatch, [C])
    await rebalance(worker, monkeypatch, [A, C])
    assert timers.walked == {C}
    reads.listed.clear()
    finish(timers.rebuild())
    assert reads.listed == [A]
    assert indexed(worker, A) == expected_index(worker, leads[A])


def test_both_stores_list_and_read_one_partition_without_reading_the_others(
    worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rocks = Worker(Settings(store="rocksdb://", store_cache=2, data_dir=tmp_path))
    for each in (worker, rocks):
        store = each.leads.data
        assert isinstance(store, DecodedCache)
        leads = {p: leads_in(each, p, 3, "store") for p in (A, B)}
        for partition, held in leads.items():
            for key, record in held.items():
                with in_partition(partition):
                    store.put(key, LEAD_RECORD_ENCODING.encode(record), record)
        store.cache.clear()
        for partition, held in leads.items():
            assert sorted(store.partition_keys(partition)) == sorted(held)
            assert {key: store.partition_get(partition, key) for key in held} == held
        assert not store.cache, "a walk does not fill the cache"
        other = next(iter(leads[A]))
        assert store.partition_get(B, other) is None, "a key is read in its own partition only"
        assert store.partition_keys(C) == []
        if isinstance(store, RocksDBStore):
            assert C not in store._dbs, "no database is opened to list a partition this worker does not hold"


def test_a_walk_of_one_partition_counts_it_while_the_agent_stores_leads_of_others() -> None:
    """The census of a partition walked (B) ends as counted from scratch, whatever the agent stored meanwhile; a
    partition kept (A) goes on from its own count, and the walk keeps nothing of its leads."""
    records = [in_stage("lead"), in_stage("mql"), in_stage("sal")]
    counted = LeadCensus()
    counted.update(b"a0", A, None, records[0])
    counted.update(b"a1", A, None, records[1])
    counted.begin_walk(B)
    counted.walked(b"b0", B, records[0])
    counted.update(b"a1", A, records[1], None)  # the agent deletes a lead of A
    counted.update(b"a2", A, None, records[2])  # and stores a new one
    counted.update(b"b1", B, records[1], records[2])  # and one of B before the walk reaches it
    assert counted.walk is not None
    assert set(counted.walk.first) == {b"b1"}, "the walk keeps only leads of its own partition"
    counted.walked(b"b1", B, records[2])
    counted.end_walk()
    assert not counted.complete, "a partition walked: the worker says when all are"
    now = datetime.now(UTC)
    expected = {A: [records[0], records[2]], B: [records[0], records[2]]}
    for partition, held in expected.items():
        assert same(counted.counts([partition], now), census((r.state for r in held if r.state), now))
    counted.all_walked()
    assert counted.complete
    counted.keep([B])
    assert set(counted.tallies) == {B}
