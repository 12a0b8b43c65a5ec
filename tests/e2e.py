"""Helpers for tests that run a real worker process against the session's broker (Apache Kafka, or tansu)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from leadflow.streams.dev.broker import BrokerProcess, free_port
from leadflow.streams.dev.worker_process import WorkerProcess, committed_offsets, wait_until_committed
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import create_leadflow_topics, embedded_producer_settings

PARTITIONS = 4


@dataclass
class Deployment:
    """One leadflow deployment on the shared broker: its own topics, consumer group and changelog."""

    broker: BrokerProcess
    prefix: str
    workdir: Path
    app_id: str = ""

    def __post_init__(self) -> None:
        self.app_id = f"lf-{uuid.uuid4().hex[:10]}"
        self.events = f"{self.prefix}events"
        self.transitions = f"{self.prefix}transitions"
        self.deadletter = f"{self.prefix}deadletter"
        self.sla = f"{self.prefix}sla"
        self.handoffs = f"{self.prefix}handoffs"
        self.routing = f"{self.prefix}routing"
        self.identities = f"{self.prefix}identities"
        self.changelog = f"{self.app_id}-leads-changelog"
        self.web_port = free_port()
        self.produced: dict[int, int] = {}  # partition -> next offset

    def settings(self) -> Settings:
        return Settings(
            broker=self.broker.url,
            embedded=self.broker.one_record_per_batch,
            fast_group=True,
            app_id=self.app_id,
            partitions=PARTITIONS,
            topic_events=self.events,
            topic_transitions=self.transitions,
            topic_deadletter=self.deadletter,
            topic_sla=self.sla,
            topic_handoffs=self.handoffs,
            topic_routing=self.routing,
            topic_identities=self.identities,
            web_port=self.web_port,
            data_dir=self.workdir / "data",
        )

    async def create_topics(self) -> None:
        await create_leadflow_topics(self.settings())

    def worker(self, name: str = "worker", **extra_env: str) -> WorkerProcess:
        env = {**self.settings().as_env(), **extra_env}  # extra_env wins: a second worker needs its own port
        return WorkerProcess(env, self.workdir / f"{name}.log", loglevel="info")

    async def committed(self) -> dict[int, int]:
        return await committed_offsets(
            self.broker.bootstrap, self.app_id, self.events, PARTITIONS, admin=not self.broker.one_record_per_batch
        )

    async def wait_committed(self, worker: WorkerProcess, targets: dict[int, int], timeout_s: float = 90.0) -> None:
        admin = not self.broker.one_record_per_batch
        await wait_until_committed(
            self.broker.bootstrap, self.app_id, self.events, targets, timeout_s=timeout_s, worker=worker, admin=admin
        )

    async def produce(self, records: Iterable[tuple[bytes | None, bytes]], topic: str | None = None) -> None:
        """Send to the events topic (tracking offsets for wait_processed), or to another `topic`."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap,
            acks="all",
            max_request_size=16 * 1024 * 1024,
            **(embedded_producer_settings() if self.broker.one_record_per_batch else {}),
        )
        await producer.start()
        try:
            for key, value in records:
                meta = await producer.send_and_wait(topic or self.events, value=value, key=key)
                if topic is None:
                    self.produced[meta.partition] = max(self.produced.get(meta.partition, 0), meta.offset + 1)
        finally:
            await producer.stop()

    async def wait_all_committed(self, worker: WorkerProcess, timeout_s: float = 90.0) -> None:
        """Until the worker's group has committed the end of every partition of the events topic: whoever
        produced them (the timer and the router too), every record was processed and its offset committed."""
        ends = await end_offsets(self.broker.bootstrap, self.events)
        await self.wait_committed(worker, {p: end for p, end in ends.items() if end > 0}, timeout_s)

    async def wait_processed(self, worker: WorkerProcess, timeout_s: float = 90.0) -> None:
        """Until the worker's group has committed everything produced so far."""
        await self.wait_committed(worker, dict(self.produced), timeout_s)


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, partition by partition, up to its current end."""
    return await read_partitions(bootstrap, topic, PARTITIONS)


async def end_offsets(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    """partition -> end offset (exact on Apache Kafka; on tansu only with one record per batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def topic_size(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> int:
    """Records in a topic now (the sum of its end offsets; exact on the embedded broker with one record per
    batch, which every leadflow producer uses there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def produce_in_real_time(deployments: list[Deployment], timed: Iterable[tuple[float, bytes, bytes]]) -> float:
    """Send each (unix time, key, value) record to every deployment's events topic when the wall clock reaches
    its time (a real-time stream: occurred_at is when it is produced); records go in time order, and the
    deployments see the same bytes in the same order. Records due together go out together, their acks awaited
    before the next wait (one round trip per burst, not per record: a burst of a hundred leads must not fall
    behind its schedule). Tracks offsets for wait_processed. Returns the largest lag behind schedule (seconds)."""
    import asyncio
    import time

    broker = deployments[0].broker
    tansu = embedded_producer_settings() if broker.one_record_per_batch else {}
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **tansu)
    await producer.start()
    worst = 0.0
    sent: list[tuple[Deployment, asyncio.Future[Any]]] = []

    async def acknowledged() -> None:
        for deployment, future in sent:
            meta = await future
            deployment.produced[meta.partition] = max(deployment.produced.get(meta.partition, 0), meta.offset + 1)
        sent.clear()

    try:
        for at, key, value in sorted(timed, key=lambda item: item[0]):
            if at > time.time():
                await acknowledged()
                wait = at - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            worst = max(worst, time.time() - at)
            sent.extend([(d, await producer.send(d.events, value=value, key=key)) for d in deployments])
        await acknowledged()
    finally:
        await producer.stop()
    return worst


async def read_partitions(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic with `partitions` partitions, partition by partition, up to its current end (e.g.
    the one partition of the routing topic and its changelog)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[tuple[bytes | None, bytes | None]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records.extend((m.key, m.value) for m in batch.get(tp, []))
        return records
    finally:
        await consumer.stop()
