"""A consumer group's committed offsets and its topic's end offsets, read the way an operator's tools read them
(`kafka-consumer-groups.sh --describe`): the group's OffsetFetch through the Kafka admin API, the end offsets
through ListOffsets. Apache Kafka only: the admin client cannot decode the embedded tansu broker's group answers
(GUIDE section 7), where the worker reports only the lag its own consumer sees (streams.runtime.metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.structs import TopicPartition

COORDINATOR_ATTEMPTS = 40  # the offsets topic is created on a fresh broker's first group lookup: ~10 s of retries


class GroupOffsets:
    """Long-lived clients (started on first use) for one group and one topic."""

    def __init__(self, bootstrap: str, group_id: str, topic: str, client: Mapping[str, Any] | None = None) -> None:
        self.bootstrap, self.group_id, self.topic = bootstrap, group_id, topic
        self.client = dict(client or {})
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None  # no group: it only asks for end offsets

    async def committed(self, partitions: Iterable[int]) -> dict[int, int]:
        """partition -> the group's committed offset (0 where it committed none: nothing of it is done yet)."""
        tps = [TopicPartition(self.topic, partition) for partition in partitions]
        if not tps:
            return {}
        admin = await self._admin_client()
        for attempt in range(COORDINATOR_ATTEMPTS):
            try:
                found = await admin.list_consumer_group_offsets(self.group_id, partitions=tps)
                break
            except GroupCoordinatorNotAvailableError:
                if attempt == COORDINATOR_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.25)
        return {tp.partition: max(0, found[tp].offset) if tp in found else 0 for tp in tps}

    async def ends(self, partitions: Iterable[int]) -> dict[int, int]:
        """partition -> end offset (the offset the next record appended will get)."""
        tps = [TopicPartition(self.topic, partition) for partition in partitions]
        if not tps:
            return {}
        if self._ends is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.client)
            await consumer.start()
            self._ends = consumer
        found = await self._ends.end_offsets(tps)
        return {tp.partition: offset for tp, offset in found.items()}

    async def close(self) -> None:
        admin, ends, self._admin, self._ends = self._admin, self._ends, None, None
        if admin is not None:
            await admin.close()
        if ends is not None:
            await ends.stop()

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client)
            await admin.start()
            self._admin = admin
        return self._admin
