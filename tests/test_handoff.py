"""The hand-off on the lead's side, through decide(), with a small loop that plays the router and the lead together:
route requests and releases go to core.routing, its answers come back as the lead.assigned events streams sends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import POLICY, make_event, make_policy

from leadflow.core.calendar import BusinessCalendar
from leadflow.core.decision import decide
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.routing import ANSWER_DELAY, answer_to, load
from leadflow.core.routing import release as router_release
from leadflow.schemas.events import EVENT_ADAPTER, LeadEvent
from leadflow.schemas.outputs import (
    HandOff,
    Output,
    RouteRelease,
    RouteRequest,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaStarted,
)
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadRecord, LeadState, RoutingState

SP = ZoneInfo("America/Sao_Paulo")
SALES = BusinessCalendar.from_spec(POLICY.calendars["inside_sales"])
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SP)  # a working Monday in São Paulo
LATAM: dict[str, Any] = {"country": "BR", "company_size": 80}
ENTERPRISE: dict[str, Any] = {"country": "US", "company_size": 5000, "job_title": "VP Marketing", "seniority": "vp"}


def local(hours: float) -> datetime:
    return MONDAY_10 + timedelta(hours=hours)


class World:
    """Leads and the router, wired like the workers: the leads' routing messages go to the router, its answers
    come back to the lead as `lead.assigned` events (at once, or when `deliver()` is called if `hold`). The
    worker clock is the newest event time (as in a replay), or `now` when given."""

    def __init__(self, policy: Policy = POLICY, *, hold: bool = False, now: datetime | None = None) -> None:
        self.policy = policy
        self.hold = hold
        self.now = now
        self.clock = now
        self.records: dict[str, LeadRecord | None] = {}
        self.routing = RoutingState()
        self.outputs: list[Output] = []
        self.answers: list[LeadEvent] = []  # every answer the router sent
        self.queued: list[LeadEvent] = []  # answers not delivered yet
        self.events: list[LeadEvent] = []  # every event fed, answers included

    def send(self, kind: str, hours: float | datetime, lead: str = "L1", **data: Any) -> list[Output]:
        at = hours if isinstance(hours, datetime) else local(hours)
        return self.feed(make_event(kind, at, lead_id=lead, **data))

    def timer(self, at: datetime, lead: str = "L1") -> list[Output]:
        """A timer tick, built like the worker's sweep builds it."""
        tick = {"event_id": f"timer:{at.isoformat()}", "lead_id": lead, "type": "timer.due",
                "occurred_at": at.isoformat(), "source": "leadflow.timer"}  # fmt: skip
        return self.feed(EVENT_ADAPTER.validate_python(tick))

    def feed(self, event: LeadEvent) -> list[Output]:
        self.events.append(event)
        self.clock = self.now or max(self.clock or event.occurred_at, event.occurred_at)
        decision = decide(self.records.get(event.lead_id), event, self.policy, self.clock)
        self.records[event.lead_id] = decision.record
        outputs = list(decision.outputs)
        self.outputs.extend(outputs)
        for output in outputs:
            self.to_router(output)
        if not self.hold:
            outputs += self.deliver()
        return outputs

    def to_router(self, output: Output) -> None:
        if isinstance(output, RouteRelease):
            self.routing = router_release(self.routing, output)
        elif isinstance(output, RouteRequest):
            self.routing, message, _ = answer_to(self.routing, output, self.policy, ROUTER_SOURCE)
            event = EVENT_ADAPTER.validate_python(message)
            self.answers.append(event)
            self.queued.append(event)

    def deliver(self) -> list[Output]:
        delivered: list[Output] = []
        while self.queued:
            delivered += self.feed(self.queued.pop(0))
        return delivered

    def state(self, lead: str = "L1") -> LeadState:
        record = self.records[lead]
        assert record is not None
        assert record.state is not None
        return record.state

    def of(self, kind: type, lead: str = "L1") -> list[Any]:
        return [o for o in self.outputs if isinstance(o, kind) and o.lead_id == lead]

    def sla(self, kind: type, sla: str, lead: str = "L1") -> list[Any]:
        return [o for o in self.of(kind, lead) if o.sla == sla]

    def load(self, pool: str = "latam") -> dict[str, int]:
        return load(self.routing, pool)


def hand_raiser(world: World, lead: str = "L1", profile: dict[str, Any] | None = None) -> None:
    world.send("lead.created", 0, lead, **(LATAM if profile is None else profile))
    world.send("activity", 0.1, lead, action="demo_request")  # MQL at once


def qualified(world: World, lead: str = "L1", profile: dict[str, Any] | None = None) -> None:
    world.send("lead.created", 0, lead, **(LATAM if profile is None else profile))
    world.send("lead.qualified", 0.1, lead)


# --- routing on entering mql -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "pool"), [(LATAM, "latam"), (ENTERPRISE, "enterprise"), ({"country": "US"}, "general")]
)
def test_an_mql_without_owner_asks_the_router_for_its_pool(profile: dict[str, Any], pool: str) -> None:
    world = World(hold=True)
    world.send("lead.created", 0, **profile)
    assert world.of(RouteRequest) == [], "not before mql"
    world.send("lead.qualified", 0.1)
    (asked,) = world.of(RouteRequest)
    assert (asked.lead_id, asked.pool, asked.exclude, asked.escalated_sla) == ("L1", pool, (), None)
    assert asked.occurred_at == local(0.1)
    assert world.of(HandOff) == [], "no hand-off before the answer"


def test_the_answer_hands_the_lead_off_with_its_clocks_and_score() -> None:
    world = World()
    world.send("lead.created", 0, **LATAM, job_title="Head of Growth", seniority="director", industry="saas")
    world.send("activity", 0.05, action="pricing_view")
    world.send("activity", 0.1, action="demo_request")
    (handoff,) = world.of(HandOff)
    assert (handoff.owner_id, handoff.pool, handoff.reason) == ("rep-04", "latam", "routed")
    assert handoff.team == "inside_sales"
    assert handoff.previous_owner_id is None
    assert handoff.stage == "mql"
    assert handoff.occurred_at == local(0.1) + ANSWER_DELAY
    slas = {s.sla: s for s in handoff.slas}
    assert set(slas) == {"mql_acceptance", "first_contact"}
    assert slas["first_contact"].deadline == local(0.1) + timedelta(minutes=15), "a hand-raiser: 15 minutes"
    assert not slas["first_contact"].business
    assert slas["mql_acceptance"].deadline == SALES.add(local(0.1), 8 * 3600)
    assert slas["mql_acceptance"].business
    assert slas["mql_acceptance"].started_at == local(0.1)
    assert handoff.score.hand_raiser
    assert handoff.score.mql_reason == "hand_raiser"
    assert handoff.score.top_actions == (("demo_request", 30.0), ("pricing_view", 15.0))
    assert handoff.score.engagement == 45
    assert handoff.score.fit == world.state().fit > 0
    assert handoff.profile == {"country": "BR", "company_size": 80, "job_title": "Head of Growth",
                               "seniority": "director", "industry": "saas"}  # fmt: skip
    state = world.state()
    assert (state.owner_id, state.pool, state.team) == ("rep-04", "latam", "inside_sales")
    assert world.load() == {"rep-04": 1}


def test_a_lead_qualified_by_score_is_not_a_hand_raiser() -> None:
    world = World()
    qualified(world)
    (handoff,) = world.of(HandOff)
    assert not handoff.score.hand_raiser
    assert handoff.score.mql_reason == "external"
    first_contact = next(s for s in handoff.slas if s.sla == "first_contact")
    assert first_contact.business, "two business hours, not fifteen minutes"


def test_mqls_are_handed_off_round_robin() -> None:
    world = World()
    for lead in ("A", "B", "C", "D"):
        hand_raiser(world, lead)
    assert [world.of(HandOff, lead)[0].owner_id for lead in "ABCD"] == ["rep-04", "rep-05", "rep-06", "rep-04"]
    assert world.load() == {"rep-04": 2, "rep-05": 1, "rep-06": 1}


def test_the_router_answer_redelivered_is_a_duplicate() -> None:
    world = World()
    hand_raiser(world)
    (answer,) = world.answers
    before = world.records["L1"]
    assert world.feed(answer) == []
    assert world.records["L1"] == before


def test_a_lead_with_an_owner_before_mql_is_handed_off_to_that_owner_without_routing() -> None:
    world = World()
    world.send("lead.created", 0, **LATAM)
    assert world.send("lead.assigned", 0.05, owner_id="rep-99", team="field_sales") == [], "no hand-off before mql"
    world.send("activity", 0.1, action="demo_request")
    assert world.of(RouteRequest) == []
    (handoff,) = world.of(HandOff)
    assert (handoff.owner_id, handoff.team, handoff.pool, handoff.reason) == ("rep-99", "field_sales", None, "assigned")
    assert {s.sla for s in handoff.slas} == {"mql_acceptance", "first_contact"}
    assert handoff.score.hand_raiser
    world.send("lead.accepted", 1)
    assert world.of(RouteRelease) == [], "an external owner holds no pool capacity"


def test_an_external_assignment_in_mql_is_handed_off_and_releases_the_routed_owner() -> None:
    world = World()
    hand_raiser(world)
    outputs = world.send("lead.assigned", 1, owner_id="rep-99", team="field_sales")
    (handoff,) = [o for o in outputs if isinstance(o, HandOff)]
    assert (handoff.owner_id, handoff.pool, handoff.reason, handoff.previous_owner_id) == (
        "rep-99",
        None,
        "assigned",
        "rep-04",
    )
    (released,) = world.of(RouteRelease)
    assert (released.pool, released.owner_id) == ("latam", "rep-04")
    assert world.load() == {}
    world.send("lead.rejected", 2, reason="no_budget")
    assert len(world.of(RouteRelease)) == 1


@pytest.mark.parametrize("window_moves_on", [False, True])
def test_an_external_assignment_that_arrives_before_the_answer_waits_for_it_then_wins(window_moves_on: bool) -> None:
    """The lead holds what arrives while it waits for the router: the answer takes effect at its own time (the
    router's owner is handed the lead), then the external assignment overrides it and the capacity goes back.
    The same outcome as a replay, whenever the answer arrives."""
    world = World(hold=True)
    hand_raiser(world)
    assert world.send("lead.assigned", 0.2, owner_id="rep-99", team="field_sales") == []
    if window_moves_on:
        world.send("contact.attempted", 1, channel="email", outcome="other")
    assert world.state().owner_id is None, "held until the answer"
    assert world.load() == {"rep-04": 1}, "the router took rep-04 meanwhile"
    world.deliver()
    assert world.state().owner_id == "rep-99"
    assert [(h.owner_id, h.previous_owner_id) for h in world.of(HandOff)] == [("rep-04", None), ("rep-99", "rep-04")]
    assert world.load() == {}


# --- leaving mql releases capacity, once -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("lead.accepted", {}),
        ("lead.rejected", {"reason": "not_icp"}),
        ("lead.disqualified", {}),
        ("lead.merged", {"into_lead_id": "L2"}),
        ("lead.erased", {}),
    ],
)
def test_leaving_mql_releases_the_owners_capacity_exactly_once(kind: str, data: dict[str, Any]) -> None:
    world = World()
    hand_raiser(world)
    assert world.load() == {"rep-04": 1}
    outputs = world.send(kind, 1, **data)
    (released,) = [o for o in outputs if isinstance(o, RouteRelease)]
    assert (released.lead_id, released.pool, released.owner_id) == ("L1", "latam", "rep-04")
    assert released.occurred_at == local(1)
    assert world.load() == {}
    world.feed(make_event(kind, local(1), event_id=f"{kind}-again", **data))  # a different, later event
    world.send("contact.attempted", 2, channel="phone", outcome="connected")
    world.send("lead.paused", 3)
    assert len(world.of(RouteRelease)) == 1


def test_a_redelivered_event_releases_nothing_more() -> None:
    world = World()
    hand_raiser(world)
    accept = make_event("lead.accepted", local(1))
    world.feed(accept)
    assert world.feed(accept) == []
    assert len(world.of(RouteRelease)) == 1


@pytest.mark.parametrize("accepted_at", [0.15, 0.5])
def test_an_acceptance_that_arrives_before_the_answer_waits_for_it(accepted_at: float) -> None:
    """The acceptance is held until the router answers: the owner is handed the lead at the answer's time, then
    the acceptance moves it to sal and gives the MQL capacity back."""
    world = World(hold=True)
    hand_raiser(world)
    world.send("lead.accepted", accepted_at)
    world.send("contact.attempted", 1, channel="email", outcome="other")
    assert world.state().stage == "mql", "held until the answer"
    world.deliver()
    state = world.state()
    assert (state.stage, state.owner_id) == ("sal", "rep-04")
    assert [h.owner_id for h in world.of(HandOff)] == ["rep-04"]
    assert world.load() == {}


@pytest.mark.parametrize("kind", ["lead.merged", "lead.erased"])
def test_a_late_answer_to_a_merged_or_erased_lead_gives_the_capacity_back(kind: str) -> None:
    world = World(hold=True)
    hand_raiser(world)
    world.send(kind, 0.5, **({"into_lead_id": "L2"} if kind == "lead.merged" else {}))
    world.send("lead.paused", 1)  # refused, but the lateness window moves on
    world.deliver()
    assert world.load() == {}


@pytest.mark.parametrize("window_moves_on", [False, True])
def test_a_lead_rejected_and_qualified_again_while_waiting_is_routed_twice(window_moves_on: bool) -> None:
    """Rejected and qualified again while the first answer was on its way: the answer comes first (rep-04), the
    rejection sends the lead back to marketing without its owner (capacity released), the new MQL asks again and
    gets the next owner. Router and lead agree on who holds what."""
    world = World(hold=True)
    hand_raiser(world)
    world.send("lead.rejected", 0.2, reason="no_budget")
    world.send("activity", 0.3, action="demo_request")
    if window_moves_on:
        world.send("contact.attempted", 1.5, channel="email", outcome="other")
    world.deliver()
    assert len(world.of(RouteRequest)) == 2
    state = world.state()
    assert (state.stage, state.owner_id, state.pool) == ("mql", "rep-05", "latam")
    assert world.load() == {"rep-05": 1}, "the router counts the lead the lead says it holds"
    world.send("lead.accepted", 2)
    assert world.load() == {}


def test_a_lost_lead_that_qualifies_again_is_routed_afresh() -> None:
    """A lost deal goes back to marketing without its owner: when the lead re-qualifies, routing picks again."""
    world = World()
    qualified(world)
    world.send("lead.accepted", 0.5)
    world.send("deal.lost", 1, reason="price")
    assert (world.state().stage, world.state().owner_id, world.state().pool) == ("nurturing", None, None)
    world.send("lead.qualified", 2)
    assert len(world.of(RouteRequest)) == 2
    assert (world.state().owner_id, world.load()) == ("rep-05", {"rep-05": 1})
    assert [h.reason for h in world.of(HandOff)] == ["routed", "routed"]


# --- escalation ------------------------------------------------------------------------------------------------


def breached_acceptance(world: World) -> datetime:
    """A qualified lead routed to rep-04 who lets mql_acceptance pass; the breach comes from the timer."""
    qualified(world)
    (clock,) = world.sla(SlaStarted, "mql_acceptance")
    world.timer(clock.deadline)
    deadline: datetime = clock.deadline
    return deadline


def test_a_breached_acceptance_is_escalated_once_to_the_pools_manager_and_the_next_owner() -> None:
    world = World(hold=True)
    deadline = breached_acceptance(world)
    assert world.sla(SlaBreached, "mql_acceptance") == [], "the timer waits for the router's answer"
    world.deliver()
    (breach,) = world.sla(SlaBreached, "mql_acceptance")
    assert (breach.owner_id, breach.pool, breach.occurred_at) == ("rep-04", "latam", deadline)

    world = World(hold=False)
    deadline = breached_acceptance(world)
    (breach,) = world.sla(SlaBreached, "mql_acceptance")
    assert (breach.owner_id, breach.pool) == ("rep-04", "latam")
    (escalated,) = world.sla(SlaEscalated, "mql_acceptance")
    assert escalated.actions == ("reassign", "notify")
    assert (escalated.manager_id, escalated.owner_id, escalated.pool) == ("mgr-latam", "rep-04", "latam")
    assert escalated.deadline == deadline
    reassign = [r for r in world.of(RouteRequest) if r.escalated_sla]
    (asked,) = reassign
    assert (asked.pool, asked.exclude, asked.escalated_sla, asked.occurred_at) == (
        "latam",
        ("rep-04",),
        "mql_acceptance",
        deadline,
    )


@pytest.mark.parametrize(("seen_after", "escalated"), [(-1.0, True), (1.0, False)])
def test_only_breaches_within_the_escalation_horizon_act_on_people(seen_after: float, escalated: bool) -> None:
    """A worker that sees a deadline long after it passed (a backlog, history sent through the live topic)
    emits the breach as history, marked, without reassigning or notifying anyone today."""
    world = World()
    qualified(world)
    (clock,) = world.sla(SlaStarted, "mql_acceptance")
    horizon = timedelta(seconds=POLICY.processing.escalation_horizon_seconds)
    world.now = clock.deadline + horizon + timedelta(seconds=seen_after)
    world.timer(clock.deadline)
    (breach,) = world.sla(SlaBreached, "mql_acceptance")
    reassigns = [r for r in world.of(RouteRequest) if r.escalated_sla]
    if escalated:
        assert breach.not_escalated is None
        assert len(world.sla(SlaEscalated, "mql_acceptance")) == 1
        assert len(reassigns) == 1
        assert world.state().owner_id == "rep-05"
    else:
        assert breach.not_escalated is not None
        assert "escalation_horizon_seconds" in breach.not_escalated
        assert world.sla(SlaEscalated, "mql_acceptance") == []
        assert reassigns == []
        assert world.state().owner_id == "rep-04", "nobody is reassigned for a deadline that passed long ago"
    entries = [e for e in world.state().ledger.sla if e.sla == "mql_acceptance" and e.kind != "warning"]
    expected = ["started", "breached", "escalated", "cancelled", "started"] if escalated else ["started", "breached"]
    assert [e.kind for e in entries] == expected
    assert entries[1].reason == breach.not_escalated


def test_the_new_owner_restarts_the_clock_and_gets_an_escalated_hand_off() -> None:
    world = World()
    deadline = breached_acceptance(world)
    state = world.state()
    assert (state.owner_id, state.pool) == ("rep-05", "latam")
    assert world.load() == {"rep-05": 1}, "the old owner let go once the new one took the lead"
    (released,) = world.of(RouteRelease)
    assert released.owner_id == "rep-04"
    (cancel,) = world.sla(SlaCancelled, "mql_acceptance")
    assert (cancel.reason, cancel.owner_id, cancel.deadline) == ("reassigned", "rep-04", deadline)
    first, second = world.sla(SlaStarted, "mql_acceptance")
    assert second.owner_id == "rep-05"
    assert second.started_at == deadline + ANSWER_DELAY
    assert second.deadline == SALES.add(second.started_at, 8 * 3600) > first.deadline
    assert second.allowance_s == first.allowance_s
    handoffs = world.of(HandOff)
    assert [(h.owner_id, h.reason, h.previous_owner_id) for h in handoffs] == [
        ("rep-04", "routed", None),
        ("rep-05", "escalated", "rep-04"),
    ]
    acceptance = next(s for s in handoffs[1].slas if s.sla == "mql_acceptance")
    assert acceptance.deadline == second.deadline
    assert len(world.sla(SlaBreached, "mql_acceptance")) == 1, "the breach stays emitted once"
    assert world.state().clocks["mql_acceptance"].breached is False


def test_an_accept_after_the_reassignment_meets_the_new_clock() -> None:
    world = World()
    deadline = breached_acceptance(world)
    world.send("lead.accepted", deadline + timedelta(hours=1))
    (met,) = world.sla(SlaMet, "mql_acceptance")
    assert not met.late
    assert met.owner_id == "rep-05"
    assert met.started_at == deadline + ANSWER_DELAY
    assert len(world.sla(SlaBreached, "mql_acceptance")) == 1
    assert world.load() == {}
    assert [r.owner_id for r in world.of(RouteRelease)] == ["rep-04", "rep-05"]


def test_a_second_breach_only_notifies_the_manager() -> None:
    world = World()
    breached_acceptance(world)
    (_, restarted) = world.sla(SlaStarted, "mql_acceptance")
    world.timer(restarted.deadline)
    breaches = world.sla(SlaBreached, "mql_acceptance")
    assert [b.owner_id for b in breaches] == ["rep-04", "rep-05"]
    second = world.sla(SlaEscalated, "mql_acceptance")[1]
    assert (second.actions, second.manager_id, second.owner_id) == (("notify",), "mgr-latam", "rep-05")
    assert len([r for r in world.of(RouteRequest) if r.escalated_sla]) == 1, "no round robin ping-pong"
    assert world.state().owner_id == "rep-05"


def test_a_breach_seen_by_a_later_event_is_escalated_too() -> None:
    """No timer: the next event of the lead (inside the lateness window) sees the breach. The answer is dated just
    after the deadline, so it sorts before that event and is applied in its place."""
    world = World()
    qualified(world)
    (clock,) = world.sla(SlaStarted, "mql_acceptance")
    world.send("contact.attempted", clock.deadline + timedelta(minutes=5), channel="phone", outcome="no_answer")
    assert len(world.sla(SlaBreached, "mql_acceptance")) == 1
    state = world.state()
    assert (state.owner_id, state.pool) == ("rep-05", "latam")
    assert world.load() == {"rep-05": 1}
    assert [h.reason for h in world.of(HandOff)] == ["routed", "escalated"]


def escalated_on_hold(world: World) -> datetime:
    """rep-04 misses the acceptance; the escalation answer (rep-05) is held back."""
    qualified(world)
    world.deliver()
    (clock,) = world.sla(SlaStarted, "mql_acceptance")
    world.timer(clock.deadline)
    assert len(world.queued) == 1
    deadline: datetime = clock.deadline
    return deadline


@pytest.mark.parametrize("window_moves_on", [False, True])
def test_an_external_assignment_after_the_breach_waits_for_the_escalation_answer_then_wins(
    window_moves_on: bool,
) -> None:
    """The escalation answer takes effect at its time (rep-05, clock restarted), then the external owner wins;
    both routed owners let go."""
    world = World(hold=True)
    deadline = escalated_on_hold(world)
    world.send("lead.assigned", deadline + timedelta(minutes=1), owner_id="rep-99", team="field_sales")
    if window_moves_on:
        world.send("contact.attempted", deadline + timedelta(hours=1), channel="phone", outcome="connected")
    world.deliver()
    state = world.state()
    assert (state.owner_id, state.pool) == ("rep-99", None)
    assert world.load() == {}, "both routed owners let go"
    assert [h.owner_id for h in world.of(HandOff)] == ["rep-04", "rep-05", "rep-99"]
    assert world.of(HandOff)[-1].owner_id == "rep-99", "the last hand-off names the owner"


@pytest.mark.parametrize("accepted_after", [timedelta(minutes=5), timedelta(hours=1)])
def test_an_acceptance_after_the_breach_waits_for_the_escalation_answer(accepted_after: timedelta) -> None:
    """rep-04 accepts after the deadline, before the escalation answer arrives: the answer comes first (at the
    deadline), so the lead was rep-05's when accepted. The old clock stays breached and is closed as reassigned;
    the restarted one is met in time, for rep-05. The same as a replay of these events."""
    world = World(hold=True)
    deadline = escalated_on_hold(world)
    world.send("lead.accepted", deadline + accepted_after)
    world.deliver()
    state = world.state()
    assert (state.stage, state.owner_id) == ("sal", "rep-05")
    assert world.load() == {}
    assert [h.reason for h in world.of(HandOff)] == ["routed", "escalated"]
    (cancelled,) = world.sla(SlaCancelled, "mql_acceptance")
    assert cancelled.reason == "reassigned"
    (met,) = world.sla(SlaMet, "mql_acceptance")
    assert (met.late, met.owner_id) == (False, "rep-05")
    assert len(world.sla(SlaStarted, "mql_acceptance")) == 2


def test_an_escalation_outside_mql_gives_the_capacity_back() -> None:
    """A policy that reassigns a missed first contact while the lead is already accepted: the new owner takes the
    lead, but an accepted lead holds no MQL capacity, so the router must not keep counting it."""

    def change(document: dict[str, Any]) -> None:
        first_contact = next(s for s in document["slas"] if s["name"] == "first_contact")
        first_contact["escalate"] = ["reassign"]

    world = World(make_policy(change))
    qualified(world)
    world.send("lead.accepted", 0.5)
    assert world.load() == {}
    (clock,) = world.sla(SlaStarted, "first_contact")
    world.timer(clock.deadline)
    state = world.state()
    assert (state.stage, state.owner_id, state.pool) == ("sal", "rep-05", "latam")
    assert [(h.reason, h.stage) for h in world.of(HandOff)] == [("routed", "mql"), ("escalated", "sal")]
    assert world.load() == {}
    (_, restarted) = world.sla(SlaStarted, "first_contact")
    assert restarted.owner_id == "rep-05"


# --- duplicates ------------------------------------------------------------------------------------------------


def test_redelivering_any_event_of_the_story_produces_nothing_new() -> None:
    world = World()
    qualified(world)
    (clock,) = world.sla(SlaStarted, "mql_acceptance")
    world.timer(clock.deadline)
    world.send("contact.attempted", clock.deadline + timedelta(hours=1), channel="phone", outcome="connected")
    world.send("lead.accepted", clock.deadline + timedelta(hours=2))
    assert [h.reason for h in world.of(HandOff)] == ["routed", "escalated"]
    routing, record = world.routing, world.records["L1"]
    story = list(world.events)
    assert {e.type for e in story} >= {"lead.created", "lead.qualified", "lead.assigned", "timer.due", "lead.accepted"}
    for event in story:
        assert world.feed(event) == [], f"{event.type} {event.event_id} again"
    assert world.routing == routing
    assert world.records["L1"] == record
