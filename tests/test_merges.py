"""Merges across leads (core.merges): the surviving lead learns what it absorbed, a merge that would close a cycle
is refused, and events sent to a merged lead are forwarded along the chain to the lead that survived (at most
MAX_FORWARD_HOPS times), so that facts are never lost; offline (core.engine) and live (streams.runtime.worker) alike."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e import Deployment, read_topic
from factories import POLICY, T0, at, make_event
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.decision import Decision, decide
from leadflow.core.engine import Engine
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.intake import INTERNAL_HEADER, decode, header, internal_proof
from leadflow.core.merges import (
    MAX_FORWARD_HOPS,
    MAX_ID_LENGTH,
    MERGE_SOURCE,
    forwarded_id,
    hops_of,
)
from leadflow.core.report import funnel_report, summaries_of
from leadflow.schemas.events import EVENT_ADAPTER, MAX_MERGED_FROM, LeadAbsorbed, LeadEvent
from leadflow.schemas.outputs import (
    TRANSITION_ADAPTER,
    DeadLetter,
    EventRefused,
    Forward,
    Output,
    RouteRelease,
    StageChanged,
)
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord, LeadState
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.metrics import Metrics
from leadflow.streams.runtime.worker import Worker

NOW = T0 + timedelta(days=30)
KEY = b"a-worker-secret-of-32-bytes-long"
WHERE: dict[str, Any] = {"topic": "leads.events", "partition": 0, "offset": 1, "received_at": NOW}


def event(kind: str, t: float, lead: str, event_id: str | None = None, **data: Any) -> LeadEvent:
    return make_event(kind, t, lead_id=lead, event_id=event_id, **data)


class World:
    """The whole worker offline (core.engine, what `leadflow replay` runs): forwards are applied at once."""

    def __init__(self, *leads: str) -> None:
        self.engine = Engine(POLICY)
        self.outputs: list[Output] = []
        for n, lead in enumerate(leads):
            self.feed(event("lead.created", n, lead, f"c-{lead}"))

    def feed(self, sent: LeadEvent) -> list[Output]:
        outputs = self.engine.feed(sent)
        self.outputs += outputs
        return outputs

    def send(self, kind: str, t: float, lead: str, event_id: str | None = None, **data: Any) -> list[Output]:
        return self.feed(event(kind, t, lead, event_id, **data))

    def state(self, lead: str) -> LeadState:
        state = self.engine.records[lead].state
        assert state is not None
        return state

    def refusals(self, outputs: Iterable[Output] | None = None) -> list[EventRefused]:
        return [o for o in (self.outputs if outputs is None else outputs) if isinstance(o, EventRefused)]


def forwards(outputs: Iterable[Output]) -> list[Forward]:
    return [o for o in outputs if isinstance(o, Forward)]


def chain(world: World, leads: list[str], t: float = 100) -> None:
    """leads[0] into leads[1], then leads[1] into leads[2], ...: one chain, merged in that order."""
    for n, (lead, into) in enumerate(itertools.pairwise(leads)):
        world.send("lead.merged", t + n, lead, f"m-{lead}", into_lead_id=into)


# ---- the notice: the surviving lead knows what it is made of -------------------------------------------------


def test_a_merge_tells_the_lead_it_was_merged_into_with_a_signed_internal_event() -> None:
    world = World("A", "B")
    outputs = world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    (notice,) = forwards(outputs)
    assert (notice.lead_id, notice.into_lead_id, notice.occurred_at) == ("A", "B", at(10))
    absorbed = notice.event
    assert isinstance(absorbed, LeadAbsorbed)
    assert (absorbed.event_id, absorbed.lead_id, absorbed.source) == ("merge:A:m1", "B", MERGE_SOURCE)
    assert (absorbed.data.from_lead_id, absorbed.data.merged_from) == ("A", ())
    assert world.state("A").merged_into == "B"
    assert world.state("B").merged_from == ("A",)
    assert world.state("B").merged_into is None
    assert world.refusals() == []


def test_the_survivor_keeps_every_lead_of_the_chain() -> None:
    world = World("A", "B", "C", "D")
    chain(world, ["A", "B", "C"])
    assert world.state("C").merged_from == ("A", "B")
    world.send("lead.merged", 200, "D", "m-D", into_lead_id="A")  # into a merged lead: the notice follows the chain
    assert world.state("A").merged_from == ("D",)
    assert world.state("B").merged_from == ("A", "D")
    assert world.state("C").merged_from == ("A", "B", "D")
    assert world.refusals() == []


def test_merged_from_is_bounded_and_the_same_whatever_the_order_of_the_notices() -> None:
    leads = [f"L{n:03d}" for n in range(MAX_MERGED_FROM + 20)]
    forward = World("S", *leads)
    for n, lead in enumerate(leads):
        forward.send("lead.merged", 1000 + n, lead, f"m-{lead}", into_lead_id="S")
    backward = World("S", *leads)
    for n, lead in enumerate(reversed(leads)):
        backward.send("lead.merged", 1000 + n, lead, f"m-{lead}", into_lead_id="S")
    kept = forward.state("S").merged_from
    assert kept == backward.state("S").merged_from == tuple(sorted(leads)[:MAX_MERGED_FROM])


@pytest.mark.parametrize(
    ("merges", "refused"),
    [
        ([("A", "B")], ("B", "A")),  # straight back
        ([("A", "B"), ("B", "C")], ("C", "A")),  # around a chain
        ([("A", "B"), ("B", "C")], ("C", "B")),
        ([("A", "B"), ("C", "A")], ("B", "C")),  # C reached B through A
    ],
)
def test_a_merge_that_would_close_a_cycle_is_refused(merges: list[tuple[str, str]], refused: tuple[str, str]) -> None:
    world = World("A", "B", "C")
    for n, (lead, into) in enumerate(merges):
        world.send("lead.merged", 100 + n, lead, f"m{n}", into_lead_id=into)
    lead, into = refused
    before = world.state(lead)
    outputs = world.send("lead.merged", 200, lead, "cycle", into_lead_id=into)
    (refusal,) = world.refusals(outputs)
    assert (refusal.reason, refusal.lead_id, refusal.event_id) == ("merge_cycle", lead, "cycle")
    assert f"{into} was merged into this lead" in refusal.detail
    assert "nothing to do" in refusal.detail
    assert world.state(lead) == before
    assert world.state(lead).merged_into is None


def test_a_merge_into_itself_is_still_refused_and_a_repeated_merge_changes_nothing() -> None:
    world = World("A", "B")
    (refusal,) = world.refusals(world.send("lead.merged", 10, "A", into_lead_id="A"))
    assert refusal.reason == "self_merge"
    world.send("lead.merged", 20, "A", "m1", into_lead_id="B")
    merged = world.state("A")
    assert world.send("lead.merged", 30, "A", "m2", into_lead_id="B") == []  # the CRM said it twice
    assert world.state("A") == merged
    assert world.state("B").merged_from == ("A",)


# ---- forwarding: later events reach the lead that survived ---------------------------------------------------


def test_a_fact_for_a_merged_lead_is_applied_to_the_lead_it_was_merged_into() -> None:
    world = World("A", "B")
    world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    merged = world.state("A")
    outputs = world.send("deal.won", 20, "A", "won-1", amount=5000.0)
    (forward,) = forwards(outputs)
    assert (forward.lead_id, forward.into_lead_id) == ("A", "B")
    copy = forward.event
    assert (copy.event_id, copy.lead_id, copy.type, copy.occurred_at, copy.source) == (
        "fwd:1:A:won-1",
        "B",
        "deal.won",
        at(20),
        "test",
    )
    (changed,) = [o for o in outputs if isinstance(o, StageChanged)]
    assert (changed.lead_id, changed.to_stage, changed.cause_event_id, changed.reason) == (
        "B",
        "customer",
        "fwd:1:A:won-1",
        "won",
    )
    assert (world.state("B").stage, world.state("B").won_amount) == ("customer", 5000.0)
    assert world.state("A") == merged
    assert world.refusals() == []


def test_every_producer_event_type_is_forwarded_with_its_data() -> None:
    samples: dict[str, dict[str, Any]] = {
        "lead.updated": {"job_title": "CMO", "company": None, "origin": "webinar"},
        "activity": {"action": "pricing_view", "url": "https://x.example/pricing"},
        "lead.qualified": {"reason": "sdr_referral"},
        "lead.assigned": {"owner_id": "rep-1", "team": "sales"},
        "lead.accepted": {},
        "lead.rejected": {"reason": "no_budget", "note": "next year"},
        "contact.attempted": {"channel": "phone", "outcome": "no_answer"},
        "meeting.scheduled": {"starts_at": "2026-11-25T10:00:00-03:00"},
        "deal.stage_changed": {"stage": "qualified_call", "bant": {"need": True}, "amount": 10.0},
        "deal.won": {"amount": 5000.0, "currency": "BRL"},
        "deal.lost": {"reason": "price"},
        "lead.disqualified": {"reason": "student"},
        "lead.paused": {},
        "lead.resumed": {},
        "lead.merged": {"into_lead_id": "C"},
    }
    for n, (kind, data) in enumerate(samples.items()):
        world = World("A", "B", "C")
        world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
        sent = event(kind, 20 + n, "A", f"e-{n}", **data)
        forward = forwards(world.feed(sent))[0]  # a forwarded merge then sends the survivor's notice
        expected = sent.model_dump(exclude_unset=True) | {"event_id": f"fwd:1:A:e-{n}", "lead_id": "B"}
        assert forward.event.model_dump(exclude_unset=True) == expected, kind
        # What goes on the events topic reads back, signed, as that very event (a null that clears stays).
        value = forward.value()
        assert decode(b"B", value, **WHERE, proof=internal_proof(value, KEY), internal_key=KEY) == forward.event
        assert orjson.loads(value).get("data", {}) == orjson.loads(orjson.dumps(data)), kind


def test_an_event_follows_the_chain_hop_by_hop_to_its_end() -> None:
    world = World("A", "B", "C")
    chain(world, ["A", "B", "C"])
    outputs = world.send("contact.attempted", 200, "A", "call-1", channel="phone", outcome="connected")
    assert [(f.lead_id, f.into_lead_id, f.event.event_id) for f in forwards(outputs)] == [
        ("A", "B", "fwd:1:A:call-1"),
        ("B", "C", "fwd:2:B:fwd:1:A:call-1"),
    ]
    assert [world.state(lead).contact_attempts for lead in "ABC"] == [0, 0, 1]
    assert world.engine.inputs["applied"] == 3 + 2 + 1  # created, merged, the call once (where it was applied)
    assert world.engine.outcomes["forwarded"] == 2


def test_a_redelivered_event_is_forwarded_once_and_a_redelivered_forward_is_a_duplicate() -> None:
    world = World("A", "B")
    world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    call = event("contact.attempted", 20, "A", "call-1", channel="phone", outcome="connected")
    (forward,) = forwards(world.feed(call))
    assert world.feed(call) == []  # redelivered to A: a duplicate there
    assert world.engine.decide(forward.event).outcome == "duplicate"  # A sent it twice (a crash): B dedupes
    assert world.state("B").contact_attempts == 1


def test_hops_are_limited_then_the_event_is_refused_with_the_reason() -> None:
    leads = [f"L{n}" for n in range(MAX_FORWARD_HOPS + 2)]
    world = World(*leads)
    chain(world, leads)
    # MAX_FORWARD_HOPS hops reach L[MAX_FORWARD_HOPS]; the end of this chain is one further.
    outputs = world.send("activity", 500, "L0", "view-1", action="page_view")
    assert len(forwards(outputs)) == MAX_FORWARD_HOPS
    (refusal,) = world.refusals(outputs)
    assert (refusal.reason, refusal.lead_id) == ("merge_chain_too_long", leads[MAX_FORWARD_HOPS])
    assert hops_of(refusal.event_id) == MAX_FORWARD_HOPS
    assert f"forwarded {MAX_FORWARD_HOPS} times" in refusal.detail
    assert "send the event to the lead that survived" in refusal.detail
    # One lead closer to the end, the same event arrives.
    world.send("activity", 501, "L1", "view-2", action="email_open")
    assert world.state(leads[-1]).engagement.keys() == {"email_open"}


def test_long_ids_stay_identifiers_and_keep_their_hop_count() -> None:
    lead, long_id = "x" * 200, "e" * 200
    first = forwarded_id(lead, long_id)
    assert len(first) <= MAX_ID_LENGTH
    assert first == forwarded_id(lead, long_id), "deterministic: a redelivery dedupes"
    assert first != forwarded_id(lead, long_id[:-1] + "f")
    assert hops_of(first) == 1
    assert hops_of(forwarded_id("y" * 200, first)) == 2
    assert [hops_of(i) for i in ("evt-1", "fwd:x", "fwd:3:A:e", "fwd:12:B:fwd:11:A:e", "fwd:٣:A:e")] == [0, 0, 3, 12, 0]


def test_what_is_not_forwarded() -> None:
    world = World("A", "B")
    world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    merged = world.state("A")
    # A second lead.created is refused as before.
    (exists,) = world.refusals(world.send("lead.created", 20, "A", "c2"))
    assert exists.reason == "lead_exists"
    # A late router answer gives its owner's capacity back and is not passed on.
    answer = EVENT_ADAPTER.validate_python(
        {
            "event_id": "route:r1",
            "lead_id": "A",
            "type": "lead.assigned",
            "occurred_at": at(30).isoformat(),
            "source": ROUTER_SOURCE,
            "data": {"owner_id": "rep-1", "pool": "latam", "reason": "routed"},
        }
    )
    decision = decide(world.engine.records["A"], answer, POLICY, NOW)
    assert decision.outcome == "refused"
    assert [type(o) for o in decision.outputs] == [EventRefused, RouteRelease]
    assert forwards(decision.outputs) == []
    # Timer ticks are the lead's own (a merged lead has no clocks).
    tick = EVENT_ADAPTER.validate_python(
        {"event_id": "timer:x", "lead_id": "A", "type": "timer.due", "occurred_at": at(40).isoformat(), "source": "t"}
    )
    assert forwards(decide(world.engine.records["A"], tick, POLICY, NOW).outputs) == []
    assert world.state("A") == merged
    # An erasure request erases the merged lead itself, and only it.
    world.send("lead.erased", 50, "A", "erase-1")
    assert world.engine.records["A"].state is None
    assert world.state("B").merged_from == ("A",)


def test_a_merge_into_an_unknown_or_erased_lead_is_refused_there_with_the_reason() -> None:
    world = World("A", "B")
    outputs = world.send("lead.merged", 10, "A", "m1", into_lead_id="nobody")
    (unknown,) = world.refusals(outputs)
    assert (unknown.reason, unknown.lead_id, unknown.event_type) == ("unknown_lead", "nobody", "lead.absorbed")
    assert "A was merged into this lead_id" in unknown.detail
    (forwarded,) = world.refusals(world.send("activity", 20, "A", action="page_view"))
    assert (forwarded.reason, forwarded.lead_id) == ("unknown_lead", "nobody")
    world.send("lead.erased", 30, "B", "erase-B")
    world.send("lead.created", 20, "C", "c-C")
    (erased,) = world.refusals(world.send("lead.merged", 25, "C", "m2", into_lead_id="B"))
    assert (erased.reason, erased.lead_id) == ("lead_erased", "B")
    # Dated after the erasure, the merge waits for B's person to come back, as for a lead not created yet.
    world.send("lead.created", 40, "D", "c-D")
    (waits,) = world.refusals(world.send("lead.merged", 50, "D", "m3", into_lead_id="B"))
    assert (waits.reason, waits.lead_id) == ("unknown_lead", "B")


def test_a_forwarded_merge_merges_the_survivor_and_is_checked_there() -> None:
    world = World("A", "B", "C", "D")
    chain(world, ["A", "B", "C"])
    # A is C now: "A is D" merges C into D.
    world.send("lead.merged", 200, "A", "m-AD", into_lead_id="D")
    assert world.state("C").merged_into == "D"
    assert world.state("D").merged_from == ("A", "B", "C")
    # "A is B": B is part of D already; done, nothing refused.
    world.send("lead.merged", 300, "A", "m-AB", into_lead_id="D")
    assert world.refusals() == []


# ---- merges at the same moment on different partitions: reported, never looping -------------------------------


@dataclass
class Partitions:
    """Leads decided one at a time, as the live workers do, with what they send back through the events topic
    (forwards, merge notices) held in flight until `deliver`: two merges can cross."""

    records: dict[str, LeadRecord] = field(default_factory=dict)
    in_flight: list[LeadEvent] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    decisions: list[tuple[LeadEvent, Decision]] = field(default_factory=list)

    def feed(self, sent: LeadEvent) -> None:
        decision = decide(self.records.get(sent.lead_id), sent, POLICY, NOW)
        self.decisions.append((sent, decision))
        if decision.changed:
            self.records[sent.lead_id] = decision.record
        self.outputs += decision.outputs
        self.in_flight += [o.event for o in forwards(decision.outputs)]

    def deliver(self, index: int = 0) -> None:
        self.feed(self.in_flight.pop(index))

    def deliver_all(self) -> None:
        while self.in_flight:
            self.deliver()

    def state(self, lead: str) -> LeadState:
        state = self.records[lead].state
        assert state is not None
        return state


def test_opposite_merges_that_cross_are_reported_as_a_cycle_and_their_events_refused_after_going_round() -> None:
    world = Partitions()
    for n, lead in enumerate("AB"):
        world.feed(event("lead.created", n, lead, f"c-{lead}"))
    world.feed(event("lead.merged", 2000, "A", "m-AB", into_lead_id="B"))
    world.feed(event("lead.merged", 2000, "B", "m-BA", into_lead_id="A"))  # before A's notice arrives
    world.deliver_all()
    cycles = [o for o in world.outputs if isinstance(o, EventRefused)]
    assert sorted((r.lead_id, r.event_type, r.reason) for r in cycles) == [
        ("A", "lead.absorbed", "merge_cycle"),
        ("B", "lead.absorbed", "merge_cycle"),
    ]
    assert "merges in opposite directions" in cycles[0].detail
    assert "new lead_id" in cycles[0].detail
    world.outputs.clear()
    world.feed(event("deal.won", 4000, "A", "won-1", amount=10.0))
    world.deliver_all()
    *passed, refused = world.outputs
    assert [(f.lead_id, f.into_lead_id) for f in forwards(passed)] == [("A", "B"), ("B", "A")] * 4
    assert isinstance(refused, EventRefused)
    assert (refused.lead_id, refused.reason) == ("A", "merge_chain_too_long")
    assert "or a cycle" in refused.detail
    assert world.state("A").stage == world.state("B").stage == "lead"


def test_opposite_merges_seen_in_order_keep_the_first_and_refuse_the_second() -> None:
    """What a replay does (the notice arrives at once), and the live workers when the notice comes first."""
    world = World("A", "B")
    world.send("lead.merged", 2000, "A", "m-AB", into_lead_id="B")
    (refused,) = world.refusals(world.send("lead.merged", 2001, "B", "m-BA", into_lead_id="A"))
    assert (refused.lead_id, refused.reason) == ("B", "merge_cycle")
    world.send("deal.won", 4000, "A", "won-1", amount=10.0)
    assert (world.state("A").merged_into, world.state("B").stage) == ("B", "customer")


def test_a_notice_takes_effect_when_it_arrives_and_never_undoes_a_merge_applied_before() -> None:
    """B merged into A (its events went to A) before the notice that A had been merged into B came: applied in
    its event-time place, the notice would refuse B's merge afterwards, and B's forwarded events would count at
    both leads. It takes effect on arrival: reported as a cycle, B stays merged, its events are not applied twice."""
    world = Partitions()
    for n, lead in enumerate("AB"):
        world.feed(event("lead.created", n, lead, f"c-{lead}"))
    world.feed(event("lead.merged", 100, "A", "m-AB", into_lead_id="B"))
    world.feed(event("lead.merged", 200, "B", "m-BA", into_lead_id="A"))  # inside B's lateness window
    world.feed(event("contact.attempted", 300, "B", "call", channel="phone", outcome="connected"))
    notice_for_b = next(i for i, e in enumerate(world.in_flight) if e.lead_id == "B")
    world.deliver(notice_for_b)
    assert world.state("B").merged_into == "A"
    world.deliver_all()
    assert world.state("A").contact_attempts + world.state("B").contact_attempts == 0
    refused = [o.reason for o in world.outputs if isinstance(o, EventRefused) and o.event_type == "contact.attempted"]
    assert refused == ["merge_chain_too_long"]


def test_a_longer_cycle_of_crossing_merges_ends_refused_not_looping() -> None:
    world = Partitions()
    for n, lead in enumerate("ABC"):
        world.feed(event("lead.created", n, lead, f"c-{lead}"))
    for lead, into in (("A", "B"), ("B", "C"), ("C", "A")):
        world.feed(event("lead.merged", 2000, lead, f"m-{lead}", into_lead_id=into))
    world.feed(event("contact.attempted", 3000, "A", "call", channel="phone", outcome="connected"))
    world.deliver_all()  # ends: every hop raises the count, and the count is bounded
    refused = [o for o in world.outputs if isinstance(o, EventRefused) and o.event_type == "contact.attempted"]
    assert [r.reason for r in refused] == ["merge_chain_too_long"]
    assert all(world.state(lead).contact_attempts == 0 for lead in "ABC")


# ---- properties -----------------------------------------------------------------------------------------------

LEADS = ["L0", "L1", "L2", "L3", "L4", "L5"]
MERGE = st.tuples(st.just("merge"), st.sampled_from(LEADS), st.sampled_from(LEADS))
PROBE = st.tuples(st.just("call"), st.sampled_from(LEADS), st.just(""))
STEP = st.one_of(MERGE, MERGE, PROBE)
# Between two inputs: inside the lateness window (a late forward applies the window again), or beyond it.
GAPS = st.sampled_from([1.0, 100.0, 1000.0])


def end_of_chain(records: dict[str, LeadRecord], lead: str) -> tuple[str, int]:
    """The lead that survived and how many merges lie between; raises on a cycle."""
    seen = [lead]
    while (state := records[lead].state) is not None and state.merged_into is not None:
        lead = state.merged_into
        assert lead not in seen, f"merge cycle {[*seen, lead]}"
        seen.append(lead)
    return lead, len(seen) - 1


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=25), GAPS)
def test_merges_one_after_another_never_make_a_cycle_and_every_event_reaches_the_end_of_its_chain(
    steps: list[tuple[str, str, str]], gap: float
) -> None:
    world = World(*LEADS)
    records = world.engine.records
    for n, (kind, lead, into) in enumerate(steps):
        t = len(LEADS) + (n + 1) * gap
        if kind == "merge":
            outputs = world.send("lead.merged", t, lead, f"m{n}", into_lead_id=into)
            assert {r.reason for r in world.refusals(outputs)} <= {"self_merge", "merge_cycle", "merge_chain_too_long"}
            for lead_id in LEADS:
                end_of_chain(records, lead_id)  # no cycle, ever
            continue
        end, hops = end_of_chain(records, lead)
        before = {lead_id: world.state(lead_id).contact_attempts for lead_id in LEADS}
        outputs = world.send("contact.attempted", t, lead, f"call{n}", channel="phone", outcome="connected")
        after = {lead_id: world.state(lead_id).contact_attempts for lead_id in LEADS}
        if hops <= MAX_FORWARD_HOPS:  # six leads: always
            assert after == before | {end: before[end] + 1}
            assert world.refusals(outputs) == []
            assert len(forwards(outputs)) == hops
    # Every surviving lead knows every lead whose chain ends there.
    for lead_id in LEADS:
        end, hops = end_of_chain(records, lead_id)
        if hops:
            assert lead_id in world.state(end).merged_from


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=25), GAPS, st.data())
def test_crossing_merges_end_every_event_applied_once_or_refused_with_a_reason(
    steps: list[tuple[str, str, str]], gap: float, data: st.DataObject
) -> None:
    world = Partitions()
    for n, lead in enumerate(LEADS):
        world.feed(event("lead.created", n, lead, f"c-{lead}"))
    calls = 0
    for n, (kind, lead, into) in enumerate(steps):
        # What was sent back through the topic arrives later, in any order, among the next inputs.
        while world.in_flight and data.draw(st.booleans()):
            world.deliver(data.draw(st.integers(0, len(world.in_flight) - 1)))
        t = len(LEADS) + (n + 1) * gap
        if kind == "merge":
            world.feed(event("lead.merged", t, lead, f"m{n}", into_lead_id=into))
        else:
            calls += 1
            world.feed(event("contact.attempted", t, lead, f"call{n}", channel="phone", outcome="connected"))
    delivered = 0
    while world.in_flight:
        world.deliver(data.draw(st.integers(0, len(world.in_flight) - 1)))
        delivered += 1
        assert delivered < 10_000, "forwarding does not end"
    refused = [o for o in world.outputs if isinstance(o, EventRefused)]
    assert {r.reason for r in refused} <= {"self_merge", "merge_cycle", "merge_chain_too_long"}
    applied = sum(world.state(lead).contact_attempts for lead in LEADS)
    assert applied + sum(r.event_type == "contact.attempted" for r in refused) == calls, "each call applied or refused"
    for sent, decision in world.decisions:
        assert decision.outcome not in ("held", "ignored"), (sent, decision.outcome)


# ---- counted once ---------------------------------------------------------------------------------------------


def test_a_forwarded_fact_is_counted_once_in_the_report_the_replay_and_the_metrics() -> None:
    world = World("A", "B")
    world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    metrics = Metrics(POLICY)
    won = event("deal.won", 20, "A", "won-1", amount=5000.0)
    at_a = decide(world.engine.records["A"], won, POLICY, NOW)
    (forward,) = forwards(at_a.outputs)
    at_b = decide(world.engine.records["B"], forward.event, POLICY, NOW)
    metrics.observe(won, at_a, NOW)
    metrics.observe(forward.event, at_b, NOW)
    assert (at_a.outcome, at_b.outcome) == ("forwarded", "applied")
    assert metrics.registry.get_sample_value("leadflow_deals_won_total") == 1
    sample = {"type": "deal.won", "source": "test"}
    assert metrics.registry.get_sample_value("leadflow_events_total", sample | {"outcome": "forwarded"}) == 1
    assert metrics.registry.get_sample_value("leadflow_events_total", sample | {"outcome": "applied"}) == 1

    world.feed(won)
    assert world.engine.inputs == {"applied": 2 + 1 + 1}  # created twice, merged, won once
    report = funnel_report(list(summaries_of(world.engine.leads())), POLICY, NOW)
    assert report["revenue"]["won_known"] == 1
    assert report["revenue"]["amount"] == 5000.0
    assert (report["leads"], report["merged"], report["stage_counts"]["customer"]) == (2, 1, 1)


# ---- the shell: a forward is sent back to the events topic, signed ---------------------------------------------


def test_the_worker_sends_a_forward_to_the_events_topic_keyed_by_its_lead_and_signed(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_agent import capture_outbox

    sent: list[tuple[bytes | None, bytes | None, Any]] = []

    def capture(key: bytes | None, value: bytes | None, headers: Any) -> None:
        sent.append((key, value, headers))

    def refuse(key: bytes | None, value: bytes | None, headers: Any) -> None:
        raise AssertionError("a forward goes to the events topic only")

    others = ("topic_transitions", "topic_sla", "topic_handoffs", "topic_routing", "topic_deadletter")
    sinks = {worker.settings.topic_events: capture} | {getattr(worker.settings, t): refuse for t in others}
    capture_outbox(monkeypatch, worker, sinks)
    world = World("A", "B")
    world.send("lead.merged", 10, "A", "m1", into_lead_id="B")
    (forward,) = forwards(world.send("activity", 20, "A", "view-1", action="page_view"))
    worker.send_output(forward, b"A")
    ((key, value, headers),) = sent
    assert (key, value) == (b"B", forward.value())
    proof = header(headers, INTERNAL_HEADER)
    assert proof == internal_proof(value, worker.internal_key)
    assert decode(key, value, **WHERE, proof=proof, internal_key=worker.internal_key) == forward.event
    # Without the proof, a producer's copy is dead-lettered: the id is leadflow's.
    letter = decode(key, value, **WHERE, internal_key=worker.internal_key)
    assert isinstance(letter, DeadLetter)
    assert letter.errors[0].startswith("event_id: 'fwd:1:A:view-1' is leadflow's own")


@pytest.mark.broker
async def test_a_fact_sent_to_a_merged_lead_is_applied_to_the_survivor_across_the_broker(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    start = datetime.now(UTC) - timedelta(minutes=5)

    def envelope(kind: str, seconds: float, lead: str, event_id: str, **data: Any) -> tuple[bytes, bytes]:
        body = {
            "event_id": event_id,
            "lead_id": lead,
            "type": kind,
            "occurred_at": (start + timedelta(seconds=seconds)).isoformat(),
            "source": "e2e",
            "data": data,
        }
        return lead.encode(), orjson.dumps(body)

    # Three leads (on different partitions, or not: the forwards go through the topic either way), one chain.
    leads = ("merge-a", "merge-b", "merge-c")
    await deployment.produce(
        [
            *(envelope("lead.created", n, lead, f"c-{lead}") for n, lead in enumerate(leads)),
            envelope("lead.merged", 10, "merge-a", "m-ab", into_lead_id="merge-b"),
            envelope("lead.merged", 11, "merge-b", "m-bc", into_lead_id="merge-c"),
            envelope("deal.won", 20, "merge-a", "won-1", amount=5000.0),
        ]
    )
    worker = deployment.worker().start()
    try:
        await deployment.wait_processed(worker)
        transitions: list[Any] = []
        for _ in range(120):  # the forwards come back through the events topic: until the survivor has the win
            records = await read_topic(broker.bootstrap, deployment.transitions)
            transitions = [TRANSITION_ADAPTER.validate_json(v or b"") for _, v in records]
            if any(isinstance(t, StageChanged) and t.to_stage == "customer" for t in transitions):
                break
            await asyncio.sleep(0.5)
        await deployment.wait_all_committed(worker)
    finally:
        worker.stop()
    won = [t for t in transitions if isinstance(t, StageChanged) and t.to_stage == "customer"]
    assert [(t.lead_id, t.cause_event_id) for t in won] == [("merge-c", "fwd:2:merge-b:fwd:1:merge-a:won-1")]
    assert [t for t in transitions if isinstance(t, EventRefused)] == []
    events = [EVENT_ADAPTER.validate_json(v or b"") for _, v in await read_topic(broker.bootstrap, deployment.events)]
    assert {e.event_id for e in events} >= {"fwd:1:merge-a:won-1", "fwd:2:merge-b:fwd:1:merge-a:won-1"}
    assert {e.lead_id for e in events if isinstance(e, LeadAbsorbed)} <= {"merge-b", "merge-c"}
    table: dict[str, LeadRecord] = {}
    for key, value in await read_topic(broker.bootstrap, deployment.changelog):
        if key is not None and value is not None:
            table[key.decode()] = LEAD_RECORD_ENCODING.decode(value)
    survivor = table["merge-c"].state
    assert survivor is not None
    assert (survivor.stage, survivor.won_amount, survivor.merged_from) == ("customer", 5000.0, ("merge-a", "merge-b"))
    merged = [table[lead].state for lead in ("merge-a", "merge-b")]
    assert [(s.merged_into, s.stage) for s in merged if s is not None] == [("merge-b", "lead"), ("merge-c", "lead")]


def test_a_merge_notice_for_an_erased_lead_whose_person_comes_back_waits_for_the_new_lead_created() -> None:
    """L3 is merged into L1 after L1's person came back; the notice reaches L1 before L1's new lead.created
    (merges are applied at the other lead's partition): kept, as for a lead not yet created, then applied, so
    merging L1 back into L3 is refused as a cycle whatever the order."""
    erased = [make_event("lead.created", 0, lead_id="L1", event_id="c1"), make_event("lead.erased", 120, lead_id="L1")]
    other = make_event("lead.created", 130, lead_id="L3", event_id="c3")
    again = make_event("lead.created", 500, lead_id="L1", event_id="c2")
    merge = make_event("lead.merged", 600, lead_id="L3", event_id="m", into_lead_id="L1")
    back = make_event("lead.merged", 700, lead_id="L1", event_id="back", into_lead_id="L3")
    for order in ([*erased, other, again, merge, back], [*erased, other, merge, again, back]):
        engine = Engine(POLICY)
        outputs = [o for event in order for o in engine.feed(event)]
        state = engine.records["L1"].state
        assert state is not None
        assert (state.merged_from, state.merged_into) == (("L3",), None)
        assert [o.reason for o in outputs if isinstance(o, EventRefused) and o.event_id == "back"] == ["merge_cycle"]
