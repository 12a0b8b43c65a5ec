"""What a period actually reached, counted from lead summaries (core.report) and site visits (core.visits).

One function for the live worker (its table, per scrape) and the review (a replay or the workers' summaries),
so the dashboard and the meeting see the same figures. Every count is additive: a worker counts the leads of
its partitions, and the sums over workers are the totals (the floors are ratios of these counts).

- a stage measure counts the leads whose first entry into that stage (`goals.stages`) falls in the period;
- revenue is the won amount of the deals won in the period (a win of unknown amount adds nothing: it is not 0,
  it is unknown, and the funnel report counts those apart);
- contact attempts are the attempts made in the period;
- follow-up depth is judged where a lead's follow-up ends: the leads whose contact-attempts SLA (the counted
  SLA of `contact.attempted`) was met or breached in the period, with the attempts they had by then (a lead
  that converted before, its clock cancelled, needed no more). Without such an SLA: the leads contacted in the
  period and their attempts in it;
- MQLs accepted are the entries into the qualification-call stage, MQLs rejected the rejections, both in the
  period (marketing's quality floor is accepted / (accepted + rejected));
- responses are the response SLA's clocks met or breached in the period (a late one counts once, as breached),
  in time the met ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from leadflow.core.period import contains
from leadflow.core.report import LeadSummary
from leadflow.core.targets import STAGE_MEASURES, follow_up_sla, response_sla
from leadflow.core.visits import visits_between
from leadflow.schemas.policy import Policy
from leadflow.schemas.review import Period
from leadflow.schemas.visits import SiteVisits

ACTUAL_MEASURES: Final = (
    *STAGE_MEASURES,
    "revenue",
    "contact_attempts",
    "followed_up_leads",
    "follow_up_attempts",
    "mqls_accepted",
    "mqls_rejected",
    "responses",
    "responses_in_time",
)


def stage_of_measure(policy: Policy) -> dict[str, str]:
    """Goal measure -> the lifecycle stage whose first entries count it (visitors have none)."""
    stages = policy.goals.stages if policy.goals is not None else None
    if stages is None:
        return {m: m.removesuffix("s") for m in STAGE_MEASURES if m != "visitors"}
    return dict(stages)


def actuals(
    summaries: Iterable[LeadSummary], visits: Iterable[SiteVisits], policy: Policy, period: Period
) -> dict[str, float]:
    """measure -> what the period reached (see the module docstring)."""
    counts = dict.fromkeys(ACTUAL_MEASURES, 0.0)
    measures = stage_of_measure(policy)
    accepted_stage = measures["qualification_calls"]
    response = response_sla(policy)
    follow_up = follow_up_sla(policy)
    for lead in summaries:
        entered = lead.entered
        for measure, stage in measures.items():
            at = entered.get(stage)
            if at is not None and contains(period, at):
                counts[measure] += 1
        at = entered.get(accepted_stage)
        if at is not None and contains(period, at):
            counts["mqls_accepted"] += 1
        counts["mqls_rejected"] += sum(1 for at in lead.rejected_at if contains(period, at))
        if lead.won_at is not None and lead.won_amount is not None and contains(period, lead.won_at):
            counts["revenue"] += lead.won_amount
        attempts = sum(1 for at in lead.contacts if contains(period, at))
        counts["contact_attempts"] += attempts
        for entry in lead.sla:
            if entry.kind not in ("met", "breached") or not contains(period, entry.at):
                continue
            if response is not None and entry.sla == response.name:
                counts["responses"] += 1
                counts["responses_in_time"] += 1 if entry.kind == "met" else 0
            if follow_up is not None and entry.sla == follow_up.name:
                counts["followed_up_leads"] += 1
                counts["follow_up_attempts"] += sum(1 for at in lead.contacts if at <= entry.at)
        if follow_up is None and attempts:
            counts["followed_up_leads"] += 1
            counts["follow_up_attempts"] += attempts
    counts["visitors"] = float(visits_between(visits, period.start.date(), period.end.date()))
    return counts
