"""What the worker sends, in bulk: the records of one batch of events reach aiokafka as one record batch per
topic-partition (`AIOKafkaProducer.send_batch`), instead of one Faust FutureMessage, one producer-buffer round and
one `AIOKafkaProducer.send` coroutine per record, which cost the worker a quarter of its time (benchmarks/).

At-least-once holds as before: Faust commits offsets only after `app.producer.flush()`, and `guard_commits` makes
that flush first hand over what the outbox still holds and wait until the broker acknowledged every batch it sent;
when one was refused (after aiokafka's own retries), the flush raises, the commit does not happen, the worker
stops, and the events are processed again by the next owner of their partitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
OnAcknowledged = Callable[[TopicPartition, int], None]


@dataclass(slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass
class Outbox:
    """Records waiting to be sent, in the order they were added; `send` hands them to the producer.

    `producer` returns the running aiokafka producer (Faust's own, so its flush and idempotence apply);
    `on_acknowledged[topic]` is told the offset of the last record of each acknowledged batch of that topic.
    Nothing is sent before `open()` (the worker opens it once its topics exist, so none is auto-created).
    """

    producer: Callable[[], AIOKafkaProducer]
    on_acknowledged: dict[str, OnAcknowledged] = field(default_factory=dict)
    _pending: dict[tuple[str, int | None], list[Record]] = field(default_factory=dict)
    _unacknowledged: set[asyncio.Future[Any]] = field(default_factory=set)
    _failure: BaseException | None = None
    _partitions: dict[str, list[int]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _opened: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        return sum(len(records) for records in self._pending.values())

    def open(self) -> None:
        self._opened.set()

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; without a partition it goes where Kafka's default partitioner puts its key."""
        self._pending.setdefault((topic, partition), []).append(Record(key, value, headers or []))

    async def send(self) -> None:
        """Hand every queued record to the producer, in order per topic-partition.

        Safe to cancel: a record leaves the queue only once its batch was handed over, so what a cancelled send
        did not hand over is sent by the next one (the commit's, at the latest)."""
        await self._opened.wait()
        async with self._lock:
            await self._place_keyed_records()
            producer = self.producer()
            for (topic, partition), records in list(self._pending.items()):
                assert partition is not None  # placed above
                while records:
                    builder = producer.create_batch()
                    taken = 0
                    while taken < len(records):
                        record = records[taken]
                        if (
                            builder.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
                            is None
                        ):
                            break  # full; the first record always fits, whatever its size
                        taken += 1
                    future = await producer.send_batch(builder, topic, partition=partition)
                    del records[:taken]
                    self._watch(future, TopicPartition(topic, partition), taken)
                del self._pending[(topic, partition)]

    async def acknowledged(self) -> None:
        """Send what is queued, then wait until the broker acknowledged every batch sent so far; raise if one
        was refused. What `guard_commits` runs before Faust commits offsets."""
        await self.send()
        waiting = list(self._unacknowledged)
        if waiting:
            await asyncio.wait(waiting)
        if self._failure is not None:
            raise self._failure

    async def _place_keyed_records(self) -> None:
        """Give records queued without a partition the partition of their key, keeping their order."""
        for topic, partition in list(self._pending):
            if partition is not None:
                continue
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(await self.producer().partitions_for(topic))
            placed: dict[tuple[str, int | None], list[Record]] = {}
            for record in self._pending.pop((topic, None), []):
                target = DefaultPartitioner()(record.key, partitions, partitions)
                placed.setdefault((topic, target), []).append(record)
            for where, records in placed.items():
                self._pending.setdefault(where, []).extend(records)

    def _watch(self, future: asyncio.Future[Any], tp: TopicPartition, count: int) -> None:
        self._unacknowledged.add(future)

        def done(future: asyncio.Future[Any]) -> None:
            self._unacknowledged.discard(future)
            if future.cancelled():
                self._failure = self._failure or asyncio.CancelledError(f"batch of {count} records to {tp} cancelled")
            elif (error := future.exception()) is not None:
                log.error("the broker refused a batch of %d records to %s: %r", count, tp, error)
                self._failure = self._failure or error
            elif (callback := self.on_acknowledged.get(tp.topic)) is not None and future.result() is not None:
                callback(tp, future.result().offset + count - 1)

        future.add_done_callback(done)


def guard_commits(faust_producer: Any, outbox: Outbox) -> None:
    """Make the Faust producer's flush (what its consumer awaits before committing offsets) include the outbox."""
    flush = faust_producer.flush

    async def flush_with_outbox() -> None:
        await outbox.acknowledged()
        await flush()

    faust_producer.flush = flush_with_outbox
