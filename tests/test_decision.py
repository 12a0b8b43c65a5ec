"""decide(): dedupe, deterministic outputs, the future guard, erasure, and order independence within the lateness bound.

The property tests are the heart: a realistic lead history delivered in any order the lateness bound allows, with
any redeliveries, must end in the state in-order delivery gives, with no output emitted twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from factories import DAY, LEAD, T0, UNROUTED, at, make_event, run
from factories import POLICY as ROUTED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.core.deadlines import timer_due
from leadflow.core.decision import HARD_MAX_PENDING, MAX_HELD, MAX_PENDING, Decision, decide, wake_at
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.pipeline import apply
from leadflow.core.routing import answer_id, assigned_event, route, unassigned_event
from leadflow.schemas.events import EVENT_ADAPTER, LeadEvent
from leadflow.schemas.outputs import EventRefused, LeadErasedNotice, RouteRequest, SlaBreached, StageChanged, Transition
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadRecord, RoutingState

# The machinery under test (dedupe, event-time order, lateness) is routing-blind; routing is tested with its
# router in test_handoff.py.
POLICY = UNROUTED
LATENESS = POLICY.processing.lateness_seconds
SKEW = POLICY.processing.max_clock_skew_seconds
NOW = at(365 * DAY)  # the worker clock: after every generated event


def deliver(
    events: list[LeadEvent], record: LeadRecord | None = None, now: datetime = NOW, policy: Policy = POLICY
) -> tuple[LeadRecord | None, list[Decision]]:
    decisions = []
    for event in events:
        decision = decide(record, event, policy, now)
        decisions.append(decision)
        record = decision.record
    return record, decisions


def emitted(decisions: list[Decision]) -> list[Transition]:
    return [o for d in decisions for o in d.outputs]


# --- dedupe ------------------------------------------------------------------------------------------------


def test_the_same_event_twice_is_a_duplicate() -> None:
    created = make_event("lead.created", 0)
    demo = make_event("activity", 60, action="demo_request")
    record, decisions = deliver([created, demo])
    assert [d.outcome for d in decisions] == ["applied", "applied"]
    assert record is not None
    again = decide(record, demo, POLICY, NOW)
    assert (again.outcome, again.outputs, again.changed) == ("duplicate", (), False)
    assert again.record is record
    assert decide(record, created, POLICY, NOW).outcome == "duplicate"


def test_a_duplicate_is_recognised_after_it_settled_into_seen() -> None:
    """Past MAX_PENDING events the oldest ones settle out of the window: their ids must still dedupe."""
    created = make_event("lead.created", 0)
    views = [make_event("activity", (i + 1) * 2 * LATENESS, action="page_view") for i in range(MAX_PENDING + 5)]
    record, _ = deliver([created, *views])
    assert record is not None
    assert created.event_id in record.seen
    assert all(p.event.event_id != created.event_id for p in record.pending)
    assert len(record.pending) <= MAX_PENDING
    for old in (created, views[0]):
        again = decide(record, old, POLICY, NOW)
        assert (again.outcome, again.outputs, again.changed, again.record) == ("duplicate", (), False, record)


def test_refused_events_are_remembered_too() -> None:
    created = make_event("lead.created", 0)
    accept = make_event("lead.accepted", 60)  # a lead cannot be accepted: refused
    record, decisions = deliver([created, accept])
    assert decisions[1].outcome == "refused"
    assert isinstance(decisions[1].outputs[0], EventRefused)
    assert decide(record, accept, POLICY, NOW).outcome == "duplicate"


# --- ids, the future guard, erasure ------------------------------------------------------------------------


def test_output_ids_are_deterministic() -> None:
    history = [
        make_event("lead.created", 0, event_id="c"),
        make_event("activity", 60, action="demo_request", event_id="d"),
        make_event("lead.accepted", 120, event_id="a"),
        make_event("lead.rejected", 180, reason="nope", event_id="r"),
    ]
    _, first = deliver(history)
    _, second = deliver(history)
    assert [o.id for o in emitted(first)] == [o.id for o in emitted(second)]
    assert len({o.id for o in emitted(first)}) == len(emitted(first))
    assert len([o for o in emitted(first) if o.type == "stage.changed"]) == 3
    assert emitted(first) == emitted(second)


def test_an_event_from_the_future_is_refused() -> None:
    record, _ = deliver([make_event("lead.created", 0)], now=T0)
    assert record is not None
    ahead = make_event("activity", SKEW + 1, action="demo_request")
    decision = decide(record, ahead, POLICY, T0)
    assert (decision.outcome, decision.changed, decision.record) == ("refused", False, record)
    (refused,) = decision.outputs
    assert isinstance(refused, EventRefused)
    assert refused.reason == "future_event"
    assert "fix the producer clock" in refused.detail
    assert record.watermark == T0  # the watermark did not move
    within = decide(record, make_event("activity", SKEW, action="demo_request"), POLICY, T0)
    assert within.outcome == "applied"


def test_a_future_lead_created_is_refused_without_a_record() -> None:
    decision = decide(None, make_event("lead.created", SKEW + 1), POLICY, T0)
    assert (decision.outcome, decision.changed) == ("refused", False)
    assert decision.record is not None
    assert decision.record.state is None


def test_erase_keeps_only_a_marker() -> None:
    record, _ = deliver([make_event("lead.created", 0, email="ana@example.com"), make_event("lead.paused", 60)])
    erase = make_event("lead.erased", 120)
    decision = decide(record, erase, POLICY, NOW)
    assert (decision.outcome, decision.changed) == ("applied", True)
    marker = decision.record
    assert (marker.state, marker.base, marker.pending, marker.erased_at) == (None, None, (), erase.occurred_at)
    assert "ana@example.com" not in marker.model_dump_json()
    (notice,) = decision.outputs
    assert isinstance(notice, LeadErasedNotice)
    assert notice.lead_id == LEAD


def test_after_erasure_redeliveries_are_duplicates_and_late_events_are_refused_unkept() -> None:
    created = make_event("lead.created", 0, email="ana@example.com")
    record, _ = deliver([created, make_event("lead.erased", 120)])
    assert decide(record, created, POLICY, NOW).outcome == "duplicate"
    late = make_event("lead.updated", 100, email="ana.new@example.com")
    decision = decide(record, late, POLICY, NOW)
    assert (decision.outcome, decision.changed) == ("refused", False)
    assert [o.reason for o in decision.outputs if isinstance(o, EventRefused)] == ["lead_erased"]
    assert "ana.new@example.com" not in decision.record.model_dump_json()


def test_a_new_lead_created_after_the_erasure_starts_over() -> None:
    record, _ = deliver([make_event("lead.created", 0), make_event("lead.erased", 120)])
    decision = decide(record, make_event("lead.created", 500), POLICY, NOW)
    assert decision.outcome == "applied"
    assert decision.record.state is not None
    assert decision.record.erased_at is None


def test_events_after_an_erasure_delivered_before_the_new_lead_created_are_applied_as_in_order() -> None:
    """The person comes back after the erasure: a win dated after their new lead.created, delivered before it
    (producers do not agree on order), is applied, as in-order delivery applies it."""
    erased = [make_event("lead.created", 0, event_id="c1"), make_event("lead.erased", 120, event_id="x")]
    again = make_event("lead.created", 500, event_id="c2", email="back@example.com")
    won = make_event("deal.won", 600, amount=700.0, event_id="won")
    in_order, _ = deliver([*erased, again, won], policy=UNROUTED)
    reordered, decisions = deliver([*erased, won, again], policy=UNROUTED)
    assert [d.outcome for d in decisions[2:]] == ["refused", "reordered"]
    (refusal,) = [o for o in decisions[2].outputs if isinstance(o, EventRefused)]
    assert refusal.reason == "unknown_lead"  # no lead yet at the win's arrival: what makes it apply is said
    assert in_order is not None
    assert reordered is not None
    assert reordered.state is not None
    assert (reordered.state.stage, reordered.state.won_amount) == ("customer", 700.0)
    assert reordered.state == in_order.state
    assert reordered.erased_at is None


def test_an_erasure_delivered_late_keeps_the_events_dated_after_it_for_the_person_who_comes_back() -> None:
    """The win (dated after the erasure) was applied to the old lead before the erasure arrived: the erasure
    must not take it away with the old lead's events; the new lead.created applies it, as in order."""
    created = make_event("lead.created", 0, event_id="c1")
    won = make_event("deal.won", 600, amount=700.0, event_id="won")
    erase = make_event("lead.erased", 120, event_id="x")
    again = make_event("lead.created", 500, event_id="c2")
    in_order, _ = deliver([created, erase, again, won], policy=UNROUTED)
    record, decisions = deliver([created, won, erase, again], policy=UNROUTED)
    marker = decisions[2].record
    assert (marker.state, marker.erased_at) == (None, erase.occurred_at)
    assert [p.event.event_id for p in marker.pending] == ["won"]
    assert "won" not in marker.seen
    assert "c1" in marker.seen
    assert in_order is not None
    assert record is not None
    assert record.state is not None
    assert (record.state.stage, record.state.won_amount) == ("customer", 700.0)
    assert record.state == in_order.state


def test_an_erasure_applied_again_after_an_earlier_lead_created_keeps_its_own_time() -> None:
    """The erasure comes first (no lead yet), then the lead.created dated before it: the lead is created and
    erased in the window applied again, and the marker is dated at the erasure, not at the lead.created."""
    erase = make_event("lead.erased", 300, event_id="x")
    created = make_event("lead.created", 200, event_id="c", email="ana@example.com")
    record, decisions = deliver([erase, created])
    assert record is not None
    assert [d.outcome for d in decisions] == ["refused", "reordered"]
    assert (record.state, record.erased_at) == (None, erase.occurred_at)
    between = decide(record, make_event("lead.updated", 250, event_id="u", email="ana@example.com"), POLICY, NOW)
    assert [o.reason for o in between.outputs if isinstance(o, EventRefused)] == ["lead_erased"]
    assert between.record.pending == ()


def test_events_kept_after_an_erasure_go_when_their_window_closes_and_the_marker_stays() -> None:
    erased, _ = deliver([make_event("lead.created", 0, event_id="c1"), make_event("lead.erased", 120, event_id="x")])
    assert erased is not None
    assert wake_at(erased, POLICY) is None  # a marker that keeps nothing has no timer
    update = make_event("lead.updated", 300, event_id="u", email="new@example.com")
    kept = decide(erased, update, POLICY, NOW).record
    assert kept.erased_at == erased.erased_at
    assert [p.event.event_id for p in kept.pending] == ["u"]
    closes = at(300) + POLICY.processing.lateness
    assert wake_at(kept, POLICY) == closes
    assert decide(kept, timer_due(LEAD, closes - timedelta(seconds=1)), POLICY, NOW).changed is False
    tick = decide(kept, timer_due(LEAD, closes), POLICY, NOW)
    assert (tick.outcome, tick.changed, tick.forget) == ("ignored", True, False)
    marker = tick.record
    assert (marker.state, marker.pending, marker.watermark, marker.erased_at) == (None, (), None, erased.erased_at)
    assert "new@example.com" not in marker.model_dump_json()
    assert decide(marker, update, POLICY, NOW).outcome == "duplicate"
    assert wake_at(marker, POLICY) is None
    before = decide(marker, make_event("lead.updated", 100, event_id="old", email="old@example.com"), POLICY, NOW)
    assert [o.reason for o in before.outputs if isinstance(o, EventRefused)] == ["lead_erased"]


def test_erase_delivered_before_an_earlier_event_still_erases() -> None:
    """An erasure reordered with an earlier event of the same lead: the earlier one must not resurrect it."""
    created = make_event("lead.created", 0)
    view = make_event("activity", 30, action="page_view")
    erase = make_event("lead.erased", 60)
    record, decisions = deliver([created, erase, view])
    assert decisions[1].record.erased_at is not None
    assert record is not None
    assert record.state is None, "the erased lead came back"


def test_version_counts_non_duplicate_events() -> None:
    created = make_event("lead.created", 0)
    view = make_event("activity", 60, action="page_view")
    record, _ = deliver([created, view, view, created, make_event("lead.accepted", 90)])
    assert record is not None
    assert record.version == 3


# --- reordering: examples ----------------------------------------------------------------------------------


def test_reordered_within_the_bound_equals_in_order() -> None:
    created = make_event("lead.created", 0, event_id="c")
    qualified = make_event("lead.qualified", 100, event_id="q")
    accepted = make_event("lead.accepted", 200, event_id="a")
    record, decisions = deliver([created, accepted, qualified])
    assert [d.outcome for d in decisions] == ["applied", "refused", "reordered"]
    assert record is not None
    assert record.state == run([created, qualified, accepted], POLICY, now=NOW)
    moves = [(o.from_stage, o.to_stage) for o in emitted(decisions) if isinstance(o, StageChanged)]
    assert moves == [(None, "lead"), ("lead", "mql"), ("mql", "sal")]


def test_an_output_that_comes_back_after_two_reorders_is_not_emitted_again() -> None:
    """accepted is refused, then applied (qualified arrives), then refused again (disqualified arrives earlier)."""
    created = make_event("lead.created", 0, event_id="c")
    accepted = make_event("lead.accepted", 300, event_id="a")
    qualified = make_event("lead.qualified", 200, event_id="q")
    disqualified = make_event("lead.disqualified", 100, event_id="d")
    record, decisions = deliver([created, accepted, qualified, disqualified])
    assert [d.outcome for d in decisions] == ["applied", "refused", "reordered", "reordered"]
    ids = [o.id for o in emitted(decisions)]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(2)
    assert record is not None
    assert record.state == run([created, disqualified, qualified, accepted], POLICY, now=NOW)


def test_beyond_the_bound_is_late_and_still_applied() -> None:
    """Once the window has settled, an older event is applied after what has settled: counted late, not lost."""
    created = make_event("lead.created", 0)
    views = [make_event("activity", (i + 1) * 2 * LATENESS, action="page_view") for i in range(MAX_PENDING + 5)]
    record, _ = deliver([created, *views])
    late = make_event("lead.assigned", LATENESS, owner_id="rep-7")
    decision = decide(record, late, POLICY, NOW)
    assert decision.outcome == "late"
    assert decision.record is not None
    assert decision.record.state is not None
    assert decision.record.state.owner_id == "rep-7"
    assert decision.record.version == record.version + 1  # type: ignore[union-attr]
    late_view = make_event("activity", LATENESS, action="form_submit")
    after = decide(decision.record, late_view, POLICY, NOW)
    assert after.outcome == "late"
    assert after.record is not None
    assert after.record.state is not None
    assert "form_submit" in after.record.state.engagement  # added, already decayed


def test_late_within_the_pending_window_is_still_exact() -> None:
    created = make_event("lead.created", 0, event_id="c")
    pricing = make_event("activity", 60, action="pricing_view", event_id="p")
    view = make_event("activity", 10 * LATENESS, action="page_view", event_id="v")
    record, decisions = deliver([created, view, pricing])
    assert decisions[-1].outcome == "late"
    assert record is not None
    assert record.state == run([created, pricing, view], POLICY, now=NOW)


# --- properties --------------------------------------------------------------------------------------------

FULL_BANT = {"budget": True, "authority": True, "need": True, "timeline": True}
PROFILE_BITS = st.sampled_from(
    [
        {"seniority": "director"},
        {"seniority": "student"},
        {"company_size": 300},
        {"industry": "saas"},
        {"country": "BR"},
        {"persona": "champion"},
        {"job_title": "Growth Marketing Lead"},
    ]
)
BANTS = st.fixed_dictionaries(
    {}, optional={"budget": st.just(True), "authority": st.just(True), "need": st.just(True), "timeline": st.just(True)}
)
STEPS = st.one_of(
    st.tuples(st.just("activity"), st.builds(dict, action=st.sampled_from([*POLICY.engagement_rules, "tweet"]))),
    st.tuples(st.just("lead.updated"), PROFILE_BITS),
    st.tuples(st.just("lead.qualified"), st.just({})),
    st.tuples(st.just("lead.assigned"), st.builds(dict, owner_id=st.sampled_from(["rep-1", "rep-2"]))),
    st.tuples(st.just("lead.accepted"), st.just({})),
    st.tuples(st.just("lead.rejected"), st.builds(dict, reason=st.sampled_from(["not_icp", "no_budget", "later"]))),
    st.tuples(st.just("contact.attempted"), st.just({"channel": "phone", "outcome": "no_answer"})),
    st.tuples(st.just("meeting.scheduled"), st.just({})),
    st.tuples(
        st.just("deal.stage_changed"),
        st.builds(dict, stage=st.sampled_from([*POLICY.pipeline_stages, "handshake"]), bant=BANTS),
    ),
    st.tuples(st.just("deal.stage_changed"), st.just({"stage": "proposal_sent", "bant": FULL_BANT})),
    st.tuples(st.just("deal.won"), st.builds(dict, amount=st.integers(0, 10_000).map(float))),
    st.tuples(st.just("deal.lost"), st.builds(dict, reason=st.sampled_from(["price", "timing", "bad_luck"]))),
    st.tuples(st.just("lead.disqualified"), st.just({})),
    st.tuples(st.sampled_from(["lead.paused", "lead.resumed"]), st.just({})),
    st.tuples(st.just("lead.merged"), st.just({"into_lead_id": "L2"})),
    st.tuples(st.just("lead.created"), st.just({})),
)
# A nudge towards the funnel: most histories walk to MQL, acceptance and a deal.
HAPPY_PATH: list[tuple[str, dict[str, Any]]] = [
    ("activity", {"action": "demo_request"}),
    ("lead.accepted", {}),
    ("deal.stage_changed", {"stage": "qualified_call", "bant": {"need": True}}),
    ("deal.stage_changed", {"stage": "proposal_sent", "bant": FULL_BANT}),
    ("deal.won", {"amount": 1000.0}),
]


@st.composite
def histories(draw: st.DrawFn) -> list[LeadEvent]:
    """A lead's events in event-time order (ties broken by event id, as decide() does)."""
    initial = draw(st.sampled_from(["lead", "subscriber"]))
    steps: list[tuple[str, dict[str, Any]]] = draw(st.lists(STEPS, max_size=18))
    for position, step in enumerate(HAPPY_PATH[: draw(st.integers(0, len(HAPPY_PATH)))]):
        steps.insert(min(len(steps), draw(st.integers(position, position + 4))), step)
    gaps = draw(
        st.lists(
            st.sampled_from([0, 1, 30, 200, 599, 600, 601, 1500, 3 * DAY]), min_size=len(steps), max_size=len(steps)
        )
    )
    events = [make_event("lead.created", 0, event_id="e000", initial_stage=initial)]
    t = 0.0
    for i, ((kind, data), gap) in enumerate(zip(steps, gaps, strict=True), start=1):
        t += gap
        events.append(make_event(kind, t, event_id=f"e{i:03d}", **data))
    return events


def arrival_within_bound(draw: st.DrawFn, events: list[LeadEvent]) -> list[LeadEvent]:
    """An arrival order where each event is at most `lateness` older than the newest event delivered before it."""
    remaining = list(events)  # sorted by event time
    order: list[LeadEvent] = []
    bound = timedelta(seconds=LATENESS)
    while remaining:
        # Picking `c` is safe when every event still to come stays within the bound of `c`.
        candidates = [
            i
            for i, c in enumerate(remaining)
            if all(c.occurred_at - bound <= r.occurred_at for j, r in enumerate(remaining) if j != i)
        ]
        order.append(remaining.pop(draw(st.sampled_from(candidates))))
    return order


def is_within_bound(order: list[LeadEvent]) -> bool:
    newest: datetime | None = None
    for event in order:
        if newest is not None and event.occurred_at < newest - timedelta(seconds=LATENESS):
            return False
        newest = event.occurred_at if newest is None else max(newest, event.occurred_at)
    return True


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.data())
def test_arrival_order_within_the_bound_does_not_change_the_final_state(data: st.DataObject) -> None:
    events = data.draw(histories())
    order = arrival_within_bound(data.draw, events)
    assert is_within_bound(order)
    expected = run(events, POLICY, now=NOW)
    record, decisions = deliver(order)
    assert record is not None
    assert expected is not None
    assert record.state is not None
    assert record.state.model_dump() == expected.model_dump()
    assert "late" not in {d.outcome for d in decisions}
    in_order, in_order_decisions = deliver(events)
    assert in_order is not None
    assert in_order.state == record.state
    # No output is emitted twice, and every output of in-order delivery is emitted.
    ids = [o.id for o in emitted(decisions)]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert {o.id for o in emitted(in_order_decisions)} <= set(ids)


@PROPERTY
@given(st.data())
def test_a_lead_created_again_after_an_erasure_ends_as_in_order_whatever_the_arrival_order(
    data: st.DataObject,
) -> None:
    """The person comes back after an erasure: the new lead's events, delivered in any order the bound allows,
    give the state in-order delivery gives."""
    erased = [make_event("lead.created", 0, event_id="old"), make_event("lead.erased", 60, event_id="erase")]
    events = [
        e.model_copy(update={"event_id": f"new-{e.event_id}", "occurred_at": e.occurred_at + timedelta(seconds=120)})
        for e in data.draw(histories())
    ]
    order = arrival_within_bound(data.draw, events)
    in_order, _ = deliver([*erased, *events])
    record, decisions = deliver([*erased, *order])
    assert in_order is not None
    assert record is not None
    assert in_order.state is not None
    assert record.state == in_order.state
    assert record.erased_at is None
    assert "late" not in {d.outcome for d in decisions}


@PROPERTY
@given(st.data())
def test_replaying_delivered_events_changes_nothing(data: st.DataObject) -> None:
    events = data.draw(histories())
    order = arrival_within_bound(data.draw, events)
    expected, expected_decisions = deliver(order)
    stream = list(order)
    replays = data.draw(st.lists(st.integers(0, 10_000), max_size=12))
    for pick in replays:  # redeliver an already delivered event at a random later position
        event = order[pick % len(order)]
        stream.insert(data.draw(st.integers(stream.index(event) + 1, len(stream))), event)
    record: LeadRecord | None = None
    delivered: set[str] = set()
    for event in stream:
        decision = decide(record, event, POLICY, NOW)
        if event.event_id in delivered:
            assert (decision.outcome, decision.outputs, decision.changed) == ("duplicate", (), False)
            assert decision.record is record
        delivered.add(event.event_id)
        record = decision.record
    assert record == expected
    assert expected_decisions[-1].record == record


@PROPERTY
@given(st.data())
def test_scores_never_negative_and_version_counts_events(data: st.DataObject) -> None:
    events = data.draw(histories())
    order = arrival_within_bound(data.draw, events)
    stream = order + data.draw(st.lists(st.sampled_from(order), max_size=5))
    record: LeadRecord | None = None
    for event in stream:
        before = record.version if record is not None else 0
        decision = decide(record, event, POLICY, NOW)
        if decision.outcome == "duplicate":
            assert decision.record is record
            continue
        record = decision.record
        assert record is not None
        # One step or more: the clock instants that came before the event fire first as their own steps.
        assert record.version >= before + 1
        for state in (record.state, record.base):
            if state is not None:
                assert state.fit >= 0
                assert state.engagement_score >= 0
                assert all(points >= 0 for points in state.engagement.values())
    assert record is not None
    assert record.version >= len(order)


@PROPERTY
@given(st.data())
def test_every_stage_change_is_in_the_history(data: st.DataObject) -> None:
    events = data.draw(histories())
    state = None
    for event in events:
        step = apply(state, event, POLICY)
        moves = [o for o in step.outputs if isinstance(o, StageChanged)]
        if step.state is not None and not step.refused:
            before = state.history if state is not None else ()
            assert step.state.history[: len(before)] == before
            assert [h.stage for h in step.state.history[len(before) :]] == [m.to_stage for m in moves]
        state = step.state


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_an_order_beyond_the_bound_is_reported_late_and_not_lost(data: st.DataObject) -> None:
    events = data.draw(histories().filter(lambda h: h[-1].occurred_at - h[0].occurred_at > timedelta(seconds=LATENESS)))
    late = data.draw(
        st.sampled_from([e for e in events if e.occurred_at < events[-1].occurred_at - timedelta(seconds=LATENESS)])
    )
    order = [e for e in events if e is not late] + [late]
    record, decisions = deliver(order)
    # Applied after what has settled: a lead merged since passes it on to the lead it was merged into.
    assert decisions[-1].outcome in ("late", "refused", "forwarded")
    assert decisions[-1].changed
    assert record is not None
    assert late.event_id in {p.event.event_id for p in record.pending} | set(record.seen)
    assert decide(record, late, POLICY, NOW).outcome == "duplicate"


def test_a_burst_inside_the_window_does_not_grow_the_record_without_bound() -> None:
    events = [make_event("lead.created", 0)] + [
        make_event("activity", 1 + i * 0.1, action="page_view") for i in range(1000)
    ]
    record, decisions = deliver(events)
    assert record is not None
    assert len(record.pending) <= HARD_MAX_PENDING + 1
    assert all(d.outcome == "applied" for d in decisions)
    in_order = run(events, POLICY, now=NOW)
    assert record.state == in_order


# --- waiting for the router, time passing first ------------------------------------------------------------


def hand_raiser_waiting() -> tuple[LeadRecord, RouteRequest]:
    """A hand-raiser that asked the router for an owner (default policy, routing on); no answer yet."""
    record, decisions = deliver(
        [make_event("lead.created", 0, event_id="c"), make_event("activity", 60, action="demo_request", event_id="d")],
        policy=ROUTED,
    )
    assert record is not None
    (request,) = [o for d in decisions for o in d.outputs if isinstance(o, RouteRequest)]
    assert record.awaiting == (answer_id(request),)
    return record, request


def test_events_that_come_while_the_lead_waits_for_the_router_are_held_then_applied_after_the_answer() -> None:
    record, request = hand_raiser_waiting()
    accepted = make_event("lead.accepted", 120, event_id="a")
    held = decide(record, accepted, ROUTED, NOW)
    assert (held.outcome, held.outputs) == ("held", ())
    assert held.record.state == record.state, "nothing applied yet"
    assert decide(held.record, accepted, ROUTED, NOW).outcome == "duplicate", "a held event is remembered"
    _, assignment = route(RoutingState(), request, ROUTED)
    assert assignment is not None
    answer = EVENT_ADAPTER.validate_python(assigned_event(assignment, ROUTER_SOURCE))
    released = decide(held.record, answer, ROUTED, NOW)
    assert released.record.awaiting == ()
    assert released.record.held == ()
    assert [(e.event_id, outcome) for e, outcome in released.released] == [("a", "applied")]
    state = released.record.state
    assert state is not None
    assert (state.stage, state.owner_id) == ("sal", assignment.owner_id), "the answer first, then the acceptance"
    kinds = [type(o).__name__ for o in released.outputs]
    assert kinds.index("HandOff") < kinds.index("StageChanged"), "handed off, then accepted"


def test_the_routers_unassigned_answer_ends_the_wait_without_an_owner() -> None:
    record, request = hand_raiser_waiting()
    held = decide(record, make_event("lead.accepted", 120, event_id="a"), ROUTED, NOW)
    answer = EVENT_ADAPTER.validate_python(unassigned_event(request, ROUTER_SOURCE))
    released = decide(held.record, answer, ROUTED, NOW)
    state = released.record.state
    assert state is not None
    assert (state.stage, state.owner_id, released.record.held) == ("sal", None, ())


def test_a_lead_that_waits_too_long_stops_waiting_and_applies_what_it_held_in_arrival_order() -> None:
    record, _ = hand_raiser_waiting()
    for n in range(MAX_HELD):
        record = decide(
            record, make_event("activity", 120 + n, action="page_view", event_id=f"v{n}"), ROUTED, NOW
        ).record
    assert len(record.held) == MAX_HELD
    last = decide(record, make_event("lead.accepted", 1000, event_id="a"), ROUTED, NOW)
    assert last.record.awaiting == ()
    assert last.record.held == ()
    assert [e.event_id for e, _ in last.released] == [f"v{n}" for n in range(MAX_HELD)], "nothing lost"
    assert last.outcome == "applied", "the event that ended the wait is counted once, as itself"
    assert last.record.state is not None
    assert last.record.state.stage == "sal"


def test_time_passes_first_an_event_after_a_deadline_applies_the_instant_as_the_timer_would() -> None:
    """No timer came (a backlog): the lead's next event fires the instants before it first, as their own
    steps with the live timer's ids, so the breach is decided on the lead as it was at the deadline."""
    policy = UNROUTED
    created = make_event("lead.created", 0, event_id="c")
    demo = make_event("activity", 60, action="demo_request", event_id="d")  # first_contact: 15 minutes
    record, _ = deliver([created, demo], policy=policy)
    assert record is not None
    assert record.state is not None
    clock = record.state.clocks["first_contact"]
    late_call = make_event("contact.attempted", 3600, channel="phone", outcome="connected", event_id="call")
    decision = decide(record, late_call, policy, NOW)
    kinds = [(type(o).__name__, getattr(o, "sla", None)) for o in decision.outputs]
    assert kinds.index(("SlaBreached", "first_contact")) < kinds.index(("SlaMet", "first_contact"))
    timer = decide(record, timer_due("L1", clock.deadline), policy, NOW)
    (breach,) = [o for o in timer.outputs if isinstance(o, SlaBreached) and o.sla == "first_contact"]
    assert breach.id in {o.id for o in decision.outputs}, "the same breach as the timer's"
    assert decide(decision.record, timer_due("L1", clock.deadline), policy, NOW).outcome == "duplicate"


def test_a_lead_whose_answer_never_comes_stops_waiting_after_the_router_wait_of_its_own_event_time() -> None:
    """A request lost in a crash, a router down: the lead's own later events (or its timer ticks) end the wait
    once they are `router_wait_seconds` past its start; everything held is applied, the trigger last, once."""
    record, _ = hand_raiser_waiting()
    wait = ROUTED.processing.router_wait_seconds
    record = decide(record, make_event("lead.accepted", 120, event_id="a"), ROUTED, NOW).record
    assert [e.event_id for e in record.held] == ["a"]
    late = make_event("contact.attempted", 60 + wait + 1, channel="phone", outcome="connected", event_id="call")
    decision = decide(record, late, ROUTED, NOW)
    assert decision.record.awaiting == ()
    assert decision.record.held == ()
    assert decision.outcome == "applied"
    assert [e.event_id for e, _ in decision.released] == ["a"], "the trigger is not counted twice"
    assert decision.record.state is not None
    assert decision.record.state.stage == "sal"


def test_a_window_applied_again_that_asks_the_router_anew_under_an_old_id_does_not_wait_for_ever() -> None:
    """Late events make the window ask the router again, under the id of a request it asked before, while the
    events after that request are held, the answer it already had among them: the router's repeat answer is a
    duplicate, so the answer held is applied at once and releases the rest (the win among them)."""
    from leadflow.core.engine import Engine

    engine = Engine(ROUTED)
    arrivals = [
        make_event("lead.created", 0, event_id="created"),
        make_event("deal.won", 390, amount=1000.0, event_id="won"),
        make_event("activity", 250, action="demo_request", event_id="demo250"),  # late: asks the router
        make_event("activity", 100, action="demo_request", event_id="demo100"),  # later still: asks first
        make_event("deal.lost", 222, reason="price", event_id="lost"),  # back to nurturing: demo250 asks again
    ]
    for event in arrivals:
        engine.feed(event)
    engine.finish(at(7 * DAY))
    record = engine.records[LEAD]
    assert (record.awaiting, record.held) == ((), ())
    assert record.state is not None
    assert (record.state.stage, record.state.won_amount) == ("customer", 1000.0)


def test_a_lead_whose_answer_never_comes_and_gets_no_other_event_stops_waiting_on_its_own_timer() -> None:
    """Its timer fires when the router wait ends (`wake_at`), so what it held (a win) is applied even if the lead
    gets no other event: the timer's ticks alone, as the live timer and the replay send them."""
    record, _ = hand_raiser_waiting()
    record = decide(record, make_event("deal.won", 120, amount=500.0, event_id="won"), ROUTED, NOW).record
    assert [e.event_id for e in record.held] == ["won"]
    give_up = record.awaiting_since + timedelta(seconds=ROUTED.processing.router_wait_seconds, milliseconds=1)
    ticks: list[datetime] = []  # each next one after the last, as the live sweep and the replay queue them
    while record.awaiting and (instant := wake_at(record, ROUTED, ticks[-1].timestamp() if ticks else None)):
        ticks.append(instant)
        record = decide(record, timer_due(LEAD, instant), ROUTED, NOW).record
    assert ticks[-1] == give_up
    assert (record.awaiting, record.held) == ((), ())
    assert record.state is not None
    assert (record.state.stage, record.state.won_amount) == ("customer", 500.0)


def test_what_an_unknown_lead_refusal_advises_makes_the_event_apply() -> None:
    """A CRM reports a win for a lead leadflow never saw: refused, with what to do. Followed after the lead's window
    has closed (a backfilled lead.created dated before the win, then the win sent again), the win is applied."""
    from leadflow.core.lifecycle import UNKNOWN_LEAD_FIX

    won = make_event("deal.won", 3600, amount=900.0, event_id="won")
    refused = decide(None, won, UNROUTED, NOW)
    (refusal,) = [o for o in refused.outputs if isinstance(o, EventRefused)]
    assert (refusal.reason, refusal.detail) == ("unknown_lead", UNKNOWN_LEAD_FIX)
    closes = refused.record.watermark + UNROUTED.processing.lateness
    assert decide(refused.record, timer_due(LEAD, closes), UNROUTED, NOW).forget, "the window closed: forgotten"
    record, _ = deliver([make_event("lead.created", 0, event_id="backfill"), won], policy=UNROUTED)
    assert record is not None
    assert record.state is not None
    assert (record.state.stage, record.state.won_amount) == ("customer", 900.0)
