"""The weekly or monthly SLA review (schemas.review.Review): goals vs actual and the projection, the funnel and
its bottleneck, each team's commitments kept or missed, SLA compliance per SLA, team and rep, response times
against the allowance, rejection and lost reasons, skipped stages, and what changed since the previous period.

Computed from lead summaries (core.report: a replay's records, or the workers' /funnel/leads) and site visits,
with the same counting as the live pacing metrics (core.attainment). Pure: everything comes in as arguments.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Final

from leadflow.core.attainment import actuals
from leadflow.core.period import contains, period_of, period_starting, previous_of, projection
from leadflow.core.report import LeadSummary
from leadflow.core.targets import STAGE_MEASURES, planned, response_sla, targets
from leadflow.schemas.policy import Policy
from leadflow.schemas.review import (
    Change,
    Commitment,
    FunnelStep,
    GoalLine,
    Period,
    PeriodKind,
    PolicyRef,
    ResponseTimes,
    Review,
    SlaLine,
)
from leadflow.schemas.visits import SiteVisits

GOAL_MEASURES: Final = (*STAGE_MEASURES, "revenue")


def policy_ref(policy: Policy) -> PolicyRef:
    return PolicyRef(name=policy.name, version=policy.version, fingerprint=policy.fingerprint)


def review(
    summaries: Sequence[LeadSummary],
    visits: Sequence[SiteVisits],
    policy: Policy,
    kind: PeriodKind,
    now: datetime,
    *,
    start: date | None = None,
) -> Review:
    """The review of the period of `kind` that starts on the local day `start` (its week or month), or of the
    current one, as of `now`."""
    timezone = policy.goals.timezone if policy.goals is not None else "UTC"
    period = period_starting(kind, start, timezone, now) if start is not None else period_of(kind, now, timezone, now)
    period = period_of(kind, period.start, timezone, now)  # a start inside a period means that period
    previous = previous_of(period, now)
    response = response_sla(policy)
    response_name = response.name if response is not None else None
    goal = targets(policy, kind)
    now_counts = actuals(summaries, visits, policy, period)
    before = actuals(summaries, visits, policy, previous)
    goals = tuple(goal_line(m, goal.get(m), now_counts[m], period) for m in GOAL_MEASURES)
    commitments = commitments_of(goal, now_counts, period, response_name)
    return Review(
        period=period,
        previous=previous,
        policy=policy_ref(policy),
        currency=policy.goals.currency if policy.goals is not None else None,
        goals=goals,
        bottleneck=bottleneck(g for g in goals if g.measure != "visitors" or reported(visits, period)),
        funnel=funnel(policy, now_counts, kind),
        commitments=commitments,
        sla=sla_lines(summaries, policy, period),
        response_times=response_times(summaries, policy, period),
        rejections=reasons(
            ((r, at) for s in summaries for r, at in zip(s.rejections, s.rejected_at, strict=False)), period
        ),
        lost=reasons(((r, at) for s in summaries for r, at in zip(s.lost, s.lost_at, strict=False)), period),
        skips=skips(summaries, period),
        changes=changes(goals, commitments, before, commitments_of(goal, before, previous, response_name)),
    )


def reported(visits: Iterable[SiteVisits], period: Period) -> bool:
    """Whether any site-visits report covers a day of the period (without one, visitors are unknown, not 0)."""
    return any(period.start.date() <= v.data.date < period.end.date() for v in visits)


def share_of(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def goal_line(measure: str, target: float | None, actual: float, period: Period) -> GoalLine:
    projected = projection(actual, period.elapsed)
    return GoalLine(
        measure=measure,
        target=target,
        actual=actual,
        projection=projected,
        attainment=share_of(actual, target) if target is not None else None,
        projected_attainment=share_of(projected, target) if target is not None else None,
    )


def bottleneck(goals: Iterable[GoalLine]) -> str | None:
    """The funnel stage furthest behind plan: the lowest projected attainment (the first, up the funnel, on a tie)."""
    behind = [(g.projected_attainment, i, g.measure) for i, g in enumerate(goals) if g.measure in STAGE_MEASURES]
    scored = [(a, i, m) for a, i, m in behind if a is not None and a < 1]
    return min(scored)[2] if scored else None


def funnel(policy: Policy, counts: dict[str, float], kind: PeriodKind) -> tuple[FunnelStep, ...]:
    """Each stage's entries in the period, with the conversion from the stage above (entries / entries: a
    period's flow, not a cohort) next to the plan's share for that step."""
    stages = dict(policy.goals.stages) if policy.goals is not None else {}
    the_plan = planned(policy)
    plan_units = the_plan.month if the_plan is not None else {}
    steps = []
    for above, measure in zip((None, *STAGE_MEASURES), STAGE_MEASURES, strict=False):
        upper, lower = plan_units.get(above or ""), plan_units.get(measure)
        planned_share = lower / upper if upper and lower is not None else None
        steps.append(
            FunnelStep(
                measure=measure,
                stage=stages.get(measure),
                entered=counts[measure],
                conversion=share_of(counts[measure], counts[above]) if above is not None else None,
                planned_conversion=planned_share,
            )
        )
    return tuple(steps)


def commitments_of(
    goal: dict[str, float], counts: dict[str, float], period: Period, response_name: str | None
) -> tuple[Commitment, ...]:
    """Marketing's MQLs and quality floor, sales' attempts, response compliance and follow-up depth: those with a
    target. A count is kept when its projection (the actual, once the period is over) reaches the target."""
    result = []

    def count(team: str, name: str) -> None:
        if name in goal:
            projected = projection(counts[name], period.elapsed)
            kept = projected >= goal[name]
            result.append(
                Commitment(
                    team=team,
                    name=name,
                    unit="count",
                    target=goal[name],
                    actual=counts[name],
                    projection=projected,
                    kept=kept,
                )
            )

    def floor(team: str, name: str, part: float, whole: float, *, unit: str, detail: str) -> None:
        if name in goal:
            actual = share_of(part, whole)
            kept = None if actual is None else actual >= goal[name]
            result.append(
                Commitment(
                    team=team,
                    name=name,
                    unit=unit,
                    target=goal[name],
                    actual=actual,
                    projection=None,
                    kept=kept,
                    detail=detail,
                )
            )

    count("marketing", "mqls")
    decided = counts["mqls_accepted"] + counts["mqls_rejected"]
    floor(
        "marketing",
        "mql_acceptance_rate",
        counts["mqls_accepted"],
        decided,
        unit="share",
        detail="accepted / decided MQLs",
    )
    count("sales", "contact_attempts")
    response = f"SLA {response_name}" if response_name else ""
    floor(
        "sales", "response_compliance", counts["responses_in_time"], counts["responses"], unit="share", detail=response
    )
    depth = "attempts per lead whose follow-up ended"
    followed = counts["followed_up_leads"]
    floor("sales", "follow_up_depth", counts["follow_up_attempts"], followed, unit="attempts", detail=depth)
    return tuple(result)


def sla_lines(summaries: Iterable[LeadSummary], policy: Policy, period: Period) -> tuple[SlaLine, ...]:
    """Per SLA, then per team and per rep, what its clocks did in the period."""
    tallies: dict[tuple[str, str, str], Counter[str]] = {}
    for lead in summaries:
        for entry in lead.sla:
            if not contains(period, entry.at):
                continue
            scopes = (("sla", entry.sla), ("team", entry.team or "(none)"), ("rep", entry.owner_id or "(none)"))
            for scope, key in scopes:
                tallies.setdefault((entry.sla, scope, key), Counter())[entry.kind] += 1
    order = {sla.name: i for i, sla in enumerate(policy.slas)}
    rank = {"sla": 0, "team": 1, "rep": 2}
    lines = []
    ordered = sorted(tallies.items(), key=lambda t: (order.get(t[0][0], 99), rank[t[0][1]], t[0]))
    for (sla, scope, key), kinds in ordered:
        closed = kinds["met"] + kinds["breached"]
        lines.append(
            SlaLine(
                sla=sla,
                scope=scope,
                key=key,
                started=kinds["started"],
                met=kinds["met"],
                late=kinds["late"],
                breached=kinds["breached"],
                compliance=share_of(kinds["met"], closed),
            )
        )
    return tuple(lines)


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def response_times(summaries: Iterable[LeadSummary], policy: Policy, period: Period) -> tuple[ResponseTimes, ...]:
    """The allowance used by each clock met (in time or late) in the period, per SLA, against its allowance."""
    used: dict[str, list[float]] = {sla.name: [] for sla in policy.slas}
    for lead in summaries:
        for entry in lead.sla:
            if entry.kind in ("met", "late") and entry.used_s is not None and contains(period, entry.at):
                used.setdefault(entry.sla, []).append(entry.used_s)
    result = []
    for sla in policy.slas:
        values = sorted(used[sla.name])
        allowance = sla.allowance.seconds
        if not values:
            continue
        result.append(
            ResponseTimes(
                sla=sla.name,
                allowance_s=allowance,
                business=sla.allowance.is_business,
                used_s=tuple(values),
                within=share_of(sum(1 for v in values if v <= allowance), len(values)),
                p50=quantile(values, 0.5),
                p90=quantile(values, 0.9),
            )
        )
    return tuple(result)


def reasons(pairs: Iterable[tuple[str, datetime]], period: Period | None = None) -> dict[str, int]:
    return dict(Counter(reason for reason, at in pairs if period is None or contains(period, at)).most_common())


def skips(summaries: Iterable[LeadSummary], period: Period) -> dict[str, int]:
    found = Counter(
        f"{skip.from_stage}->{skip.to_stage}" for s in summaries for skip in s.skips if contains(period, skip.at)
    )
    return dict(found.most_common())


def changes(
    goals: Sequence[GoalLine],
    commitments: Sequence[Commitment],
    before: dict[str, float],
    commitments_before: Sequence[Commitment],
) -> tuple[Change, ...]:
    """Each goal measure and each floor: the previous period's figure next to this one's."""
    lines = [Change(measure=g.measure, previous=before[g.measure], current=g.actual) for g in goals]
    earlier = {c.name: c.actual for c in commitments_before}
    lines += [
        Change(measure=c.name, previous=earlier.get(c.name), current=c.actual) for c in commitments if c.unit != "count"
    ]
    return tuple(lines)
