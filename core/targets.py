"""What each period must reach: the plan's funnel and the teams' commitments, per week and per month.

Counts come from the reverse funnel (core.plan): the month's figures, and a week's as the plan spreads them
(a month / (52/12), rounded up). A commitment the policy states per week (`goals.commitments`) overrides the
plan's week, and its month is the week x 52/12, rounded up. The floors (shares, depth) are the same for both
periods. Without a plan (no average deal value to plan from) only the stated commitments are targets.

Pure: policy in, targets out.
"""

from __future__ import annotations

import math
from typing import Final

from leadflow.core.plan import WEEKS_PER_MONTH, Plan, PlanError, per_week, plan
from leadflow.schemas.policy import Policy, SlaSpec
from leadflow.schemas.review import PeriodKind

# The goal measures the plan gives, from the top of the funnel down (schemas.review.GoalMeasure).
STAGE_MEASURES: Final = ("visitors", "leads", "mqls", "qualification_calls", "sqls", "proposals", "customers")
COUNT_COMMITMENTS: Final = ("mqls", "contact_attempts")
FLOOR_COMMITMENTS: Final = ("mql_acceptance_rate", "response_compliance", "follow_up_depth")


def planned(policy: Policy) -> Plan | None:
    """The policy's reverse funnel, or None when it cannot be planned (no goals, no deal value to plan from)."""
    if policy.goals is None:
        return None
    try:
        return plan(policy)
    except PlanError:
        return None


def response_sla(policy: Policy) -> SlaSpec | None:
    """The SLA that measures sales' response time: `goals.commitments.sales.response_sla`, or the first SLA started
    on the MQL stage and met by a contact attempt, or the first started on the MQL stage."""
    chosen = policy.goals.commitments.sales.response_sla if policy.goals is not None else None
    if chosen is not None:
        return next(sla for sla in policy.slas if sla.name == chosen)
    mql = policy.goals.stages.mqls if policy.goals is not None else "mql"
    on_mql = [sla for sla in policy.slas if sla.starts_on_stage == mql]
    contacted = [sla for sla in on_mql if "contact.attempted" in sla.met_by]
    return next(iter(contacted or on_mql), None)


def follow_up_sla(policy: Policy) -> SlaSpec | None:
    """The counted SLA of contact attempts (`count_event: contact.attempted`): its end is where a lead's
    follow-up ends, which the follow-up depth is measured at."""
    return next((sla for sla in policy.slas if sla.count_event == "contact.attempted"), None)


def targets(policy: Policy, kind: PeriodKind, the_plan: Plan | None = None) -> dict[str, float]:
    """measure -> target for one period of this kind; measures without a target are left out."""
    if policy.goals is None:
        return {}
    the_plan = the_plan if the_plan is not None else planned(policy)
    commitments = policy.goals.commitments
    result: dict[str, float] = {}
    if the_plan is not None:
        units = the_plan.month if kind == "month" else the_plan.week
        result.update({m: float(units[m]) for m in STAGE_MEASURES if units.get(m) is not None})  # type: ignore[arg-type]
        revenue = the_plan.revenue_month if kind == "month" else per_week(the_plan.revenue_month)
        result["revenue"] = float(revenue)
        if the_plan.capacity is not None:
            rows = the_plan.capacity.month if kind == "month" else the_plan.capacity.week
            result["contact_attempts"] = float(rows["contacts"])
            result["follow_up_depth"] = float(the_plan.capacity.inputs.contacts_per_qualified_lead)
        mqls, calls = the_plan.month["mqls"], the_plan.month["qualification_calls"]
        if mqls and calls is not None:
            result["mql_acceptance_rate"] = calls / mqls
    stated = {
        "mqls": commitments.marketing.mqls_per_week,
        "contact_attempts": commitments.sales.contact_attempts_per_week,
    }
    for measure, per_week_count in stated.items():
        if per_week_count is not None:
            result[measure] = float(per_week_count if kind == "week" else math.ceil(per_week_count * WEEKS_PER_MONTH))
    if commitments.marketing.acceptance_rate is not None:
        result["mql_acceptance_rate"] = float(commitments.marketing.acceptance_rate)
    if commitments.sales.follow_up_depth is not None:
        result["follow_up_depth"] = commitments.sales.follow_up_depth
    if response_sla(policy) is not None:
        result["response_compliance"] = float(commitments.sales.response_compliance)
    return result
