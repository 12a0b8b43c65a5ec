"""The producer SDK: build leadflow envelopes, validated as the worker reads them, and send them keyed right.

For in-house producers written in Python (other languages: the JSON Schema files of `leadflow schema --out DIR`):

    from leadflow.streams.runtime.sdk import LeadProducer, lead_event

    async with LeadProducer("kafka-1:9092", source="billing") as producer:
        await producer.send(lead_event("deal.won", "crm-42", event_id="invoice-981", amount=12_000.0))

`lead_event` raises `InvalidEvent` naming each bad field and how to fix it, before anything is sent; `send`
returns once the broker acknowledged the record (acks=all), keyed by lead_id so a lead's events stay in order.
Give event ids derived from your own record ids: a retried send is then a duplicate the worker drops.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from leadflow.schemas.errors import describe_errors
from leadflow.schemas.events import EVENT_ADAPTER, EVENT_TYPES, INTERNAL_EVENT_TYPES, LeadEvent
from leadflow.streams.runtime.producer import producer_options
from leadflow.streams.runtime.routes import ROUTES

PRODUCER_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t not in INTERNAL_EVENT_TYPES)


class InvalidEvent(ValueError):
    """The envelope would be dead-lettered by the worker: `problems` names each field and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def lead_event(
    type: str,
    lead_id: str,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    source: str = "sdk",
    actor: Mapping[str, str] | None = None,
    **data: Any,
) -> LeadEvent:
    """A validated envelope. `occurred_at` defaults to now (UTC); `event_id` to a random id (prefer your own)."""
    if type not in PRODUCER_EVENT_TYPES:
        known = ", ".join(PRODUCER_EVENT_TYPES)
        raise InvalidEvent([f"type: {type!r} is not an event type producers send; use one of: {known}"])
    when = occurred_at or datetime.now(UTC)
    envelope = {
        "event_id": event_id or uuid.uuid4().hex,
        "lead_id": lead_id,
        "type": type,
        "occurred_at": when.isoformat(),
        "source": source,
        "data": data,
        **({"actor": dict(actor)} if actor else {}),
    }
    try:
        return EVENT_ADAPTER.validate_python(envelope)
    except ValidationError as error:
        raise InvalidEvent(describe_errors(error, drop_leading=1)) from None


def encode(event: LeadEvent) -> bytes:
    """The record value: only the fields that were given (a null in lead.updated data clears an attribute, so
    defaults must not be written out as nulls)."""
    return EVENT_ADAPTER.dump_json(event, exclude_unset=True)


class LeadProducer:
    """A started Kafka producer for the events topic (`leads.events`), as an async context manager."""

    def __init__(self, bootstrap: str, *, topic: str = ROUTES["events"].default, embedded: bool = False) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(embedded=embedded))

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def send(self, event: LeadEvent) -> None:
        """Send one event keyed by its lead_id; returns once the broker acknowledged it."""
        await self._producer.send_and_wait(self.topic, value=encode(event), key=event.lead_id.encode())

    async def send_many(self, events: list[LeadEvent]) -> None:
        """Send several events (in order per lead) and wait for every acknowledgement."""
        pending = [await self._producer.send(self.topic, value=encode(e), key=e.lead_id.encode()) for e in events]
        for delivery in pending:
            await delivery
