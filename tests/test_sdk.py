"""The producer SDK (streams/runtime/sdk.py): validated envelopes, sent keyed by lead_id to the real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from e2e import Deployment, read_topic

from leadflow.core.intake import decode
from leadflow.schemas.events import LeadUpdated
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.sdk import InvalidEvent, LeadProducer, encode, lead_event

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_lead_event_validates_as_the_worker_does_and_names_the_field() -> None:
    event = lead_event("lead.updated", "crm-1", event_id="u1", occurred_at=AT, job_title="CTO", origin="ads")
    assert isinstance(event, LeadUpdated)
    read = decode(b"crm-1", encode(event), topic="t", partition=0, offset=0, received_at=AT)
    assert read == event
    with pytest.raises(InvalidEvent) as missing:
        lead_event("lead.rejected", "crm-1", occurred_at=AT)
    assert missing.value.problems == ["data.reason: is required"]
    with pytest.raises(InvalidEvent, match="country"):
        lead_event("lead.updated", "crm-1", occurred_at=AT, country="Brazil")
    with pytest.raises(InvalidEvent, match=r"timer\.due"):
        lead_event("timer.due", "crm-1", occurred_at=AT)


def test_encode_writes_only_the_fields_given() -> None:
    # A null in lead.updated clears an attribute: defaults must not be written out as nulls.
    value = orjson.loads(encode(lead_event("lead.updated", "crm-1", event_id="u1", occurred_at=AT, seniority="vp")))
    assert value["data"] == {"seniority": "vp"}
    assert "actor" not in value


@pytest.mark.broker
async def test_send_is_keyed_by_lead_id_and_acknowledged(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    events = [
        lead_event("lead.created", f"crm-{i}", event_id=f"c{i}", occurred_at=AT, source="billing") for i in range(5)
    ]
    async with LeadProducer(
        broker.bootstrap, topic=deployment.events, embedded=broker.one_record_per_batch
    ) as producer:
        await producer.send(events[0])
        await producer.send_many(events[1:])
    records = await read_topic(broker.bootstrap, deployment.events)
    assert sorted(key or b"" for key, _ in records) == [f"crm-{i}".encode() for i in range(5)]
    assert all(orjson.loads(value or b"")["lead_id"].encode() == key for key, value in records)
    assert {orjson.loads(value or b"")["source"] for _, value in records} == {"billing"}
