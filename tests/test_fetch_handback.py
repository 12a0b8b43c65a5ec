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
from leadflow.streams.runtime.processed_offsets import install
from leadflow.streams.runtime.topics import ensure_topics

pytestmark = pytest.mark.broker


async def test_records_handed_out_after_the_flow_stopped_are_fetched_again(
    broker: BrokerProcess, unique_topic_prefix: str
) -> None:
    install([])  # the corrections, as every worker has them
    topic = f"{unique_topic_prefix}leads-changelog"
    await ensure_topics(broker.bootstrap, {topic: 1})
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)  # recovery seeks the changelog partition it restores
        faust = SimpleNamespace(flow_active=True, _active_partitions={tp}, _buffered_partitions=set())
        thread = SimpleNamespace(consumer=faust)
        fetch = AIOKafkaConsumerThread._fetch_records

        waiting = asyncio.ensure_future(fetch(thread, consumer, faust._active_partitions, timeout=30.0))
        while not consumer._fetcher._fetch_waiters:  # the fetch waits for records (the topic is empty)
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.01)
        faust.flow_active = False  # a rebalance starts: Faust stops its flow and pauses every partition
        faust._active_partitions.clear()
        for n in range(5):
            await producer.send_and_wait(topic, b"value-%d" % n, key=b"lead-%d" % n)

        assert await waiting == {}  # Faust's loop would have dropped them
        assert await consumer.position(tp) == 0  # and aiokafka is back where it was

        faust.flow_active = True  # the recovery resumes the partition and the flow
        faust._active_partitions.add(tp)
        again: list[tuple[int, bytes]] = []
        while len(again) < 5:  # the first records may come back alone, while the last ones were being written
            batches = await fetch(thread, consumer, faust._active_partitions, timeout=30.0)
            assert batches, "no record fetched again in 30 s"
            again += [(record.offset, record.key) for record in batches[tp]]
        assert again == [(n, b"lead-%d" % n) for n in range(5)]
    finally:
        await producer.stop()
        await consumer.stop()
