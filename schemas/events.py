"""Input events: the envelope every producer writes to `leads.events` (GUIDE.md section 3).

One record = one JSON object, key = lead_id. `type` selects the shape of `data`; the union below is a
pydantic discriminated union, so a wrong type or a missing field is reported with its path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, TypeAdapter

from schemas.base import Code, Frozen, Identifier, Money

ShortText = Annotated[str, Field(max_length=500)]


def _not_a_number(value: object) -> object:
    # pydantic would read a number as Unix seconds; the contract is an RFC 3339 string with an offset.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z, not a number")
    return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _after_1970(value: datetime) -> datetime:
    # Lead events from before the Unix epoch are data errors, and near datetime.min time arithmetic overflows.
    if value < EARLIEST:
        raise ValueError("must be after 1970-01-01T00:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_after_1970)]


class Actor(Frozen):
    team: Literal["marketing", "sales", "system"]
    user_id: Identifier


class Profile(Frozen):
    """Profile attributes the fit rules read. All optional: updates carry only what changed."""

    email: Annotated[str, Field(max_length=320)] | None = None
    job_title: ShortText | None = None
    seniority: Code | None = None
    company: ShortText | None = None
    company_size: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    industry: Code | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2 code, upper case (e.g. BR, US)"
    )
    persona: Code | None = None
    territory: Code | None = None
    segment: Code | None = None


class LeadCreatedData(Profile):
    initial_stage: Literal["subscriber", "lead"] = "lead"


class ActivityData(Frozen):
    action: Code = Field(description="page_view, email_open, email_click, content_download, form_submit, ...")
    url: Annotated[str, Field(max_length=2000)] | None = None
    campaign: ShortText | None = None


class ReasonData(Frozen):
    reason: ShortText | None = None


class QualifiedData(Frozen):
    reason: ShortText | None = None


class AssignedData(Frozen):
    owner_id: Identifier
    team: Code | None = None
    pool: Code | None = Field(default=None, description="set by leadflow's router: the pool the owner is from")
    reason: Literal["routed", "fallback", "escalated"] | None = Field(
        default=None, description="set by leadflow's router: how the owner was chosen"
    )
    escalated_sla: Code | None = Field(default=None, description="set by leadflow's router on an escalation")


class RejectedData(Frozen):
    reason: Code = Field(description="a rejection reason code from the policy's rejection_reasons")
    note: ShortText | None = None


class ContactAttemptedData(Frozen):
    channel: Literal["phone", "email", "linkedin", "whatsapp", "sms", "meeting", "other"]
    outcome: Literal["connected", "no_answer", "voicemail", "replied", "bounced", "wrong_number", "other"]


class MeetingScheduledData(Frozen):
    starts_at: Timestamp | None = None
    kind: Code | None = None


class Bant(Frozen):
    """Which BANT prerequisites sales has confirmed. Absent means not confirmed."""

    budget: bool = False
    authority: bool = False
    need: bool = False
    timeline: bool = False


class DealStageChangedData(Frozen):
    stage: Code = Field(description="a pipeline stage from the policy, e.g. proposal_sent")
    bant: Bant = Bant()
    amount: Money | None = None


class DealWonData(Frozen):
    amount: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class DealLostData(Frozen):
    reason: Code


class MergedData(Frozen):
    into_lead_id: Identifier


class EmptyData(Frozen):
    pass


class _Envelope(Frozen):
    event_id: Identifier
    lead_id: Identifier
    occurred_at: Timestamp = Field(description="RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z")
    source: Annotated[str, Field(min_length=1, max_length=100)]
    actor: Actor | None = None


class LeadCreated(_Envelope):
    type: Literal["lead.created"]
    data: LeadCreatedData = LeadCreatedData()


class LeadUpdated(_Envelope):
    type: Literal["lead.updated"]
    data: Profile


class Activity(_Envelope):
    type: Literal["activity"]
    data: ActivityData


class LeadQualified(_Envelope):
    type: Literal["lead.qualified"]
    data: QualifiedData = QualifiedData()


class LeadAssigned(_Envelope):
    type: Literal["lead.assigned"]
    data: AssignedData


class LeadAccepted(_Envelope):
    type: Literal["lead.accepted"]
    data: EmptyData = EmptyData()


class LeadRejected(_Envelope):
    type: Literal["lead.rejected"]
    data: RejectedData


class ContactAttempted(_Envelope):
    type: Literal["contact.attempted"]
    data: ContactAttemptedData


class MeetingScheduled(_Envelope):
    type: Literal["meeting.scheduled"]
    data: MeetingScheduledData = MeetingScheduledData()


class DealStageChanged(_Envelope):
    type: Literal["deal.stage_changed"]
    data: DealStageChangedData


class DealWon(_Envelope):
    type: Literal["deal.won"]
    data: DealWonData


class DealLost(_Envelope):
    type: Literal["deal.lost"]
    data: DealLostData


class LeadDisqualified(_Envelope):
    type: Literal["lead.disqualified"]
    data: ReasonData = ReasonData()


class LeadPaused(_Envelope):
    type: Literal["lead.paused"]
    data: ReasonData = ReasonData()


class LeadResumed(_Envelope):
    type: Literal["lead.resumed"]
    data: ReasonData = ReasonData()


class LeadMerged(_Envelope):
    type: Literal["lead.merged"]
    data: MergedData


class LeadErased(_Envelope):
    type: Literal["lead.erased"]
    data: EmptyData = EmptyData()


class TimerDue(_Envelope):
    """Internal: the worker's timer says an SLA instant of this lead has come (occurred_at = that instant)."""

    type: Literal["timer.due"]
    data: EmptyData = EmptyData()


LeadEvent = Annotated[
    LeadCreated
    | LeadUpdated
    | Activity
    | LeadQualified
    | LeadAssigned
    | LeadAccepted
    | LeadRejected
    | ContactAttempted
    | MeetingScheduled
    | DealStageChanged
    | DealWon
    | DealLost
    | LeadDisqualified
    | LeadPaused
    | LeadResumed
    | LeadMerged
    | LeadErased
    | TimerDue,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[LeadEvent] = TypeAdapter(LeadEvent)
EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(m.model_fields["type"].annotation.__args__[0] for m in _Envelope.__subclasses__())  # type: ignore[union-attr]
)
