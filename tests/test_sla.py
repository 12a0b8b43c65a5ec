"""SLA clocks through decide(): start, warn, breach once, meet, pause and resume, cancel, in business time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import POLICY, Router, make_event, make_policy
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.calendar import BusinessCalendar
from leadflow.core.decision import decide
from leadflow.core.sla.due import due
from leadflow.core.sla.follow import count_and_meet
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import SlaBreached, SlaCancelled, SlaMet, SlaStarted, SlaWarning
from leadflow.schemas.policy import Policy, PolicyError
from leadflow.schemas.state import LeadRecord

SP = ZoneInfo("America/Sao_Paulo")
SALES = BusinessCalendar.from_spec(POLICY.calendars["inside_sales"])
HIGH_FIT = {"seniority": "vp", "company_size": 200, "industry": "saas"}
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SP)  # a working Monday in São Paulo
NOW = datetime(2027, 6, 1, tzinfo=SP)


def local(hours: float) -> datetime:
    return MONDAY_10 + timedelta(hours=hours)


class Lead:
    """One lead fed event by event; collects every output. Its route requests are answered at once by the
    router of its world (`router`: pass one Router to leads that share their owners; a new one otherwise)."""

    def __init__(self, lead_id: str = "L1", policy: Policy = POLICY, router: Router | None = None) -> None:
        self.lead_id = lead_id
        self.policy = policy
        self.router = router or Router(policy)
        self.record: LeadRecord | None = None
        self.outputs: list[Any] = []

    def send(self, kind: str, hours: float, **data: Any) -> list[Any]:
        event: LeadEvent = make_event(kind, local(hours), lead_id=self.lead_id, **data)
        decision = self.router.decide(self.record, event, NOW)
        assert not decision.record.awaiting, "the router answers every request at once: nothing is held"
        self.record = decision.record
        self.outputs.extend(decision.outputs)
        return list(decision.outputs)

    def of(self, kind: type, sla: str) -> list[Any]:
        return [o for o in self.outputs if isinstance(o, kind) and o.sla == sla]


def score_mql(lead: Lead) -> None:
    lead.send("lead.created", 0, **HIGH_FIT)
    lead.send("activity", 0.1, action="pricing_view")
    lead.send("activity", 0.2, action="form_submit")
    lead.send("activity", 0.3, action="form_submit")  # fit 45, engagement 35: MQL at 10:18


def test_mql_by_score_starts_acceptance_and_first_contact_in_business_time() -> None:
    lead = Lead()
    score_mql(lead)
    started = {o.sla: o for o in lead.outputs if isinstance(o, SlaStarted)}
    assert set(started) == {"mql_acceptance", "first_contact"}
    mql_at = local(0.3)
    assert started["mql_acceptance"].deadline == SALES.add(mql_at, 8 * 3600)
    assert started["first_contact"].deadline == SALES.add(mql_at, 2 * 3600)
    assert started["first_contact"].deadline.astimezone(SP) == datetime(2026, 11, 23, 13, 18, tzinfo=SP)  # lunch
    assert started["first_contact"].business


def test_a_hand_raiser_gets_fifteen_wall_clock_minutes_for_first_contact() -> None:
    lead = Lead()
    lead.send("lead.created", 0)
    lead.send("activity", 9.5, action="demo_request")  # 19:30, after hours
    (first,) = lead.of(SlaStarted, "first_contact")
    assert first.deadline - first.started_at == timedelta(minutes=15)
    assert not first.business


def test_warnings_then_one_breach_then_a_late_meet() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("lead.assigned", 9, owner_id="rep-01", team="inside_sales")  # 19:00: past the 13:18 deadline
    warnings = lead.of(SlaWarning, "first_contact")
    assert [w.fraction for w in warnings] == [0.5, 0.9]
    (breach,) = lead.of(SlaBreached, "first_contact")
    assert breach.occurred_at == breach.deadline
    lead.send("meeting.scheduled", 10)
    assert len(lead.of(SlaBreached, "first_contact")) == 1, "a breach is emitted once per clock"
    (met,) = [o for o in lead.send("contact.attempted", 24, channel="phone", outcome="connected")
              if isinstance(o, SlaMet)]  # fmt: skip
    assert met.late
    assert met.used_s > 2 * 3600


def test_acceptance_met_in_time_reports_business_seconds_used() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.accepted", 2.3)  # 12:18: two business hours minus nothing (lunch starts at 12:00)
    (met,) = lead.of(SlaMet, "mql_acceptance")
    assert not met.late
    assert met.used_s == SALES.elapsed(local(0.3), local(2.3))
    assert met.used_s == pytest.approx(1.7 * 3600)
    assert lead.record is not None
    assert lead.record.state is not None
    assert set(lead.record.state.clocks) == {"first_contact", "contact_attempts"}


def test_rejection_meets_acceptance_and_cancels_first_contact() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.rejected", 1, reason="no_budget")
    assert len(lead.of(SlaMet, "mql_acceptance")) == 1
    (cancel,) = lead.of(SlaCancelled, "first_contact")
    assert cancel.reason == "left:mql"


def test_a_pause_moves_the_deadline_by_the_paused_business_time() -> None:
    lead = Lead()
    score_mql(lead)
    (started,) = lead.of(SlaStarted, "mql_acceptance")
    lead.send("lead.paused", 1)  # 11:00, 42 business minutes used since the MQL at 10:18
    lead.send("lead.resumed", 24)  # Tuesday 10:00
    assert lead.record is not None
    assert lead.record.state is not None
    clock = lead.record.state.clocks["mql_acceptance"]
    used_before_pause = SALES.elapsed(local(0.3), local(1))
    assert used_before_pause == 42 * 60
    assert clock.deadline == SALES.add(local(24), 8 * 3600 - used_before_pause)
    assert clock.deadline > started.deadline
    lead.send("lead.accepted", 25)  # Tuesday 11:00: one more business hour
    (met,) = lead.of(SlaMet, "mql_acceptance")
    assert met.used_s == pytest.approx(42 * 60 + 3600)
    assert not lead.of(SlaBreached, "mql_acceptance")


def test_sql_dwell_is_met_by_leaving_sql() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("deal.stage_changed", 1, stage="qualified_call", bant={"need": True})
    lead.send("deal.stage_changed", 30, stage="framing_meeting", bant={"authority": True})
    (met,) = lead.of(SlaMet, "sql_max_dwell")
    assert met.used_s == pytest.approx(29 * 3600)
    assert not met.late


# --- facts that skip stages close the clocks of the stage they leave, and say so -------------------------


def cancel_reasons(lead: Lead) -> dict[str, str]:
    return {o.sla: o.reason for o in lead.outputs if isinstance(o, SlaCancelled)}


def test_a_deal_won_on_an_mql_cancels_its_clocks_naming_the_skipped_stages() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("deal.won", 1, amount=4_000.0)
    skipped = "left:mql skipped:sal,sql,opportunity"
    assert cancel_reasons(lead) == {"mql_acceptance": skipped, "first_contact": skipped}
    assert lead.record is not None
    assert lead.record.state is not None
    assert (lead.record.state.stage, lead.record.state.clocks) == ("customer", {})
    started = {o.sla for o in lead.outputs if isinstance(o, SlaStarted)}
    assert started == {"mql_acceptance", "first_contact"}, "no clock of a skipped stage starts"


def test_a_deal_won_on_a_sal_cancels_first_contact_and_contact_attempts() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("deal.won", 2)
    skipped = "left:sal skipped:sql,opportunity"
    assert cancel_reasons(lead) == {"first_contact": skipped, "contact_attempts": skipped}
    assert len(lead.of(SlaMet, "mql_acceptance")) == 1


def test_a_deal_won_on_an_sql_meets_its_max_dwell_on_leaving() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("deal.stage_changed", 1, stage="qualified_call", bant={"need": True})
    lead.send("deal.won", 25, amount=100.0)
    (met,) = lead.of(SlaMet, "sql_max_dwell")
    assert met.used_s == pytest.approx(24 * 3600)
    # contact_attempts runs in sal only: the deal advance closed it, before the fact.
    assert cancel_reasons(lead) == {"first_contact": "left:sql skipped:opportunity", "contact_attempts": "left:sal"}


def test_a_fact_that_skips_nothing_keeps_the_plain_reason() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("deal.lost", 1, reason="bad_luck")  # a reason outside the policy: applied all the same
    assert cancel_reasons(lead) == {"mql_acceptance": "left:mql", "first_contact": "left:mql"}


def test_erasure_cancels_every_open_clock() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.erased", 1)
    assert {c.sla for c in lead.outputs if isinstance(c, SlaCancelled) and c.reason == "erased"} == {
        "mql_acceptance",
        "first_contact",
    }


def test_sla_output_ids_depend_on_the_clock_not_on_the_trigger() -> None:
    one, two = Lead(), Lead()
    for lead in (one, two):
        score_mql(lead)
    one.send("lead.assigned", 9, owner_id="rep-01")
    two.send("meeting.scheduled", 9.5)
    assert [b.id for b in one.of(SlaBreached, "first_contact")] == [b.id for b in two.of(SlaBreached, "first_contact")]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["slas"][0].pop("calendar"), "slas[0].calendar: business_hours need a calendar"),
        (lambda d: d["slas"][0].update(starts_on_stage="limbo"), "slas[0].starts_on_stage: unknown stage 'limbo'"),
        (lambda d: d["slas"][0].update(allowance={"minutes": 5, "business_hours": 1}), "exactly one of"),
        (lambda d: d["slas"].append(dict(d["slas"][0])), "slas: names must be unique"),
        (
            lambda d: d["slas"][0].update(starts_on_event="lead.accepted"),
            "exactly one of starts_on_stage or starts_on_",
        ),
        (lambda d: d["slas"][0].pop("starts_on_stage"), "exactly one of starts_on_stage or starts_on_event"),
        (
            lambda d: d["slas"][0].update(starts_on_stage=None, starts_on_event="meeting.held"),
            "slas[0].starts_on_event: 'meeting.held' is not an event type; use one of: activity, contact.attempted",
        ),
        (lambda d: d["slas"][0].update(runs_in=["mql", "limbo"]), "slas[0].runs_in: unknown stages limbo"),
    ],
)
def test_bad_sla_definitions_are_explained(change: Any, problem: str) -> None:
    with pytest.raises(PolicyError) as error:
        make_policy(change)
    assert any(problem in line for line in error.value.problems), error.value.problems


def test_the_funnel_report_counts_clocks_per_sla() -> None:
    from leadflow.core.funnel import FunnelTally

    router = Router(POLICY)  # one world: the two leads share the pools' owners
    late, on_time = Lead("L1", router=router), Lead("L2", router=router)
    for lead in (late, on_time):
        score_mql(lead)
    on_time.send("contact.attempted", 0.5, channel="phone", outcome="no_answer")
    late.send("lead.assigned", 9, owner_id="rep-01")
    tally = FunnelTally(stages=POLICY.all_stages)
    for output in [*late.outputs, *on_time.outputs]:
        tally.add(output)
    first = tally.report()["sla"]["first_contact"]
    assert (first["started"], first["met"], first["breached"], first["open"]) == (2, 1, 1, 1)
    assert first["compliance"] == 0.5
    assert tally.report()["sla"]["mql_acceptance"]["open"] == 2


# --- the deadline index and the timer event ------------------------------------------------------------------


def test_the_index_gives_due_leads_in_order_and_forgets_replaced_instants() -> None:
    from leadflow.core.deadlines import DeadlineIndex

    index = DeadlineIndex()
    index.set("a", local(3))
    index.set("b", local(1))
    index.set("c", local(2))
    index.set("a", local(0.5))  # moved earlier: the old entry is stale
    index.set("c", None)  # no clock left
    assert len(index) == 2
    assert [lead for lead, _ in index.pop_due(local(1))] == ["a", "b"]
    assert index.pop_due(local(10)) == []
    for i in range(5000):
        index.set("x", local(i))  # many replacements: the heap is compacted, not grown without bound
    assert len(index.heap) < 2 * len(index) + 1100
    assert [lead for lead, _ in index.pop_due(local(10_000), limit=1)] == ["x"]


def test_next_instant_is_the_earliest_warning_or_deadline_of_running_clocks() -> None:
    from leadflow.core.deadlines import next_instant

    lead = Lead()
    score_mql(lead)
    assert lead.record is not None
    state = lead.record.state
    assert state is not None
    first = state.clocks["first_contact"]
    assert next_instant(state) == first.warnings[0][1]
    lead.send("lead.paused", 0.4)
    assert lead.record.state is not None
    assert next_instant(lead.record.state) is None, "paused clocks wait"


def test_a_timer_event_fires_what_is_due_at_its_instant_once() -> None:
    lead = Lead()
    score_mql(lead)
    assert lead.record is not None
    assert lead.record.state is not None
    deadline = lead.record.state.clocks["first_contact"].deadline
    tick = make_event("timer.due", deadline, event_id=f"timer:{deadline.isoformat()}")
    decision = lead.router.decide(lead.record, tick, NOW)
    assert [type(o).__name__ for o in decision.outputs] == ["SlaWarning", "SlaWarning", "SlaBreached"]
    again = lead.router.decide(decision.record, tick, NOW)
    assert again.outcome == "duplicate"


def test_a_timer_for_a_time_not_yet_come_or_an_unknown_lead_does_nothing() -> None:
    lead = Lead()
    score_mql(lead)
    future = make_event("timer.due", NOW + timedelta(hours=1))
    assert lead.router.decide(lead.record, future, NOW).outcome == "ignored"
    unknown = decide(None, make_event("timer.due", local(1), lead_id="nobody"), POLICY, NOW)
    assert (unknown.outcome, unknown.outputs, unknown.changed) == ("ignored", (), False)


def test_next_instant_after_a_given_instant_skips_what_the_sweep_already_sent() -> None:
    from leadflow.core.deadlines import next_instant

    lead = Lead()
    score_mql(lead)
    assert lead.record is not None
    state = lead.record.state
    assert state is not None
    first = state.clocks["first_contact"]
    (_, half), (_, ninety) = first.warnings
    assert next_instant(state, after=half.timestamp()) == ninety
    last = max(c.deadline for c in state.clocks.values())
    assert next_instant(state, after=last.timestamp()) is None


def test_a_merge_cancels_the_merged_leads_clocks() -> None:
    lead = Lead()
    score_mql(lead)
    lead.send("lead.merged", 1, into_lead_id="L9")
    assert {c.sla: c.reason for c in lead.outputs if isinstance(c, SlaCancelled)} == {
        "mql_acceptance": "merged:L9",
        "first_contact": "merged:L9",
    }
    assert lead.record is not None
    assert lead.record.state is not None
    assert lead.record.state.clocks == {}


def accepted(lead: Lead) -> None:
    score_mql(lead)
    lead.send("lead.accepted", 0.5)


def test_six_attempts_meet_the_counted_sla() -> None:
    lead = Lead()
    accepted(lead)
    for i in range(5):
        lead.send("contact.attempted", 1 + i, channel="phone", outcome="no_answer")
    assert not lead.of(SlaMet, "contact_attempts")
    lead.send("contact.attempted", 30, channel="email", outcome="no_answer")
    (met,) = lead.of(SlaMet, "contact_attempts")
    assert not met.late


def test_too_few_attempts_recycle_the_lead_to_nurturing_when_the_time_is_up() -> None:
    lead = Lead()
    accepted(lead)
    lead.send("contact.attempted", 1, channel="phone", outcome="no_answer")
    assert lead.record is not None
    assert lead.record.state is not None
    deadline = lead.record.state.clocks["contact_attempts"].deadline
    tick = make_event("timer.due", deadline, event_id=f"timer:{deadline.isoformat()}")
    decision = lead.router.decide(lead.record, tick, NOW)
    kinds = [o.type for o in decision.outputs]
    assert "sla.breached" in kinds
    assert decision.record.state is not None
    assert decision.record.state.stage == "nurturing"
    assert decision.record.state.owner_id is None
    (move,) = [o for o in decision.outputs if o.type == "stage.changed"]
    assert (move.from_stage, move.to_stage, move.reason) == ("sal", "nurturing", "sla:contact_attempts")
    assert decision.record.state.clocks == {}, "leaving sal closes the other clocks too"


def follow_up_policy() -> Policy:
    """The default policy plus an event-started SLA: a proposal within 2 business days of a meeting."""

    def add(document: dict[str, Any]) -> None:
        document["slas"].append(
            {
                "name": "meeting_follow_up",
                "starts_on_event": "meeting.scheduled",
                "met_by": ["deal.stage_changed"],
                "allowance": {"business_hours": 16},
                "calendar": "inside_sales",
                "warn_at": [0.5],
            }
        )

    return make_policy(add)


def test_an_event_starts_a_clock_in_any_stage_and_another_event_meets_it() -> None:
    lead = Lead(policy=follow_up_policy())
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("meeting.scheduled", 1, starts_at=local(30).isoformat())
    (started,) = lead.of(SlaStarted, "meeting_follow_up")
    assert started.started_at == local(1)
    assert started.deadline == SALES.add(local(1), 16 * 3600)
    lead.send("meeting.scheduled", 2, starts_at=local(31).isoformat())
    assert len(lead.of(SlaStarted, "meeting_follow_up")) == 1, "an open clock is not started again"
    lead.send("deal.stage_changed", 3, stage="qualified_call", bant={"need": True})
    (met_clock,) = lead.of(SlaMet, "meeting_follow_up")
    assert met_clock.used_s == pytest.approx(SALES.elapsed(local(1), local(3)))
    assert not met_clock.late
    assert not lead.of(SlaCancelled, "meeting_follow_up"), "stage changes do not stop an event-started clock"


def test_an_event_started_clock_breaches_like_any_other() -> None:
    lead = Lead(policy=follow_up_policy())
    score_mql(lead)
    lead.send("lead.accepted", 0.5)
    lead.send("meeting.scheduled", 1, starts_at=local(30).isoformat())
    (started,) = lead.of(SlaStarted, "meeting_follow_up")
    lead.send("lead.paused", 72)  # days later: the deadline passed on the way
    (breach,) = lead.of(SlaBreached, "meeting_follow_up")
    assert breach.occurred_at == started.deadline


def test_a_counted_sla_needs_both_its_fields() -> None:
    with pytest.raises(PolicyError) as error:
        make_policy(lambda d: d["slas"][-1].pop("at_least"))
    assert any("count_event and at_least" in line for line in error.value.problems)


def test_counting_leaves_the_clocks_it_was_given_alone() -> None:
    """count_and_meet copies the clocks only when the event counts or meets one: the same dict back otherwise
    (an activity on an accepted lead); a contact attempt counts one and meets first contact, in a new dict (the
    dict given is unchanged)."""
    lead = Lead()
    accepted(lead)
    assert lead.record is not None
    assert lead.record.state is not None
    state = lead.record.state
    clocks = state.clocks
    assert "contact_attempts" in clocks
    specs = POLICY.sla_specs
    activity = make_event("activity", local(1), lead_id="L1", action="email_open")
    kept, met = count_and_meet(state, clocks, activity, specs, POLICY)
    assert kept is clocks
    assert met == []
    attempt = make_event("contact.attempted", local(1), lead_id="L1", channel="phone", outcome="no_answer")
    counted, met = count_and_meet(state, clocks, attempt, specs, POLICY)
    assert counted is not clocks
    assert [m.sla for m in met] == ["first_contact"]
    assert "first_contact" in clocks
    assert "first_contact" not in counted
    assert counted["contact_attempts"].count == clocks["contact_attempts"].count + 1
    assert state.clocks is clocks  # nothing given was changed
    assert clocks == lead.record.state.clocks


instants = st.integers(min_value=-3, max_value=3).map(lambda hours: local(2) + timedelta(hours=hours))


@settings(max_examples=300, deadline=None)
@given(
    clocks=st.lists(
        st.tuples(
            instants,  # deadline
            st.lists(instants, max_size=3, unique=True),  # warning instants
            st.booleans(),  # paused
            st.booleans(),  # breached already
        ),
        min_size=1,
        max_size=3,
    ),
    at=instants,
)
def test_due_fires_every_running_instant_that_has_come_and_nothing_else(
    clocks: list[tuple[datetime, list[datetime], bool, bool]], at: datetime
) -> None:
    """core.sla.due: a warning per warning instant at or before `at`, a breach per clock whose deadline has come and
    that had not breached, none for a paused clock; the same state back when nothing came."""
    lead = Lead()
    accepted(lead)
    assert lead.record is not None
    state = lead.record.state
    assert state is not None
    template = next(iter(state.clocks.values()))
    made = {
        f"sla{n}": template.model_copy(
            update={
                "sla": f"sla{n}",
                "deadline": deadline,
                "warnings": tuple((0.1 * (w + 1), instant) for w, instant in enumerate(sorted(warnings))),
                "paused_at": local(1) if paused else None,
                "breached": breached,
            }
        )
        for n, (deadline, warnings, paused, breached) in enumerate(clocks)
    }
    given_state = state.model_copy(update={"clocks": made})
    after, outputs = due(given_state, at, POLICY)
    expected_warnings = sorted(
        (name, instant)
        for name, (_, warnings, paused, _) in zip(made, clocks, strict=True)
        if not paused
        for instant in warnings
        if instant <= at
    )
    expected_breaches = sorted(
        name
        for name, (deadline, _, paused, breached) in zip(made, clocks, strict=True)
        if not paused and not breached and deadline <= at
    )
    assert sorted((o.sla, o.occurred_at) for o in outputs if isinstance(o, SlaWarning)) == expected_warnings
    assert sorted(o.sla for o in outputs if isinstance(o, SlaBreached)) == expected_breaches
    if not outputs:
        assert after is given_state
