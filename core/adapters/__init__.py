"""Adapters: a marketing tool's webhook payload -> canonical event drafts, or the reason it cannot be mapped.

Pure functions (GUIDE.md section 5): payload in, drafts or a `Rejection` out; no I/O, no clock, no secrets. A draft
is an envelope whose lead is not known yet: it names the person (e-mail and the tool's own ids) and the gateway's
identity step (core/identity.py) turns that into the stable lead_id before the envelope is validated and produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadflow.schemas.policy import Policy


@dataclass(frozen=True, slots=True)
class Person:
    """Who an event is about, as the tool names them: an e-mail (the strongest key across tools) and/or the tool's
    own ids, each written `<source>:<id>` (e.g. `hubspot:12345678:65059681032`, `rdstation:<uuid>`, `mautic:52`)."""

    email: str | None = None
    tool_ids: tuple[str, ...] = ()
    lead_id: str | None = None  # canonical envelopes only: the producer chose the lead_id, identity keeps it


@dataclass(frozen=True, slots=True)
class Draft:
    """A canonical event before identity: everything of the envelope but `lead_id`.

    `event_id` is derived from the tool's delivery or event id, so a redelivered webhook gives the same id and the
    worker drops it as a duplicate. For `lead.merged`, `merged_into` names the surviving person and the identity
    step fills `data.into_lead_id`.
    """

    person: Person
    event_id: str
    type: str
    occurred_at: datetime
    source: str
    data: Mapping[str, Any] = field(default_factory=dict)
    actor: Mapping[str, str] | None = None
    merged_into: Person | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload (or one item of it) cannot be mapped: the field, by its path in the payload, and the fix.

    Never holds personal data (e-mail, name, phone): it is logged, counted and answered to the tool."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


Adapted = tuple[Draft, ...] | Rejection


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request as an adapter sees it (the gateway has checked its signature and size already)."""

    body: bytes
    content_type: str  # lower case, without parameters: application/json, application/x-www-form-urlencoded, ...
    headers: Mapping[str, str]  # lower-case names
    received_at: datetime  # when the gateway received it: the fallback event time of payloads that carry none
    policy: Policy  # the forms section maps form submissions; nothing else of the policy is an adapter's business
