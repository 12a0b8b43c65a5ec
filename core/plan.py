"""The reverse funnel: from a revenue goal to the units each stage needs, per month and per week (GUIDE section 1).

revenue goal / average deal value = customers; every stage above needs the units of the stage below divided by
its conversion share: proposals = customers / proposal_to_customer, SQLs = proposals / sql_to_proposal, then
qualification calls, MQLs, leads and visitors (`goals.conversion`, one share per step). The worked example from
practice: at 1/5, 1/2, 1/3, 3/50, 1/5 and 1/3, 1 customer = 5 proposals = 10 SQLs = 30 qualification calls =
500 MQLs = 2,500 leads = 7,500 visitors.

- **Whole units, rounded up at each stage**: customers = ceil(revenue / deal value), then each stage =
  ceil(units of the stage below, already whole / its share). Half a proposal cannot be sent, and rounding down
  anywhere would plan less than the goal. Each stage is the fewest whole units that, at its share, still give
  the stage below (one unit fewer would not).
- **Exact arithmetic**: shares and amounts are `Fraction`s of what the policy says (0.06 is 3/50, "1/3" a third),
  so 1 customer at 1/5 needs 5 proposals, never 5.000000000000001 rounded up to 6.
- **Month, then week**: the plan is made for a month (the month goal, or a third of the quarter's). A week is
  the month spread over 52/12 weeks (52 weeks a year, 12 months): every weekly figure is its monthly figure /
  (52/12), rounded up: the pace that meets the month. Weekly figures are not a funnel of their own.
- **Lines**: with `goals.lines`, each pipeline or product line is planned with its own revenue, deal value and
  shares (what it leaves unset comes from the goals section); the total is the sum of the lines' months.
- **Capacity**: qualified leads = the qualification calls (or customers x `qualified_leads_per_sale`), contacts =
  qualified leads x `contacts_per_qualified_lead` (attempts), rep-hours = contacts / `contacts_per_hour`, reps =
  ceil(a week's rep-hours / `hours_per_week`). 100 customers at 6 qualified leads per sale = 600 qualified
  leads; at 4 contacts an hour, 150 rep-hours. A week's contacts are the week's qualified leads x the attempts
  (so a week's capacity holds on its own), contacts rounded up to whole attempts.
- **Costs** (the ROI simulator): on the month, cost per lead = spend / leads, per MQL = spend / MQLs, per
  customer (CAC) = spend / customers, marketing ROI = revenue goal / spend - 1; spend is `marketing_spend` or
  `cost_per_lead` x the planned leads.
- **Measured figures**: `measure` reads a funnel report (core.report, e.g. of a replayed history): each share is
  the report's `conversion` between the lifecycle stages `goals.stages` names (the product of the pairs in
  between), the deal value its won amount / won deals with an amount. `plan` uses a measured figure instead of
  the policy's, and falls back to the policy's where the history cannot measure it; every figure says which.

Pure: policy and report in, plan out; `plan_document` (JSON-ready) and `plan_tables` (text cells) lay it out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Final, Literal

from leadflow.schemas.policy import Conversion, Goals, GoalStages, PeriodAmount, Policy, ProductLine, SalesCapacity

WEEKS_PER_MONTH: Final = Fraction(52, 12)

# The reverse funnel, from the goal up: each stage's units come from the stage before it in this tuple.
STEPS: Final = ("customers", "proposals", "sqls", "qualification_calls", "mqls", "leads", "visitors")
LABELS: Final = {
    "customers": "customers",
    "proposals": "proposals",
    "sqls": "SQLs",
    "qualification_calls": "qualification calls",
    "mqls": "MQLs",
    "leads": "leads",
    "visitors": "visitors",
}
# The share (a field of goals.conversion) that turns a stage's units into those of the stage below it.
SHARE_OF: Final = {
    "proposals": "proposal_to_customer",
    "sqls": "sql_to_proposal",
    "qualification_calls": "qualification_call_to_sql",
    "mqls": "mql_to_qualification_call",
    "leads": "lead_to_mql",
    "visitors": "visitor_to_lead",
}
NOT_MEASURED: Final = "visitor_to_lead"  # visits are not in the event history
ROUNDING: Final = (
    "whole units, rounded up at each stage: customers = ceil(revenue / deal value), then each stage = ceil(the "
    "stage below / its share); a week is a month / (52/12), each figure rounded up"
)

Source = Literal["given", "measured"]
Units = dict[str, int | None]  # stage -> units needed (None: not planned, e.g. visitors without visitor_to_lead)


class PlanError(ValueError):
    """A plan that cannot be made; the message is one line that says what to change."""


@dataclass(frozen=True)
class Figure:
    """An input of the plan and where it came from: `origin` is the policy field, or what history measured."""

    value: Fraction
    source: Source
    origin: str


@dataclass(frozen=True)
class MeasuredShare:
    """A share measured from a funnel report: the product of its `conversion` pairs from `first` to `then`."""

    share: Fraction | None  # None: not measurable (a pair is missing: nobody reached its first stage)
    first: str
    then: str
    pairs: tuple[str, ...]
    base: int  # leads that reached `first`

    @property
    def origin(self) -> str:
        return f"{self.first}->{self.then} over {self.base:,} leads"


@dataclass(frozen=True)
class Measured:
    """What a history says: the shares it can measure and the average won amount."""

    history: str
    leads: int
    shares: Mapping[str, MeasuredShare]
    deal_value: Fraction | None  # None: no won deal with a known, positive amount
    won_known: int
    won_unknown: int


@dataclass(frozen=True)
class FunnelPlan:
    """One funnel (the whole goal, or one line): its inputs with their origin, and the units per period."""

    name: str | None
    revenue: Figure  # per month
    deal_value: Figure
    shares: Mapping[str, Figure | None]  # conversion field -> share; None: not planned (visitor_to_lead unset)
    month: Units
    week: Units


@dataclass(frozen=True)
class CapacityPlan:
    """The sales work the plan implies, per month and per week (qualified_leads, contacts, rep_hours)."""

    inputs: SalesCapacity
    basis: Literal["qualification_calls", "qualified_leads_per_sale"]
    month: Mapping[str, Fraction]
    week: Mapping[str, Fraction]
    reps: int


@dataclass(frozen=True)
class CostPlan:
    """The ROI simulator: spend per period and what each unit costs, on the month."""

    basis: Literal["marketing_spend", "cost_per_lead"]
    origin: str
    spend_month: Fraction
    spend_week: Fraction
    cost_per_lead: Fraction
    cost_per_mql: Fraction
    cac: Fraction
    roi: Fraction


@dataclass(frozen=True)
class Plan:
    policy: str
    version: int
    currency: str | None
    funnels: tuple[FunnelPlan, ...]  # one, or one per line
    lines: bool
    revenue_month: Fraction
    month: Units  # the total (the sum of the lines' months)
    week: Units
    capacity: CapacityPlan | None
    costs: CostPlan | None
    measured: Measured | None

    @property
    def revenue_week(self) -> Fraction:
        return self.revenue_month / WEEKS_PER_MONTH


# ---- the arithmetic ----------------------------------------------------------------------------------------


def reverse(revenue: Fraction, deal_value: Fraction, shares: Mapping[str, Fraction | None]) -> Units:
    """Units needed at each stage in one period: customers = ceil(revenue / deal value), then each stage =
    ceil(the stage below / its share); a stage without a share, and every stage above it, is not planned."""
    if revenue <= 0 or deal_value <= 0:
        raise PlanError("the revenue goal and the average deal value must be greater than 0")
    units: Units = {"customers": math.ceil(revenue / deal_value)}
    below: int | None = units["customers"]
    for step in STEPS[1:]:
        share = shares.get(SHARE_OF[step])
        if share is not None and share <= 0:
            raise PlanError(f"{SHARE_OF[step]}: a share of 0 plans no way through {LABELS[step]}")
        below = math.ceil(below / share) if below is not None and share is not None else None
        units[step] = below
    return units


def per_week(month: Fraction | int) -> Fraction:
    """A monthly figure spread over 52/12 weeks (exact; callers round units up)."""
    return Fraction(month) / WEEKS_PER_MONTH


def weekly(units: Units) -> Units:
    return {step: None if n is None else math.ceil(per_week(n)) for step, n in units.items()}


def _sum(months: list[Units]) -> Units:
    total: Units = {}
    for step in STEPS:
        values = [units[step] for units in months]
        total[step] = None if any(v is None for v in values) else sum(v for v in values if v is not None)
    return total


# ---- measuring ---------------------------------------------------------------------------------------------

# conversion field -> (the step whose stage starts it, the step whose stage ends it), via goals.stages
MEASURABLE: Final = {
    "lead_to_mql": ("leads", "mqls"),
    "mql_to_qualification_call": ("mqls", "qualification_calls"),
    "qualification_call_to_sql": ("qualification_calls", "sqls"),
    "sql_to_proposal": ("sqls", "proposals"),
    "proposal_to_customer": ("proposals", "customers"),
}


def _exact(value: object) -> Fraction:
    """A report's number as the decimal it prints (0.2 is 1/5), not its binary double."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"the funnel report holds {value!r} where a number belongs")
    return Fraction(str(value))


def measure(report: Mapping[str, Any], policy: Policy, history: str) -> Measured:
    """The shares and the average deal value a funnel report (`core.report.funnel_report`) measures.

    A share between two stages of `goals.stages` is the product of the report's `conversion` pairs of
    consecutive lifecycle stages between them (unmeasurable when one is missing: nobody reached its first
    stage). The deal value is the known won amount / won deals with an amount (won deals without one are left
    out of it)."""
    stages = policy.goals.stages if policy.goals is not None else GoalStages()
    funnel = policy.lifecycle.stages
    conversion: Mapping[str, Any] = report.get("conversion", {})
    reached: Mapping[str, Any] = report.get("reached", {})
    shares: dict[str, MeasuredShare] = {}
    for field, (lower, upper) in MEASURABLE.items():
        first, then = getattr(stages, lower), getattr(stages, upper)
        chain = funnel[funnel.index(first) : funnel.index(then) + 1]
        pairs = tuple(f"{a}->{b}" for a, b in pairwise(chain))
        measurable = all(pair in conversion for pair in pairs)
        share = math.prod((_exact(conversion[pair]) for pair in pairs), start=Fraction(1)) if measurable else None
        shares[field] = MeasuredShare(share, first, then, pairs, int(reached.get(first, 0)))
    revenue: Mapping[str, Any] = report.get("revenue", {})
    won_known = int(revenue.get("won_known", 0))
    amount = _exact(revenue.get("amount", 0))
    deal_value = amount / won_known if won_known and amount > 0 else None
    return Measured(
        history=history,
        leads=int(report.get("leads", 0)),
        shares=shares,
        deal_value=deal_value,
        won_known=won_known,
        won_unknown=int(revenue.get("won_unknown_amount", 0)),
    )


# ---- resolving the inputs ----------------------------------------------------------------------------------


def _revenue(goal: PeriodAmount, path: str) -> Figure:
    if goal.month is not None:
        return Figure(goal.exact_month, "given", f"{path}.month")
    return Figure(goal.exact_month, "given", f"{path}.quarter / 3")


def _deal_value(line: Fraction | None, line_path: str, goals: Goals, measured: Measured | None) -> Figure:
    if line is not None:
        return Figure(line, "given", line_path)
    if measured is not None and measured.deal_value is not None:
        origin = f"{measured.won_known:,} won deals with an amount"
        return Figure(measured.deal_value, "measured", origin)
    if goals.average_deal_value is not None:
        origin = "goals.average_deal_value"
        if measured is not None:
            origin += " (the history has no won deal with an amount)"
        return Figure(Fraction(str(goals.average_deal_value)), "given", origin)
    if measured is not None:
        raise PlanError(
            f"--from-history {measured.history}: no won deal with a known amount ({measured.won_unknown:,} won "
            "without one): the average deal value cannot be measured; give goals.average_deal_value in the policy"
        )
    raise PlanError(
        "goals.average_deal_value is not given: give it (the revenue of one won deal, e.g. 12000), or measure it "
        "from won amounts with --from-history EVENTS.jsonl"
    )


def _share(field: str, line: Conversion | None, line_path: str, goals: Goals, measured: Measured | None) -> Figure:
    """The share of one step: the line's own, else the measured one, else the goals section's."""
    own = getattr(line, field) if line is not None else None
    if own is not None:
        return Figure(own, "given", f"{line_path}.{field}")
    found = measured.shares.get(field) if measured is not None else None
    if measured is not None and found is not None and found.share is not None:
        if found.share == 0:
            raise PlanError(
                f"--from-history {measured.history}: {field} measured 0 ({found.first}->{found.then}: none of "
                f"the {found.base:,} leads that reached {found.first} reached {found.then}): no goal can be planned "
                "through a step nobody passes; replay a longer history, or plan from the policy without --from-history"
            )
        return Figure(found.share, "measured", found.origin)
    given = getattr(goals.conversion, field)
    if given is not None:
        origin = f"goals.conversion.{field}"
        if found is not None:
            origin += f" (the history cannot measure it: no lead reached {found.first})"
        return Figure(given, "given", origin)
    if found is not None:
        raise PlanError(
            f"goals.conversion.{field} is not given and the history cannot measure it (no lead reached "
            f"{found.first}): give it in the policy as a share, e.g. 0.2, 1/5 or 20%"
        )
    raise PlanError(
        f"goals.conversion.{field} is not given: give it as a share (e.g. 0.2, 1/5 or 20%), or measure it with "
        "--from-history EVENTS.jsonl"
    )


def _funnel(
    name: str | None, goal: PeriodAmount, line: ProductLine | None, goals: Goals, m: Measured | None
) -> FunnelPlan:
    """One funnel: the whole goal (no line), or one line with what it sets itself."""
    path = f"goals.lines.{name}" if name is not None else "goals"
    own = line.conversion if line is not None else None
    own_deal = line.average_deal_value if line is not None else None
    revenue = _revenue(goal, f"{path}.revenue")
    deal = _deal_value(
        Fraction(str(own_deal)) if own_deal is not None else None, f"{path}.average_deal_value", goals, m
    )
    shares: dict[str, Figure | None] = {}
    for step in STEPS[1:]:
        field = SHARE_OF[step]
        given = [getattr(conversion, field) for conversion in (goals.conversion, own) if conversion is not None]
        if field == NOT_MEASURED and all(share is None for share in given):
            shares[field] = None  # visitors are not planned without visitor_to_lead
            continue
        shares[field] = _share(field, own, f"{path}.conversion", goals, m)
    month = reverse(revenue.value, deal.value, {field: f.value if f else None for field, f in shares.items()})
    return FunnelPlan(name, revenue, deal, shares, month, weekly(month))


def _capacity(inputs: SalesCapacity, month: Units) -> CapacityPlan:
    customers, calls = month["customers"] or 0, month["qualification_calls"] or 0
    if inputs.qualified_leads_per_sale is not None:
        basis: Literal["qualification_calls", "qualified_leads_per_sale"] = "qualified_leads_per_sale"
        qualified = math.ceil(customers * Fraction(str(inputs.qualified_leads_per_sale)))
    else:
        basis, qualified = "qualification_calls", calls
    attempts, per_hour = Fraction(str(inputs.contacts_per_qualified_lead)), Fraction(str(inputs.contacts_per_hour))
    contacts = math.ceil(qualified * attempts)
    # A week: its qualified leads are the month's spread (rounded up), and its contacts follow from them, so the
    # week's capacity holds on its own (its contacts are its qualified leads x the attempts).
    week_qualified = math.ceil(per_week(qualified))
    week_contacts = math.ceil(week_qualified * attempts)
    rows_month = {
        "qualified_leads": Fraction(qualified),
        "contacts": Fraction(contacts),
        "rep_hours": contacts / per_hour,
    }
    rows_week = {
        "qualified_leads": Fraction(week_qualified),
        "contacts": Fraction(week_contacts),
        "rep_hours": week_contacts / per_hour,
    }
    reps = math.ceil(rows_week["rep_hours"] / Fraction(str(inputs.hours_per_week)))
    return CapacityPlan(inputs, basis, rows_month, rows_week, reps)


def _costs(goals: Goals, revenue_month: Fraction, month: Units) -> CostPlan | None:
    costs = goals.costs
    if costs is None:
        return None
    leads, mqls, customers = month["leads"] or 0, month["mqls"] or 0, month["customers"] or 0
    if costs.marketing_spend is not None:
        spend = costs.marketing_spend.exact_month
        basis: Literal["marketing_spend", "cost_per_lead"] = "marketing_spend"
        period = "month" if costs.marketing_spend.month is not None else "quarter / 3"
        origin = f"goals.costs.marketing_spend.{period}"
    else:
        spend = Fraction(str(costs.cost_per_lead)) * leads
        basis, origin = "cost_per_lead", "goals.costs.cost_per_lead x leads"
    return CostPlan(
        basis=basis,
        origin=origin,
        spend_month=spend,
        spend_week=per_week(spend),
        cost_per_lead=spend / leads,
        cost_per_mql=spend / mqls,
        cac=spend / customers,
        roi=revenue_month / spend - 1,
    )


def plan(policy: Policy, measured: Measured | None = None) -> Plan:
    """The reverse funnel of the policy's goals (with the figures `measured` from a history, when given)."""
    goals = policy.goals
    if goals is None:
        raise PlanError("the policy has no goals section: add one (see goals in the shipped default policy)")
    if goals.lines:
        funnels = tuple(_funnel(name, line.revenue, line, goals, measured) for name, line in goals.lines.items())
    else:
        assert goals.revenue is not None  # Goals validates: revenue, or lines
        funnels = (_funnel(None, goals.revenue, None, goals, measured),)
    month = _sum([f.month for f in funnels])
    revenue_month = sum((f.revenue.value for f in funnels), Fraction(0))
    return Plan(
        policy=policy.name,
        version=policy.version,
        currency=goals.currency,
        funnels=funnels,
        lines=bool(goals.lines),
        revenue_month=revenue_month,
        month=month,
        week=weekly(month),
        capacity=_capacity(goals.capacity, month) if goals.capacity is not None else None,
        costs=_costs(goals, revenue_month, month),
        measured=measured,
    )


# ---- laying it out -----------------------------------------------------------------------------------------


def _money(value: Fraction) -> float:
    return round(float(value), 2)


def _hours(value: Fraction) -> float:
    """Rep-hours rounded up to the hundredth: capacity is never understated."""
    return math.ceil(value * 100) / 100


def _figure(figure: Figure) -> dict[str, Any]:
    return {"value": _money(figure.value), "source": figure.source, "from": figure.origin}


def _share_document(figure: Figure | None) -> dict[str, Any] | None:
    if figure is None:
        return None
    return {
        "share": round(float(figure.value), 6),
        "fraction": str(figure.value),
        "source": figure.source,
        "from": figure.origin,
    }


def _funnel_document(funnel: FunnelPlan) -> dict[str, Any]:
    return {
        "revenue": {"month": _money(funnel.revenue.value), "week": _money(per_week(funnel.revenue.value))},
        "revenue_from": funnel.revenue.origin,
        "average_deal_value": _figure(funnel.deal_value),
        "shares": {field: _share_document(funnel.shares[field]) for field in SHARE_OF.values()},
        "funnel": {"month": dict(funnel.month), "week": dict(funnel.week)},
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (what `leadflow plan --json` prints)."""
    document: dict[str, Any] = {
        "policy": {"name": plan.policy, "version": plan.version},
        "currency": plan.currency,
        "weeks_per_month": round(float(WEEKS_PER_MONTH), 6),
        "rounding": ROUNDING,
        "history": None,
        "revenue": {"month": _money(plan.revenue_month), "week": _money(plan.revenue_week)},
        "funnel": {"month": dict(plan.month), "week": dict(plan.week)},
    }
    if plan.measured is not None:
        m = plan.measured
        document["history"] = {
            "file": m.history,
            "leads": m.leads,
            "won_known": m.won_known,
            "won_unknown_amount": m.won_unknown,
            "average_deal_value": _money(m.deal_value) if m.deal_value is not None else None,
            "shares": {
                field: {
                    "share": round(float(s.share), 6) if s.share is not None else None,
                    "pairs": list(s.pairs),
                    "base": s.base,
                }
                for field, s in m.shares.items()
            },
        }
    if plan.lines:
        document["lines"] = {f.name: _funnel_document(f) for f in plan.funnels}
    else:
        (single,) = plan.funnels
        detail = _funnel_document(single)
        document["revenue_from"] = detail["revenue_from"]
        document["average_deal_value"] = detail["average_deal_value"]
        document["shares"] = detail["shares"]
    document["capacity"] = None
    if plan.capacity is not None:
        c = plan.capacity
        document["capacity"] = {
            "inputs": c.inputs.model_dump(mode="json"),
            "qualified_leads_from": c.basis,
            "month": _capacity_row(c.month),
            "week": _capacity_row(c.week),
            "reps_needed": c.reps,
        }
    document["costs"] = None
    if plan.costs is not None:
        k = plan.costs
        document["costs"] = {
            "spend_from": k.origin,
            "marketing_spend": {"month": _money(k.spend_month), "week": _money(k.spend_week)},
            "cost_per_lead": _money(k.cost_per_lead),
            "cost_per_mql": _money(k.cost_per_mql),
            "cac": _money(k.cac),
            "roi": round(float(k.roi), 4),
        }
    return document


def _capacity_row(row: Mapping[str, Fraction]) -> dict[str, float | int]:
    return {
        "qualified_leads": int(row["qualified_leads"]),
        "contacts": int(row["contacts"]),
        "rep_hours": _hours(row["rep_hours"]),
    }


@dataclass(frozen=True)
class TextTable:
    """A table as text cells, for a terminal (rich) or plain text: the first column is a label, the next two
    numbers (per month, per week), the rest words."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def count_text(n: int | Fraction | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def money_text(value: Fraction) -> str:
    return f"{int(value):,}" if value.denominator == 1 else f"{float(value):,.2f}"


def share_text(share: Fraction) -> str:
    """20% (1 in 5); 33.33% (1 in 3); 12.34% for a share without a small denominator."""
    percent = share * 100
    text = f"{int(percent)}%" if percent.denominator == 1 else f"{float(percent):.2f}%"
    return f"{text} ({share.numerator:,} in {share.denominator:,})" if share.denominator <= 100 else text


def _origin_text(figure: Figure) -> str:
    return f"{figure.source}: {figure.origin}"


def _funnel_rows(funnel: FunnelPlan, currency: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            f"revenue{currency}",
            money_text(funnel.revenue.value),
            f"{float(per_week(funnel.revenue.value)):,.2f}",
            "",
            _origin_text(funnel.revenue),
        ),
        (
            "customers",
            count_text(funnel.month["customers"]),
            count_text(funnel.week["customers"]),
            f"revenue / {money_text(funnel.deal_value.value)} a deal",
            _origin_text(funnel.deal_value),
        ),
    ]
    for below, step in pairwise(STEPS):
        figure = funnel.shares[SHARE_OF[step]]
        how = f"{share_text(figure.value)} reach {LABELS[below]}" if figure else "-"
        origin = _origin_text(figure) if figure else f"not planned: give goals.conversion.{SHARE_OF[step]}"
        rows.append((LABELS[step], count_text(funnel.month[step]), count_text(funnel.week[step]), how, origin))
    return rows


def plan_tables(plan: Plan) -> list[TextTable]:
    """The plan as tables: the reverse funnel (the total, then each line), the capacity, the costs."""
    currency = f" ({plan.currency})" if plan.currency else ""
    columns = ("stage", "per month", "per week", "conversion", "figure")
    notes = [
        f"weeks per month: 52/12 = {float(WEEKS_PER_MONTH):.2f}; a weekly figure is the monthly one / (52/12), "
        "rounded up: the pace that meets the month",
        "whole units, rounded up at each stage: customers = ceil(revenue / deal value), then each stage = "
        "ceil(the stage below / its share)",
    ]
    if plan.measured is not None:
        m = plan.measured
        notes.append(
            f"measured from {m.history}: {m.leads:,} leads, {m.won_known:,} won deals with an amount "
            f"({m.won_unknown:,} without); measured figures replace the policy's, given ones are those the "
            "history cannot measure (or a line's own)"
        )
    title = f"reverse funnel: policy {plan.policy} v{plan.version}"
    tables: list[TextTable] = []
    if plan.lines:
        total = [
            (f"revenue{currency}", money_text(plan.revenue_month), f"{float(plan.revenue_week):,.2f}", "", "lines")
        ]
        total += [
            (LABELS[step], count_text(plan.month[step]), count_text(plan.week[step]), "", "sum of the lines")
            for step in STEPS
        ]
        tables.append(TextTable(f"{title}, all lines", columns, tuple(total), tuple(notes)))
        tables += [TextTable(f"line {f.name}", columns, tuple(_funnel_rows(f, currency))) for f in plan.funnels]
    else:
        tables.append(TextTable(title, columns, tuple(_funnel_rows(plan.funnels[0], currency)), tuple(notes)))
    if plan.capacity is not None:
        tables.append(_capacity_table(plan.capacity))
    if plan.costs is not None:
        tables.append(_costs_table(plan.costs, currency))
    return tables


def _number(value: float) -> str:
    return f"{value:,g}" if value != int(value) else f"{int(value):,}"


def _capacity_table(c: CapacityPlan) -> TextTable:
    inputs = c.inputs
    if c.basis == "qualified_leads_per_sale":
        assert inputs.qualified_leads_per_sale is not None
        source = f"customers x {_number(inputs.qualified_leads_per_sale)} qualified leads per sale"
    else:
        source = "the qualification calls"
    rows = (
        ("qualified leads", count_text(c.month["qualified_leads"]), count_text(c.week["qualified_leads"]), source),
        (
            "contacts",
            count_text(c.month["contacts"]),
            count_text(c.week["contacts"]),
            f"qualified leads x {_number(inputs.contacts_per_qualified_lead)} contact attempts",
        ),
        (
            "rep-hours",
            f"{_hours(c.month['rep_hours']):,.2f}",
            f"{_hours(c.week['rep_hours']):,.2f}",
            f"contacts / {_number(inputs.contacts_per_hour)} contacts an hour",
        ),
        ("reps needed", str(c.reps), str(c.reps), f"a week's rep-hours / {_number(inputs.hours_per_week)} h a rep"),
    )
    return TextTable("sales capacity", ("capacity", "per month", "per week", "how"), rows)


def _costs_table(k: CostPlan, currency: str) -> TextTable:
    rows = (
        ("marketing spend", money_text(k.spend_month), f"{float(k.spend_week):,.2f}", f"given: {k.origin}"),
        ("cost per lead", f"{float(k.cost_per_lead):,.2f}", "", "spend / leads"),
        ("cost per MQL", f"{float(k.cost_per_mql):,.2f}", "", "spend / MQLs"),
        ("cost per customer (CAC)", f"{float(k.cac):,.2f}", "", "spend / customers"),
        ("marketing ROI", f"{float(k.roi):.1%}", "", "revenue goal / spend - 1"),
    )
    return TextTable(f"costs{currency}: the ROI simulator", ("cost", "per month", "per week", "how"), rows)
