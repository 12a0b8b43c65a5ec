"""Intake: raw Kafka record bytes -> a validated event, or a dead letter that says why and keeps the bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import ValidationError

from core.ids import output_id
from schemas.errors import describe_errors
from schemas.events import EVENT_ADAPTER, EVENT_TYPES, LeadEvent
from schemas.outputs import ROUTING_ADAPTER, DeadLetter, DeadLetterReason, RoutingMessage
from schemas.visits import VISITS_ADAPTER, VISITS_TYPE, SiteVisits

DEFAULT_MAX_EVENT_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: what a dead letter needs to point back at it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    received_at: datetime


def dead_letter(reason: DeadLetterReason, errors: list[str], origin: Origin) -> DeadLetter:
    original = origin.value or b""
    return DeadLetter(
        id=output_id("deadletter", origin.topic, str(origin.partition), str(origin.offset)),
        reason=reason,
        errors=tuple(errors),
        topic=origin.topic,
        partition=origin.partition,
        offset=origin.offset,
        key_b64=base64.b64encode(origin.key).decode() if origin.key is not None else None,
        original_b64=base64.b64encode(original).decode(),
        original_size=len(original),
        received_at=origin.received_at,
    )


def decode(
    key: bytes | None,
    value: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    received_at: datetime,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> LeadEvent | DeadLetter:
    where = Origin(key, value, topic, partition, offset, received_at)
    if value is None or len(value) > max_bytes:
        size = 0 if value is None else len(value)
        problem = (
            "(record): empty value; send one JSON event per record"
            if value is None
            else f"(record): {size:,} bytes is over the {max_bytes:,}-byte limit; send one small event per record"
        )
        return dead_letter("payload_too_large" if value else "invalid_json", [problem], where)
    try:
        event = EVENT_ADAPTER.validate_json(value)
    except ValidationError as error:
        return _explain(error, value, where)
    if key != event.lead_id.encode():
        # Without the lead_id as key a lead's events scatter over partitions (and workers): its state would split.
        got = "no key" if key is None else f"{key[:80]!r}"
        return dead_letter(
            "key_mismatch",
            [
                f"(record key): {got} is not the lead_id {event.lead_id!r}; produce with key = lead_id "
                "so every event of a lead lands on the same partition"
            ],
            where,
        )
    return event


def _explain(error: ValidationError, value: bytes, where: Origin) -> DeadLetter:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as bad:
        return dead_letter("invalid_json", [f"(record): not valid JSON: {bad}"], where)
    if not isinstance(document, dict):
        return dead_letter(
            "invalid_event",
            ["(top level): must be a JSON object (the event envelope)"],
            where,
        )
    kind = document.get("type")
    if "type" not in document:
        return dead_letter("invalid_event", ["type: is required"], where)
    if kind not in EVENT_TYPES:
        return dead_letter(
            "unknown_type",
            [f"type: {str(kind)[:80]!r} is not a known event type; use one of: {', '.join(EVENT_TYPES)}"],
            where,
        )
    # pydantic prefixes the discriminated-union tag (the event type) to every path: drop it.
    return dead_letter("invalid_event", describe_errors(error, drop_leading=1), where)


ROUTING_TYPE_NAMES = ("route.request", "route.release")


def decode_routing(origin: Origin) -> RoutingMessage | DeadLetter:
    """A record of the internal routing topic: a route request or release, or a dead letter saying why not.

    Only leadflow writes that topic; a record it cannot read (another version, a stray producer) must still
    not stop the router, nor vanish."""
    try:
        return ROUTING_ADAPTER.validate_json(origin.value or b"")
    except ValidationError as error:
        try:
            document = orjson.loads(origin.value or b"")
        except orjson.JSONDecodeError as bad:
            return dead_letter("invalid_json", [f"(record): not valid JSON: {bad}"], origin)
        kind = document.get("type") if isinstance(document, dict) else None
        if isinstance(document, dict) and kind not in ROUTING_TYPE_NAMES:
            problem = f"type: {str(kind)[:80]!r} is not a routing message; use {', '.join(ROUTING_TYPE_NAMES)}"
            return dead_letter("unknown_type", [problem], origin)
        return dead_letter("invalid_event", describe_errors(error, drop_leading=1), origin)


def is_visits(value: bytes | None) -> bool:
    """Whether a record of an events file is a site-visits report (schemas.visits) rather than a lead event:
    a substring test first, so lead events pay one `in` for it."""
    if value is None or b'"site.visits"' not in value:
        return False
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("type") == VISITS_TYPE


def decode_visits(origin: Origin) -> SiteVisits | DeadLetter:
    """A site-visits report, or a dead letter naming the field to fix."""
    if origin.value is None or len(origin.value) > DEFAULT_MAX_EVENT_BYTES:
        return dead_letter("invalid_event", ["(record): empty or too large; send one JSON report per record"], origin)
    try:
        return VISITS_ADAPTER.validate_json(origin.value)
    except ValidationError as error:
        try:
            orjson.loads(origin.value)
        except orjson.JSONDecodeError as bad:
            return dead_letter("invalid_json", [f"(record): not valid JSON: {bad}"], origin)
        return dead_letter("invalid_event", describe_errors(error), origin)
