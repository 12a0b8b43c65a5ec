"""Goals per period, commitments, attainment and the weekly/monthly review (issue 10, items 1, 3-5): pure code."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from leadflow.core.attainment import actuals
from leadflow.core.intake import Origin, decode_visits, is_visits
from leadflow.core.period import period_of, period_starting, previous_of, projection
from leadflow.core.plan import plan
from leadflow.core.report import LeadSummary, Skip
from leadflow.core.review import review
from leadflow.core.targets import response_sla, targets
from leadflow.core.visits import Visits
from leadflow.schemas.policy import PolicyError, load_policy, parse_policy
from leadflow.schemas.state import SlaEntry
from leadflow.schemas.visits import SiteVisits, SiteVisitsData

POLICY = load_policy()
DEFAULT = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)  # a Wednesday
WEEK = period_of("week", NOW, "UTC", NOW)


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def lead(lead_id: str, entered: dict[str, datetime], **fields: object) -> LeadSummary:
    first = min(entered.values())
    return LeadSummary(
        lead_id=lead_id, stage=list(entered)[-1], created_at=first, updated_at=first, entered=entered, **fields
    )  # type: ignore[arg-type]


def visits(day: date, count: int, *, source: str = "google/cpc", hour: int = 23) -> SiteVisits:
    counted = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)
    return SiteVisits(
        event_id=f"v-{day}-{source}-{hour}",
        type="site.visits",
        occurred_at=counted,
        source="ga4",
        data=SiteVisitsData(date=day, traffic_source=source, visits=count),
    )


def with_goals(**changes: object) -> dict[str, object]:
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    goals = document["goals"]
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = goals
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return document


# ---- periods --------------------------------------------------------------------------------------------------


def test_a_week_runs_monday_to_monday_and_a_month_from_its_first_day_in_the_goals_time_zone() -> None:
    assert (WEEK.label, WEEK.start, WEEK.end) == ("2026-W48", at(23, 0), at(30, 0))
    assert WEEK.elapsed == pytest.approx((2 * 24 + 12) / (7 * 24))
    month = period_of("month", NOW, "America/Sao_Paulo", NOW)
    zone = ZoneInfo("America/Sao_Paulo")
    assert (month.label, month.start, month.end) == (
        "2026-11",
        datetime(2026, 11, 1, tzinfo=zone),
        datetime(2026, 12, 1, tzinfo=zone),
    )
    # Sunday 23:00 in Sao Paulo is already Monday in UTC: the local week is still the one before.
    sunday_night = datetime(2026, 11, 30, 1, tzinfo=UTC)
    assert period_of("week", sunday_night, "America/Sao_Paulo", sunday_night).label == "2026-W48"


def test_elapsed_time_is_real_time_across_a_daylight_saving_change() -> None:
    zone = "America/New_York"  # 2026-11-01: clocks go back, the day has 25 hours
    noon_on_the_second = datetime(2026, 11, 2, 12, tzinfo=ZoneInfo(zone))
    month = period_of("month", noon_on_the_second, zone, noon_on_the_second)
    assert month.elapsed == pytest.approx((24 + 25 + 12 - 24) / (30 * 24 + 1))


def test_past_periods_are_complete_and_the_previous_one_comes_right_before() -> None:
    last = previous_of(WEEK, NOW)
    assert (last.label, last.end, last.elapsed, last.as_of) == ("2026-W47", WEEK.start, 1.0, WEEK.start)
    december = previous_of(period_starting("month", date(2027, 1, 1), "UTC", NOW), NOW)
    assert (december.label, december.elapsed) == ("2026-12", 0.0)  # not begun at NOW
    assert previous_of(period_of("month", NOW, "UTC", NOW), NOW).label == "2026-10"


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0.01, max_value=1))
def test_the_projection_is_the_run_rate_and_equals_the_actual_at_the_end(actual: float, elapsed: float) -> None:
    assert projection(actual, elapsed) == pytest.approx(actual / elapsed)
    assert projection(actual, 1.0) == actual
    assert projection(actual, 0.0) == actual


# ---- targets and commitments ----------------------------------------------------------------------------------


def test_targets_come_from_the_plan_per_month_and_per_week() -> None:
    the_plan = plan(POLICY)
    month, week = targets(POLICY, "month"), targets(POLICY, "week")
    assert {
        m: month[m] for m in ("visitors", "leads", "mqls", "qualification_calls", "sqls", "proposals", "customers")
    } == {
        "visitors": 75_000,
        "leads": 25_000,
        "mqls": 5_000,
        "qualification_calls": 300,
        "sqls": 100,
        "proposals": 50,
        "customers": 10,
    }
    assert week["mqls"] == the_plan.week["mqls"] == math.ceil(5000 * 12 / 52)
    assert month["revenue"] == 120_000
    assert week["revenue"] == pytest.approx(120_000 * 12 / 52)
    assert month["contact_attempts"] == 300 * 6
    assert week["contact_attempts"] == math.ceil(300 * 12 / 52) * 6
    assert month["mql_acceptance_rate"] == week["mql_acceptance_rate"] == 300 / 5000
    assert (month["response_compliance"], month["follow_up_depth"]) == (0.9, 6)


def test_commitments_stated_per_week_override_the_plan_and_give_the_month() -> None:
    policy = parse_policy(
        with_goals(
            commitments__marketing__mqls_per_week=300,
            commitments__marketing__acceptance_rate="70%",
            commitments__sales__contact_attempts_per_week=1000,
            commitments__sales__response_compliance=0.95,
            commitments__sales__follow_up_depth=4,
        )
    )
    week, month = targets(policy, "week"), targets(policy, "month")
    assert (week["mqls"], month["mqls"]) == (300, math.ceil(300 * 52 / 12))
    assert (week["contact_attempts"], month["contact_attempts"]) == (1000, math.ceil(1000 * 52 / 12))
    assert (week["mql_acceptance_rate"], week["response_compliance"], week["follow_up_depth"]) == (0.7, 0.95, 4)
    assert week["customers"] == targets(POLICY, "week")["customers"], "the funnel targets still come from the plan"


def test_without_a_deal_value_only_the_stated_commitments_are_targets() -> None:
    document = with_goals(commitments__marketing__mqls_per_week=50)
    del document["goals"]["average_deal_value"]  # type: ignore[index]
    assert targets(parse_policy(document), "week") == {"mqls": 50, "response_compliance": 0.9}


def test_the_response_sla_is_the_first_met_by_a_contact_attempt_unless_the_policy_names_one() -> None:
    assert (sla := response_sla(POLICY)) is not None
    assert sla.name == "first_contact"
    named = parse_policy(with_goals(commitments__sales__response_sla="mql_acceptance"))
    assert (sla := response_sla(named)) is not None
    assert sla.name == "mql_acceptance"
    with pytest.raises(PolicyError, match=r"goals.commitments.sales.response_sla: 'nope' is not an SLA; name one of: "):
        parse_policy(with_goals(commitments__sales__response_sla="nope"))


def test_a_goals_time_zone_must_be_an_iana_zone() -> None:
    with pytest.raises(PolicyError, match=r"goals: .*timezone 'Mars/Olympus' is not an IANA time zone"):
        parse_policy(with_goals(timezone="Mars/Olympus"))


def test_the_fingerprint_names_the_content_of_the_policy() -> None:
    same = parse_policy(yaml.safe_load(Path("schemas/default_policy.yaml").read_text()))
    assert same.fingerprint == POLICY.fingerprint
    assert len(POLICY.fingerprint) == 16
    assert parse_policy(with_goals(timezone="America/Sao_Paulo")).fingerprint != POLICY.fingerprint


# ---- attainment -----------------------------------------------------------------------------------------------


def sla(kind: str, day: int, name: str = "first_contact", **fields: object) -> SlaEntry:
    return SlaEntry(sla=name, kind=kind, at=at(day), **fields)  # type: ignore[arg-type]


LEADS = [
    # In the week: created, MQL, accepted, contacted twice, first contact met in time.
    lead(
        "a",
        {"lead": at(23), "mql": at(23, 11), "sal": at(24)},
        contacts=(at(24), at(25)),
        sla=(
            sla("started", 23),
            sla("met", 24, used_s=600.0, owner_id="rep-1", team="latam"),
            # It went on to SQL: its contact cadence was cancelled, not ended; no follow-up depth to judge.
            sla("cancelled", 25, name="contact_attempts"),
        ),
    ),
    # MQL the week before, rejected in the week; its first contact breached then was met late; its follow-up
    # ended short of the six attempts (breached) with two, and a third attempt came after that.
    lead(
        "b",
        {"lead": at(16), "mql": at(17)},
        rejections=("not_icp",),
        rejected_at=(at(24),),
        contacts=(at(18), at(23), at(25)),
        sla=(
            sla("breached", 23, owner_id="rep-2", team="latam"),
            sla("late", 24, used_s=9000.0, owner_id="rep-2", team="latam"),
            sla("breached", 24, name="contact_attempts", owner_id="rep-2", team="latam"),
        ),
    ),
    # Won in the week (a skipped stage), and a win of unknown amount.
    lead(
        "c",
        {"lead": at(2), "mql": at(3), "customer": at(25)},
        won=True,
        won_at=at(25),
        won_amount=12_000.0,
        skips=(Skip(from_stage="mql", to_stage="customer", skipped=("sal", "sql", "opportunity"), at=at(25)),),
    ),
    lead("d", {"lead": at(2), "customer": at(24)}, won=True, won_at=at(24), won_amount=None),
    # After the figures' instant (as_of): not counted yet.
    lead("e", {"lead": at(27)}),
]


def test_actuals_count_what_happened_inside_the_period() -> None:
    reports = [visits(date(2026, 11, 23), 900), visits(date(2026, 11, 22), 5000)]
    counts = actuals(LEADS, reports, POLICY, WEEK)
    assert counts == {
        "visitors": 900,
        "leads": 1,
        "mqls": 1,
        "qualification_calls": 1,
        "sqls": 0,
        "proposals": 0,
        "customers": 2,
        "revenue": 12_000,
        "contact_attempts": 4,
        "followed_up_leads": 1,
        "follow_up_attempts": 2,
        "mqls_accepted": 1,
        "mqls_rejected": 1,
        "responses": 2,
        "responses_in_time": 1,
    }
    last_week = actuals(LEADS, reports, POLICY, previous_of(WEEK, NOW))
    assert (last_week["leads"], last_week["mqls"], last_week["contact_attempts"], last_week["visitors"]) == (
        1,
        1,
        1,
        5000,
    )


def test_the_newest_visits_report_of_a_day_replaces_the_older_ones() -> None:
    day = date(2026, 11, 23)
    kept = Visits()
    for report in (
        visits(day, 300, hour=12),
        visits(day, 900, hour=23),
        visits(day, 500, hour=18),
        visits(day, 40, source="x"),
    ):
        kept.add(report)
    assert sorted(r.data.visits for r in kept.days.values()) == [40, 900]


def test_a_visits_report_is_told_apart_from_lead_events_and_bad_fields_are_named() -> None:
    good = visits(date(2026, 11, 23), 10).model_dump_json().encode()
    assert is_visits(good)
    assert not is_visits(b'{"type": "activity", "note": "site.visits"}')
    origin = Origin(b"k", good.replace(b'"visits":10', b'"visits":-1'), "leads.visits", 0, 7, NOW)
    letter = decode_visits(origin)
    assert not isinstance(letter, SiteVisits)
    assert letter.errors == ("data.visits: must be greater than or equal to 0",)
    assert isinstance(decode_visits(Origin(b"k", good, "leads.visits", 0, 8, NOW)), SiteVisits)


# ---- the review -----------------------------------------------------------------------------------------------


def test_the_review_puts_goals_commitments_slas_reasons_and_changes_together() -> None:
    result = review(LEADS, [visits(date(2026, 11, 23), 900)], POLICY, "week", NOW)
    assert result.period == WEEK
    assert result.previous.label == "2026-W47"
    assert (result.policy.name, result.policy.version, result.policy.fingerprint) == ("default", 1, POLICY.fingerprint)
    goals = {g.measure: g for g in result.goals}
    assert goals["customers"].actual == 2
    assert goals["customers"].projection == pytest.approx(2 / WEEK.elapsed)
    assert goals["revenue"].attainment == pytest.approx(12_000 / (120_000 * 12 / 52))
    assert result.bottleneck == "sqls"  # no SQL, no proposal: sqls is the first stage at 0 of its plan
    kept = {(c.team, c.name): (c.actual, c.kept) for c in result.commitments}
    assert kept[("marketing", "mql_acceptance_rate")] == (0.5, True)
    assert kept[("sales", "response_compliance")] == (0.5, False)
    assert kept[("sales", "follow_up_depth")] == (2.0, False)
    assert kept[("marketing", "mqls")][1] is False
    lines = {(s.sla, s.scope, s.key): (s.met, s.late, s.breached, s.compliance) for s in result.sla}
    assert lines[("first_contact", "sla", "first_contact")] == (1, 1, 1, 0.5)
    assert lines[("first_contact", "rep", "rep-2")] == (0, 1, 1, 0.0)
    assert lines[("first_contact", "team", "latam")] == (1, 1, 1, 0.5)
    [response] = [r for r in result.response_times if r.sla == "first_contact"]
    assert (response.used_s, response.allowance_s, response.within) == ((600.0, 9000.0), 7200.0, 0.5)
    assert (result.rejections, result.lost, result.skips) == ({"not_icp": 1}, {}, {"mql->customer": 1})
    changes = {c.measure: (c.previous, c.current) for c in result.changes}
    assert changes["leads"] == (1, 1)
    assert changes["customers"] == (0, 2)


def test_a_review_from_a_given_day_covers_that_whole_period() -> None:
    result = review(LEADS, [], POLICY, "month", NOW, start=date(2026, 10, 15))
    assert (result.period.label, result.period.elapsed) == ("2026-10", 1.0)
    assert all(g.actual == 0 for g in result.goals)
    assert result.bottleneck is not None
    assert result.bottleneck != "visitors", "no visits report: visitors are unknown, not behind"


def test_a_visits_report_over_the_workers_size_limit_is_dead_lettered() -> None:
    """decode_visits applies the limit the worker gives it (LEADFLOW_MAX_EVENT_BYTES), as decode does for events."""
    good = visits(date(2026, 11, 23), 10).model_dump_json().encode()
    origin = Origin(b"k", good, "leads.visits", 0, 9, NOW)
    assert isinstance(decode_visits(origin), SiteVisits)
    assert isinstance(decode_visits(origin, max_bytes=len(good)), SiteVisits)
    letter = decode_visits(origin, max_bytes=len(good) - 1)
    assert not isinstance(letter, SiteVisits)
    assert "too large" in letter.errors[0]
