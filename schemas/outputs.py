"""Output events the worker emits: lifecycle outputs on `leads.transitions`, dead letters on `leads.deadletter`.

Every output has a deterministic `id` derived from the lead, the event that caused it and what it says, so a
redelivered input produces byte-identical ids and consumers can dedupe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from leadflow.schemas.base import Frozen
from leadflow.schemas.events import LeadEvent

RefusalReason = Literal[
    "unknown_lead",
    "lead_exists",
    "lead_merged",
    "illegal_transition",
    "invalid_rejection_reason",
    "unknown_pipeline_stage",
    "missing_prerequisites",
    "invalid_lost_reason",
    "future_event",
    "self_merge",
    "lead_erased",
    "merge_cycle",
    "merge_chain_too_long",
]


class StageChanged(Frozen):
    type: Literal["stage.changed"] = "stage.changed"
    id: str
    lead_id: str
    from_stage: str | None = Field(description="None when the lead was created")
    to_stage: str
    occurred_at: datetime
    cause_event_id: str
    cause_type: str
    reason: str = Field(description="why: created, score, hand_raiser, external, accepted, rejected:<code>, ...")
    skipped: tuple[str, ...] = Field(
        default=(), description="main-funnel stages a fact jumped over (e.g. deal.won on an mql: sal, sql, ...)"
    )
    fit: int
    engagement: int
    owner_id: str | None = None


class EventRefused(Frozen):
    """An event that was valid JSON of a known shape but that the policy does not allow; it changed nothing."""

    type: Literal["event.refused"] = "event.refused"
    id: str
    lead_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    reason: RefusalReason
    detail: str


class LeadErasedNotice(Frozen):
    """The lead's state was dropped (erasure request); its table key now holds a tombstone."""

    type: Literal["lead.erased"] = "lead.erased"
    id: str
    lead_id: str
    occurred_at: datetime
    cause_event_id: str


class LeadMergedNotice(Frozen):
    type: Literal["lead.merged"] = "lead.merged"
    id: str
    lead_id: str
    into_lead_id: str
    occurred_at: datetime
    cause_event_id: str


class _SlaOutput(Frozen):
    id: str
    lead_id: str
    sla: str
    owner_id: str | None
    team: str | None
    pool: str | None = Field(default=None, description="the routing pool the lead's owner came from")
    started_at: datetime
    deadline: datetime
    occurred_at: datetime = Field(description="when it happened (event time; the deadline for a breach)")


class SlaStarted(_SlaOutput):
    type: Literal["sla.started"] = "sla.started"
    allowance_s: float
    business: bool


class SlaWarning(_SlaOutput):
    type: Literal["sla.warning"] = "sla.warning"
    fraction: float = Field(description="share of the allowance used, e.g. 0.9")


class SlaMet(_SlaOutput):
    type: Literal["sla.met"] = "sla.met"
    used_s: float = Field(description="allowance used (business seconds for business-time SLAs), pauses excluded")
    late: bool = Field(description="met after the deadline (the breach was emitted too)")


class SlaBreached(_SlaOutput):
    type: Literal["sla.breached"] = "sla.breached"
    not_escalated: str | None = Field(
        default=None,
        description="why the policy's escalation was not carried out (e.g. the breach is older than "
        "processing.escalation_horizon_seconds: history, not a call to act now); None otherwise",
    )


class SlaCancelled(_SlaOutput):
    type: Literal["sla.cancelled"] = "sla.cancelled"
    reason: str = Field(description="why the clock stopped, e.g. left:mql or erased")


class SlaEscalated(_SlaOutput):
    """A breach the policy escalates: the lead goes to the next owner of its pool and/or a manager is told."""

    type: Literal["sla.escalated"] = "sla.escalated"
    actions: tuple[Literal["reassign", "notify"], ...]
    manager_id: str | None = Field(description="who to notify (the pool's manager), when the policy says notify")


SlaOutput = Annotated[
    SlaStarted | SlaWarning | SlaMet | SlaBreached | SlaCancelled | SlaEscalated, Field(discriminator="type")
]
SLA_ADAPTER: TypeAdapter[SlaOutput] = TypeAdapter(SlaOutput)
SLA_TYPES = (SlaStarted, SlaWarning, SlaMet, SlaBreached, SlaCancelled, SlaEscalated)


class HandOffSla(Frozen):
    sla: str
    started_at: datetime
    deadline: datetime
    allowance_s: float
    business: bool


class ScoreSummary(Frozen):
    fit: int
    engagement: int
    hand_raiser: bool = Field(description="the lead became MQL by raising its hand (demo request, contact sales)")
    top_actions: tuple[tuple[str, float], ...] = Field(description="engagement points held per action, top first")
    mql_reason: str = Field(description="why the lead became MQL: score, hand_raiser, external")


HandOffReason = Literal["routed", "fallback", "assigned", "escalated"]


class HandOff(Frozen):
    """Passing the baton: who owns the lead now, what they must do by when, and why the lead is worth it.

    One per owner change; what a CRM task, a chat notification or an e-mail needs. On `leads.handoffs`.
    """

    type: Literal["lead.handoff"] = "lead.handoff"
    id: str
    lead_id: str
    owner_id: str
    team: str | None
    pool: str | None = Field(description="routing pool; None when an external lead.assigned chose the owner")
    reason: HandOffReason = Field(
        description="routed: round robin in the lead's pool; fallback: its pool had nobody free; "
        "assigned: an external lead.assigned; escalated: reassigned after an SLA breach"
    )
    previous_owner_id: str | None = None
    stage: str
    occurred_at: datetime
    slas: tuple[HandOffSla, ...] = Field(description="the SLA clocks open now, with their deadlines")
    score: ScoreSummary
    profile: dict[str, str | int] = Field(description="company, job title, country, segment... (what is known)")
    missing_fields: tuple[str, ...] = Field(
        default=(),
        description="profile attributes the policy's required_fields lists for `stage` that the lead does not hold "
        "yet (None or empty text), in the policy's order: what sales still has to find out",
    )


HANDOFF_ADAPTER: TypeAdapter[HandOff] = TypeAdapter(HandOff)


class RouteRequest(Frozen):
    """Internal (topic leads.routing): the lead needs an owner from `pool` (round robin, skipping `exclude`)."""

    type: Literal["route.request"] = "route.request"
    id: str
    lead_id: str
    pool: str
    exclude: tuple[str, ...] = ()
    escalated_sla: str | None = None
    occurred_at: datetime


class RouteRelease(Frozen):
    """Internal (topic leads.routing): the owner no longer holds this lead as an open MQL (frees capacity)."""

    type: Literal["route.release"] = "route.release"
    id: str
    lead_id: str
    pool: str
    owner_id: str
    occurred_at: datetime


class Forward(Frozen):
    """Internal (topic leads.events, keyed by the lead it goes to, signed like the timer's ticks): an event leadflow
    produces again for another lead, because `lead_id` was merged into `into_lead_id` (core.merges): an event
    sent to the merged lead, under the id `fwd:<hops>:<lead_id>:<event id>`, or the merge's notice to the lead
    it was merged into (`lead.absorbed`, id `merge:<lead_id>:<merge event id>`). What is produced is `event`."""

    type: Literal["event.forward"] = "event.forward"
    id: str
    lead_id: str = Field(description="the merged lead that forwards")
    into_lead_id: str = Field(description="the lead it was merged into: where `event` goes (its lead_id)")
    event: LeadEvent
    occurred_at: datetime

    def value(self) -> bytes:
        """The record produced on the events topic: the envelope with exactly the fields it was given."""
        return self.event.model_dump_json(exclude_unset=True).encode()


RoutingMessage = Annotated[RouteRequest | RouteRelease, Field(discriminator="type")]
ROUTING_ADAPTER: TypeAdapter[RoutingMessage] = TypeAdapter(RoutingMessage)
ROUTING_TYPES = (RouteRequest, RouteRelease)

Transition = Annotated[StageChanged | EventRefused | LeadErasedNotice | LeadMergedNotice, Field(discriminator="type")]
TRANSITION_ADAPTER: TypeAdapter[Transition] = TypeAdapter(Transition)

# Everything decide() may emit; where each kind goes, and keyed by what, is streams.runtime.routes.OUTPUT_TOPICS.
Output = Transition | SlaOutput | HandOff | RouteRequest | RouteRelease | Forward

DeadLetterReason = Literal[
    "payload_too_large", "invalid_json", "invalid_event", "unknown_type", "key_mismatch", "internal_error"
]


class DeadLetter(Frozen):
    """An input record that could not be processed, with its reason and its original bytes (base64)."""

    type: Literal["dead_letter"] = "dead_letter"
    id: str
    reason: DeadLetterReason
    errors: tuple[str, ...] = Field(description="one 'field: message' line per problem, naming the fix")
    topic: str
    partition: int
    offset: int
    key_b64: str | None
    original_b64: str
    original_size: int
    received_at: datetime


DEAD_LETTER_ADAPTER: TypeAdapter[DeadLetter] = TypeAdapter(DeadLetter)
