"""Intake: raw Kafka record bytes -> a validated event, or a dead letter that says why and keeps the bytes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.ids import output_id
from leadflow.core.merges import FORWARD_PREFIX, is_reserved_id
from leadflow.schemas.errors import describe_errors
from leadflow.schemas.events import EVENT_ADAPTER, EVENT_TYPES, INTERNAL_EVENT_TYPES, LeadEvent
from leadflow.schemas.outputs import ROUTING_ADAPTER, DeadLetter, DeadLetterReason, RoutingMessage
from leadflow.schemas.visits import VISITS_ADAPTER, VISITS_TYPE, SiteVisits

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


def dead_letter(reason: DeadLetterReason, errors: list[str], origin: Origin, *, about: str = "") -> DeadLetter:
    """`about`: the id of a record the worker made itself while it took this one (a replay's timer tick, say),
    so that its dead letter and the record's own have different ids."""
    original = origin.value or b""
    return DeadLetter(
        id=output_id(
            "deadletter", origin.topic, str(origin.partition), str(origin.offset), *([about] if about else [])
        ),
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


# -- Internal records. The SLA timer (`timer.due`), the router (`route.unassigned`, and `lead.assigned` with
# the router's source, which ends a lead's wait for an owner) and merged leads (a merge's `lead.absorbed` notice,
# and the events they forward, ids `fwd:...`: core.merges) write to the same events topic as producers do, so
# the topic alone cannot tell them apart. A worker signs each record it writes there: a Kafka header holding
# the HMAC-SHA256 of the record's value under a key only workers have (settings: LEADFLOW_INTERNAL_KEY). The
# value names the lead and the key must be the lead_id, so a signed record cannot be moved to another lead, and
# a copy of one has its event id: a duplicate.
INTERNAL_HEADER = "leadflow-internal"


def internal_proof(value: bytes, secret: bytes) -> bytes:
    """The header value that proves a record of the events topic was written by a worker."""
    return hmac.new(secret, value, hashlib.sha256).hexdigest().encode()


def is_internal_proof(value: bytes, proof: bytes | None, secret: bytes | None) -> bool:
    return proof is not None and secret is not None and hmac.compare_digest(proof, internal_proof(value, secret))


def header(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The last value of a header (Kafka headers are a list of pairs; Faust's test channel may give a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = None
    for key, value in pairs:
        if key == name:
            found = value
    return found


def is_internal(event: LeadEvent) -> bool:
    """Whether only leadflow itself may write this event: the timer's, the router's and a merged lead's (its
    merge notice, and the events it forwards to the lead it was merged into)."""
    return (
        event.type in INTERNAL_EVENT_TYPES
        or (event.type == "lead.assigned" and event.source == ROUTER_SOURCE)
        or is_reserved_id(event.event_id)
    )


def forged(event: LeadEvent) -> str:
    """The problem line for an internal event without a valid proof."""
    fix = (
        f"this record has no valid {INTERNAL_HEADER} header. Producers cannot send it; if a worker sent it, give "
        "every worker the same LEADFLOW_INTERNAL_KEY"
    )
    if event.type == "lead.absorbed":
        return f"type: lead.absorbed is written by leadflow itself (a merged lead's notice), signed; {fix}"
    if event.type in INTERNAL_EVENT_TYPES:
        return f"type: {event.type} is written by leadflow itself (its SLA timer and router), signed; {fix}"
    if is_reserved_id(event.event_id):
        return (
            f"event_id: {event.event_id[:80]!r} is leadflow's own (an id starting with {FORWARD_PREFIX!r} names an "
            f"event a merged lead forwards), signed; {fix}. Give the event an id of your own"
        )
    return (
        f"source: {ROUTER_SOURCE!r} is reserved for leadflow's router, whose lead.assigned answers are signed; "
        f"{fix}. Send lead.assigned with your tool's own source"
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
    proof: bytes | None = None,
    internal_key: bytes | None = None,
) -> LeadEvent | DeadLetter:
    """Read one record of the events topic. An internal event (`is_internal`) is accepted only with the proof a
    worker signs it with (the `leadflow-internal` header) under `internal_key`; without a key none is."""
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
    if may_repeat_a_key(value, event):
        repeated = repeated_key(value)
        if repeated is not None:
            return dead_letter("invalid_json", [repeated], where)
    if is_internal(event) and not is_internal_proof(value, proof, internal_key):
        return dead_letter("invalid_event", [forged(event)], where)
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


# -- Duplicate keys. orjson and pydantic keep the last of two equal keys in one object, silently: an event
# {"type": "lead.teleported", ..., "type": "activity"} would be applied as an activity. Parsing every record
# again with a parser that sees each key would cost about as much as the validation, so a cheap count decides
# first. Every key's closing quote is followed by a colon (after optional whitespace), so the quote-colon
# pairs of a record are at least the keys it holds; a validated event holds exactly as many distinct keys as
# fields it set (our models forbid unknown fields; lead data keeps them as extras, which count as set, and
# scalars only). When the record has no more quote-colon pairs than the event has fields, no key can repeat.
# Only when it has more (a key given twice, or `":` inside a text) is it parsed again, with a hook that sees
# every key. Counting fewer fields than were given (a nested model not looked into) only costs that parse.
def may_repeat_a_key(value: bytes, event: LeadEvent) -> bool:
    """Whether a validated record may hold a key twice in one object (False: it certainly does not)."""
    # Without whitespace (a deletion, cheaper than a regex), `"key" :` counts too; deleting never hides a pair.
    ends = value.translate(None, b" \t\n\r").count(b'":')
    given = len(event.__pydantic_fields_set__) + fields_given(event.data)
    if event.actor is not None:
        given += len(event.actor.__pydantic_fields_set__)
    return ends > given


def fields_given(model: BaseModel) -> int:
    """The keys of the JSON object a model was validated from (extras count as set), nested models included."""
    given = model.__pydantic_fields_set__
    count = len(given)
    for name in _nested_models(type(model)):
        if name in given:
            count += fields_given(getattr(model, name))
    return count


@functools.cache
def _nested_models(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model class that hold a model (e.g. deal data's `bant`)."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    )


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers the keys it was given more than once."""

    repeated: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    found = _Object(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        repeated: list[str] = []
        for name, _ in pairs:
            if name in seen:
                repeated.append(name)
            seen.add(name)
        found.repeated = tuple(repeated)
    return found


def _first_repeated(document: Any, path: str) -> str | None:
    if isinstance(document, _Object):
        if document.repeated:
            name = document.repeated[0]
            return f"{path}.{name}" if path else name
        items: Any = document.items()
    elif isinstance(document, list):
        items = ((f"[{i}]", item) for i, item in enumerate(document))
    else:
        return None
    for name, item in items:
        inner = name if name.startswith("[") else (f".{name}" if path else name)
        found = _first_repeated(item, f"{path}{inner}")
        if found is not None:
            return found
    return None


def repeated_key(value: bytes) -> str | None:
    """The problem line for the first key given twice in one object (at any depth), or None."""
    try:
        document = json.loads(value, object_pairs_hook=_pairs)
        path = _first_repeated(document, "")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack (the caller says so)
        return None  # not JSON this parser reads: orjson's reading (the caller's) has the last word
    if path is None:
        return None
    shown = path if len(path) <= 120 else path[:117] + "..."
    return (
        f"{shown}: the key appears twice in one JSON object (readers disagree on which one counts); "
        "send each field once"
    )


def nested_too_deep(error: ValidationError, value: bytes) -> str | None:
    """The problem line for JSON nested deeper than the validator reads (pydantic's recursion limit), or None."""
    for found in error.errors(include_url=False):
        said = str(found.get("ctx", {}).get("error", ""))
        if found["type"] == "json_invalid" and said.startswith("recursion limit exceeded"):
            column = said.rpartition("column ")[2]
            at = len(value.decode("utf-8")[: int(column) - 1].encode("utf-8")) if column.isdigit() else 0
            return (
                f"(record): objects and arrays nested too deep at byte {at}; an event's data holds flat values "
                "(and lists of them): send the nested part as a text or leave it out"
            )
    return None


def not_json(value: bytes) -> str | None:
    """The problem line for a record that is not JSON text (UTF-8, RFC 8259), naming the byte offset, or None."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as bad:
        return (
            f"(record): not valid UTF-8 at byte {bad.start} (0x{value[bad.start]:02x}): {bad.reason}; "
            "encode the record as UTF-8"
        )
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError as bad:
        at = len(text[: bad.pos].encode("utf-8"))
        return f"(record): not valid JSON at byte {at}: {bad.msg}; send one JSON object per record"
    return None


def _explain(error: ValidationError, value: bytes, where: Origin) -> DeadLetter:
    problem = not_json(value)
    if problem is not None:
        return dead_letter("invalid_json", [problem], where)
    too_deep = nested_too_deep(error, value)
    if too_deep is not None:
        return dead_letter("invalid_json", [too_deep], where)
    repeated = repeated_key(value)
    if repeated is not None:
        return dead_letter("invalid_json", [repeated], where)
    document = orjson.loads(value)
    if not isinstance(document, dict):
        return dead_letter(
            "invalid_event",
            ["(top level): must be a JSON object (the event envelope)"],
            where,
        )
    kind = document.get("type")
    if "type" not in document:
        return dead_letter(
            "invalid_event", [f"type: is required; name the event type, one of: {', '.join(EVENT_TYPES)}"], where
        )
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
        problem = not_json(origin.value or b"")
        if problem is not None:
            return dead_letter("invalid_json", [problem], origin)
        document = orjson.loads(origin.value or b"")
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


def decode_visits(origin: Origin, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> SiteVisits | DeadLetter:
    """A site-visits report, or a dead letter naming the field to fix (over `max_bytes`: the worker's
    LEADFLOW_MAX_EVENT_BYTES, as for lead events)."""
    if origin.value is None or len(origin.value) > max_bytes:
        return dead_letter("invalid_event", ["(record): empty or too large; send one JSON report per record"], origin)
    try:
        return VISITS_ADAPTER.validate_json(origin.value)
    except ValidationError as error:
        return unreadable(error, origin)


def unreadable(error: ValidationError, origin: Origin) -> DeadLetter:
    """The dead letter of a record its schema refused: not JSON (naming the byte), else the fields that are wrong."""
    problem = not_json(origin.value or b"")
    if problem is not None:
        return dead_letter("invalid_json", [problem], origin)
    return dead_letter("invalid_event", describe_errors(error), origin)
