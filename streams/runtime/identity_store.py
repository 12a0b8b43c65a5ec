"""The gateway's identity table (core/identity.py) kept in a compacted Kafka topic, `leads.identities`.

Key = alias (a tool id such as `hubspot:<portal>:<contact>`, or `email:<keyed hash>`: never an e-mail), value = the
lead_id; an erasure writes tombstones. Each gateway reads the whole topic before it answers (readiness) and keeps
reading it, so replicas and restarts share what any of them learned. A new alias is written only after the broker
acknowledged the events of its request (the lead.created above all): a stored alias means its lead exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger(__name__)


class AliasLocks:
    """Requests that name a common alias are decided one after the other, from reading the table to storing what
    they learned, so two requests never split a person nor both create them; requests about other people go on
    meanwhile (the broker round trips of a request are held, not the whole gateway). A fixed set of locks, an
    alias hashed to one, taken in ascending order so that two requests never wait for each other."""

    def __init__(self, stripes: int = 1024) -> None:
        self._locks = tuple(asyncio.Lock() for _ in range(stripes))

    @asynccontextmanager
    async def holding(self, aliases: Iterable[str]) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for stripe in sorted({hash(alias) % len(self._locks) for alias in aliases}):
                await stack.enter_async_context(self._locks[stripe])
            yield


class IdentityStore:
    def __init__(self, bootstrap: str, topic: str, client: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client = dict(client or {})  # TLS / SASL options (streams.runtime.topics.client_options)
        self.table: dict[str, str] = {}
        self.loaded = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its end (then `loaded` is set) and keep following it in the background."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None, **self.client
        )
        self._consumer = consumer
        await consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            self._apply((await consumer.getmany(timeout_ms=500)).values())
        self.loaded.set()
        self._follow = asyncio.create_task(self._keep_following(consumer))

    async def _keep_following(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            self._apply((await consumer.getmany(timeout_ms=1000)).values())

    def _apply(self, batches: Iterable[Iterable[object]]) -> None:
        for batch in batches:
            for record in batch:
                key, value = getattr(record, "key", None), getattr(record, "value", None)
                if key is None:
                    continue
                if value is None:
                    self.table.pop(key.decode(), None)
                else:
                    self.table[key.decode()] = value.decode()

    async def remember(self, producer: AIOKafkaProducer, aliases: Mapping[str, str]) -> None:
        """Write new aliases and wait for the broker's acknowledgement; the table takes them at once."""
        sends = [
            await producer.send(self.topic, key=alias.encode(), value=lead.encode()) for alias, lead in aliases.items()
        ]
        await asyncio.gather(*sends)
        self.table.update(aliases)

    async def forget(self, producer: AIOKafkaProducer, aliases: Iterable[str]) -> None:
        sends = [await producer.send(self.topic, key=alias.encode(), value=None) for alias in aliases]
        await asyncio.gather(*sends)
        for alias in aliases:
            self.table.pop(alias, None)

    async def stop(self) -> None:
        self.loaded.clear()
        if self._follow is not None:
            self._follow.cancel()
            await asyncio.gather(self._follow, return_exceptions=True)
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            # With the broker gone, aiokafka's fetcher ends its pending fetch by cancellation while stopping.
            await asyncio.gather(consumer.stop(), return_exceptions=True)
