"""core.report: lead summaries and the funnel report computed from them (GUIDE.md section 3, funnel report JSON).

The fixture is a handful of leads built by hand (history, ledger, open clocks); every figure below was worked
out by hand from it, and the comments next to the expectations say how.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from factories import POLICY, T0, at
from hypothesis import given, settings
from hypothesis import strategies as st
from test_agent import in_partition

from leadflow.core.report import (
    SUMMARY_ADAPTER,
    LeadSummary,
    compare_reports,
    funnel_report,
    month_of,
    origin_of,
    summaries_of,
    summarize,
    week_of,
)
from leadflow.schemas.state import (
    Clock,
    HandOffEntry,
    LeadRecord,
    LeadState,
    Ledger,
    SlaEntry,
    SlaEntryKind,
    StageEntry,
)
from leadflow.streams.cli.report_client import ReportSourceError, fetch_summaries, merged_report
from leadflow.streams.runtime.worker import Worker, read_state

H = 3600.0
D = 86400.0
NOW = at(8 * D)  # Wednesday 2026-12-02 10:00 UTC
LATAM = {"team": "inside_sales", "pool": "latam"}


def entry(stage: str, t: float, reason: str, skipped: tuple[str, ...] = ()) -> StageEntry:
    return StageEntry(stage=stage, entered_at=at(t), event_id=f"e-{stage}-{t:g}", reason=reason, skipped=skipped)


def sla(
    name: str, kind: SlaEntryKind, t: float, owner: str | None, *, team: str | None = None, pool: str | None = None
) -> SlaEntry:
    return SlaEntry(sla=name, kind=kind, at=at(t), owner_id=owner, team=team, pool=pool)


def handoff(t: float, owner: str, team: str | None, pool: str | None, reason: str = "routed") -> HandOffEntry:
    return HandOffEntry(at=at(t), owner_id=owner, team=team, pool=pool, reason=reason)


def clock(name: str, start: float, deadline: float, *, breached: bool = False) -> Clock:
    return Clock(
        sla=name,
        started_at=at(start),
        deadline=at(deadline),
        allowance_s=deadline - start,
        calendar=None,
        breached=breached,
    )


def record(
    lead_id: str,
    history: Sequence[StageEntry],
    *,
    source: str = "hubspot",
    owner: str | None = None,
    team: str | None = None,
    pool: str | None = None,
    ledger_sla: Iterable[SlaEntry] = (),
    handoffs: Iterable[HandOffEntry] = (),
    clocks: Iterable[Clock] = (),
    won_amount: float | None = None,
    merged_into: str | None = None,
) -> LeadRecord:
    last = history[-1]
    state = LeadState(
        lead_id=lead_id,
        stage=last.stage,
        created_at=history[0].entered_at,
        updated_at=last.entered_at,
        stage_entered_at=last.entered_at,
        engagement_as_of=history[0].entered_at,
        owner_id=owner,
        team=team,
        pool=pool,
        won_amount=won_amount,
        merged_into=merged_into,
        history=tuple(history),
        clocks={c.sla: c for c in clocks},
        ledger=Ledger(source=source, sla=tuple(ledger_sla), handoffs=tuple(handoffs)),
    )
    return LeadRecord(lead_id=lead_id, state=state)


MA, FC = "mql_acceptance", "first_contact"

# A: the whole funnel in 3 days, won 1000; mql_acceptance met in time, first_contact met late (breached first).
A = record(
    "A",
    [
        entry("lead", 0, "created"),
        entry("mql", 1 * H, "score"),
        entry("sal", 3 * H, "accepted"),
        entry("sql", 1 * D, "deal:qualified_call"),
        entry("opportunity", 2 * D, "deal:proposal_sent"),
        entry("customer", 3 * D, "won"),
    ],
    owner="rep-04",
    **LATAM,
    ledger_sla=[
        sla(MA, "started", 1 * H, "rep-04", **LATAM),
        sla(MA, "met", 3 * H, "rep-04", **LATAM),
        sla(FC, "started", 3 * H, "rep-04", **LATAM),
        sla(FC, "warning", 4 * H, "rep-04", **LATAM),
        sla(FC, "breached", 5 * H, "rep-04", **LATAM),
        sla(FC, "late", 1 * D, "rep-04", **LATAM),
    ],
    handoffs=[handoff(1 * H, "rep-04", **LATAM)],
    won_amount=1000.0,
)
# B: a hand-raiser won on Sunday 2026-11-29 straight from mql (a fact skipping sal, sql, opportunity), amount
# unknown; its acceptance clock was cancelled.
B = record(
    "B",
    [
        entry("lead", 0, "created"),
        entry("mql", 2 * H, "hand_raiser"),
        entry("customer", 5 * D, "won", skipped=("sal", "sql", "opportunity")),
    ],
    owner="rep-05",
    **LATAM,
    ledger_sla=[sla(MA, "started", 2 * H, "rep-05", **LATAM), sla(MA, "cancelled", 5 * D, "rep-05", **LATAM)],
    handoffs=[handoff(2 * H, "rep-05", **LATAM)],
)
# C: rejected (no_budget) after its acceptance breach by rep-04, re-qualified on Tuesday 2026-12-01 and accepted by
# rep-01 of the enterprise pool.
C = record(
    "C",
    [
        entry("lead", 0, "created"),
        entry("mql", 4 * H, "score"),
        entry("nurturing", 6 * H, "rejected:no_budget"),
        entry("mql", 7 * D, "score"),
        entry("sal", 7 * D + 1 * H, "accepted"),
    ],
    owner="rep-01",
    team="field_sales",
    pool="enterprise",
    ledger_sla=[
        sla(MA, "started", 4 * H, "rep-04", **LATAM),
        sla(MA, "warning", 4.5 * H, "rep-04", **LATAM),
        sla(MA, "breached", 5 * H, "rep-04", **LATAM),
        sla(MA, "escalated", 5 * H, "rep-04", **LATAM),
        sla(MA, "late", 6 * H, "rep-04", **LATAM),
        sla(MA, "started", 7 * D, "rep-01", team="field_sales", pool="enterprise"),
        sla(MA, "met", 7 * D + 1 * H, "rep-01", team="field_sales", pool="enterprise"),
    ],
    handoffs=[handoff(4 * H, "rep-04", **LATAM), handoff(7 * D, "rep-01", team="field_sales", pool="enterprise")],
)
# D: a subscriber converted to lead after a day.
D_ = record("D", [entry("subscriber", 0, "created"), entry("lead", 1 * D, "score")], source="rdstation")
# E and F: MQLs of rep-04's colleague rep-05 since Monday 2026-11-30 (ISO week 49, still November); E's acceptance
# deadline has passed at NOW (the breach is not emitted yet), F's has not.
E = record(
    "E",
    [entry("lead", 0, "created"), entry("mql", 6 * D, "score")],
    source="rdstation",
    owner="rep-05",
    **LATAM,
    ledger_sla=[sla(MA, "started", 6 * D, "rep-05", **LATAM)],
    handoffs=[handoff(6 * D, "rep-05", **LATAM)],
    clocks=[clock(MA, 6 * D, 6 * D + 8 * H)],
)
F = record(
    "F",
    [entry("lead", 0, "created"), entry("mql", 6 * D + 1 * H, "score")],
    source="rdstation",
    owner="rep-05",
    **LATAM,
    ledger_sla=[sla(MA, "started", 6 * D + 1 * H, "rep-05", **LATAM)],
    handoffs=[handoff(6 * D + 1 * H, "rep-05", **LATAM)],
    clocks=[clock(MA, 6 * D + 1 * H, 9 * D)],
)
# G: an MQL merged into A: not a current lead, but its journey counts.
G = record("G", [entry("lead", 0, "created"), entry("mql", 1 * H, "score")], source="rdstation", merged_into="A")
# I: assigned to rep-04 from outside routing (no pool), accepted in time; its first contact is breached and open.
I_ = record(
    "I",
    [entry("lead", 0, "created"), entry("mql", 2 * D, "score"), entry("sal", 2 * D + 1 * H, "accepted")],
    source="rdstation",
    owner="rep-04",
    team="inside_sales",
    ledger_sla=[
        sla(MA, "started", 2 * D, "rep-04", team="inside_sales"),
        sla(MA, "met", 2 * D + 1 * H, "rep-04", team="inside_sales"),
        sla(FC, "started", 2 * D + 1 * H, "rep-04", team="inside_sales"),
        sla(FC, "breached", 2 * D + 3 * H, "rep-04", team="inside_sales"),
    ],
    handoffs=[handoff(2 * D, "rep-04", "inside_sales", None, "assigned")],
    clocks=[clock(FC, 2 * D + 1 * H, 2 * D + 3 * H, breached=True)],
)
ERASED = LeadRecord(lead_id="X", state=None, erased_at=at(1 * D), seen=("e1",))
EMPTY = LeadRecord(lead_id="Y", state=None)
RECORDS = [A, B, C, D_, E, F, G, I_, ERASED, EMPTY]


@pytest.fixture(scope="module")
def summaries() -> list[LeadSummary]:
    return list(summaries_of(RECORDS))


@pytest.fixture(scope="module")
def report(summaries: list[LeadSummary]) -> dict[str, Any]:
    return funnel_report(summaries, POLICY, NOW)


# ---- summaries ---------------------------------------------------------------------------------------------


def test_summary_of_a_lead() -> None:
    summary = summarize(C)
    assert summary is not None
    assert (summary.lead_id, summary.stage, summary.merged, summary.source) == ("C", "sal", False, "hubspot")
    assert (summary.owner_id, summary.team, summary.pool) == ("rep-01", "field_sales", "enterprise")
    # first entries only: the second mql entry (7 days) does not replace the first (4 hours)
    assert summary.entered == {"lead": at(0), "mql": at(4 * H), "nurturing": at(6 * H), "sal": at(7 * D + H)}
    assert summary.rejections == ("no_budget",)
    assert not summary.won
    assert C.state is not None
    assert summary.sla == C.state.ledger.sla
    assert len(summary.handoffs) == 2


def test_summary_skips_revenue_and_clocks() -> None:
    b, e, i = summarize(B), summarize(E), summarize(I_)
    assert b is not None
    assert e is not None
    assert i is not None
    assert [(s.from_stage, s.to_stage, s.skipped) for s in b.skips] == [
        ("mql", "customer", ("sal", "sql", "opportunity"))
    ]
    assert (b.won, b.won_amount) == (True, None)
    assert [(c.sla, c.deadline, c.breached, c.owner_id) for c in e.clocks] == [(MA, at(6 * D + 8 * H), False, "rep-05")]
    assert not e.clocks[0].is_overdue(at(6 * D + 7 * H))
    assert e.clocks[0].is_overdue(NOW)
    assert i.clocks[0].breached


def test_erased_and_empty_records_have_no_summary() -> None:
    assert summarize(ERASED) is None
    assert summarize(EMPTY) is None
    assert [s.lead_id for s in summaries_of(RECORDS)] == ["A", "B", "C", "D", "E", "F", "G", "I"]


def test_summary_of_a_state_equals_summary_of_its_record() -> None:
    assert A.state is not None
    assert summarize(A.state) == summarize(A)


def test_summary_json_round_trip(summaries: list[LeadSummary]) -> None:
    for summary in summaries:
        assert SUMMARY_ADAPTER.validate_json(SUMMARY_ADAPTER.dump_json(summary)) == summary


def test_summary_origin_from_the_profile_custom_attributes() -> None:
    assert D_.state is not None
    profile = D_.state.profile.model_validate({"custom": {"origin": "paid_search", "landing_page_id": 12}})
    with_origin = D_.state.model_copy(update={"profile": profile})
    summary = summarize(with_origin)
    assert summary is not None
    assert (summary.origin, summary.source, summary.source_key) == ("paid_search", "rdstation", "paid_search")


def test_origin_is_the_custom_attribute_when_present() -> None:
    assert origin_of(SimpleNamespace(custom={"origin": " paid_search "})) == "paid_search"
    assert origin_of(SimpleNamespace(custom={"campaign": "x"})) is None
    assert origin_of(SimpleNamespace(custom=None, origin="organic")) == "organic"
    assert origin_of(SimpleNamespace(custom={"origin": ""})) is None
    assert origin_of(SimpleNamespace(custom={"origin": True})) is None
    assert origin_of(object()) is None


# ---- the report --------------------------------------------------------------------------------------------


def test_counts_and_reached(report: dict[str, Any]) -> None:
    assert report["as_of"] == "2026-12-02T10:00:00+00:00"
    assert (report["leads"], report["merged"]) == (8, 1)  # the erased and the empty record are not leads
    # current leads: G is merged
    assert report["stage_counts"] == {
        "subscriber": 0,
        "lead": 1,
        "mql": 2,
        "sal": 2,
        "sql": 0,
        "opportunity": 0,
        "customer": 2,
        "evangelist": 0,
        "nurturing": 0,
        "disqualified": 0,
    }
    assert report["reached"] == {
        "subscriber": 1,
        "lead": 8,
        "mql": 7,
        "sal": 3,  # A, C, I: B skipped it
        "sql": 1,
        "opportunity": 1,
        "customer": 2,
        "evangelist": 0,
        "nurturing": 1,
        "disqualified": 0,
    }


def test_cohort_conversion_with_a_skip(report: dict[str, Any]) -> None:
    assert report["conversion"] == {
        "subscriber->lead": 1.0,
        "lead->mql": 0.875,  # 7 of 8
        "mql->sal": 0.4286,  # A, C, I of 7: B jumped from mql to customer and never reached sal
        "sal->sql": 0.3333,  # A of A, C, I
        "sql->opportunity": 1.0,
        "opportunity->customer": 1.0,
        "customer->evangelist": 0.0,
    }


def test_durations_between_first_entries(report: dict[str, Any]) -> None:
    durations = report["durations_s"]
    assert durations["subscriber->lead"] == {"count": 1, "p50": D, "p90": D, "mean": D}
    # A 1h, G 1h, B 2h, C 4h, I 2d, E 6d, F 6d+1h; p50 index 3, p90 index round(5.4) = 5
    spans = [H, H, 2 * H, 4 * H, 2 * D, 6 * D, 6 * D + H]
    assert durations["lead->mql"] == {"count": 7, "p50": 4 * H, "p90": 6 * D, "mean": round(sum(spans) / 7, 3)}
    # I 1h, A 2h, C from its first mql (4h) to sal (7d+1h)
    assert durations["mql->sal"] == {"count": 3, "p50": 2 * H, "p90": 7 * D - 3 * H, "mean": 201600.0}
    assert durations["sal->sql"] == {"count": 1, "p50": D - 3 * H, "p90": D - 3 * H, "mean": D - 3 * H}
    assert durations["sql->opportunity"]["p50"] == D
    assert durations["opportunity->customer"]["p50"] == D
    assert "customer->evangelist" not in durations


def test_sla_counts_with_late_met_and_open_breached(report: dict[str, Any]) -> None:
    assert report["sla"][MA] == {
        "started": 7,  # A, B, C twice, E, F, I
        "met": 3,  # A, C's second clock, I
        "late": 1,  # C's first clock
        "breached": 1,  # C's first clock (met late: breached too)
        "cancelled": 1,  # B
        "warnings": 1,
        "escalated": 1,
        "reassigned": 0,
        "open": 2,  # E, F
        "overdue": 1,  # E: past its deadline at NOW although no breach was emitted yet
        "compliance": 0.75,  # 3 / (3 + 1)
    }
    assert report["sla"][FC] == {
        "started": 2,
        "met": 0,
        "late": 1,  # A
        "breached": 2,  # A (met late) and I (still open)
        "cancelled": 0,
        "warnings": 1,
        "escalated": 0,
        "reassigned": 0,
        "open": 1,  # I
        "overdue": 1,
        "compliance": 0.0,
    }
    # SLAs of the policy without any clock yet have a row of zeros
    assert report["sla"]["sql_max_dwell"]["started"] == 0
    assert report["sla"]["sql_max_dwell"]["compliance"] == 1.0
    assert list(report["sla"]) == sorted(report["sla"])


def test_rejections_skips_revenue_handoffs(report: dict[str, Any]) -> None:
    assert report["rejections"] == {"no_budget": 1}
    assert report["lost"] == {}
    assert report["skips"] == {"mql->customer": 1}
    assert report["revenue"] == {"won_known": 1, "won_unknown_amount": 1, "amount": 1000.0}
    assert report["handoffs"] == {"enterprise": 1, "external": 1, "latam": 5}


def test_by_period_iso_weeks_and_months(report: dict[str, Any]) -> None:
    weeks, months = report["by_period"]["week"], report["by_period"]["month"]
    assert list(weeks) == ["2026-W48", "2026-W49"]
    w48, w49 = weeks["2026-W48"], weeks["2026-W49"]
    # pairs count in the week of the entry into their first stage: B's customer (Sunday 29th) is in W48
    assert w48["conversion"] == {
        "subscriber->lead": 1.0,
        "lead->mql": 0.875,
        "mql->sal": 0.6,  # A, C, I of A, B, C, G, I (E and F became MQL on Monday 30th: W49)
        "sal->sql": 0.5,  # A of A, I (C's sal is in W49)
        "sql->opportunity": 1.0,
        "opportunity->customer": 1.0,
        "customer->evangelist": 0.0,
    }
    assert w48["durations_s"]["mql->sal"] == {"count": 3, "p50": 2 * H, "p90": 7 * D - 3 * H, "mean": 201600.0}
    assert w49 == {
        "entered": {"mql": 2, "sal": 1},  # E, F; C (its second mql entry is not a first entry)
        "conversion": {"mql->sal": 0.0, "sal->sql": 0.0},
        "durations_s": {},
    }
    assert list(months) == ["2026-11", "2026-12"]
    assert months["2026-11"]["conversion"]["mql->sal"] == 0.4286  # Monday 30th is still November
    assert months["2026-12"] == {"entered": {"sal": 1}, "conversion": {"sal->sql": 0.0}, "durations_s": {}}


def test_week_and_month_boundaries_are_utc() -> None:
    sunday_night = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)
    assert (week_of(sunday_night), week_of(sunday_night + timedelta(seconds=1))) == ("2026-W48", "2026-W49")
    brt = timezone(timedelta(hours=-3))
    local_sunday = datetime(2026, 11, 29, 22, 0, tzinfo=brt)  # Monday 01:00 UTC
    assert week_of(local_sunday) == "2026-W49"
    assert month_of(datetime(2026, 11, 30, 22, 0, tzinfo=brt)) == "2026-12"
    assert week_of(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"  # ISO year of the week, not calendar year


def test_by_source(report: dict[str, Any], summaries: list[LeadSummary]) -> None:
    assert report["by_source"]["hubspot"] == {
        "leads": 3,
        "reached": {"lead": 3, "mql": 3, "sal": 2, "sql": 1, "opportunity": 1, "customer": 2, "nurturing": 1},
        "conversion": {
            "lead->mql": 1.0,
            "mql->sal": 0.6667,  # A, C of A, B, C
            "sal->sql": 0.5,
            "sql->opportunity": 1.0,
            "opportunity->customer": 1.0,
            "customer->evangelist": 0.0,
        },
    }
    assert report["by_source"]["rdstation"] == {
        "leads": 5,
        "reached": {"subscriber": 1, "lead": 5, "mql": 4, "sal": 1},
        "conversion": {"subscriber->lead": 1.0, "lead->mql": 0.8, "mql->sal": 0.25, "sal->sql": 0.0},
    }
    # the marketing origin, when the lead has one, is its source
    with_origin = [s.model_copy(update={"origin": "paid_search"}) if s.lead_id == "D" else s for s in summaries]
    by_source = funnel_report(with_origin, POLICY, NOW)["by_source"]
    assert by_source["paid_search"]["leads"] == 1
    assert by_source["rdstation"]["leads"] == 4


def test_per_owner_view(report: dict[str, Any]) -> None:
    owners = report["by_owner"]
    assert list(owners) == ["rep-01", "rep-04", "rep-05"]
    rep04 = owners["rep-04"]
    # last seen on I's first-contact breach (2d+3h), a lead assigned from outside routing: no pool
    assert (rep04["team"], rep04["pool"]) == ("inside_sales", None)
    assert (rep04["open_mqls"], rep04["overdue_mqls"], rep04["handoffs"]) == (0, 0, 3)  # A, C, I
    assert rep04["sla"][MA] == {"met": 2, "late": 1, "breached": 1, "open": 0, "overdue": 0, "compliance": 0.6667}
    assert rep04["sla"][FC] == {"met": 0, "late": 1, "breached": 2, "open": 1, "overdue": 1, "compliance": 0.0}
    rep05 = owners["rep-05"]
    assert (rep05["team"], rep05["pool"]) == ("inside_sales", "latam")
    # E and F are open MQLs; E's acceptance deadline passed at NOW
    assert (rep05["open_mqls"], rep05["overdue_mqls"], rep05["handoffs"]) == (2, 1, 3)
    assert rep05["sla"][MA] == {"met": 0, "late": 0, "breached": 0, "open": 2, "overdue": 1, "compliance": 1.0}
    rep01 = owners["rep-01"]
    assert (rep01["team"], rep01["pool"], rep01["handoffs"]) == ("field_sales", "enterprise", 1)
    assert rep01["sla"][MA]["met"] == 1
    # the overdue count moves with `now`: a day earlier, E's deadline had not passed
    earlier = funnel_report(summaries_of(RECORDS), POLICY, at(6 * D + 7 * H))["by_owner"]["rep-05"]
    assert (earlier["open_mqls"], earlier["overdue_mqls"]) == (2, 0)


def test_per_team_and_pool(report: dict[str, Any]) -> None:
    teams, pools = report["by_team"], report["by_pool"]
    assert list(teams) == ["field_sales", "inside_sales"]
    inside = teams["inside_sales"]
    assert (inside["open_mqls"], inside["overdue_mqls"], inside["handoffs"]) == (2, 1, 6)
    assert inside["sla"][MA] == {"met": 2, "late": 1, "breached": 1, "open": 2, "overdue": 1, "compliance": 0.6667}
    assert inside["sla"][FC] == {"met": 0, "late": 1, "breached": 2, "open": 1, "overdue": 1, "compliance": 0.0}
    assert teams["field_sales"]["sla"][MA]["met"] == 1
    assert list(pools) == ["enterprise", "external", "latam"]
    latam = pools["latam"]
    assert (latam["open_mqls"], latam["overdue_mqls"], latam["handoffs"]) == (2, 1, 5)
    assert latam["sla"][MA] == {"met": 1, "late": 1, "breached": 1, "open": 2, "overdue": 1, "compliance": 0.5}
    assert latam["sla"][FC] == {"met": 0, "late": 1, "breached": 1, "open": 0, "overdue": 0, "compliance": 0.0}
    external = pools["external"]  # I, assigned from outside routing
    assert external["handoffs"] == 1
    assert external["sla"][MA]["met"] == 1
    assert external["sla"][FC] == {"met": 0, "late": 0, "breached": 1, "open": 1, "overdue": 1, "compliance": 0.0}


def test_owner_less_open_mql_counts_for_none() -> None:
    lonely = record("J", [entry("lead", 0, "created"), entry("mql", D, "score")], clocks=[clock(MA, D, D + 8 * H)])
    owners = funnel_report(summaries_of([lonely]), POLICY, NOW)
    assert owners["by_owner"]["none"]["open_mqls"] == 1
    assert owners["by_owner"]["none"]["overdue_mqls"] == 1
    assert owners["by_pool"]["none"]["open_mqls"] == 1


def test_report_is_json(report: dict[str, Any]) -> None:
    assert orjson.loads(orjson.dumps(report)) == report
    assert orjson.dumps(report) == orjson.dumps(funnel_report(summaries_of(RECORDS), POLICY, NOW))


def test_empty_report() -> None:
    empty = funnel_report([], POLICY, NOW)
    assert empty["leads"] == 0
    assert empty["conversion"] == {}
    assert set(empty["stage_counts"].values()) == {0}
    assert empty["by_period"] == {"week": {}, "month": {}}


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        funnel_report([], POLICY, datetime(2026, 12, 2))  # naive: the point of the test


def test_two_workers_merge_into_the_report_of_the_union(summaries: list[LeadSummary], report: dict[str, Any]) -> None:
    worker_1 = [s for s in summaries if s.lead_id in {"A", "C", "E", "G"}]
    worker_2 = [s for s in summaries if s.lead_id not in {"A", "C", "E", "G"}]
    assert funnel_report([*worker_2, *worker_1], POLICY, NOW) == report
    # a lead seen by both workers (a rebalance) counts once, its newest summary
    stale = worker_1[0].model_copy(update={"stage": "lead", "updated_at": T0})
    assert funnel_report([stale, *worker_2, *worker_1], POLICY, NOW) == report
    # counts add up: stage counts of the union = those of each part
    diff = compare_reports(funnel_report(worker_1, POLICY, NOW), report)
    assert diff["stage_counts"] == funnel_report(worker_2, POLICY, NOW)["stage_counts"]
    assert diff["sla"][MA]["started"] == funnel_report(worker_2, POLICY, NOW)["sla"][MA]["started"]


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(8)), st.lists(st.integers(0, 7), max_size=6), st.integers(0, 8))
def test_report_does_not_depend_on_order_or_on_repeats(order: list[int], repeats: list[int], cut: int) -> None:
    summaries = list(summaries_of(RECORDS))
    expected = funnel_report(summaries, POLICY, NOW)
    shuffled = [summaries[i] for i in order]
    worker_1, worker_2 = shuffled[:cut], shuffled[cut:]
    merged = [*worker_2, *(summaries[i] for i in repeats), *worker_1]
    assert orjson.dumps(funnel_report(merged, POLICY, NOW)) == orjson.dumps(expected)


STAGES = ("lead", "mql", "sal", "sql", "opportunity", "customer", "nurturing")


@st.composite
def journeys(draw: st.DrawFn) -> LeadRecord:
    lead_id = draw(st.text("abcdef", min_size=1, max_size=3))
    steps = draw(st.lists(st.tuples(st.sampled_from(STAGES), st.integers(1, 20 * 24)), min_size=0, max_size=6))
    t = 0.0
    history = [entry("lead", 0, "created")]
    for stage, hours in steps:
        t += hours * H
        history.append(entry(stage, t, "score"))
    kinds: list[SlaEntryKind] = draw(st.lists(st.sampled_from(["started", "met", "late", "breached"]), max_size=4))
    owner = draw(st.sampled_from([None, "rep-04", "rep-05"]))
    return record(
        lead_id,
        history,
        source=draw(st.sampled_from(["hubspot", "rdstation"])),
        owner=owner,
        ledger_sla=[sla(MA, kind, t, owner, **LATAM) for kind in kinds],
        won_amount=draw(st.none() | st.floats(0, 1e6)),
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(journeys(), max_size=12), st.randoms(use_true_random=False))
def test_generated_leads_report_is_order_independent(records: list[LeadRecord], rng: Any) -> None:
    summaries = list(summaries_of(records))
    expected = orjson.dumps(funnel_report(summaries, POLICY, NOW))
    rng.shuffle(summaries)
    assert orjson.dumps(funnel_report(summaries, POLICY, NOW)) == expected
    report = orjson.loads(expected)
    leads = len({r.lead_id for r in records})
    assert report["leads"] == leads
    assert report["reached"]["lead"] == leads
    assert sum(report["stage_counts"].values()) == leads
    for pair, value in report["conversion"].items():
        assert 0.0 <= value <= 1.0, pair


# ---- comparing ---------------------------------------------------------------------------------------------


def test_compare_reports_numeric_leaves() -> None:
    a = {"as_of": "x", "leads": 3, "sla": {"m": {"met": 2, "compliance": 0.5}}, "only_a": {"n": 1}, "by": {"t": "s"}}
    b = {"as_of": "y", "leads": 5, "sla": {"m": {"met": 1, "compliance": 0.75}, "n": {"met": 4}}, "flag": True}
    assert compare_reports(a, b) == {
        "leads": 2,
        "sla": {"m": {"met": -1, "compliance": 0.25}, "n": {"met": 4}},
        "only_a": {"n": -1},
    }


def test_compare_a_report_with_itself_and_with_a_smaller_one(
    summaries: list[LeadSummary], report: dict[str, Any]
) -> None:
    same = compare_reports(report, report)
    assert same["leads"] == 0
    assert same["sla"][MA]["compliance"] == 0
    assert "as_of" not in same
    assert "team" not in same["by_owner"]["rep-04"]
    without_b = funnel_report([s for s in summaries if s.lead_id != "B"], POLICY, NOW)
    diff = compare_reports(without_b, report)  # what B adds
    assert diff["leads"] == 1
    assert diff["revenue"] == {"won_known": 0, "won_unknown_amount": 1, "amount": 0.0}
    assert diff["skips"] == {"mql->customer": 1}
    assert diff["stage_counts"]["customer"] == 1
    assert diff["conversion"]["mql->sal"] == round(0.4286 - 0.5, 6)  # 3/7 with B, 3/6 without


# ---- the report client (what `leadflow report --worker URL` uses) ------------------------------------------


@pytest.fixture
async def workers(summaries: list[LeadSummary]) -> AsyncIterator[list[str]]:
    """Two fake workers serving /funnel/leads (JSON lines), one broken one per failure mode."""
    halves = [summaries[:4], summaries[4:]]

    def serve(part: list[LeadSummary]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            body = b"".join(SUMMARY_ADAPTER.dump_json(s) + b"\n" for s in part)
            return web.Response(body=body, content_type="application/x-ndjson")

        return handler

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b'{"lead_id": "A"}\n', content_type="application/x-ndjson")

    application = web.Application()
    application.router.add_get("/one/funnel/leads", serve(halves[0]))
    application.router.add_get("/two/funnel/leads", serve(halves[1]))
    application.router.add_get("/gone/funnel/leads", not_found)
    application.router.add_get("/bad/funnel/leads", garbage)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield [f"http://127.0.0.1:{port}/{name}" for name in ("one", "two", "gone", "bad")]
    finally:
        await runner.cleanup()


async def test_fetch_and_merge_summaries_of_workers(
    workers: list[str], summaries: list[LeadSummary], report: dict[str, Any]
) -> None:
    one, two, *_ = workers
    assert await fetch_summaries(one) == summaries[:4]
    assert await fetch_summaries(f"{two}/funnel/leads") == summaries[4:]  # the full address works too
    assert await merged_report([one, two], POLICY, NOW) == report


async def test_fetch_errors_name_the_url_and_the_fix(workers: list[str]) -> None:
    _, _, gone, bad = workers
    with pytest.raises(ReportSourceError, match=r"gone/funnel/leads.*HTTP 404"):
        await fetch_summaries(gone)
    with pytest.raises(ReportSourceError, match=r"bad/funnel/leads.*line 1"):
        await fetch_summaries(bad)
    with pytest.raises(ReportSourceError, match=r"127\.0\.0\.1:9/funnel/leads.*cannot connect.*--worker"):
        await fetch_summaries("http://127.0.0.1:9")
    with pytest.raises(ReportSourceError, match="not an http"):
        await fetch_summaries("ftp://example.org")
    with pytest.raises(ReportSourceError, match="gone"):
        await merged_report([workers[0], gone], POLICY, NOW)


async def test_fetch_times_out_with_a_clear_error() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="")

    application = web.Application()
    application.router.add_get("/funnel/leads", slow)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        with pytest.raises(ReportSourceError, match=r"no answer within 0\.2 s"):
            await fetch_summaries(f"http://127.0.0.1:{port}", timeout_s=0.2)
    finally:
        release.set()
        await runner.cleanup()


# ---- the worker's web views ----------------------------------------------------------------------------------


async def test_funnel_views_cover_the_active_partitions_only(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The views walk the table's store one active partition at a time, reading each lead's state only, whether
    the store holds it decoded (its cache) or only encoded."""
    store = worker.leads.data
    for record in RECORDS:
        key = record.lead_id.encode()
        with in_partition(worker.partition_of(key)):
            store[key] = record
    for key in list(store.cache)[::2]:
        del store.cache[key]  # read from its bytes, as a lead the cache has let go
    all_partitions = list(range(worker.settings.partitions))
    monkeypatch.setattr(worker, "active_events_partitions", lambda: all_partitions)
    readers: set[object] = set()
    partition_get = store.partition_get

    def reading(partition: int, key: bytes, read: Any = None) -> Any:
        readers.add(read)
        return partition_get(partition, key, read)

    monkeypatch.setattr(store, "partition_get", reading)
    by_lead = attrgetter("lead_id")
    expected_summaries = sorted(summaries_of(RECORDS), key=by_lead)
    leads_view = worker.pages["/funnel/leads"](worker.app, worker.app.web)
    response = await leads_view.get(None)
    assert response.content_type == "application/x-ndjson"
    lines = response.body.splitlines()
    assert (
        sorted((SUMMARY_ADAPTER.validate_json(line) for line in lines), key=lambda s: s.lead_id) == expected_summaries
    )

    assert readers == {read_state}, "the state only, never the whole record"

    report_view = worker.pages["/funnel"](worker.app, worker.app.web)
    response = await report_view.get(None)
    assert response.content_type == "application/json"
    live = orjson.loads(response.body)
    expected = funnel_report(summaries_of(RECORDS), worker.policy, datetime.fromisoformat(live["as_of"]))
    assert live == expected

    # a worker holding only A's partition (the others as standby replicas) reports A only
    own = worker.partition_of(b"A")
    monkeypatch.setattr(worker, "active_events_partitions", lambda: [own])
    mine = [r.lead_id for r in RECORDS if r.state is not None and worker.partition_of(r.lead_id.encode()) == own]
    assert 0 < len(mine) < len(RECORDS)
    response = await worker.pages["/funnel/leads"](worker.app, worker.app.web).get(None)
    assert sorted(SUMMARY_ADAPTER.validate_json(line).lead_id for line in response.body.splitlines()) == sorted(mine)
    response = await worker.pages["/funnel"](worker.app, worker.app.web).get(None)
    assert orjson.loads(response.body)["leads"] == len(mine)
