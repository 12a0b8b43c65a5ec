"""Input events: the envelope every producer writes to `leads.events` (GUIDE.md section 3).

One record = one JSON object, key = lead_id. `type` selects the shape of `data`; the union below is a
pydantic discriminated union, so a wrong type or a missing field is reported with its path.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from leadflow.schemas.base import CODE_PATTERN, Code, Frozen, Identifier, Money, one_utc

ShortText = Annotated[str, Field(max_length=500)]


# What pydantic reads as Unix seconds (or milliseconds) when it comes as a string: "1764600000", "-5", "1.5e9"...
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: object) -> object:
    # pydantic would read a number, or a number in a string, as Unix seconds; the contract is an RFC 3339 string
    # with an offset. A string is tested only when it does not start like a date (the common case costs a slice).
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z, not a number")
    if isinstance(value, str) and value[4:5] != "-" and _NUMBER_TEXT.fullmatch(value[:40]):
        shown = repr(value if len(value) <= 40 else value[:37] + "...")
        raise ValueError(
            f"must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z, not a number in a string "
            f"({shown}); convert Unix time to RFC 3339 in the producer"
        )
    return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _after_1970(value: datetime) -> datetime:
    # Lead events from before the Unix epoch are data errors, and near datetime.min time arithmetic overflows.
    # Made UTC first: compared with EARLIEST under the same tzinfo object, the test costs a fifth of the time.
    value = one_utc(value)
    if value < EARLIEST:
        raise ValueError("must be after 1970-01-01T00:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_after_1970)]


class Actor(Frozen):
    team: Literal["marketing", "sales", "system"]
    user_id: Identifier


class ProfileAttributes(Frozen):
    """The built-in profile attributes. All optional: updates carry only what changed."""

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


PROFILE_ATTRIBUTES: tuple[str, ...] = tuple(ProfileAttributes.model_fields)

# Custom attributes (HubSpot custom properties, RD Station origin, landing_page_id...): bounded, so a producer
# that sends a whole CRM record cannot bloat a lead's state.
MAX_CUSTOM_ATTRIBUTES = 50
MAX_CUSTOM_NAME = 64
MAX_CUSTOM_TEXT = 500
MAX_CUSTOM_NUMBER_TEXT = "1e18"
MAX_CUSTOM_NUMBER = float(MAX_CUSTOM_NUMBER_TEXT)

CustomValue = str | int | float | bool | None


def _custom_value(value: object) -> CustomValue:
    """Scalars only: a custom attribute is something fit rules and routing can compare, not a document."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_CUSTOM_TEXT:
            raise ValueError(
                f"a custom attribute value has at most {MAX_CUSTOM_TEXT} characters (this one {len(value):,}); "
                "send a shorter value or leave the attribute out"
            )
        return value
    if isinstance(value, int | float):
        # abs() first: a huge JSON integer cannot become a float (math.isfinite would raise).
        if abs(value) > MAX_CUSTOM_NUMBER or not math.isfinite(value):
            raise ValueError(
                f"a custom attribute number must be finite and within ±{MAX_CUSTOM_NUMBER_TEXT}; "
                "send it as text if it is an identifier"
            )
        return value
    raise ValueError(
        "a custom attribute must be a string, a number, true/false or null, not an object or a list; "
        "send each value as an attribute of its own"
    )


CustomAttribute = Annotated[
    CustomValue,
    PlainValidator(_custom_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_CUSTOM_TEXT},
                {"type": "number", "minimum": -MAX_CUSTOM_NUMBER, "maximum": MAX_CUSTOM_NUMBER},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
_CUSTOM_NAME = re.compile(CODE_PATTERN)


def is_custom_name(name: str) -> bool:
    return len(name) <= MAX_CUSTOM_NAME and _CUSTOM_NAME.fullmatch(name) is not None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


class Profile(ProfileAttributes):
    """A lead's profile as the fit rules and routing read it: the built-in attributes and the custom ones."""

    custom: dict[str, CustomAttribute] = Field(
        default_factory=dict,
        description=f"custom attributes (at most {MAX_CUSTOM_ATTRIBUTES}): any other field of lead.created / "
        "lead.updated data, e.g. HubSpot custom properties or RD Station's origin",
    )


class ProfileData(ProfileAttributes):
    """`data` of lead.created / lead.updated: the built-in attributes, and any other field as a custom attribute.

    Unknown fields are allowed here on purpose (unlike our other events): real exports carry custom properties,
    and dropping the event over them would lose the lead. They are bounded in count, name and size.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        json_schema_extra={
            "propertyNames": {"pattern": CODE_PATTERN, "maxLength": MAX_CUSTOM_NAME},
            "description": f"built-in profile attributes; any other field is a custom attribute (at most "
            f"{MAX_CUSTOM_ATTRIBUTES}, names lower-case codes of at most {MAX_CUSTOM_NAME} characters, values "
            f"scalars, text up to {MAX_CUSTOM_TEXT} characters; null clears it)",
        },
    )
    __pydantic_extra__: dict[str, CustomAttribute]

    @model_validator(mode="before")
    @classmethod
    def _bounded_custom(cls, data: Any) -> Any:
        # Checked before the values, so an error line never repeats a huge name from a hostile producer.
        if not isinstance(data, dict):
            return data
        names = [name for name in data if name not in cls.model_fields]
        bad = [name for name in names if not isinstance(name, str) or not is_custom_name(name)]
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            shown = ", ".join(_shown(str(name)) for name in bad[:5]) + more
            raise ValueError(
                f"custom attribute names must be lower-case codes of letters, digits and _ starting with a letter, "
                f"at most {MAX_CUSTOM_NAME} characters (e.g. landing_page_id); rename {shown} in the producer"
            )
        if len(names) > MAX_CUSTOM_ATTRIBUTES:
            raise ValueError(
                f"{len(names)} custom attributes is over the limit of {MAX_CUSTOM_ATTRIBUTES} per event; "
                "send only the attributes fit rules, routing or sales use"
            )
        return data

    def custom_attributes(self) -> dict[str, CustomValue]:
        """The custom attributes this data carries (null included: it clears the attribute)."""
        return dict(self.model_extra or {})

    def attributes_set(self) -> dict[str, object]:
        """The built-in attributes this data sets (null included: it clears the attribute)."""
        return {name: getattr(self, name) for name in self.model_fields_set if name in PROFILE_ATTRIBUTES}


class LeadCreatedData(ProfileData):
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
    amount: Money | None = Field(default=None, description="the deal's value; unknown when absent (never 0)")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class DealLostData(Frozen):
    reason: Code = Field(description="why, ideally one of the policy's deals.lost_reasons; any code is kept")


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
    data: ProfileData


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
    data: DealWonData = DealWonData()


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


# The leads a lead remembers as merged into it (LeadState.merged_from), at most this many: the smallest ids,
# sorted, so that the set does not depend on the order merge notices arrive in (live and replay agree). Past it
# a merge cycle through a lead left out is caught by the forwarding hop limit instead (core.merges).
MAX_MERGED_FROM = 100


class AbsorbedData(Frozen):
    from_lead_id: Identifier = Field(description="the lead merged into this one")
    merged_from: Annotated[tuple[Identifier, ...], Field(max_length=MAX_MERGED_FROM)] = Field(
        default=(), description="the leads merged into that lead before (its own merged_from)"
    )


class LeadAbsorbed(_Envelope):
    """Internal: a lead was merged into this one (core.merges). Sent by the merged lead's worker, signed, with
    the id `merge:<merged lead>:<merge event id>`, so that this lead knows which leads it is made of."""

    type: Literal["lead.absorbed"]
    data: AbsorbedData


class RouteUnassignedData(Frozen):
    pool: Code | None = Field(default=None, description="the pool asked (the router found nobody free there)")


class RouteUnassigned(_Envelope):
    """Internal: the router's answer when nobody could take the lead. The lead waits for every answer (see
    core.decision), so a request must always be answered, with an owner or with this."""

    type: Literal["route.unassigned"]
    data: RouteUnassignedData = RouteUnassignedData()


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
    | TimerDue
    | RouteUnassigned
    | LeadAbsorbed,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[LeadEvent] = TypeAdapter(LeadEvent)
# Sent by leadflow itself (the timer, the router, a merged lead's notice to its survivor), not by producers.
INTERNAL_EVENT_TYPES = ("route.unassigned", "timer.due", "lead.absorbed")
EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(m.model_fields["type"].annotation.__args__[0] for m in _Envelope.__subclasses__())  # type: ignore[union-attr]
)
