"""Bounded memory: a lead that does not exist leaves no record behind, and the live tally's dedupe memory is bounded.

An event for an unknown lead is refused (`unknown_lead`). Its record is kept only while a `lead.created` dated
before it may still come (the lateness window, so that out-of-order delivery still equals in-order delivery);
a timer tick at `forget_at` (the live sweep, the replay clock) deletes it. The soak benchmark (benchmarks/soak.py)
measures the process as a whole; these tests check the rules, without timings or memory figures.
"""

from __future__ import annotations

from datetime import timedelta

from factories import LEAD, UNROUTED, at, make_event, run

from leadflow.core.deadlines import timer_due
from leadflow.core.decision import decide, forget_at, is_stateless, wake_at
from leadflow.core.engine import Engine
from leadflow.core.funnel import MAX_SEEN_IDS, FunnelTally
from leadflow.core.lifecycle import refuse
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import EventRefused, StageChanged
from leadflow.schemas.state import LeadRecord

POLICY = UNROUTED
LATENESS = POLICY.processing.lateness_seconds
NOW = at(365 * 86_400)


def ghost_event(t: float, event_id: str, lead_id: str = "ghost") -> LeadEvent:
    return make_event("activity", t, lead_id=lead_id, event_id=event_id, action="page_view")


def refused_record(*events: LeadEvent) -> LeadRecord:
    record: LeadRecord | None = None
    for event in events:
        decision = decide(record, event, POLICY, NOW)
        assert decision.outcome == "refused"
        record = decision.record
    assert record is not None
    return record


# --- the decision ------------------------------------------------------------------------------------------


def test_an_unknown_lead_is_kept_only_for_its_window_then_a_tick_forgets_it() -> None:
    record = refused_record(ghost_event(100, "g1"))
    assert is_stateless(record)
    until = forget_at(record, POLICY)
    assert until == at(100 + LATENESS)
    assert wake_at(record, POLICY) == until  # what the live timer index and the replay's index are given
    early = decide(record, timer_due("ghost", at(100 + LATENESS - 1)), POLICY, NOW)
    assert (early.outcome, early.changed, early.forget) == ("ignored", False, False)
    due = decide(record, timer_due("ghost", until), POLICY, NOW)
    assert (due.outcome, due.outputs, due.changed, due.forget) == ("ignored", (), True, True)


def test_a_tick_not_yet_come_on_the_worker_clock_forgets_nothing() -> None:
    record = refused_record(ghost_event(100, "g1"))
    until = forget_at(record, POLICY)
    assert until is not None
    decision = decide(record, timer_due("ghost", until), POLICY, until - timedelta(seconds=1))
    assert (decision.changed, decision.forget) == (False, False)


def test_redeliveries_are_duplicates_within_the_window_and_refused_again_under_the_same_id_after() -> None:
    first = ghost_event(100, "g1")
    refusal = decide(None, first, POLICY, NOW)
    record = refusal.record
    again = decide(record, first, POLICY, NOW)
    assert (again.outcome, again.changed) == ("duplicate", False)
    # Forgotten: a redelivery finds no record and is refused again, with the same output id (dropped downstream).
    later = decide(None, first, POLICY, NOW)
    assert later.outcome == "refused"
    assert [o.id for o in later.outputs] == [o.id for o in refusal.outputs]


def test_the_window_moves_with_the_newest_refused_event() -> None:
    record = refused_record(ghost_event(100, "g1"), ghost_event(100 + 2 * LATENESS, "g2"))
    assert is_stateless(record)
    assert forget_at(record, POLICY) == at(100 + 3 * LATENESS)
    assert "g1" in record.seen  # settled out of the window, still deduped while the record lives
    stale_tick = decide(record, timer_due("ghost", at(100 + LATENESS)), POLICY, NOW)
    assert stale_tick.forget is False


def test_a_creation_dated_before_a_refused_event_still_applies_it_within_the_window() -> None:
    """Why the record is kept for a while: out-of-order delivery must give the state in-order delivery gives."""
    created = make_event("lead.created", 0, lead_id="ghost", event_id="c")
    demo = make_event("activity", 60, lead_id="ghost", event_id="d", action="demo_request")
    record = refused_record(demo)
    decision = decide(record, created, POLICY, NOW)
    assert decision.outcome == "reordered"
    assert decision.record.state == run([created, demo], POLICY, now=NOW)
    assert not is_stateless(decision.record)
    assert forget_at(decision.record, POLICY) is None


def test_an_existing_lead_and_an_erased_marker_are_never_forgotten() -> None:
    created = make_event("lead.created", 0, event_id="c")
    record = decide(None, created, POLICY, NOW).record
    assert not is_stateless(record)
    assert forget_at(record, POLICY) is None
    erased = decide(record, make_event("lead.erased", 60, event_id="x"), POLICY, NOW).record
    assert erased.erased_at is not None
    assert erased.state is None
    assert not is_stateless(erased)  # the marker dedupes redeliveries after an erasure: it stays
    tick = decide(erased, timer_due(LEAD, at(60 + 10 * LATENESS)), POLICY, NOW)
    assert tick.forget is False


def test_a_lead_that_does_not_exist_leaves_no_record_in_the_replay_engine() -> None:
    engine = Engine(POLICY)
    engine.feed(make_event("lead.created", 0, lead_id="real", event_id="c"))
    for i in range(50):
        engine.feed(ghost_event(10 + i, f"g{i}", lead_id=f"ghost-{i}"))
    assert len(engine.records) == 51  # inside their window: kept
    # Event time passes the window (and the grace): every tick fires, every unknown lead is forgotten.
    engine.feed(make_event("activity", 10 + 49 + LATENESS + 3600, lead_id="real", event_id="v", action="page_view"))
    assert list(engine.records) == ["real"]
    assert engine.inputs["refused"] == 50
    assert "ghost-0" not in engine.index.due_at


def test_the_end_of_the_input_closes_every_window() -> None:
    engine = Engine(POLICY)
    engine.feed(make_event("lead.created", 0, lead_id="real", event_id="c"))
    engine.feed(ghost_event(10, "g", lead_id="ghost"))
    engine.finish()
    assert list(engine.records) == ["real"]
    assert "ghost" not in engine.index.due_at


# --- the live tally ----------------------------------------------------------------------------------------


def refusal(i: int) -> EventRefused:
    (output,) = refuse(None, ghost_event(i, f"r{i}", lead_id=f"x{i}"), "unknown_lead", "no lead").outputs
    assert isinstance(output, EventRefused)
    return output


def test_the_tally_remembers_only_the_newest_output_ids() -> None:
    tally = FunnelTally(stages=POLICY.all_stages, max_seen_ids=10)
    outputs = [refusal(i) for i in range(25)]
    for output in outputs:
        tally.add(output)
    assert len(tally.seen_ids) == 10
    assert list(tally.seen_ids) == [o.id for o in outputs[-10:]]
    for output in outputs[-10:]:  # a redelivery within the bound: dropped
        tally.add(output)
    assert tally.refusals["unknown_lead"] == 25
    tally.add(outputs[0])  # older than the bound: counted again (what the bound costs)
    assert tally.refusals["unknown_lead"] == 26
    assert len(tally.seen_ids) == 10


def test_the_default_bound_and_the_recent_transitions_window() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    assert tally.max_seen_ids == MAX_SEEN_IDS
    created = make_event("lead.created", 0, event_id="c")
    changes = [o for o in decide(None, created, POLICY, NOW).outputs if isinstance(o, StageChanged)]
    assert changes
    tally.add(changes[0], seen_at=1_000.0)
    assert len(tally.recent) == 1
    tally.add(refusal(1), seen_at=5_000.0)  # not a transition: the window is trimmed when one comes
    second = changes[0].model_copy(update={"id": "other"})
    tally.add(second, seen_at=5_000.0)
    assert list(tally.recent) == [5_000.0]


def test_the_replay_engine_drops_the_events_kept_after_an_erasure_when_the_input_ends() -> None:
    engine = Engine(POLICY)
    engine.feed(make_event("lead.created", 0, event_id="c"))
    engine.feed(make_event("lead.erased", 60, event_id="x"))
    engine.feed(make_event("lead.updated", 300, event_id="u", email="new@example.com"))
    assert [p.event.event_id for p in engine.records[LEAD].pending] == ["u"]
    engine.finish()
    marker = engine.records[LEAD]
    assert (marker.state, marker.pending, marker.watermark) == (None, (), None)
    assert marker.erased_at == at(60)
    assert "u" in marker.seen
    assert "new@example.com" not in marker.model_dump_json()
    assert engine.index.pop_due(at(10**7)) == []
