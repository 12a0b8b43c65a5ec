"""Per-lead state kept in the `leads` table (one record per lead, changelog-backed).

`LeadState` is the lead as the business sees it. `LeadRecord` wraps it with what at-least-once delivery and
out-of-order events need: recent event ids for dedupe, the events still inside the lateness window, and the
state before them (so a late event can be applied in event-time order).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from leadflow.schemas.base import Frozen
from leadflow.schemas.events import Bant, LeadEvent, Profile


class StageEntry(Frozen):
    stage: str
    entered_at: datetime
    event_id: str
    reason: str
    skipped: tuple[str, ...] = Field(
        default=(), description="main-funnel stages a fact jumped over to get here (a process gap), in order"
    )


class Clock(Frozen):
    """An open SLA clock. Warnings still to come are instants; the deadline moves when the lead is paused."""

    sla: str
    started_at: datetime
    deadline: datetime
    allowance_s: float
    calendar: str | None = Field(description="team calendar when the allowance is in business time")
    warnings: tuple[tuple[float, datetime], ...] = Field(default=(), description="(fraction, instant) to come")
    paused_at: datetime | None = None
    breached: bool = False
    count: int = Field(default=0, description="events counted so far, for a counted SLA")
    reassignments: int = Field(default=0, description="times an escalation restarted this commitment")


SlaEntryKind = Literal["started", "warning", "met", "late", "breached", "cancelled", "escalated"]


class SlaEntry(Frozen):
    """One SLA output of the lead, reduced to what the funnel report counts (core.ledger)."""

    sla: str
    kind: SlaEntryKind
    at: datetime
    owner_id: str | None = None
    team: str | None = None
    pool: str | None = None
    reason: str | None = Field(default=None, description="why a clock was cancelled, or a breach not escalated")
    used_s: float | None = Field(default=None, description="met or late: the allowance used (sla.met used_s)")


class HandOffEntry(Frozen):
    at: datetime
    owner_id: str
    team: str | None = None
    pool: str | None = None
    reason: str


class Ledger(Frozen):
    """What the lead's outputs said, kept with the lead so the funnel report can be computed from the table
    (live, per worker) and from a replay (offline) the same way. Bounded: the oldest entries go first."""

    source: str | None = Field(default=None, description="envelope source of the lead.created")
    sla: tuple[SlaEntry, ...] = ()
    handoffs: tuple[HandOffEntry, ...] = ()
    contacts: tuple[datetime, ...] = Field(default=(), description="when each contact attempt happened, newest last")


class LeadState(Frozen):
    lead_id: str
    stage: str
    created_at: datetime
    updated_at: datetime = Field(description="occurred_at of the last event applied")
    stage_entered_at: datetime
    profile: Profile = Profile()
    fit: int = 0
    engagement: dict[str, float] = Field(
        default_factory=dict, description="points held per action, decayed to engagement_as_of"
    )
    engagement_as_of: datetime
    owner_id: str | None = None
    team: str | None = None
    pool: str | None = Field(default=None, description="routing pool the owner came from (None: external)")
    paused: bool = False
    contact_attempts: int = 0
    last_contact_at: datetime | None = None
    meetings: int = 0
    deal_stage: str | None = None
    bant: Bant = Bant()
    deal_amount: float | None = None
    won_amount: float | None = None
    rejections: int = 0
    last_rejection: str | None = None
    merged_into: str | None = None
    merged_from: tuple[str, ...] = Field(
        default=(),
        description="leads merged into this one, directly or through a chain, sorted; at most MAX_MERGED_FROM "
        "(100), the smallest ids: a merge into one of them would close a cycle (core.merges)",
    )
    history: tuple[StageEntry, ...] = ()
    clocks: dict[str, Clock] = Field(default_factory=dict, description="open SLA clocks by SLA name")
    ledger: Ledger = Ledger()

    @property
    def engagement_score(self) -> int:
        return max(0, round(sum(self.engagement.values())))


class PendingEvent(Frozen):
    """An applied event still inside the lateness window, with the ids of the outputs it produced."""

    event: LeadEvent
    output_ids: tuple[str, ...] = Field(
        default=(), description="the outputs' ids in their short form (core.ids.short_id; whole ids before 2026-12-06)"
    )


class LeadRecord(Frozen):
    lead_id: str
    state: LeadState | None = Field(description="the lead after every applied event; None before lead.created")
    base: LeadState | None = Field(
        default=None, description="the lead before the first pending event (meaningless when pending is empty)"
    )
    pending: tuple[PendingEvent, ...] = ()
    seen: tuple[str, ...] = Field(default=(), description="ids of settled events, newest last, bounded")
    watermark: datetime | None = Field(default=None, description="newest occurred_at seen for this lead")
    emitted: tuple[str, ...] = Field(
        default=(),
        description="ids of SLA outputs already emitted, in short form (core.ids.short_id; whole ids in records "
        "written before 2026-12-06, compared in short form), newest last, bounded: their ids name the clock, not "
        "the event that caused them, so any later event may bring them back (even once the clock has closed and "
        "settled: core.decision.still_emitted); they are deduped here",
    )
    erased_at: datetime | None = Field(
        default=None,
        description="set when the lead was erased: the record then keeps no state, only ids for dedupe",
    )
    awaiting: tuple[str, ...] = Field(
        default=(),
        description="event ids of router answers the lead waits for (route:<request id>); events that arrive "
        "meanwhile wait in `held`, so an answer takes effect at its own time, before them (core.decision)",
    )
    awaiting_since: datetime | None = Field(default=None, description="the lead's event time when it began to wait")
    held: tuple[LeadEvent, ...] = Field(default=(), description="events that arrived while awaiting, in order")
    version: int = 0


RECORD_ADAPTER: TypeAdapter[LeadRecord] = TypeAdapter(LeadRecord)


# What a walk of the leads table reads of each record (the deadline index and the lead census, rebuilt after a
# start or a rebalance): the fields below, from the same stored JSON; the rest of it (pending and held events,
# history, ledger, profile) is skipped unvalidated, so a record reads ~4x faster than decoded whole. Names and
# defaults are those of the models above (tests/test_record_view.py holds them to it).


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ClockView(View):
    deadline: datetime
    warnings: tuple[tuple[float, datetime], ...] = ()
    paused_at: datetime | None = None
    breached: bool = False


class LeadStateView(View):
    lead_id: str
    stage: str
    clocks: dict[str, ClockView] = Field(default_factory=dict)


class Present(View):
    """A value of which only its presence is read."""


class LeadRecordView(View):
    lead_id: str
    state: LeadStateView | None
    base: Present | None = None
    watermark: datetime | None = None
    erased_at: datetime | None = None
    awaiting: tuple[str, ...] = ()
    awaiting_since: datetime | None = None
    held: tuple[Present, ...] = ()


RECORD_VIEW_ADAPTER: TypeAdapter[LeadRecordView] = TypeAdapter(LeadRecordView)


class LeadStateOnly(View):
    """What the funnel summaries read (`/funnel`, `/funnel/leads`, the goal gauges): the lead's state, whole; the
    lateness window (`base`, pending and held events) and the dedupe ids are skipped, about half of a record."""

    lead_id: str
    state: LeadState | None


STATE_VIEW_ADAPTER: TypeAdapter[LeadStateOnly] = TypeAdapter(LeadStateOnly)


class PoolState(Frozen):
    cursor: int = Field(default=0, description="index of the owner whose turn is next")
    open: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="owner -> lead ids of the open MQLs they hold (their load)"
    )


class RouteAnswer(Frozen):
    """What the router answered one route request, kept so that the request read again (a redelivery, the routing
    topic read again from the last committed offset after a restart) is answered again the same way."""

    owner_id: str | None = Field(default=None, description="the owner the lead got; None: route.unassigned")
    pool: str | None = Field(default=None, description="the pool the owner came from (the fallback pool's name too)")
    team: str | None = None
    reason: Literal["routed", "fallback", "escalated"] | None = None


class RoutingState(Frozen):
    """Every pool's turn and load, in one record: routing is one decision per MQL, far from a hot path, and
    the fallback pool must be readable while routing any pool (so one partition holds it all)."""

    pools: dict[str, PoolState] = Field(default_factory=dict)
    answers: dict[str, RouteAnswer] = Field(
        default_factory=dict,
        description="route request id -> the answer it got, for the most recent requests (core.routing."
        "MAX_ANSWERED, all pools together), oldest first: a request read again gets the same answer and changes "
        "nothing",
    )
    released: tuple[str, ...] = Field(
        default=(),
        description="ids of the recent route releases that freed an owner, newest last, bounded (core.routing."
        "MAX_RELEASED): a release read again does not free a later hold of the same lead",
    )
    answered: tuple[str, ...] = Field(
        default=(),
        description="legacy: ids of requests answered before `answers` was kept (read from an older record, never "
        "added to); they give way as new answers come, so both hold MAX_ANSWERED ids together",
    )


ROUTING_STATE_ADAPTER: TypeAdapter[RoutingState] = TypeAdapter(RoutingState)
