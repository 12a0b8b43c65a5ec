"""The goals section and the reverse funnel (core/plan.py): the worked examples from practice, exactly, and the
properties every plan keeps whatever the goal and the shares."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest
from factories import default_document, make_policy
from hypothesis import given
from hypothesis import strategies as st

from leadflow.core.plan import (
    SHARE_OF,
    STEPS,
    WEEKS_PER_MONTH,
    Measured,
    PlanError,
    measure,
    plan,
    plan_document,
    plan_tables,
    reverse,
    weekly,
)
from leadflow.schemas.policy import Policy, PolicyError, load_policy, parse_policy

# The worked example from practice: 1 customer = 5 proposals = 10 SQL = 30 qualification calls = 500 MQL =
# 2,500 leads = 7,500 visitors.
WORKED_EXAMPLE = {
    "customers": 1,
    "proposals": 5,
    "sqls": 10,
    "qualification_calls": 30,
    "mqls": 500,
    "leads": 2500,
    "visitors": 7500,
}
WORKED_SHARES = {
    "proposal_to_customer": 0.2,
    "sql_to_proposal": 0.5,
    "qualification_call_to_sql": "1/3",
    "mql_to_qualification_call": 0.06,
    "lead_to_mql": "20%",
    "visitor_to_lead": "1/3",
}


def goals_policy(**goals: Any) -> Policy:
    """The default policy with its goals section replaced by `goals`."""

    def change(document: dict[str, Any]) -> None:
        document["goals"] = goals

    return make_policy(change)


def goal_problems(**goals: Any) -> list[str]:
    document = default_document()
    document["goals"] = goals
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, "goals.yaml")
    return caught.value.problems


# ---- the worked examples -------------------------------------------------------------------------------------


def test_one_customer_is_five_proposals_ten_sqls_thirty_calls_500_mqls_2500_leads_7500_visitors() -> None:
    policy = goals_policy(revenue={"month": 12_000}, average_deal_value=12_000, conversion=WORKED_SHARES)
    result = plan(policy)
    assert result.month == WORKED_EXAMPLE
    assert plan_document(result)["funnel"]["month"] == WORKED_EXAMPLE


def test_the_shipped_policy_plans_the_worked_example_ten_times_over() -> None:
    result = plan(load_policy())
    assert result.month == {step: 10 * n for step, n in WORKED_EXAMPLE.items()}
    # A week is the month spread over 52/12 weeks, each figure rounded up.
    assert result.week == {step: math.ceil(10 * n * 12 / 52) for step, n in WORKED_EXAMPLE.items()}
    assert result.week["mqls"] == 1154  # 5,000 / 4.33 = 1,153.8
    assert plan_document(result)["revenue"] == {"month": 120_000.0, "week": 27_692.31}


def test_100_sales_at_6_qualified_leads_per_sale_is_600_qualified_leads_at_4_contacts_an_hour_150_rep_hours() -> None:
    policy = goals_policy(
        revenue={"month": 100 * 5_000},
        average_deal_value=5_000,
        conversion=WORKED_SHARES,
        capacity={"contacts_per_hour": 4, "hours_per_week": 30, "qualified_leads_per_sale": 6},
    )
    result = plan(policy)
    assert result.month["customers"] == 100
    assert result.capacity is not None
    assert result.capacity.basis == "qualified_leads_per_sale"
    assert result.capacity.month == {"qualified_leads": 600, "contacts": 600, "rep_hours": 150}
    capacity = plan_document(result)["capacity"]
    assert capacity["month"] == {"qualified_leads": 600, "contacts": 600, "rep_hours": 150.0}
    # A week: 600 / (52/12) = 138.5 -> 139 qualified leads, 139 contacts, 34.75 rep-hours: 2 reps at 30 h.
    assert capacity["week"] == {"qualified_leads": 139, "contacts": 139, "rep_hours": 34.75}
    assert capacity["reps_needed"] == 2


def test_without_qualified_leads_per_sale_the_qualification_calls_are_worked_with_their_contact_attempts() -> None:
    result = plan(load_policy())  # 300 qualification calls a month, 6 attempts each, 4 an hour, 30 h a week
    assert result.capacity is not None
    assert result.capacity.basis == "qualification_calls"
    assert result.capacity.month == {"qualified_leads": 300, "contacts": 1800, "rep_hours": 450}
    # The week's 70 qualified leads take 420 attempts: 105 rep-hours, 3.5 reps of 30 h -> 4.
    assert result.capacity.week == {"qualified_leads": 70, "contacts": 420, "rep_hours": 105}
    assert result.capacity.reps == 4


def test_costs_give_cost_per_lead_per_mql_cac_and_roi() -> None:
    result = plan(load_policy())  # 30,000 a month for 25,000 leads, 5,000 MQLs, 10 customers; 120,000 revenue
    assert result.costs is not None
    assert (result.costs.cost_per_lead, result.costs.cost_per_mql, result.costs.cac) == (
        Fraction(6, 5),
        6,
        3000,
    )
    assert result.costs.roi == 3  # 120,000 / 30,000 - 1
    costs = plan_document(result)["costs"]
    assert costs["marketing_spend"] == {"month": 30_000.0, "week": 6_923.08}
    assert (costs["cost_per_lead"], costs["cost_per_mql"], costs["cac"], costs["roi"]) == (1.2, 6.0, 3000.0, 3.0)


def test_a_cost_per_lead_makes_the_spend_of_the_planned_leads() -> None:
    policy = goals_policy(
        revenue={"month": 12_000}, average_deal_value=12_000, conversion=WORKED_SHARES, costs={"cost_per_lead": 2}
    )
    costs = plan(policy).costs
    assert costs is not None
    assert (costs.basis, costs.spend_month, costs.cac) == ("cost_per_lead", 5000, 5000)  # 2 x 2,500 leads
    assert costs.roi == Fraction(12_000, 5_000) - 1


# ---- periods, lines, what is not planned -------------------------------------------------------------------


def test_a_quarter_goal_plans_a_third_of_it_a_month() -> None:
    policy = goals_policy(revenue={"quarter": 36_000}, average_deal_value=12_000, conversion=WORKED_SHARES)
    result = plan(policy)
    assert result.month == WORKED_EXAMPLE
    assert result.funnels[0].revenue.origin == "goals.revenue.quarter / 3"
    both = goals_policy(
        revenue={"month": 12_000, "quarter": 36_000}, average_deal_value=12_000, conversion=WORKED_SHARES
    )
    assert plan(both).month == WORKED_EXAMPLE


def test_each_line_has_its_own_goal_and_the_total_is_their_sum() -> None:
    policy = goals_policy(
        average_deal_value=12_000,
        conversion=WORKED_SHARES,
        lines={
            "enterprise": {
                "revenue": {"month": 80_000},
                "average_deal_value": 40_000,
                "conversion": {"sql_to_proposal": 1},
            },
            "smb": {"revenue": {"quarter": 36_000}},
        },
    )
    result = plan(policy)
    enterprise, smb = result.funnels
    assert enterprise.month == {
        "customers": 2,
        "proposals": 10,
        "sqls": 10,  # its own share: every SQL gets a proposal
        "qualification_calls": 30,
        "mqls": 500,
        "leads": 2500,
        "visitors": 7500,
    }
    assert enterprise.shares["sql_to_proposal"] is not None
    assert enterprise.shares["sql_to_proposal"].origin == "goals.lines.enterprise.conversion.sql_to_proposal"
    assert enterprise.deal_value.origin == "goals.lines.enterprise.average_deal_value"
    assert smb.month == WORKED_EXAMPLE  # the goals section's deal value and shares
    assert smb.deal_value.origin == "goals.average_deal_value"
    assert result.month == {step: (enterprise.month[step] or 0) + (smb.month[step] or 0) for step in STEPS}
    assert result.revenue_month == 92_000
    document = plan_document(result)
    assert set(document["lines"]) == {"enterprise", "smb"}
    assert document["funnel"]["month"]["customers"] == 3


def test_without_visitor_to_lead_the_plan_stops_at_leads() -> None:
    shares = {k: v for k, v in WORKED_SHARES.items() if k != "visitor_to_lead"}
    result = plan(goals_policy(revenue={"month": 12_000}, average_deal_value=12_000, conversion=shares))
    assert result.month == {**WORKED_EXAMPLE, "visitors": None}
    assert result.week["visitors"] is None
    rows = plan_tables(result)[0].rows
    assert rows[-1][0] == "visitors"
    assert rows[-1][1] == "-"
    assert rows[-1][4] == "not planned: give goals.conversion.visitor_to_lead"


def test_a_share_not_given_and_not_measured_is_a_one_line_error_that_says_how_to_fix_it() -> None:
    shares = {k: v for k, v in WORKED_SHARES.items() if k != "lead_to_mql"}
    with pytest.raises(PlanError) as caught:
        plan(goals_policy(revenue={"month": 12_000}, average_deal_value=12_000, conversion=shares))
    assert str(caught.value) == (
        "goals.conversion.lead_to_mql is not given: give it as a share (e.g. 0.2, 1/5 or 20%), or measure it "
        "with --from-history EVENTS.jsonl"
    )
    with pytest.raises(PlanError, match=r"^goals.average_deal_value is not given: give it .* --from-history"):
        plan(goals_policy(revenue={"month": 12_000}, conversion=WORKED_SHARES))


def test_a_policy_without_goals_cannot_be_planned() -> None:
    document = default_document()
    del document["goals"]
    with pytest.raises(PlanError, match="has no goals section: add one"):
        plan(parse_policy(document))


# ---- the goals section -------------------------------------------------------------------------------------


def test_shares_are_exactly_what_the_policy_says() -> None:
    conversion = goals_policy(
        revenue={"month": 1}, average_deal_value=1, conversion={"lead_to_mql": 0.06, "sql_to_proposal": "1 / 3"}
    ).goals
    assert conversion is not None
    assert conversion.conversion.lead_to_mql == Fraction(3, 50)  # not the binary double nearest 0.06
    assert conversion.conversion.sql_to_proposal == Fraction(1, 3)
    percent = goals_policy(revenue={"month": 1}, conversion={"lead_to_mql": "12.5%"}).goals
    assert percent is not None
    assert percent.conversion.lead_to_mql == Fraction(1, 8)


def test_the_goals_section_survives_a_round_trip_through_its_json_form() -> None:
    policy = load_policy()
    again = Policy.model_validate(policy.model_dump(mode="json", by_alias=True))
    assert again.goals == policy.goals


@pytest.mark.parametrize(
    ("conversion", "problem"),
    [
        (
            {"lead_to_mql": 0},
            "goals.conversion.lead_to_mql: must be greater than 0: no goal can be planned through a step nobody "
            "passes; e.g. 0.2, 1/5 or 20% for one in five",
        ),
        (
            {"sql_to_proposal": "3/2"},
            "goals.conversion.sql_to_proposal: must be at most 1 (of the units at one stage, the share that "
            "reaches the next); e.g. 0.2, 1/5 or 20% for one in five",
        ),
        (
            {"proposal_to_customer": "one in five"},
            "goals.conversion.proposal_to_customer: must be a share: a number, a fraction or a percentage, e.g. "
            "0.2, 1/5 or 20% for one in five",
        ),
        (
            {"lead_to_mql": True},
            "goals.conversion.lead_to_mql: must be a share: a number, a fraction or a percentage, e.g. 0.2, 1/5 or "
            "20% for one in five",
        ),
        ({"lead_to_sql": 0.1}, "goals.conversion.lead_to_sql: is not a known field (check the spelling)"),
    ],
)
def test_a_bad_share_is_named_with_its_path_and_the_fix(conversion: dict[str, Any], problem: str) -> None:
    assert goal_problems(revenue={"month": 1}, conversion=conversion) == [problem]


def test_the_revenue_goal_is_checked() -> None:
    assert goal_problems(revenue={}) == [
        "goals.revenue: give month or quarter (or both, when quarter is three times month)"
    ]
    assert goal_problems(revenue={"month": 100, "quarter": 200}) == [
        "goals.revenue.quarter: 200 is not three times month (100): give one of them, or make them agree"
    ]
    assert goal_problems(average_deal_value=5) == [
        "goals.revenue: give the revenue goal (month or quarter), or lines with a revenue each"
    ]
    assert goal_problems(revenue={"month": 1}, lines={"smb": {"revenue": {"month": 1}}}) == [
        "goals.revenue: leave it out when lines are given (the goal is the sum of the lines' revenue)"
    ]
    assert goal_problems(revenue={"month": -5}) == ["goals.revenue.month: must be greater than 0"]
    assert goal_problems(lines={"smb": {"average_deal_value": 5}}) == ["goals.lines.smb.revenue: is required"]


def test_costs_capacity_and_stages_are_checked() -> None:
    assert goal_problems(revenue={"month": 1}, costs={"marketing_spend": {"month": 5}, "cost_per_lead": 2}) == [
        "goals.costs: give exactly one of marketing_spend or cost_per_lead"
    ]
    assert goal_problems(revenue={"month": 1}, capacity={"contacts_per_hour": 4}) == [
        "goals.capacity.hours_per_week: is required"
    ]
    assert goal_problems(revenue={"month": 1}, stages={"sqls": "nurturing"}) == [
        "goals.stages.sqls: 'nurturing' is not a stage of lifecycle.stages"
    ]
    assert goal_problems(revenue={"month": 1}, stages={"sqls": "lead"}) == [
        "goals.stages: the stages must follow lifecycle.stages in order, each after the one before (leads, mqls, "
        "qualification_calls, sqls, proposals, customers)"
    ]


# ---- measured from history ---------------------------------------------------------------------------------


def report(**override: Any) -> dict[str, Any]:
    """A funnel report (core.report shape) of a history that follows the worked example."""
    document: dict[str, Any] = {
        "leads": 3000,
        "reached": {"subscriber": 500, "lead": 2500, "mql": 500, "sal": 30, "sql": 10, "opportunity": 5, "customer": 1},
        "conversion": {
            "subscriber->lead": 0.9,
            "lead->mql": 0.2,
            "mql->sal": 0.06,
            "sal->sql": 0.3333,
            "sql->opportunity": 0.5,
            "opportunity->customer": 0.2,
        },
        "revenue": {"won_known": 4, "won_unknown_amount": 1, "amount": 50_000.0},
    }
    document.update(override)
    return document


def test_measured_shares_and_deal_value_replace_the_given_ones_and_say_so() -> None:
    policy = load_policy()
    measured = measure(report(), policy, "history.jsonl")
    assert measured.deal_value == 12_500
    assert measured.shares["qualification_call_to_sql"].share == Fraction("0.3333")
    assert measured.shares["lead_to_mql"].pairs == ("lead->mql",)
    result = plan(policy, measured)
    funnel = result.funnels[0]
    assert funnel.deal_value.source == "measured"
    assert funnel.deal_value.origin == "4 won deals with an amount"
    share = funnel.shares["qualification_call_to_sql"]
    assert share is not None
    assert (share.source, share.origin) == ("measured", "sal->sql over 30 leads")
    visitors = funnel.shares["visitor_to_lead"]
    assert visitors is not None
    assert visitors.source == "given"  # visits are not in the history
    # 120,000 / 12,500 = 9.6 -> 10 customers, 50 proposals, 100 SQLs, 100 / 0.3333 = 300.03 -> 301 calls.
    assert result.month["customers"] == 10
    assert result.month["qualification_calls"] == 301
    document = plan_document(result)
    assert document["history"]["file"] == "history.jsonl"
    assert document["history"]["shares"]["lead_to_mql"] == {"share": 0.2, "pairs": ["lead->mql"], "base": 2500}
    assert document["shares"]["lead_to_mql"]["source"] == "measured"
    assert any("measured from history.jsonl" in note for note in plan_tables(result)[0].notes)


def test_a_share_between_stages_further_apart_is_the_product_of_the_pairs_between_them() -> None:
    def change(document: dict[str, Any]) -> None:
        document["goals"]["stages"] = {"leads": "subscriber", "qualification_calls": "sal"}

    measured = measure(report(), make_policy(change), "h")
    assert measured.shares["lead_to_mql"].share == Fraction(9, 10) * Fraction(1, 5)
    assert measured.shares["lead_to_mql"].pairs == ("subscriber->lead", "lead->mql")


def test_what_history_cannot_measure_comes_from_the_policy() -> None:
    history = report(conversion={"lead->mql": 0.2}, revenue={"won_known": 0, "won_unknown_amount": 3, "amount": 0})
    result = plan(load_policy(), measure(history, load_policy(), "h"))
    funnel = result.funnels[0]
    assert funnel.deal_value.origin == "goals.average_deal_value (the history has no won deal with an amount)"
    share = funnel.shares["sql_to_proposal"]
    assert share is not None
    assert share.origin == "goals.conversion.sql_to_proposal (the history cannot measure it: no lead reached sql)"
    assert result.month == {step: 10 * n for step, n in WORKED_EXAMPLE.items()}


def test_a_history_without_a_won_amount_cannot_measure_a_deal_value_the_policy_leaves_out() -> None:
    policy = goals_policy(revenue={"month": 12_000}, conversion=WORKED_SHARES)
    history = report(revenue={"won_known": 0, "won_unknown_amount": 3, "amount": 0})
    with pytest.raises(PlanError) as caught:
        plan(policy, measure(history, policy, "events.jsonl"))
    assert str(caught.value) == (
        "--from-history events.jsonl: no won deal with a known amount (3 won without one): the average deal "
        "value cannot be measured; give goals.average_deal_value in the policy"
    )


def test_a_share_measured_0_is_an_error() -> None:
    history = report(conversion={**report()["conversion"], "sql->opportunity": 0.0})
    with pytest.raises(PlanError) as caught:
        plan(load_policy(), measure(history, load_policy(), "events.jsonl"))
    assert str(caught.value).startswith(
        "--from-history events.jsonl: sql_to_proposal measured 0 (sql->opportunity: none of the 10 leads that "
        "reached sql reached opportunity): no goal can be planned through a step nobody passes"
    )


def test_a_share_unset_and_not_measurable_is_an_error() -> None:
    policy = goals_policy(revenue={"month": 12_000}, average_deal_value=12_000)
    history = report(conversion={"lead->mql": 0.2})
    with pytest.raises(PlanError) as caught:
        plan(policy, measure(history, policy, "h"))
    assert str(caught.value) == (
        "goals.conversion.proposal_to_customer is not given and the history cannot measure it (no lead reached "
        "opportunity): give it in the policy as a share, e.g. 0.2, 1/5 or 20%"
    )


def test_a_lines_own_share_is_kept_over_the_measured_one() -> None:
    policy = goals_policy(
        average_deal_value=12_000,
        conversion=WORKED_SHARES,
        lines={"smb": {"revenue": {"month": 12_000}, "conversion": {"lead_to_mql": 0.1}}},
    )
    funnel = plan(policy, measure(report(), policy, "h")).funnels[0]
    own = funnel.shares["lead_to_mql"]
    assert own is not None
    assert (own.source, own.value) == ("given", Fraction(1, 10))
    measured = funnel.shares["mql_to_qualification_call"]
    assert measured is not None
    assert measured.source == "measured"


# ---- the tables --------------------------------------------------------------------------------------------


def test_the_tables_say_per_month_per_week_and_where_each_figure_comes_from() -> None:
    funnel, capacity, costs = plan_tables(plan(load_policy()))
    assert funnel.columns == ("stage", "per month", "per week", "conversion", "figure")
    assert funnel.rows[0] == ("revenue (BRL)", "120,000", "27,692.31", "", "given: goals.revenue.month")
    assert funnel.rows[1] == ("customers", "10", "3", "revenue / 12,000 a deal", "given: goals.average_deal_value")
    assert funnel.rows[2] == (
        "proposals",
        "50",
        "12",
        "20% (1 in 5) reach customers",
        "given: goals.conversion.proposal_to_customer",
    )
    assert funnel.rows[5][:4] == ("MQLs", "5,000", "1,154", "6% (3 in 50) reach qualification calls")
    assert funnel.notes[0].startswith("weeks per month: 52/12 = 4.33")
    assert capacity.rows[2] == ("rep-hours", "450.00", "105.00", "contacts / 4 contacts an hour")
    assert costs.rows[-1] == ("marketing ROI", "300.0%", "", "revenue goal / spend - 1")


# ---- properties --------------------------------------------------------------------------------------------

shares = st.fractions(min_value=Fraction(1, 1000), max_value=1, max_denominator=1000)
share_maps = st.fixed_dictionaries({field: shares for field in SHARE_OF.values()})
amounts = st.fractions(min_value=Fraction(1, 100), max_value=10**7, max_denominator=100)


@given(revenue=amounts, more=amounts, deal_value=amounts, ratios=share_maps)
def test_more_revenue_never_needs_fewer_units_at_any_stage(
    revenue: Fraction, more: Fraction, deal_value: Fraction, ratios: dict[str, Fraction]
) -> None:
    low, high = reverse(revenue, deal_value, ratios), reverse(revenue + more, deal_value, ratios)
    for step in STEPS:
        fewer, more_units = low[step], high[step]
        assert fewer is not None
        assert more_units is not None
        assert fewer <= more_units


@given(revenue=amounts, deal_value=amounts, ratios=share_maps)
def test_each_stage_is_the_fewest_whole_units_that_still_give_the_stage_below(
    revenue: Fraction, deal_value: Fraction, ratios: dict[str, Fraction]
) -> None:
    units = reverse(revenue, deal_value, ratios)
    customers = units["customers"]
    assert customers is not None
    assert customers * deal_value >= revenue > (customers - 1) * deal_value
    for below, step in pairwise(STEPS):
        have, need, share = units[step], units[below], ratios[SHARE_OF[step]]
        assert have is not None
        assert need is not None
        assert have * share >= need > (have - 1) * share


@given(
    customers=st.integers(min_value=1, max_value=10_000),
    deal_value=st.integers(min_value=1, max_value=10**6),
    steps=st.lists(st.integers(min_value=1, max_value=50), min_size=6, max_size=6),
)
def test_a_plan_at_one_in_k_at_each_step_inverted_gives_back_the_goal(
    customers: int, deal_value: int, steps: list[int]
) -> None:
    ratios = {SHARE_OF[step]: Fraction(1, k) for step, k in zip(STEPS[1:], steps, strict=True)}
    units = reverse(Fraction(customers * deal_value), Fraction(deal_value), ratios)
    forward = Fraction(units["visitors"] or 0)
    for step in reversed(STEPS[1:]):
        forward *= ratios[SHARE_OF[step]]  # visitors -> leads -> MQLs -> ... -> customers
    assert forward == customers
    assert forward * deal_value == customers * deal_value  # the revenue goal


@given(month=st.integers(min_value=0, max_value=10**9))
def test_a_week_is_the_month_over_52_12_rounded_up(month: int) -> None:
    week = weekly({"customers": month})["customers"]
    assert week is not None
    assert week * WEEKS_PER_MONTH >= month > (week - 1) * WEEKS_PER_MONTH


def test_measured_is_what_a_plan_reads() -> None:
    measured = measure(report(), load_policy(), "h")
    assert isinstance(measured, Measured)
    assert measured.leads == 3000
    assert (measured.won_known, measured.won_unknown) == (4, 1)
