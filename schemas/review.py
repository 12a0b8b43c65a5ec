"""The weekly or monthly SLA review: what `leadflow report --period week|month` measures (core/review.py) and
the HTML page shows (streams/cli/review_page.py). Plain values, JSON-ready; shares are in [0, 1]."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PeriodKind = Literal["week", "month"]
# The goal measures, from the top of the funnel down; the stage ones follow goals.stages.
GoalMeasure = Literal["visitors", "leads", "mqls", "qualification_calls", "sqls", "proposals", "customers", "revenue"]
CommitmentName = Literal["mqls", "mql_acceptance_rate", "contact_attempts", "response_compliance", "follow_up_depth"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicyRef(Frozen):
    """The agreement measured: the policy's name, version and a fingerprint of its content."""

    name: str
    version: int
    fingerprint: str = Field(description="first 16 hex digits of the SHA-256 of the policy's canonical JSON")


class Period(Frozen):
    kind: PeriodKind
    label: str = Field(description="ISO week (2026-W48) or month (2026-11)")
    start: datetime = Field(description="first instant, in the goals' time zone")
    end: datetime = Field(description="first instant after the period")
    as_of: datetime = Field(description="what the figures include: the period end, or now for the current period")
    elapsed: float = Field(description="share of the period gone by at as_of, in [0, 1]")
    timezone: str


class GoalLine(Frozen):
    measure: GoalMeasure
    target: float | None = Field(description="the plan's figure for the period; None: not planned")
    actual: float
    projection: float = Field(description="the period end at the pace so far (actual / elapsed)")
    attainment: float | None = Field(description="actual / target")
    projected_attainment: float | None = Field(description="projection / target")


class FunnelStep(Frozen):
    measure: GoalMeasure
    stage: str | None = Field(description="the lifecycle stage counted (None for visitors)")
    entered: float = Field(description="units in the period: first entries into the stage, visits, revenue")
    conversion: float | None = Field(description="entered / entered of the step above, in this period")
    planned_conversion: float | None = Field(description="the plan's share for that step")


class Commitment(Frozen):
    team: Literal["marketing", "sales"]
    name: CommitmentName
    unit: Literal["count", "share", "attempts"]
    target: float = Field(description="for the period: a count to reach, or a floor for shares and depth")
    actual: float | None = Field(description="None: nothing to measure yet (no MQL decided, no response)")
    projection: float | None = Field(description="counts only: the period end at the pace so far")
    kept: bool | None = Field(description="met (or projected to be met); None when not measurable")
    detail: str = Field(default="", description="what is measured, e.g. the SLA behind response_compliance")


class SlaLine(Frozen):
    sla: str
    scope: Literal["sla", "team", "rep"]
    key: str = Field(description="the SLA name, the team, or the owner id")
    started: int
    met: int
    late: int
    breached: int
    compliance: float | None = Field(description="met / (met + breached): a late one was breached; None: none closed")


class ResponseTimes(Frozen):
    sla: str
    allowance_s: float = Field(description="the SLA's default allowance")
    business: bool = Field(description="used_s and allowance_s are business seconds")
    used_s: tuple[float, ...] = Field(description="allowance used by each clock met in the period")
    within: float | None = Field(description="share of used_s within the allowance")
    p50: float | None
    p90: float | None


class Change(Frozen):
    measure: str
    previous: float | None
    current: float | None


class Review(Frozen):
    period: Period
    previous: Period
    policy: PolicyRef
    currency: str | None
    goals: tuple[GoalLine, ...]
    bottleneck: GoalMeasure | None = Field(description="the funnel stage furthest behind plan (lowest projection)")
    funnel: tuple[FunnelStep, ...]
    commitments: tuple[Commitment, ...]
    sla: tuple[SlaLine, ...]
    response_times: tuple[ResponseTimes, ...]
    rejections: dict[str, int]
    lost: dict[str, int]
    skips: dict[str, int] = Field(description='"<from>-><to>" -> facts that skipped stages in the period')
    changes: tuple[Change, ...] = Field(description="goal measures and commitments: previous period vs this one")
