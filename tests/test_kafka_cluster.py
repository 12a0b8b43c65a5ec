"""Production settings on a 3-node Apache Kafka cluster (KRaft, loopback): replication 3, min.insync.replicas 2,
an idempotent acks=all producer under load, one broker killed mid-stream; no event lost, no lead state wrong."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from conftest import make_topic_prefix
from e2e import Deployment, read_topic
from test_e2e import assert_table_is, expected_records, final_table, without_slas

from leadflow.core.merges import FORWARD_PREFIX, MERGE_SOURCE
from leadflow.schemas.policy import load_policy
from leadflow.streams.dev.kafka import KafkaCluster, KafkaClusterNode
from leadflow.streams.dev.simulator import journeys, records
from leadflow.streams.dev.worker_process import WorkerProcess
from leadflow.streams.runtime.producer import producer_options
from leadflow.streams.runtime.settings import Settings

pytestmark = pytest.mark.broker

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
REPLICATION, MIN_ISR = 3, 2


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    with KafkaCluster(tmp_path / "kafka") as running:
        yield running


class ClusterDeployment(Deployment):
    """A deployment with the production durability settings (topics and the worker's environment)."""

    def settings(self) -> Settings:
        base = super().settings()
        given = {name: getattr(base, name) for name in base.model_fields_set}
        return Settings(**given, replication_factor=REPLICATION, min_insync_replicas=MIN_ISR)


async def topic_layout(bootstrap: str, topics: list[str], timeout_s: float = 30) -> dict[str, dict[str, Any]]:
    """Per topic: its replica counts, leaders and the configs leadflow sets. A broker that has not yet caught up
    with the metadata of topics just created answers for them with an error code and no entries (seen in CI:
    `min.insync.replicas` missing): asked again until every topic is answered, up to `timeout_s`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            described = {t["topic"]: t for t in await admin.describe_topics(topics)}
            answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in topics])
            configs: dict[str, dict[str, str]] = {}
            errors: dict[str, int] = {}
            for answer in answers:
                for code, _message, _type, name, entries in answer.resources:
                    configs[name] = {entry[0]: entry[1] for entry in entries}
                    if code:
                        errors[name] = code
            for name, topic in described.items():
                if topic.get("error_code") or not topic["partitions"]:
                    errors[name] = topic.get("error_code") or -1  # -1: no partitions known yet
            missing = [name for name in topics if name not in described or name not in configs]
            if not errors and not missing:
                break
            assert time.monotonic() < deadline, f"topics not described: errors {errors}, missing {missing}"
            await asyncio.sleep(0.5)
        return {
            name: {
                "replicas": {len(p["replicas"]) for p in described[name]["partitions"]},
                "leaders": {p["partition"]: p["leader"] for p in described[name]["partitions"]},
                "configs": configs[name],
            }
            for name in topics
        }
    finally:
        await admin.close()


async def checked_topics(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The topics leadflow created have the production settings; returns their layout."""
    layout = await topic_layout(
        deployment.broker.bootstrap,
        [deployment.events, deployment.changelog, deployment.deadletter, deployment.transitions],
    )
    for name, topic in layout.items():
        assert topic["replicas"] == {REPLICATION}, name
        assert topic["configs"]["min.insync.replicas"] == str(MIN_ISR), name
    assert layout[deployment.changelog]["configs"]["cleanup.policy"] == "compact"
    assert layout[deployment.deadletter]["configs"]["retention.ms"] == "-1"
    assert layout[deployment.deadletter]["configs"]["retention.bytes"] == "-1"
    return layout


async def send_paced(producer: AIOKafkaProducer, topic: str, batch: list[tuple[bytes, bytes]]) -> list[Any]:
    """Send at about 2k records/s (a stream, not one burst), keyed by lead; returns every record's metadata."""
    pending = []
    for index, (key, value) in enumerate(batch):
        pending.append(await producer.send(topic, value=value, key=key))
        if index % 100 == 99:
            await asyncio.sleep(0.05)
    return list(await asyncio.gather(*pending))


async def processing(deployment: Deployment, worker: WorkerProcess, timeout_s: float = 90.0) -> None:
    """Until the worker has committed its first events."""
    deadline = time.monotonic() + timeout_s
    while sum((await deployment.committed()).values()) == 0:
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"nothing committed within {timeout_s}s\n{worker.log_tail()}"
        await asyncio.sleep(0.1)


async def test_a_broker_killed_mid_stream_loses_no_event_and_no_lead_state(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    deployment = ClusterDeployment(cluster, make_topic_prefix("cluster"), tmp_path)  # type: ignore[arg-type]
    await deployment.create_topics()
    layout = await checked_topics(deployment)

    sent = records(journeys(seed=23, n_leads=800, start=T0 - timedelta(days=60)), seed=23)
    policy_path = without_slas(tmp_path)
    tuning = {"LEADFLOW_BATCH_MAX": "200", "LEADFLOW_COMMIT_INTERVAL_S": "0.5", "LEADFLOW_POLICY": str(policy_path)}
    worker = deployment.worker("worker", **tuning).start()
    # The node leading partition 0 of the events topic: its leaderships must move while records keep coming.
    victim: KafkaClusterNode = cluster.node_by_id(layout[deployment.events]["leaders"][0])
    kill_at = len(sent) // 3
    try:
        options = producer_options(embedded=False, settings=deployment.settings())
        assert (options["acks"], options["enable_idempotence"]) == ("all", True)  # against a real Kafka
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, **options)
        await producer.start()
        try:
            first = await send_paced(producer, deployment.events, sent[:kill_at])
            await processing(deployment, worker)  # the worker is busy with the first third
            at_kill = await deployment.committed()
            victim.kill()
            killed_at = time.monotonic()
            rest = await send_paced(producer, deployment.events, sent[kill_at:])
            for meta in [*first, *rest]:
                deployment.produced[meta.partition] = max(deployment.produced.get(meta.partition, 0), meta.offset + 1)
        finally:
            await producer.stop()
        produced_s = time.monotonic() - killed_at
        assert 0 < sum(at_kill.values()) < len(sent), "the broker was not killed mid-stream"
        await deployment.wait_processed(worker, timeout_s=150)
        assert worker.exit_code() is None, worker.log_tail()
        expected = expected_records(sent, datetime.now(UTC), load_policy(policy_path))
    finally:
        worker.stop()
    assert not victim.is_running()
    print(f"killed node {victim.node_id}; the rest produced {produced_s:.1f}s after; committed at kill {at_kill}")

    # No event lost, none written twice (the idempotent producer's retries through the failover). The worker's own
    # records there (merge notices and forwarded events, core.merges) are not the producer's.
    stored = [value for _, value in await read_topic(cluster.running_bootstrap(), deployment.events)]
    assert collections.Counter(value for value in stored if not is_leadflows(value)) == collections.Counter(
        value for _, value in sent
    )
    # (The producer's highest offsets are no count of its records: the worker's merge notices sit among them.)
    assert await read_topic(cluster.running_bootstrap(), deployment.deadletter) == []
    # No lead state wrong: the changelog's table is what the core gives for each lead's events in order.
    assert_table_is(await final_table(deployment), expected)


def is_leadflows(value: bytes | None) -> bool:
    """A record the worker wrote to the events topic itself: a merge notice or a forwarded event."""
    event = orjson.loads(value or b"{}")
    return event.get("source") == MERGE_SOURCE or str(event.get("event_id", "")).startswith(FORWARD_PREFIX)
