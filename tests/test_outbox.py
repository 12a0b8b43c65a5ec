"""The outbox (streams.runtime.outbox) against a real Apache Kafka: records sent in bulk land in order on the partition
Kafka's default partitioner gives their key, acknowledgements report offsets, and a refused batch fails the flush
that guards a commit instead of passing silently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.outbox import Outbox, guard_commits
from leadflow.streams.runtime.topics import ensure_topics

pytestmark = pytest.mark.broker
PARTITIONS = 3


@pytest.fixture
async def producer(broker: BrokerProcess) -> AsyncIterator[AIOKafkaProducer]:
    running = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def partitions_of(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes | None, bytes | None, list]]]:
    """partition -> its records (key, value, headers) in offset order, up to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[tuple[bytes | None, bytes | None, list]]] = {p: [] for p in range(PARTITIONS)}
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                found[tp.partition].extend((m.key, m.value, list(m.headers)) for m in batch.get(tp, []))
        return found
    finally:
        await consumer.stop()


def kafka_partition(key: bytes) -> int:
    """Kafka's default partitioner (the Java client's murmur2), computed here independently of the outbox."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


async def test_records_land_in_order_on_their_keys_partition_and_acknowledgements_give_offsets(
    broker: BrokerProcess, producer: AIOKafkaProducer, unique_topic_prefix: str
) -> None:
    keyed, placed = f"{unique_topic_prefix}keyed", f"{unique_topic_prefix}placed"
    await ensure_topics(broker.bootstrap, {keyed: PARTITIONS, placed: PARTITIONS})
    acknowledged: dict[TopicPartition, int] = {}
    outbox = Outbox(lambda: producer, on_acknowledged={placed: acknowledged.__setitem__})
    outbox.open()
    sent: list[tuple[bytes, bytes]] = []
    for n in range(3_000):  # many batches per partition: a producer batch holds 16 KiB here
        key, value = f"lead-{n % 37}".encode(), f"{n:05d}".encode() * 20
        outbox.add(keyed, key, value, [("h", str(n).encode())])
        sent.append((key, value))
        if n % 10 == 0:
            outbox.add(placed, key, value, partition=n % PARTITIONS)
    assert len(outbox) == 3_300
    await outbox.send()
    assert len(outbox) == 0
    await outbox.acknowledged()

    got = await partitions_of(broker.bootstrap, keyed)
    for partition in range(PARTITIONS):
        want = [(k, v, [("h", str(int(v[:5])).encode())]) for k, v in sent if kafka_partition(k) == partition]
        assert got[partition] == want, partition
    placed_got = await partitions_of(broker.bootstrap, placed)
    assert {p: len(records) for p, records in placed_got.items()} == {0: 100, 1: 100, 2: 100}
    assert acknowledged == {TopicPartition(placed, p): 99 for p in range(PARTITIONS)}, "offset of each last record"


async def test_a_refused_batch_fails_the_guarded_flush(
    broker: BrokerProcess, producer: AIOKafkaProducer, unique_topic_prefix: str
) -> None:
    small = f"{unique_topic_prefix}small"
    await ensure_topics(broker.bootstrap, {small: 1}, configs={small: {"max.message.bytes": "1000"}})

    class FaustProducer:  # the one method of Faust's producer the guard wraps: what Faust awaits before a commit
        flushed = 0

        async def flush(self) -> None:
            self.flushed += 1

    outbox = Outbox(lambda: producer)
    outbox.open()
    faust_producer = FaustProducer()
    guard_commits(faust_producer, outbox)
    outbox.add(small, b"k", b"fits")
    await faust_producer.flush()
    assert faust_producer.flushed == 1

    outbox.add(small, b"k", b"x" * 5_000)  # over the topic's max.message.bytes: the broker refuses it
    with pytest.raises(MessageSizeTooLargeError):
        await faust_producer.flush()
    assert faust_producer.flushed == 1, "no commit may follow a refused batch"
    with pytest.raises(MessageSizeTooLargeError):  # and none later: the worker must stop, not skip the records
        await faust_producer.flush()


async def test_what_a_cancelled_send_did_not_hand_over_is_sent_by_the_next(
    broker: BrokerProcess, producer: AIOKafkaProducer, unique_topic_prefix: str
) -> None:
    topic = f"{unique_topic_prefix}later"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    outbox = Outbox(lambda: producer)
    for n in range(50):
        outbox.add(topic, f"k{n}".encode(), f"v{n}".encode())
    blocked = asyncio.create_task(outbox.send())  # waits: the outbox is not open yet
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert len(outbox) == 50, "nothing left the queue"
    outbox.open()
    await outbox.acknowledged()
    got = await partitions_of(broker.bootstrap, topic)
    assert sorted(v for records in got.values() for _, v, _ in records) == sorted(f"v{n}".encode() for n in range(50))
