"""A fetch that outlives a rebalance loses nothing (streams.runtime.processed_offsets, correction 4), on Apache Kafka.

Faust's fetch loop calls aiokafka's fetcher from the consumer's thread (`AIOKafkaConsumerThread._fetch_records`),
which waits for records. A rebalance meanwhile stops Faust's flow and empties the set of partitions it fetches;
records that arrive then are handed out, aiokafka moves past them, and Faust drops them. Here the aiokafka
consumer, its fetcher and the broker are real; Faust's side is the three fields the patched call reads.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.processed_offsets import LEDGER, install
from leadflow.streams.runtime.topics import ensure_topics

pytestmark = pytest.mark.broker


async def fetch_all(thread: SimpleNamespace, consumer: AIOKafkaConsumer, tp: TopicPartition, n: int) -> list[int]:
    """The offsets of the next `n` records Faust's loop would be handed (they may come back in several batches)."""
    offsets: list[int] = []
    while len(offsets) < n:
        batches = await AIOKafkaConsumerThread._fetch_records(
            thread, consumer, thread.consumer._active_partitions, 30.0
        )
        assert batches, "no record fetched in 30 s"
        offsets += [record.offset for record in batches[tp]]
    return offsets


async def test_records_handed_out_after_the_flow_stopped_are_fetched_again(
    broker: BrokerProcess, unique_topic_prefix: str
) -> None:
    topic = f"{unique_topic_prefix}leads-events"
    install([topic])  # the corrections, as every worker has them, with this topic's fetches in the ledger
    await ensure_topics(broker.bootstrap, {topic: 1})
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)  # as a recovery seeks a changelog partition it restores
        faust = SimpleNamespace(flow_active=True, _active_partitions={tp}, _buffered_partitions=set())
        thread = SimpleNamespace(consumer=faust)
        for n in range(5):
            await producer.send_and_wait(topic, b"value", key=b"lead-%d" % n)
        assert await fetch_all(thread, consumer, tp, 5) == [0, 1, 2, 3, 4]  # handed to a stream's buffer

        waiting = asyncio.ensure_future(AIOKafkaConsumerThread._fetch_records(thread, consumer, {tp}, 30.0))
        while not consumer._fetcher._fetch_waiters:  # the fetch waits for records (none is left)
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.01)
        faust.flow_active = False  # a rebalance starts: Faust stops its flow and pauses every partition
        faust._active_partitions.clear()
        for n in range(5, 10):
            await producer.send_and_wait(topic, b"value", key=b"lead-%d" % n)

        assert await waiting == {}  # Faust's loop would have dropped them
        assert await consumer.position(tp) == 5  # and aiokafka is back where it was
        # the records handed out since the last seek are still known, for a seek back when the buffers are emptied
        assert LEDGER.rewind((topic, 0), None) == 0

        faust.flow_active = True  # the recovery resumes the partition and the flow
        faust._active_partitions.add(tp)
        assert await fetch_all(thread, consumer, tp, 5) == [5, 6, 7, 8, 9]
    finally:
        await producer.stop()
        await consumer.stop()
