"""The table stores (streams.runtime.stores): memory:// keeps values as their changelog bytes, per partition, and
rocksdb:// is Faust's; both keep the most recently used decoded. A restore stores records as they come."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from test_agent import Record, hand_raiser, in_partition

from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.stores import MemoryStore, RocksDBStore, faust_store_url
from leadflow.streams.runtime.worker import Worker


def encoded(record: LeadRecord) -> bytes:
    return LEAD_RECORD_ENCODING.encode(record)


def changelog(key: bytes | None, value: bytes | None, partition: int) -> Any:
    return Record(key, value, partition)


def put(store: MemoryStore, key: bytes, record: LeadRecord, partition: int) -> None:
    with in_partition(partition):
        store.put(key, encoded(record), record)


def small_store(worker: Worker, cache: int) -> MemoryStore:
    return MemoryStore(
        f"leadflow-memory://?cache={cache}",
        worker.app,
        worker.leads,
        table_name="leads",
        key_serializer="raw",
        value_serializer=worker.leads.value_serializer,
    )


@pytest.fixture
def records(worker: Worker) -> dict[bytes, LeadRecord]:
    return {f"store-{n}".encode(): hand_raiser(worker, f"store-{n}") for n in range(5)}


def test_memory_is_this_store_and_the_changelog_is_read_raw(worker: Worker) -> None:
    assert faust_store_url("memory://", 7) == "leadflow-memory://?cache=7"
    assert faust_store_url("rocksdb://", 7) == "leadflow-rocksdb://?cache=7"
    with pytest.raises(ValueError, match="memory:// or rocksdb://"):
        faust_store_url("redis://", 7)
    with pytest.raises(ValueError, match=r"LEADFLOW_STORE 'redis://' is not a store leadflow has: set memory://"):
        Settings(store="redis://")
    assert isinstance(worker.leads.data, MemoryStore)
    assert worker.leads.data.cache_size == worker.settings.store_cache
    assert worker.leads.changelog_topic.value_serializer == "raw", "a restore decodes nothing"
    assert worker.leads.value_serializer == "leadrecord", "the store decodes with the table's codec"


def test_values_are_held_encoded_and_read_back_equal_through_a_bounded_cache(
    worker: Worker, records: dict[bytes, LeadRecord]
) -> None:
    store = small_store(worker, cache=2)
    for key, record in records.items():
        put(store, key, record, worker.partition_of(key))
    assert len(store.cache) == 2, "only the 2 most recently written stay decoded"
    held = {key: value for values in store.partitions.values() for key, value in values.items()}
    assert held == {key: encoded(record) for key, record in records.items()}
    for key, record in records.items():  # the evicted ones are decoded from their bytes
        assert store[key] == record
    assert list(store.cache) == list(records)[-2:], "the most recently read stay"
    assert len(store) == len(records)
    assert set(store.keys()) == set(records)


def test_a_walk_reads_every_value_without_evicting_the_working_set(
    worker: Worker, records: dict[bytes, LeadRecord]
) -> None:
    store = small_store(worker, cache=2)
    for key, record in records.items():
        put(store, key, record, 0)
    store.cache.clear()  # as after a restore: nothing decoded yet
    hot = next(iter(records))
    assert store[hot] == records[hot]
    assert dict(store.items()) == records
    assert list(store.cache) == [hot]


def test_a_restore_stores_the_records_as_they_come_and_a_tombstone_deletes(
    worker: Worker, records: dict[bytes, LeadRecord]
) -> None:
    store = small_store(worker, cache=10)
    first, second = list(records)[:2]
    put(store, first, records[first], 1)
    newer = records[second]
    store.apply_changelog_batch(
        [changelog(first, encoded(newer), 1), changelog(second, encoded(newer), 2), changelog(second, None, 2)],
        to_key=None,
        to_value=None,
    )
    assert first not in store.cache, "a value the changelog replaced is not served from the cache"
    assert store[first] == newer
    assert second not in store
    with pytest.raises(TypeError, match="without a key"):
        store.apply_changelog_batch([changelog(None, b"x", 0)], to_key=None, to_value=None)


async def test_after_a_recovery_only_the_active_partitions_stay(
    worker: Worker, records: dict[bytes, LeadRecord]
) -> None:
    store = small_store(worker, cache=10)
    keys = list(records)
    for partition, key in enumerate(keys[:3]):
        put(store, key, records[key], partition)
    topic = worker.leads.changelog_topic.get_topic_name()
    await store.on_recovery_completed({TP(topic, 0), TP(topic, 2), TP("other", 1)}, {TP(topic, 1)})
    assert set(store.keys()) == {keys[0], keys[2]}
    assert keys[1] not in store.cache


def test_a_key_lives_in_one_partition_and_writes_need_the_event_that_names_it(
    worker: Worker, records: dict[bytes, LeadRecord]
) -> None:
    store = small_store(worker, cache=10)
    key, record = next(iter(records.items()))
    put(store, key, record, 0)
    put(store, key, record, 3)
    assert [p for p, values in store.partitions.items() if key in values] == [3]
    with pytest.raises(RuntimeError, match="outside an event has no partition"):
        store[key] = record
    with in_partition(3):
        store[key] = record
        assert store[key] == record
        del store[key]
    assert key not in store
    assert key not in store.cache


async def test_rocksdb_keeps_the_recently_used_decoded_and_forgets_what_a_restore_or_rebalance_changes(
    tmp_path: Path, records: dict[bytes, LeadRecord]
) -> None:
    worker = Worker(Settings(store="rocksdb://", store_cache=2, data_dir=tmp_path))
    store = worker.leads.data
    assert isinstance(store, RocksDBStore)
    assert worker.leads.changelog_topic.value_serializer == "raw"
    topic = worker.leads.changelog_topic.get_topic_name()
    keys = list(records)
    for key in keys:
        put(store, key, records[key], 0)
    assert list(store.cache) == keys[-2:]
    store.cache.clear()
    with in_partition(0):
        assert [store[key] for key in keys] == list(records.values()), "read back from the database, decoded"
    assert list(store.cache) == keys[-2:]
    newer = records[keys[0]]
    restored = Record(keys[-1], encoded(newer), 0)
    restored.message.tp, restored.message.offset = TP(topic, 0), 10
    store.apply_changelog_batch([restored], to_key=None, to_value=None)
    assert keys[-1] not in store.cache
    with in_partition(0):
        assert store[keys[-1]] == newer
    await store.on_rebalance(set(), {TP(topic, 0)}, set())
    assert not store.cache, "a revoked partition's values are not served from the cache"
