"""leadflow's own envelopes -> drafts: for producers that already speak the canonical contract.

The body is one JSON object, a JSON array of them, or JSON lines (one object per line). Each envelope is validated
here with the canonical schema (schemas.events.EVENT_ADAPTER), so a bad field is answered by its path (e.g.
`[2].data.reason`, or `line 3.occurred_at` for JSON lines), and becomes a draft that keeps the producer's lead_id
(Person.lead_id), event_id, type, occurred_at, source, actor and data. The worker's internal types (timer.due,
route.unassigned) are rejected: only leadflow sends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from leadflow.core.adapters import Adapted, Delivery, Draft, Person
from leadflow.core.adapters.payload import Invalid, shown
from leadflow.schemas.errors import describe_errors
from leadflow.schemas.events import EVENT_ADAPTER, EVENT_TYPES, INTERNAL_EVENT_TYPES, LeadMerged

PRODUCER_TYPES = tuple(t for t in EVENT_TYPES if t not in INTERNAL_EVENT_TYPES)

JSON_LINES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq"})


def adapt(delivery: Delivery) -> Adapted:
    try:
        found = tuple(_draft(path, envelope) for path, envelope in _envelopes(delivery))
        if not found:
            raise Invalid("(body)", "holds no event envelope")
        return found
    except Invalid as invalid:
        return invalid.rejection


def _envelopes(delivery: Delivery) -> Iterator[tuple[str, object]]:
    """(path, parsed envelope) for each envelope in the body."""
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("(body)", "must be UTF-8 JSON text") from None
    if delivery.content_type not in JSON_LINES:
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            document = None  # maybe JSON lines sent as application/json
        else:
            if isinstance(document, list):
                yield from ((f"[{index}]", item) for index, item in enumerate(document))
            else:
                yield "", document
            return
    yield from _lines(text)


def _lines(text: str) -> Iterator[tuple[str, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise Invalid(f"line {number}", "must be one JSON object (an event envelope) per line") from None


def _draft(path: str, envelope: object) -> Draft:
    if not isinstance(envelope, Mapping):
        raise Invalid(path or "(body)", "must be an event envelope object {event_id, lead_id, type, ...}")
    kind = envelope.get("type")
    if kind in INTERNAL_EVENT_TYPES:
        raise Invalid(_join(path, "type"), f"{shown(kind)} is sent by leadflow itself, not by producers")
    if kind not in PRODUCER_TYPES:
        raise Invalid(_join(path, "type"), f"must be one of: {', '.join(PRODUCER_TYPES)}")
    try:
        event = EVENT_ADAPTER.validate_python(dict(envelope))
    except ValidationError as error:
        first = describe_errors(error, drop_leading=_union_tag_depth(error))[0]
        where, _, reason = first.partition(": ")
        raise Invalid(_join(path, where), reason) from None
    data: dict[str, Any] = event.data.model_dump(mode="json", exclude_unset=True)
    return Draft(
        person=Person(lead_id=event.lead_id),
        event_id=event.event_id,
        type=event.type,
        occurred_at=event.occurred_at,
        source=event.source,
        data=data,
        actor=event.actor.model_dump(mode="json") if event.actor is not None else None,
        merged_into=Person(lead_id=event.data.into_lead_id) if isinstance(event, LeadMerged) else None,
    )


def _union_tag_depth(error: ValidationError) -> int:
    """pydantic puts the discriminator's tag (e.g. 'lead.rejected') in front of each path: drop it."""
    locations = [tuple(e["loc"]) for e in error.errors()]
    return 1 if locations and locations[0] and str(locations[0][0]) in EVENT_TYPES else 0


def _join(path: str, where: str) -> str:
    if not path:
        return where
    return f"{path}.{where}" if where and where != "(top level)" else path
