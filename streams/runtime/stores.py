"""leadflow's table stores: Faust's, with the values decoded only when read, and the recently read kept decoded.

`memory://` (MemoryStore). Faust's own memory store holds every value decoded: a lead record is ~20 KB of Python
objects, so a million leads needed ~20 GB, and a restart decoded every changelog record before the worker could
start (88 µs each). This store keeps what the changelog holds (schemas.record_encoding: a few hundred bytes per
lead), per partition, and decodes a value when it is read. A restore stores the changelog's records as they come
(ModelTable reads its changelog raw): nothing decoded. Same lifecycle as Faust's memory store: nothing persisted
(a restart recovers from the changelog), and once a recovery completes only the active partitions' values stay.

`rocksdb://` (RocksDBStore): Faust's rocksdb store, which decodes a value at every read.

Both keep the last `cache` values read or written decoded (`?cache=N`, LEADFLOW_STORE_CACHE), so a lead that is
active costs no decode, and a value is encoded once per write (the worker hands the store the bytes it sends to
the changelog).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from faust.stores import STORES
from faust.stores.base import SerializedStore
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.streams import current_event
from faust.types import TP, EventT
from yarl import URL

SCHEMES = {"memory": "leadflow-memory", "rocksdb": "leadflow-rocksdb"}  # LEADFLOW_STORE scheme -> Faust's
DEFAULT_CACHE = 10_000  # values kept decoded: ~20 KB each for a lead record, so ~200 MB at most


class DecodedCache(SerializedStore[bytes, Any]):
    """A SerializedStore whose last `cache_size` values read or written stay decoded (an LRU)."""

    cache: OrderedDict[bytes, Any]
    cache_size: int

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        self.cache = OrderedDict()
        self.cache_size = int(URL(url).query.get("cache", DEFAULT_CACHE))  # read first: rocksdb rewrites the URL
        super().__init__(url, app, table, **kwargs)

    def __getitem__(self, key: bytes) -> Any:
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.move_to_end(key)
            return cached
        value = super().__getitem__(key)
        self._remember(key, value)
        return value

    def __setitem__(self, key: bytes, value: Any) -> None:
        super().__setitem__(key, value)
        self._remember(key, value)

    def put(self, key: bytes, encoded: bytes, value: Any) -> None:
        """`self[key] = value` when the caller has its encoding already (the worker encodes a record once, for
        its changelog and for here); written to the current event's partition."""
        self._set(key, encoded)
        self._remember(key, value)

    def _remember(self, key: bytes, value: Any) -> None:
        if self.cache_size <= 0:
            return
        self.cache[key] = value
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _items_decoded(self) -> Iterator[tuple[bytes, Any]]:
        """Every item, decoded: from the cache when there, without filling it (a walk must not evict the leads
        the stream is working on)."""
        for key, encoded in self._iteritems():
            cached = self.cache.get(key)
            yield key, cached if cached is not None else self._decode_value(encoded)

    def _values_decoded(self) -> Iterator[Any]:
        for _, value in self._items_decoded():
            yield value

    def partition_keys(self, partition: int) -> list[bytes]:
        """The keys the store holds in `partition` (of the table's changelog topic), as of now: a walk of one
        partition reads these and no other."""
        return list(self._partition_keys(partition))

    def partition_get(self, partition: int, key: bytes, read: Callable[[bytes], Any] | None = None) -> Any | None:
        """The value of `key` in `partition`, decoded (None: that partition does not hold it); from the cache when
        there, without filling it (a walk must not evict the leads the stream is working on). `read` reads a value
        not in the cache instead of decoding it whole (a view of the fields a walk needs: schemas.state)."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        encoded = self._partition_value(partition, key)
        if encoded is None:
            return None
        return self._decode_value(encoded) if read is None else read(encoded)

    def _partition_keys(self, partition: int) -> Iterable[bytes]:
        raise NotImplementedError

    def _partition_value(self, partition: int, key: bytes) -> bytes | None:
        raise NotImplementedError


class MemoryStore(DecodedCache):
    """partition -> {key: encoded value}."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.partitions: dict[int, dict[bytes, bytes]] = {}

    def _partition_holding(self, key: bytes) -> dict[bytes, bytes] | None:
        event = current_event()
        if event is not None:
            values = self.partitions.get(event.message.partition)
            if values is not None and key in values:
                return values
        return next((values for values in self.partitions.values() if key in values), None)

    def _get(self, key: bytes) -> bytes | None:
        values = self._partition_holding(key)
        return None if values is None else values[key]

    def _set(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        if event is None:
            raise RuntimeError(f"table {self.table_name}: a value written outside an event has no partition")
        self._put(key, value, event.message.partition)

    def _put(self, key: bytes, encoded: bytes | None, partition: int) -> None:
        for number, values in self.partitions.items():
            if number != partition:
                values.pop(key, None)  # a key lives in one partition
        self.cache.pop(key, None)
        if encoded is None:
            self.partitions.get(partition, {}).pop(key, None)
        else:
            self.partitions.setdefault(partition, {})[key] = encoded

    def _del(self, key: bytes) -> None:
        self.cache.pop(key, None)
        values = self._partition_holding(key)
        if values is not None:
            del values[key]

    def _iterkeys(self) -> Iterator[bytes]:
        for values in list(self.partitions.values()):
            yield from list(values)

    def _itervalues(self) -> Iterator[bytes | None]:
        for _, value in self._iteritems():
            yield value

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for values in list(self.partitions.values()):
            yield from list(values.items())

    def _size(self) -> int:
        return sum(len(values) for values in self.partitions.values())

    def _partition_keys(self, partition: int) -> Iterable[bytes]:
        return list(self.partitions.get(partition, ()))

    def _partition_value(self, partition: int, key: bytes) -> bytes | None:
        values = self.partitions.get(partition)
        return None if values is None else values.get(key)

    def _contains(self, key: bytes) -> bool:
        return self._partition_holding(key) is not None

    def _clear(self) -> None:
        self.partitions.clear()
        self.cache.clear()

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]], to_key: Any, to_value: Any) -> None:
        """Changelog records (a restore, a standby replica) stored as they are: nothing decoded."""
        for event in batch:
            message = event.message
            if message.key is None:
                raise TypeError(f"changelog record of table {self.table_name} without a key: {message}")
            self._put(message.key, message.value, message.partition)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """As Faust's memory store: only the active partitions' values stay (nothing is persisted, so a partition
        assigned again is recovered whole from its changelog)."""
        topic = self.table.changelog_topic.get_topic_name()
        active = {tp.partition for tp in active_tps if tp.topic == topic}
        for partition in [p for p in self.partitions if p not in active]:
            for key in self.partitions.pop(partition):
                self.cache.pop(key, None)

    def persisted_offset(self, tp: TP) -> int | None:
        return None

    def reset_state(self) -> None:
        pass

    async def backup_partition(self, tp: TP | int, flush: bool = True, purge: bool = False, keep: int = 1) -> None:
        pass  # nothing on disk to back up

    def restore_backup(self, tp: TP | int, latest: bool = True, backup_id: int = 0) -> None:
        pass


class RocksDBStore(DecodedCache, FaustRocksDBStore):
    """Faust's rocksdb store; the cache forgets what a write, a restore or a rebalance changes."""

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.cache.pop(key, None)
        super()._set(key, value)

    def _del(self, key: bytes) -> None:
        self.cache.pop(key, None)
        super()._del(key)

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]], to_key: Any, to_value: Any) -> None:
        batch = list(batch)
        for event in batch:
            if event.message.key is not None:
                self.cache.pop(event.message.key, None)
        super().apply_changelog_batch(batch, to_key, to_value)

    def _partition_keys(self, partition: int) -> Iterable[bytes]:
        """The partition's database, if it is open (a partition this worker does not hold has none): not opened
        for this."""
        db = self._dbs.get(partition)
        return () if db is None else self._visible_keys(db)

    def _partition_value(self, partition: int, key: bytes) -> bytes | None:
        db = self._dbs.get(partition)
        if db is None or key == self.offset_key:
            return None
        return cast(bytes | None, db.get(key))

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        self.cache.clear()  # a revoked partition's values must not be served from here
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


for _scheme, _store in (("memory", MemoryStore), ("rocksdb", RocksDBStore)):
    STORES.aliases[SCHEMES[_scheme]] = f"{__name__}:{_store.__name__}"  # Faust's store registry


def faust_store_url(store: str, cache: int) -> str:
    """The store URL Faust is given for LEADFLOW_STORE (memory:// or rocksdb://): leadflow's store of that kind,
    keeping `cache` values decoded."""
    scheme, _, rest = store.partition("://")
    if scheme not in SCHEMES:
        raise ValueError(f"LEADFLOW_STORE={store!r}: the store is memory:// or rocksdb://")
    return f"{SCHEMES[scheme]}://{rest.split('?')[0]}?cache={cache}"
