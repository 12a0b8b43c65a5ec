"""The SLA policy: the marketing–sales contract as data (GUIDE.md section 2, "Policy as data").

A YAML document validated by pydantic. `load_policy` raises `PolicyError` whose `problems` name every
invalid field by its path in the file (e.g. `scoring.engagement[2].points: must be an integer`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, time, timedelta
from fractions import Fraction
from functools import cached_property
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from leadflow.schemas.base import Code
from leadflow.schemas.errors import describe_errors
from leadflow.schemas.events import EVENT_TYPES, INTERNAL_EVENT_TYPES, PROFILE_ATTRIBUTES

Points = Annotated[int, Field(ge=-1000, le=1000)]
BantField = Literal["budget", "authority", "need", "timeline"]

# Stages the engine gives a meaning to; a policy may rename nothing here but may add stages around them.
CORE_STAGES = ("subscriber", "lead", "mql", "sal", "sql", "opportunity", "customer", "nurturing", "disqualified")


class PolicyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy without the lookups computed from the fields (the `cached_property` values kept in `__dict__`):
        a copy with other fields (a what-if policy, the demo's squeezed allowances) computes its own."""
        copied = super().model_copy(update=update, deep=deep)
        fields = type(self).model_fields
        for name in [name for name in copied.__dict__ if name not in fields]:
            del copied.__dict__[name]
        return copied


class Lifecycle(PolicyModel):
    stages: tuple[Code, ...] = Field(description="the main funnel, in order")
    side_stages: tuple[Code, ...] = ("nurturing", "disqualified")
    transitions: dict[Code, tuple[Code, ...]] = Field(description="stage -> stages it may move to")
    advocacy_actions: tuple[Code, ...] = Field(
        default=("referral_given", "review_posted", "case_study"),
        description="activities that make a customer an evangelist",
    )

    @model_validator(mode="after")
    def _known_stages(self) -> Self:
        known = set(self.stages) | set(self.side_stages)
        missing = [s for s in CORE_STAGES if s not in known]
        if missing:
            raise ValueError(f"stages must include {', '.join(missing)} (the engine gives them a meaning)")
        for source, targets in self.transitions.items():
            for target in (source, *targets):
                if target not in known:
                    raise ValueError(f"transitions.{source}: unknown stage {target!r}; declare it in stages")
        return self

    def allows(self, source: str, target: str) -> bool:
        return target in self.transitions.get(source, ())


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _window_shorthand(value: object) -> object:
    # "09:00-18:00" is how people write working hours; accept it beside {start, end}.
    if isinstance(value, str) and "-" in value:
        start, _, end = value.partition("-")
        return {"start": start.strip(), "end": end.strip()}
    return value


class Window(PolicyModel):
    """Working hours within one local day; end 00:00 means midnight at the end of the day."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end != time(0) and self.end <= self.start:
            raise ValueError(f"end {self.end:%H:%M} must be after start {self.start:%H:%M} (00:00 means midnight)")
        return self

    def minutes(self) -> tuple[int, int]:
        end = 24 * 60 if self.end == time(0) else self.end.hour * 60 + self.end.minute
        return self.start.hour * 60 + self.start.minute, end


class NationalHolidays(PolicyModel):
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, e.g. BR")]
    subdivision: str | None = Field(default=None, description="e.g. SP for São Paulo")

    @model_validator(mode="after")
    def _known(self) -> Self:
        supported = holiday_data.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"country {self.country!r} has no holiday calendar in the holidays library")
        if self.subdivision is not None and self.subdivision not in supported[self.country]:
            raise ValueError(
                f"subdivision {self.subdivision!r} is not one of {self.country}'s: {', '.join(supported[self.country])}"
            )
        return self


def check_zone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {timezone!r} is not an IANA time zone (e.g. America/Sao_Paulo)") from None


class CalendarSpec(PolicyModel):
    """A team's business calendar: time zone, working hours per weekday, holidays."""

    timezone: str = Field(description="IANA time zone, e.g. America/Sao_Paulo")
    hours: dict[Weekday, tuple[Annotated[Window, BeforeValidator(_window_shorthand)], ...]]
    holidays: tuple[date, ...] = ()
    national_holidays: NationalHolidays | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        check_zone(self.timezone)
        for day, windows in self.hours.items():
            spans = sorted(w.minutes() for w in windows)
            for (_, end), (start, _) in pairwise(spans):
                if start < end:
                    raise ValueError(f"hours.{day}: working windows overlap")
        return self

    @property
    def weekly_working_seconds(self) -> int:
        spans = (w.minutes() for windows in self.hours.values() for w in windows)
        return sum(60 * (end - start) for start, end in spans)

    def weekday_hours(self) -> dict[int, tuple[Window, ...]]:
        return {WEEKDAYS.index(day): windows for day, windows in self.hours.items()}


# Built-in profile attributes rules may read; the others (email, company) identify a person or a company, and
# say nothing about fit. Any other name is a custom attribute of lead.created / lead.updated data.
MATCHABLE_ATTRIBUTES = (
    "job_title",
    "seniority",
    "company_size",
    "industry",
    "country",
    "persona",
    "segment",
    "territory",
)


class Match(PolicyModel):
    """A condition on a profile attribute, built-in or custom. Exactly one matcher: equals/in (text), contains
    (text, case-insensitive), min/max (numbers)."""

    attribute: Code = Field(
        description=f"a built-in attribute ({', '.join(MATCHABLE_ATTRIBUTES)}) or the name of a custom attribute"
    )
    equals: str | None = None
    in_: tuple[str, ...] | None = Field(default=None, alias="in")
    contains: tuple[str, ...] | None = Field(default=None, description="case-insensitive substrings")
    min: int | float | None = None
    max: int | float | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _matchable(self) -> Self:
        if self.attribute in PROFILE_ATTRIBUTES and self.attribute not in MATCHABLE_ATTRIBUTES:
            raise ValueError(
                f"attribute: {self.attribute} is not an attribute rules may read; use one of "
                f"{', '.join(MATCHABLE_ATTRIBUTES)} or the name of a custom attribute"
            )
        return self

    @model_validator(mode="after")
    def _one_matcher(self) -> Self:
        kinds = [
            self.equals is not None,
            self.in_ is not None,
            self.contains is not None,
            self.min is not None or self.max is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one matcher: equals, in, contains, or min/max")
        return self


class FitRule(Match):
    """Points for a profile attribute that matches."""

    points: Points


class EngagementRule(PolicyModel):
    action: Code
    points: Points
    cap: Annotated[int, Field(ge=0)] = Field(description="most points this action can hold at any time")


class Scoring(PolicyModel):
    fit: tuple[FitRule, ...]
    engagement: tuple[EngagementRule, ...]
    decay_half_life_days: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _unique_actions(self) -> Self:
        actions = [r.action for r in self.engagement]
        dupes = sorted({a for a in actions if actions.count(a) > 1})
        if dupes:
            raise ValueError(f"engagement actions must be unique; repeated: {', '.join(dupes)}")
        return self


class MqlRule(PolicyModel):
    min_fit: Annotated[int, Field(ge=0)]
    min_engagement: Annotated[int, Field(ge=0)]
    hand_raiser_actions: tuple[Code, ...] = ("demo_request", "contact_sales")
    conversion_actions: tuple[Code, ...] = Field(
        default=("form_submit", "content_download", "webinar_attended"),
        description="actions that turn a subscriber into a lead",
    )
    eligible_stages: tuple[Code, ...] = ("subscriber", "lead", "nurturing")
    recycle_resets_engagement: bool = Field(
        default=True,
        description="a lead sent back to nurturing starts its engagement over: it must earn its MQL again, "
        "not re-qualify on its next page view",
    )


class RejectionReason(PolicyModel):
    code: Code
    description: str


class PipelineStage(PolicyModel):
    stage: Code
    lifecycle_stage: Code = Field(description="the lifecycle stage a deal in this stage implies")
    requires: tuple[BantField, ...] = ()


class Deals(PolicyModel):
    pipeline: tuple[PipelineStage, ...]
    lost_reasons: tuple[Code, ...]
    lost_to_stage: Code = "nurturing"


class Allowance(PolicyModel):
    """How long an SLA gives: business hours in a team calendar, or wall-clock minutes. Exactly one."""

    business_hours: Annotated[float, Field(gt=0, le=10_000)] | None = None
    minutes: Annotated[float, Field(gt=0, le=1_000_000)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.business_hours is None) == (self.minutes is None):
            raise ValueError("give exactly one of business_hours or minutes")
        return self

    @property
    def seconds(self) -> float:
        return (self.business_hours or 0) * 3600 + (self.minutes or 0) * 60

    @property
    def is_business(self) -> bool:
        return self.business_hours is not None


class SlaOverride(PolicyModel):
    when: Literal["hand_raiser"] = Field(description="hand_raiser: the lead became MQL by raising its hand")
    allowance: Allowance


# Event types producers send (the timer's and the router's are the worker's own).
INPUT_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t not in INTERNAL_EVENT_TYPES)
EventType = Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)?$")]


# What a breach does to the lead (core.sla.breach.ON_BREACH): nothing, or back to marketing (nurturing).
OnBreach = Literal["none", "recycle"]


class SlaSpec(PolicyModel):
    """One response-time commitment: a clock that starts when a lead enters a stage, or on an event."""

    name: Code
    starts_on_stage: Code | None = Field(default=None, description="entering this stage starts the clock")
    starts_on_event: EventType | None = Field(
        default=None, description="this event type starts the clock (e.g. meeting.scheduled), in any stage"
    )
    met_by: tuple[EventType, ...] = Field(default=(), description="event types that meet the SLA, e.g. lead.accepted")
    runs_in: tuple[Code, ...] = Field(
        default=(),
        description="stages the clock keeps running in (default: the start stage only; for an event-started "
        "clock, every stage)",
    )
    met_on_leaving: bool = Field(
        default=False, description="leaving those stages meets the SLA (a maximum dwell); otherwise it cancels it"
    )
    allowance: Allowance
    count_event: EventType | None = Field(
        default=None, description="a counted SLA: this event type must happen at_least times within the allowance"
    )
    at_least: Annotated[int, Field(ge=1, le=1000)] | None = None
    on_breach: OnBreach = Field(default="none", description="recycle: a breach sends the lead back to nurturing")
    escalate: tuple[Literal["reassign", "notify"], ...] = Field(
        default=(),
        description="on breach: reassign to the next owner of the lead's pool (the clock restarts; the breach "
        "stays counted) and/or notify the pool's manager",
    )
    max_reassignments: Annotated[int, Field(ge=0, le=20)] = Field(
        default=1, description="reassignments per clock; later breaches only notify (no round robin ping-pong)"
    )
    calendar: Code | None = Field(default=None, description="team calendar for business_hours allowances")
    overrides: tuple[SlaOverride, ...] = ()
    warn_at: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = (0.5, 0.9)

    @model_validator(mode="after")
    def _counted(self) -> Self:
        if (self.count_event is None) != (self.at_least is None):
            raise ValueError("a counted SLA needs both count_event and at_least")
        if (self.starts_on_stage is None) == (self.starts_on_event is None):
            raise ValueError("give exactly one of starts_on_stage or starts_on_event")
        return self

    @property
    def stages(self) -> tuple[str, ...]:
        """Stages the clock runs in; empty: every stage (an event-started clock without runs_in)."""
        return self.runs_in or ((self.starts_on_stage,) if self.starts_on_stage else ())

    def allowance_for(self, hand_raiser: bool) -> Allowance:
        for override in self.overrides:
            if override.when == "hand_raiser" and hand_raiser:
                return override.allowance
        return self.allowance


class Away(PolicyModel):
    """An owner's absence (vacation, leave), whole days in the pool team's time zone, both ends included."""

    from_: date = Field(alias="from")
    to: date

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.to < self.from_:
            raise ValueError("to must not be before from")
        return self


class Owner(PolicyModel):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
    capacity: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="most open MQLs the owner holds at once; no limit when unset"
    )
    away: tuple[Away, ...] = ()


class Pool(PolicyModel):
    """Owners who take leads in turn (round robin). A lead goes to the first pool whose conditions all hold."""

    name: Code
    team: Code = Field(description="the owners' team: its calendar (if any) times their SLAs and away days")
    manager: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="who is notified when an SLA of this pool escalates"
    )
    when: tuple[Match, ...] = Field(default=(), description="territory/segment/persona conditions (all must hold)")
    owners: tuple[Owner, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_owners(self) -> Self:
        ids = [o.id for o in self.owners]
        if len(set(ids)) != len(ids):
            raise ValueError("owners: ids must be unique within a pool")
        return self


class Routing(PolicyModel):
    pools: tuple[Pool, ...] = Field(min_length=1, description="in order: the first matching pool takes the lead")
    fallback_pool: Code = Field(description="takes leads no pool matches, and leads whose pool has nobody free")
    timezone: str = Field(default="UTC", description="time zone for away days of teams without a calendar")

    @model_validator(mode="after")
    def _fallback_known(self) -> Self:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError("pools: names must be unique")
        if self.fallback_pool not in names:
            raise ValueError(f"fallback_pool: {self.fallback_pool!r} is not a pool; name one of: {', '.join(names)}")
        return self

    @cached_property
    def by_name(self) -> dict[str, Pool]:
        return {p.name: p for p in self.pools}


class Processing(PolicyModel):
    lateness_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 600.0
    max_clock_skew_seconds: Annotated[float, Field(ge=0)] = Field(
        default=300.0, description="events dated further ahead of the worker clock are refused"
    )
    dedupe_ids: Annotated[int, Field(ge=16, le=100_000)] = Field(
        default=256, description="event ids remembered per lead beyond the lateness window"
    )
    sla_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=30.0,
        description="an SLA instant fires once the lead's partition time is this far past it: events that "
        "producers deliver a little late (a CRM webhook retry, a batching tool) still count before a breach",
    )
    router_wait_seconds: Annotated[float, Field(gt=0)] = Field(
        default=86400.0,
        description="a lead waits for its router answer (holding its later events) at most this long in its own "
        "event time; then it applies what it held in arrival order (a router down, a request lost in a crash)",
    )
    escalation_horizon_seconds: Annotated[float, Field(ge=0)] = Field(
        default=3600.0,
        description="breaches older than this (against the worker clock) are emitted as history, without "
        "acting on people (no reassignment, no notification)",
    )

    # The same, as durations: the core compares event times with them on every event.
    @cached_property
    def lateness(self) -> timedelta:
        return timedelta(seconds=self.lateness_seconds)

    @cached_property
    def max_clock_skew(self) -> timedelta:
        return timedelta(seconds=self.max_clock_skew_seconds)


# ---- goals: the revenue goal and the reverse funnel (`leadflow plan`, core/plan.py) -------------------------

Amount = Annotated[float, Field(gt=0, allow_inf_nan=False)]
SHARE_EXAMPLE = "e.g. 0.2, 1/5 or 20% for one in five"


def _share(value: object) -> Fraction:
    """A conversion share in (0, 1], exactly as written: a number (0.06 is 3/50, not its binary double), a
    fraction ("1/3": no decimal gives a third exactly) or a percentage ("20%")."""
    if isinstance(value, Fraction):
        share = value
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a share: a number, a fraction or a percentage, {SHARE_EXAMPLE}")
    else:
        text = str(value).replace(" ", "")
        try:
            if text.endswith("%"):
                share = Fraction(text.removesuffix("%")) / 100
            else:
                numerator, _, denominator = text.partition("/")
                share = Fraction(numerator) / Fraction(denominator or 1)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"must be a share: a number, a fraction or a percentage, {SHARE_EXAMPLE}") from None
    if share <= 0:
        raise ValueError(
            f"must be greater than 0: no goal can be planned through a step nobody passes; {SHARE_EXAMPLE}"
        )
    if share > 1:
        raise ValueError(
            f"must be at most 1 (of the units at one stage, the share that reaches the next); {SHARE_EXAMPLE}"
        )
    return share


Share = Annotated[
    Fraction,
    PlainValidator(_share),
    PlainSerializer(str, return_type=str),  # "1/3", "3/50": exact, and read back by the validator
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(/\s*\d+(\.\d+)?|%)?\s*$"},
            ],
            "description": f"a share in (0, 1]: a number, a fraction or a percentage, {SHARE_EXAMPLE}",
        }
    ),
]


class PeriodAmount(PolicyModel):
    """An amount per period: per month, per quarter, or both when the quarter is three months of it."""

    month: Amount | None = Field(default=None, description="per calendar month")
    quarter: Amount | None = Field(default=None, description="per quarter; a month is a third of it")

    @model_validator(mode="after")
    def _one_period(self) -> Self:
        if self.month is None and self.quarter is None:
            raise ValueError("give month or quarter (or both, when quarter is three times month)")
        if self.month is not None and self.quarter is not None and self.exact_quarter != 3 * self.exact_month:
            raise ValueError(
                f"quarter: {self.quarter:g} is not three times month ({self.month:g}): give one of them, or make "
                "them agree"
            )
        return self

    @property
    def exact_month(self) -> Fraction:
        """Per month, exactly (the quarter's third when only the quarter is given)."""
        if self.month is not None:
            return Fraction(str(self.month))
        return self.exact_quarter / 3

    @property
    def exact_quarter(self) -> Fraction:
        return Fraction(str(self.quarter)) if self.quarter is not None else 3 * self.exact_month


class Conversion(PolicyModel):
    """Step by step, the share of the units at one stage of the reverse funnel that reach the next. Given: used
    as written. `leadflow plan --from-history EVENTS.jsonl` measures every step it can from the history and uses
    that instead (an unset step must then be measurable)."""

    visitor_to_lead: Share | None = Field(
        default=None,
        description="site visitors who become leads; given only (visits are not in the event history): without "
        "it the plan stops at leads",
    )
    lead_to_mql: Share | None = Field(default=None, description="leads who become marketing qualified leads")
    mql_to_qualification_call: Share | None = Field(
        default=None, description="MQLs who get a qualification call (sales accepts them)"
    )
    qualification_call_to_sql: Share | None = Field(
        default=None, description="qualification calls that find a sales qualified lead"
    )
    sql_to_proposal: Share | None = Field(default=None, description="SQLs who receive a proposal")
    proposal_to_customer: Share | None = Field(default=None, description="proposals won: new customers")


class GoalStages(PolicyModel):
    """The lifecycle stage whose entries count each step of the reverse funnel, when its conversion is measured
    from history (the funnel report's `conversion` between those stages)."""

    leads: Code = "lead"
    mqls: Code = "mql"
    qualification_calls: Code = Field(default="sal", description="an accepted MQL gets its qualification call")
    sqls: Code = "sql"
    proposals: Code = Field(default="opportunity", description="a deal with a proposal (framing, proposal_sent...)")
    customers: Code = "customer"


class ProductLine(PolicyModel):
    """A pipeline or product line with its own goal; what it leaves unset comes from the goals section."""

    revenue: PeriodAmount = Field(description="this line's revenue goal")
    average_deal_value: Amount | None = Field(default=None, description="default: the goals section's")
    conversion: Conversion = Field(default_factory=Conversion, description="default, per step: the goals section's")


class SalesCapacity(PolicyModel):
    """What a sales rep can do: turns the plan's qualified leads into contacts, rep-hours and reps."""

    contacts_per_hour: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = Field(
        description="contacts (calls, e-mails, messages) one rep makes in an hour"
    )
    hours_per_week: Annotated[float, Field(gt=0, le=168, allow_inf_nan=False)] = Field(
        description="hours a rep spends contacting leads in a week (not the whole working week)"
    )
    qualified_leads_per_sale: Annotated[float, Field(ge=1, le=100_000, allow_inf_nan=False)] | None = Field(
        default=None,
        description="qualified leads (SQLs, qualification calls) sales works per sale; unset: the plan's "
        "qualification calls are the qualified leads",
    )
    contacts_per_qualified_lead: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] = Field(
        default=1, description="contact attempts each qualified lead takes"
    )


class Costs(PolicyModel):
    """Marketing cost, for cost per lead, per MQL, per customer (CAC) and ROI: a spend per period or a cost per
    lead, exactly one."""

    marketing_spend: PeriodAmount | None = Field(default=None, description="marketing spend per month or quarter")
    cost_per_lead: Amount | None = Field(default=None, description="what a lead costs: spend = cost x leads")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.marketing_spend is None) == (self.cost_per_lead is None):
            raise ValueError("give exactly one of marketing_spend or cost_per_lead")
        return self


class MarketingCommitments(PolicyModel):
    """What marketing commits to each week. Unset: derived from the plan (core/commitments.py)."""

    mqls_per_week: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="MQLs handed to sales a week; default: the plan's weekly MQLs"
    )
    acceptance_rate: Share | None = Field(
        default=None,
        description="quality floor: accepted / (accepted + rejected) MQLs; default: the plan's "
        "mql_to_qualification_call share",
    )


class SalesCommitments(PolicyModel):
    """What sales commits to each week. Unset: derived from the plan and the SLAs (core/commitments.py)."""

    contact_attempts_per_week: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="contact attempts a week; default: the plan's weekly contacts (goals.capacity)"
    )
    response_sla: Code | None = Field(
        default=None,
        description="the SLA that measures the response time; default: the first SLA started on the MQL stage "
        "and met by contact.attempted (else the first started on the MQL stage)",
    )
    response_compliance: Share = Field(
        default=Fraction(9, 10), description="floor: share of the response SLA's clocks met in time"
    )
    follow_up_depth: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = Field(
        default=None,
        description="floor: mean contact attempts a lead had when its follow-up ended; default: goals.capacity."
        "contacts_per_qualified_lead",
    )


class Commitments(PolicyModel):
    marketing: MarketingCommitments = Field(default_factory=MarketingCommitments)
    sales: SalesCommitments = Field(default_factory=SalesCommitments)


class Goals(PolicyModel):
    """The revenue goal and what it takes: the reverse funnel of `leadflow plan` (core/plan.py)."""

    timezone: str = Field(
        default="UTC", description="IANA time zone of the goal periods (where a week and a month begin)"
    )
    commitments: Commitments = Field(default_factory=Commitments)

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="ISO 4217 code of the amounts (revenue, deal value, costs), e.g. BRL; display only"
    )
    revenue: PeriodAmount | None = Field(default=None, description="the revenue goal; with lines, leave it out")
    average_deal_value: Amount | None = Field(
        default=None, description="revenue of one won deal; unset: measured from history (won amounts)"
    )
    conversion: Conversion = Field(default_factory=Conversion)
    lines: dict[Code, ProductLine] = Field(
        default_factory=dict, description="pipelines or product lines, each with its own goal; the plan adds them up"
    )
    stages: GoalStages = Field(default_factory=GoalStages)
    capacity: SalesCapacity | None = None
    costs: Costs | None = None

    @model_validator(mode="after")
    def _one_goal(self) -> Self:
        check_zone(self.timezone)
        if self.lines and self.revenue is not None:
            raise ValueError("revenue: leave it out when lines are given (the goal is the sum of the lines' revenue)")
        if not self.lines and self.revenue is None:
            raise ValueError("revenue: give the revenue goal (month or quarter), or lines with a revenue each")
        return self


BuyingStage = Literal["awareness", "consideration", "decision"]
# The tools whose forms the policy can describe (the gateway's sources that have forms).
FormSource = Literal["hubspot", "rdstation", "mautic", "forms"]
INGEST_SOURCES: tuple[str, ...] = get_args(FormSource)


class FormSpec(PolicyModel):
    """A form as a qualification tool: the persona and buying stage it serves and the profile fields it collects.

    A submission of this form becomes an `activity` (its `action`) plus a `lead.updated` with the fields it
    carried, each mapped to a profile attribute (built-in or custom); hidden fields are listed like the others.
    """

    source: FormSource = Field(description="the tool the form lives in")
    id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the tool's form id (HubSpot form GUID, RD Station conversion identifier, ...)"
    )
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the form's name or alias, when the tool sends no stable id"
    )
    persona: Code | None = Field(default=None, description="the persona this form serves; set on the lead")
    buying_stage: BuyingStage | None = Field(default=None, description="awareness, consideration or decision")
    action: Code = Field(default="form_submit", description="the activity a submission counts as, e.g. demo_request")
    fields: dict[Annotated[str, Field(min_length=1, max_length=200)], Code] = Field(
        default_factory=dict,
        description="form field name -> profile attribute (built-in or custom), hidden fields included",
    )

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.id is None and self.name is None:
            raise ValueError("give the form's id or its name (or both), so submissions can be matched to it")
        return self


# -- notifications: who hears about a hand-off or an SLA, through which channel, and how often (issue 14) ---------

NoticeKind = Literal["handoff", "warning", "breach", "escalation"]
NOTICE_KINDS: tuple[NoticeKind, ...] = ("handoff", "warning", "breach", "escalation")
Recipient = Literal["owner", "manager", "channel"]
Language = Literal["en", "pt-BR", "es"]
ChannelType = Literal["slack", "teams", "email", "webhook", "hubspot"]
SecretName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]

CADENCE_HINT = "write immediate, hourly, 'daily HH:MM' or 'weekly DAY HH:MM' (e.g. daily 08:30, weekly mon 08:30)"


def _cadence_shorthand(value: object) -> object:
    # "daily 08:30" is how people write a cadence; accept it beside {every, at, day}.
    if not isinstance(value, str):
        return value
    words = value.split()
    match words:
        case ["immediate" | "hourly" as every]:
            return {"every": every}
        case ["daily", at]:
            return {"every": "daily", "at": at}
        case ["weekly", day, at]:
            return {"every": "weekly", "day": day, "at": at}
    raise ValueError(f"{value!r} is not a cadence: {CADENCE_HINT}")


class Cadence(PolicyModel):
    """When a notice goes out: at once, or gathered into a digest hourly, daily at a local time of the team's
    calendar, or weekly on a day at a local time."""

    every: Literal["immediate", "hourly", "daily", "weekly"]
    at: time | None = Field(default=None, description="local time of a daily or weekly digest")
    day: Weekday | None = Field(default=None, description="weekday of a weekly digest")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.every in ("daily", "weekly") and self.at is None:
            raise ValueError(f"a {self.every} cadence needs its local time: {CADENCE_HINT}")
        if self.every == "weekly" and self.day is None:
            raise ValueError(f"a weekly cadence needs its day: {CADENCE_HINT}")
        if self.every in ("immediate", "hourly") and (self.at is not None or self.day is not None):
            raise ValueError(f"{self.every} takes no time or day: {CADENCE_HINT}")
        return self

    @property
    def is_digest(self) -> bool:
        return self.every != "immediate"


class RateWindow(PolicyModel):
    """At most `max` messages in any `seconds` window (a service's documented limit)."""

    seconds: Annotated[float, Field(gt=0, le=86400)]
    max: Annotated[int, Field(ge=1, le=1_000_000)]


# What each service documents for one incoming webhook or one app (README "Notifications"): Slack ~1 message a
# second per webhook (short bursts tolerated); Teams connectors 4 a second, 60 in 30 s, 100 an hour, 1,800 a day;
# HubSpot private apps 100 requests per 10 s (Free and Starter; more on higher tiers: set `rate`).
DEFAULT_RATES: dict[str, tuple[RateWindow, ...]] = {
    "slack": (RateWindow(seconds=1, max=1),),
    "teams": (
        RateWindow(seconds=1, max=4),
        RateWindow(seconds=30, max=60),
        RateWindow(seconds=3600, max=100),
        RateWindow(seconds=86400, max=1800),
    ),
    "hubspot": (RateWindow(seconds=10, max=100),),
    "email": (),
    "webhook": (),
}


class ChannelSpec(PolicyModel):
    """A place messages go. Secrets are never in the policy: `secret` names one, read from the environment
    variable LEADFLOW_NOTIFY_SECRET_<NAME> or the file leadflow_notify_secret_<name> in the secrets directory."""

    type: ChannelType
    secret: SecretName | None = Field(
        default=None,
        description="slack, teams: the incoming-webhook URL; webhook: the HMAC-SHA256 key; hubspot: the private "
        "app's access token; email: the SMTP password (optional)",
    )
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = Field(
        default=None, description="webhook: where to post; hubspot: the API base URL (default https://api.hubapi.com)"
    )
    private: bool | None = Field(
        default=None,
        description="whether only the addressed person reads it, so it may show the lead's e-mail and phone "
        "(default: email and hubspot yes, the others no)",
    )
    language: Language | None = Field(default=None, description="default language of this channel's messages")
    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        default=5, description="tries before a message is dead-lettered (leads.notifications.deadletter)"
    )
    rate: tuple[RateWindow, ...] | None = Field(default=None, description="limits; default: what the service documents")
    # e-mail (SMTP)
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="default 587 with starttls, 465 with tls, 25 without"
    )
    tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (submission, 587), tls (implicit, 465) or none (a local relay)"
    )
    ca_file: str | None = Field(default=None, description="CA bundle (PEM) for the SMTP server; the system's if unset")
    username: str | None = Field(default=None, description="SMTP login (the password is `secret`)")
    sender: str | None = Field(default=None, description="From: address of the e-mails")
    address: str | None = Field(default=None, description="email: the list address rules with `to: [channel]` use")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        needs: dict[str, tuple[str, ...]] = {
            "slack": ("secret",),
            "teams": ("secret",),
            "webhook": ("url", "secret"),
            "hubspot": ("secret",),
            "email": ("smtp_host", "sender"),
        }
        missing = [name for name in needs[self.type] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.type} channel needs {' and '.join(missing)} (README, 'Notifications')")
        if self.type == "email" and self.username is not None and self.secret is None:
            raise ValueError("username: an SMTP login needs its password: name it in `secret`")
        return self

    @property
    def is_private(self) -> bool:
        return self.private if self.private is not None else self.type in ("email", "hubspot")

    @property
    def limits(self) -> tuple[RateWindow, ...]:
        return self.rate if self.rate is not None else DEFAULT_RATES[self.type]


class Person(PolicyModel):
    """How to reach an owner or a manager (by their id in routing.pools)."""

    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    language: Language | None = None
    slack_user: str | None = Field(default=None, description="Slack member id (U...) to mention in channel posts")
    hubspot_owner_id: str | None = Field(default=None, description="HubSpot owner id a CRM task is assigned to")


class NotificationRule(PolicyModel):
    """Who hears about which notices, where and how often. Empty filters match everything."""

    kinds: tuple[NoticeKind, ...] = Field(min_length=1, description="handoff, warning, breach, escalation")
    pools: tuple[Code, ...] = Field(default=(), description="only leads of these routing pools")
    teams: tuple[Code, ...] = Field(default=(), description="only leads of these teams")
    slas: tuple[Code, ...] = Field(default=(), description="only these SLAs (warning, breach, escalation)")
    to: tuple[Recipient, ...] = Field(
        min_length=1, description="owner (the lead's), manager (its pool's), channel (the channel itself)"
    )
    channel: Code
    cadence: Annotated[Cadence, BeforeValidator(_cadence_shorthand)] = Cadence(every="immediate")
    quiet_hours: bool = Field(
        default=True,
        description="hold messages outside the team calendar's working hours until it opens (digests: move to "
        "the next working day)",
    )
    language: Language | None = None


class Notifications(PolicyModel):
    """`leadflow notify`: channels, people and rules (README, 'Notifications')."""

    language: Language = "en"
    timezone: str = Field(default="UTC", description="time zone of teams without a calendar")
    crm_url: Annotated[str, Field(pattern=r"^https?://\S*\{lead_id\}\S*$")] | None = Field(
        default=None, description="link to a lead in the CRM, with {lead_id}, e.g. https://crm.example.com/l/{lead_id}"
    )
    stale_after_seconds: Annotated[float, Field(gt=0)] = Field(
        default=86400.0,
        description="a notice older than this when read (a backlog, a replay) is history: nobody is told",
    )
    channels: dict[Code, ChannelSpec] = Field(default_factory=dict)
    people: dict[Annotated[str, Field(min_length=1, max_length=200)], Person] = Field(default_factory=dict)
    rules: tuple[NotificationRule, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> Self:
        check_zone(self.timezone)
        for i, rule in enumerate(self.rules):
            if rule.channel not in self.channels:
                raise ValueError(
                    f"rules[{i}].channel: {rule.channel!r} is not a channel; name one of: "
                    f"{', '.join(self.channels) or '(no channels defined)'}"
                )
            channel = self.channels[rule.channel]
            if "channel" in rule.to and channel.type == "email" and channel.address is None:
                raise ValueError(f"rules[{i}].to: an e-mail channel needs `address` to be sent to as a channel")
            if channel.type == "hubspot" and "channel" in rule.to:
                raise ValueError(f"rules[{i}].to: a hubspot task is assigned to a person: use owner or manager")
        return self


class Policy(PolicyModel):
    version: Annotated[int, Field(ge=1)] = 1
    name: str = "default"
    lifecycle: Lifecycle
    scoring: Scoring
    mql: MqlRule
    rejection_reasons: tuple[RejectionReason, ...]
    deals: Deals
    processing: Processing = Processing()
    calendars: dict[Code, CalendarSpec] = Field(default_factory=dict, description="business calendars by team")
    slas: tuple[SlaSpec, ...] = ()
    routing: Routing | None = Field(default=None, description="who gets each MQL; no routing when unset")
    goals: Goals | None = Field(default=None, description="the revenue goal and its reverse funnel (leadflow plan)")
    forms: tuple[FormSpec, ...] = Field(
        default=(), description="forms per source: persona, buying stage and the profile fields each collects"
    )
    required_fields: dict[Code, tuple[Code, ...]] = Field(
        default_factory=dict,
        description="stage -> profile attributes sales needs before taking a lead in that stage (hand-offs list the "
        "missing ones; the funnel report shows completeness by stage)",
    )
    notifications: Notifications = Field(
        default_factory=Notifications, description="who is told about hand-offs and SLAs, where, how often"
    )

    @model_validator(mode="after")
    def _goal_stages(self) -> Self:
        if self.goals is None:
            return self
        response_sla = self.goals.commitments.sales.response_sla
        if response_sla is not None and response_sla not in {sla.name for sla in self.slas}:
            raise ValueError(
                f"goals.commitments.sales.response_sla: {response_sla!r} is not an SLA; name one of: "
                f"{', '.join(sla.name for sla in self.slas) or '(no slas defined)'}"
            )
        funnel = {stage: rank for rank, stage in enumerate(self.lifecycle.stages)}
        ranks = []
        for step, stage in self.goals.stages:
            if stage not in funnel:
                raise ValueError(f"goals.stages.{step}: {stage!r} is not a stage of lifecycle.stages")
            ranks.append(funnel[stage])
        if ranks != sorted(set(ranks)):
            raise ValueError(
                "goals.stages: the stages must follow lifecycle.stages in order, each after the one before "
                "(leads, mqls, qualification_calls, sqls, proposals, customers)"
            )
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        known = set(self.lifecycle.stages) | set(self.lifecycle.side_stages)
        for i, p in enumerate(self.deals.pipeline):
            if p.lifecycle_stage not in known:
                raise ValueError(f"deals.pipeline[{i}].lifecycle_stage: unknown stage {p.lifecycle_stage!r}")
        if self.deals.lost_to_stage not in known:
            raise ValueError(f"deals.lost_to_stage: unknown stage {self.deals.lost_to_stage!r}")
        for s in self.mql.eligible_stages:
            if s not in known:
                raise ValueError(f"mql.eligible_stages: unknown stage {s!r}")
        for i, sla in enumerate(self.slas):
            if sla.starts_on_stage is not None and sla.starts_on_stage not in known:
                raise ValueError(f"slas[{i}].starts_on_stage: unknown stage {sla.starts_on_stage!r}")
            if sla.starts_on_event is not None and sla.starts_on_event not in INPUT_EVENT_TYPES:
                raise ValueError(
                    f"slas[{i}].starts_on_event: {sla.starts_on_event!r} is not an event type; "
                    f"use one of: {', '.join(INPUT_EVENT_TYPES)}"
                )
            unknown_runs_in = [stage for stage in sla.runs_in if stage not in known]
            if unknown_runs_in:
                raise ValueError(f"slas[{i}].runs_in: unknown stages {', '.join(unknown_runs_in)}")
            business = [a for a in (sla.allowance, *(o.allowance for o in sla.overrides)) if a.is_business]
            if business and sla.calendar not in self.calendars:
                raise ValueError(
                    f"slas[{i}].calendar: business_hours need a calendar; name one of: "
                    f"{', '.join(self.calendars) or '(no calendars defined)'}"
                )
            if "reassign" in sla.escalate and self.routing is None:
                raise ValueError(f"slas[{i}].escalate: reassign needs a routing section with pools")
        for stage in self.required_fields:
            if stage not in known:
                raise ValueError(f"required_fields: unknown stage {stage!r}; use one of: {', '.join(sorted(known))}")
        seen_forms: set[tuple[str, str]] = set()
        for i, form in enumerate(self.forms):
            for key in (f"id:{form.id}" if form.id else None, f"name:{form.name}" if form.name else None):
                if key is not None and (form.source, key) in seen_forms:
                    raise ValueError(f"forms[{i}]: {form.source} form {key.split(':', 1)[1]!r} is listed twice")
                if key is not None:
                    seen_forms.add((form.source, key))
        names = [sla.name for sla in self.slas]
        if len(set(names)) != len(names):
            raise ValueError("slas: names must be unique")
        if not self.rejection_reasons:
            raise ValueError("rejection_reasons: give at least one reason code sales may use")
        return self

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the policy's canonical JSON (sorted keys, defaults filled in): two
        files that mean the same agreement share it; any change to what the policy says changes it."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # Lookups the core uses on every event, computed once per policy (cached_property bypasses frozen).
    @cached_property
    def engagement_rules(self) -> dict[str, EngagementRule]:
        return {r.action: r for r in self.scoring.engagement}

    @cached_property
    def pipeline_stages(self) -> dict[str, PipelineStage]:
        return {p.stage: p for p in self.deals.pipeline}

    @cached_property
    def rejection_codes(self) -> frozenset[str]:
        return frozenset(r.code for r in self.rejection_reasons)

    @cached_property
    def sla_specs(self) -> dict[str, SlaSpec]:
        return {spec.name: spec for spec in self.slas}

    @cached_property
    def sla_start_events(self) -> frozenset[str]:
        return frozenset(spec.starts_on_event for spec in self.slas if spec.starts_on_event is not None)

    @cached_property
    def all_stages(self) -> tuple[str, ...]:
        return (*self.lifecycle.stages, *self.lifecycle.side_stages)

    @cached_property
    def stage_ranks(self) -> dict[str, int]:
        return {stage: rank for rank, stage in enumerate(self.lifecycle.stages)}

    def stage_rank(self, stage: str) -> int:
        """Position in the main funnel; side stages rank -1."""
        return self.stage_ranks.get(stage, -1)


class PolicyError(ValueError):
    """A policy file that cannot be used; `problems` holds one 'path: message' line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class PolicyFileError(PolicyError):
    """A policy file that cannot be read at all (missing, a directory, no permission): a configuration error,
    not a problem in the policy."""


def parse_policy(document: Any, source: str = "policy") -> Policy:
    if not isinstance(document, dict):
        raise PolicyError(source, ["(top level): must be a mapping of policy sections"])
    try:
        policy = Policy.model_validate(document)
    except ValidationError as error:
        raise PolicyError(source, describe_errors(error)) from None
    counted = [path for path in _true_or_false(document) if not isinstance(_validated_at(policy, path), bool | None)]
    if counted:
        raise PolicyError(source, [f"{_dotted(path)}: true or false is not a number here; write the number"
                                   for path in counted])  # fmt: skip
    return policy


# pydantic reads YAML's true and false as 1 and 0 where a number is expected (`capacity: true` is a capacity of 1):
# the validated policy tells which of the document's booleans became numbers.
def _true_or_false(node: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(node, bool):
        return [path]
    if isinstance(node, dict):
        return [found for key, value in node.items() for found in _true_or_false(value, (*path, str(key)))]
    if isinstance(node, list):
        return [found for n, value in enumerate(node) for found in _true_or_false(value, (*path, n))]
    return []


def _validated_at(node: object, path: tuple[str | int, ...]) -> object:
    """The validated value at a path of the document, or None where the model's shape differs from the document's
    (a shorthand expanded, a list read as a mapping): those are left to the model's own checks."""
    for step in path:
        if isinstance(node, BaseModel):
            fields = type(node).model_fields
            name = next((n for n, f in fields.items() if step in (n, f.alias)), None)
            if name is None:
                return None
            node = getattr(node, name)
        elif (isinstance(node, Mapping) and step in node) or (
            isinstance(node, Sequence) and not isinstance(node, str) and isinstance(step, int) and step < len(node)
        ):
            node = node[step]  # type: ignore[index]
        else:
            return None
    return node


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")


class _PolicyLoader(yaml.SafeLoader):
    """YAML reads an unquoted 2026-02-30 as a date and fails without saying where: say where, and what to fix."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> date:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as error:
            raise yaml.constructor.ConstructorError(
                problem=f"{node.value!r} is not a date or time ({error}); write a real one",
                problem_mark=node.start_mark,
            ) from None


_PolicyLoader.add_constructor("tag:yaml.org,2002:timestamp", _PolicyLoader.construct_yaml_timestamp)


def notification_problems(policy: Policy) -> list[str]:
    """What the notifications section names that the rest of the policy lacks: pools, teams and SLAs that do not
    exist, people a rule sends e-mail or CRM tasks to without their address. Checked by `leadflow policy check` and
    by `leadflow notify` at start, not when the policy loads: the worker does not notify anyone, and an SLA renamed
    or a new rep without an e-mail address must not stop it."""
    found: list[str] = []
    pools = policy.routing.by_name if policy.routing is not None else {}
    teams = set(policy.calendars) | {p.team for p in pools.values()}
    slas = {sla.name for sla in policy.slas}
    people = policy.notifications.people
    for i, rule in enumerate(policy.notifications.rules):
        where = f"notifications.rules[{i}]"
        found += [f"{where}.pools: {pool!r} is not a pool; name one of: {', '.join(pools) or '-'}"
                  for pool in rule.pools if pool not in pools]  # fmt: skip
        found += [f"{where}.teams: {team!r} is not a team; name one of: {', '.join(sorted(teams))}"
                  for team in rule.teams if team not in teams]  # fmt: skip
        found += [f"{where}.slas: {sla!r} is not an SLA; name one of: {', '.join(slas) or '-'}"
                  for sla in rule.slas if sla not in slas]  # fmt: skip
        channel = policy.notifications.channels[rule.channel]
        field = {"email": "email", "hubspot": "hubspot_owner_id"}.get(channel.type)
        if field is None:
            continue
        chosen = [pools[name] for name in rule.pools if name in pools] or list(pools.values())
        chosen = [p for p in chosen if not rule.teams or p.team in rule.teams]
        who = [o.id for p in chosen for o in p.owners] if "owner" in rule.to else []
        who += [p.manager for p in chosen if p.manager is not None] if "manager" in rule.to else []
        found += [
            f"{where}.to: sends {channel.type} to {person}, who has no {field.replace('_', ' ')}: give "
            f"notifications.people.{person}.{field}"
            for person in dict.fromkeys(who)
            if getattr(people.get(person), field, None) is None
        ]
    return found


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file; with no path, the default policy shipped with the package."""
    if path is None:
        text = resources.files("leadflow.schemas").joinpath("default_policy.yaml").read_text(encoding="utf-8")
        source = "default_policy.yaml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise PolicyFileError(source, [f"(file): cannot read: {error.strerror}"]) from None
        except UnicodeDecodeError as error:
            raise PolicyError(
                source, [f"(file): cannot read: not UTF-8 text (byte {error.start}); save it as UTF-8"]
            ) from None
    try:
        document = yaml.load(text, Loader=_PolicyLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise PolicyError(source, [f"{where}: not valid YAML: {getattr(error, 'problem', error)}"]) from None
    return parse_policy(document, source)
