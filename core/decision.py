"""decide(record, event, policy, now): dedupe, event-time ordering within the lateness bound, then lifecycle.

Why a record and not just the state: delivery is at-least-once and producers do not agree on order. The record
keeps the events still inside the lateness window (`pending`, sorted by event time) and the state before them
(`base`). An event that sorts after every pending event is applied at once (the common, cheap path); one that
sorts earlier is inserted and the pending events are applied again from `base`, so the final state is the one
in-order delivery gives. Outputs already emitted for the window are not emitted again (same deterministic ids).
Events older than the window are applied after what has settled and counted as late.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from leadflow.core.deadlines import next_instant, timer_due
from leadflow.core.handoff import is_router_answer, unclaimed
from leadflow.core.ids import SHORT_ID_LENGTH, short_id
from leadflow.core.ledger import record as keep_in_ledger
from leadflow.core.lifecycle import refuse
from leadflow.core.pipeline import apply
from leadflow.core.routing import answer_id
from leadflow.core.sla.breach import hold_old_escalations
from leadflow.core.step import Step
from leadflow.schemas.events import LeadAbsorbed, LeadErased, LeadEvent, TimerDue
from leadflow.schemas.outputs import SLA_TYPES, Output, RouteRequest
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadRecord, LeadRecordView, LeadState, PendingEvent

# Pending events beyond this many are settled into `base` early once they are outside the window.
MAX_PENDING = 64
# A burst inside the window (a bot on one lead) may not grow the record past this: the oldest events settle
# early, and an even later event is then applied after them instead of in its exact place.
HARD_MAX_PENDING = 256
# A router answer the lead no longer awaits is applied just after the events it has (see `in_arrival_order`).
ARRIVAL_STEP = timedelta(microseconds=1)
# Time-driven SLA outputs remembered per lead (a few per clock; a lead has a handful of clocks at a time).
MAX_EMITTED = 64
# Events a lead holds while it waits for the router; past this it stops waiting (the router must be down).
MAX_HELD = 256
# The lead's timer ends its wait for the router this long after `processing.router_wait_seconds` (`give_up_at`).
PAST_THE_WAIT = timedelta(milliseconds=1)

# forwarded: the lead was merged into another, and the event goes there (core.merges); it is applied (or refused)
# there, under a derived id, and counted there again with that outcome.
Outcome = Literal["applied", "reordered", "late", "refused", "duplicate", "ignored", "held", "forwarded"]


class Decision(NamedTuple):  # a named tuple, as core.step.Step (built once or more per event)
    record: LeadRecord
    outputs: tuple[Output, ...]
    outcome: Outcome
    changed: bool  # False when nothing needs writing (duplicates)
    # Events held earlier and applied with this one (the router's answer came), with what became of each.
    released: tuple[tuple[LeadEvent, Outcome], ...] = ()
    # The lead does not exist and its window has closed: delete its record (see `is_stateless`).
    forget: bool = False


def is_stateless(record: LeadRecord | LeadRecordView) -> bool:
    """The record of a lead that does not exist: no state, not erased, waiting for nothing. It holds only events
    refused as `unknown_lead`, kept while their lateness window is open so that a `lead.created` dated before
    them and delivered after them still finds them (in-order and out-of-order delivery agree)."""
    return (
        record.state is None
        and record.base is None
        and record.erased_at is None
        and not record.awaiting
        and not record.held
        and record.watermark is not None
    )


def forget_at(record: LeadRecord | LeadRecordView, policy: Policy) -> datetime | None:
    """When a lead that does not exist is forgotten: its newest event time + `processing.lateness_seconds`.
    A `timer.due` at that instant (the live timer, at the lead's partition time; the replay clock offline) deletes
    the record, so events for unknown leads leave nothing behind. A redelivery after that is refused again,
    under the same output id (core.ids), so what reads the outputs drops it as a duplicate."""
    if record.watermark is None or not (is_stateless(record) or holds_events_after_erasure(record)):
        return None
    return record.watermark + policy.processing.lateness


def holds_events_after_erasure(record: LeadRecord | LeadRecordView) -> bool:
    """An erased lead's marker that keeps events dated after the erasure (`waits_for_recreation`): a marker has
    a watermark only while it does. When their window closes they go, their ids kept (`erased_marker`)."""
    return record.state is None and record.erased_at is not None and record.watermark is not None


def waits_for_recreation(record: LeadRecord, event: LeadEvent) -> bool:
    """An event dated after the lead's erasure is about the person who may come back (`is_recreation`), not
    about the erased one: it is kept in the window as for a lead that does not exist, so that a lead.created
    dated before it and delivered after it applies it, as in-order delivery does (a merge notice too: the merge
    was applied at the other lead). Router answers are not: no request of the new lead can come before its
    lead.created."""
    return record.erased_at is not None and is_about_who_comes_back(event, record.erased_at)


def is_about_who_comes_back(event: LeadEvent, erased_at: datetime) -> bool:
    """An event dated after an erasure, but a router answer (its request was the erased lead's)."""
    return event.occurred_at > erased_at and not is_router_answer(event)


def erased_marker(
    record: LeadRecord,
    dropped: Iterable[PendingEvent],
    erased_at: datetime,
    policy: Policy,
    *,
    kept: tuple[PendingEvent, ...] = (),
) -> LeadRecord:
    """What an erased lead keeps: the ids that dedupe redeliveries, no state and none of the erased lead's events
    (they hold personal data); `kept`, events dated after the erasure, only while their window is open."""
    ids = (*record.seen, *(p.event.event_id for p in dropped))[-policy.processing.dedupe_ids :]
    watermark = max((p.event.occurred_at for p in kept), default=None)
    return LeadRecord(
        lead_id=record.lead_id,
        state=None,
        seen=ids,
        pending=kept,
        watermark=watermark,
        erased_at=erased_at,
        version=record.version + 1,
    )


def marker_of_erasure(record: LeadRecord, pending: list[PendingEvent], event: LeadEvent, policy: Policy) -> LeadRecord:
    """The marker a window that ends erased leaves (`event` is the one being decided). It is dated at the erasure,
    not at `event`: a window applied again may erase the lead at another event. Its events dated after the
    erasure stay for their window, as they do when the erasure came first (`waits_for_recreation`)."""
    erased_at = max((p.event.occurred_at for p in pending if isinstance(p.event, LeadErased)), default=None)
    erased_at = erased_at or event.occurred_at
    after = tuple(p for p in pending if is_about_who_comes_back(p.event, erased_at))
    return erased_marker(record, [p for p in pending if p not in after], erased_at, policy, kept=after)


def give_up_at(record: LeadRecord | LeadRecordView, policy: Policy) -> datetime | None:
    """When a lead that waits for the router stops waiting if no answer comes: the first instant past the wait
    (`has_waited_too_long`). Its timer fires then, so what it holds (a win, say) is applied even if the lead gets
    no other event."""
    if not record.awaiting or record.awaiting_since is None:
        return None
    return record.awaiting_since + timedelta(seconds=policy.processing.router_wait_seconds) + PAST_THE_WAIT


def wake_at(record: LeadRecord | LeadRecordView | None, policy: Policy, after: float | None = None) -> datetime | None:
    """The instant the lead's timer must fire next (later than `after`, a timestamp, when given): its clocks' next
    instant, or when it stops waiting for the router if that is sooner, or when a lead that does not exist is
    forgotten. The record may be a view of a stored one (schemas.state.LeadRecordView)."""
    if record is None:
        return None
    if record.state is None:
        instants: tuple[datetime | None, ...] = (forget_at(record, policy),)
    else:
        instants = (next_instant(record.state, after), give_up_at(record, policy))
    coming = [i for i in instants if i is not None and (after is None or i.timestamp() > after)]
    return min(coming, default=None)


def is_remembered(output: Output) -> bool:
    """Outputs whose id names the SLA clock, not the event that caused them (a deadline, or whichever event
    first saw the clock start, stop or breach): after their cause settled, a later event may bring them back."""
    return isinstance(output, SLA_TYPES) or (isinstance(output, RouteRequest) and output.escalated_sla is not None)


def in_arrival_order(record: LeadRecord, event: LeadEvent) -> LeadEvent:
    """An answer the lead still awaits takes effect at its date (request + 1 ms): the lead held every event that
    came after the request, and any later event it applied came before the request only in arrival (an
    assignment delivered before the qualification it follows): the fold puts the answer between them, as
    in-order delivery does.

    An answer the lead stopped waiting for (`hold`, the router was down) takes effect when it reaches the lead:
    events applied meanwhile (an acceptance, an external assignment) happened while the lead had no new owner.
    Applied in its place instead, it would hand off a lead already accepted, or credit a late acceptance to the
    new owner.

    A merge notice (`lead.absorbed`, core.merges) too: what the lead knows about the leads merged into it grows
    when the notice comes. Applied in its place, it could refuse again, as closing a cycle, a merge of this lead
    that was applied meanwhile and whose forwards have gone out (a fact would then be applied at two leads)."""
    if record.watermark is None or event.occurred_at > record.watermark:
        return event  # the common case first: an event after every other one of the lead
    is_notice = isinstance(event, LeadAbsorbed)
    if not (is_notice or is_router_answer(event)):
        return event
    if not is_notice and event.event_id in record.awaiting:
        return event
    return event.model_copy(update={"occurred_at": record.watermark + ARRIVAL_STEP})


def once(outputs: Iterable[Output]) -> tuple[Output, ...]:
    """Each id once: ids name what happened (a clock by its SLA and start), so two steps that say the same thing
    at the same instant (a lead disqualified and qualified again in one second) emit it once."""
    first: dict[str, Output] = {}
    for output in outputs:
        first.setdefault(output.id, output)
    return tuple(first.values())


def emitted_before(record: LeadRecord) -> set[str]:
    """Ids already emitted for the lead's window and its remembered SLA outputs, in short form (core.ids.short_id;
    a record written before holds whole ids: they compare in short form too): SLA outputs carry no cause in their
    id, so any event may bring one back."""
    emitted = set(in_short_form(record.emitted))
    for pending in record.pending:
        emitted.update(in_short_form(pending.output_ids))
    return emitted


def in_short_form(ids: tuple[str, ...]) -> tuple[str, ...]:
    """Ids as a lead remembers them (core.ids.short_id). A record's ids were written together, all short or (a
    record written before ids were kept short) all whole: the first tells, and short ones are not digested again
    (an event with outputs compares against up to MAX_EMITTED of them)."""
    if not ids or len(ids[0]) == SHORT_ID_LENGTH:
        return ids
    return tuple(map(short_id, ids))


def not_emitted(outputs: tuple[Output, ...], record: LeadRecord) -> tuple[Output, ...]:
    """The outputs the lead has not emitted yet, each id once."""
    if not outputs:
        return outputs
    emitted = emitted_before(record)
    return once(o for o in outputs if short_id(o.id) not in emitted)


def still_emitted(record: LeadRecord, outputs: tuple[Output, ...]) -> tuple[str, ...]:
    """The lead's remembered SLA outputs (`LeadRecord.emitted`) with those of this decision, newest last, bounded, in
    short form: a record written before ids were kept short has its whole ids shortened when it is next written.

    The ids of a clock that has closed, gone from `base` and `state`, its events settled, are kept too: such an id
    names the clock (its SLA and start instant, core.sla.clock.clock_id), and an event older than the window stamped
    at that instant (a producer's retry under a new event id), applied after what has settled, may open the same
    clock again, under the same ids (tests/test_decision_ids.py). Only MAX_EMITTED newer ones push an id out."""
    emitted = in_short_form(record.emitted)
    timed = [short_id(o.id) for o in outputs if is_remembered(o)]
    return (*emitted, *timed)[-MAX_EMITTED:] if timed else emitted


def order_key(event: LeadEvent) -> tuple[datetime, str]:
    return (event.occurred_at, event.event_id)


def comes_after(event: LeadEvent, other: LeadEvent) -> bool:
    """`order_key(event) > order_key(other)`, without building the keys (on every event's path)."""
    at, other_at = event.occurred_at, other.occurred_at
    return at > other_at or (at == other_at and event.event_id > other.event_id)


def is_duplicate(record: LeadRecord, event_id: str) -> bool:
    if event_id in record.seen:
        return True
    for pending in record.pending:  # loops, not any(): this runs for every event
        if pending.event.event_id == event_id:
            return True
    return bool(record.held) and any(held.event_id == event_id for held in record.held)


def is_recreation(record: LeadRecord, event: LeadEvent) -> bool:
    """A person who comes back after an erasure is a new lead: only a later lead.created starts over."""
    return event.type == "lead.created" and record.erased_at is not None and event.occurred_at > record.erased_at


def is_from_future(event: LeadEvent, now: datetime, policy: Policy) -> bool:
    return event.occurred_at > now + policy.processing.max_clock_skew


def advance(state: LeadState | None, event: LeadEvent, policy: Policy, now: datetime) -> Step:
    """One event: first the clock instants before it (time passes first, here too when a window is applied
    again after a late event), then the event through the lifecycle (core.lifecycle.apply), then what only the
    present decides: escalations of old breaches are held back (`now` is the worker clock live, the replay
    clock offline), and the outputs go into the lead's ledger."""
    ticked: list[Output] = []
    if state is not None and not isinstance(event, TimerDue):
        while (instant := next_instant(state)) is not None and instant <= min(event.occurred_at, now):
            tick = timer_due(state.lead_id, instant)
            passed = step(state, tick, policy, now)
            if passed.state is state or passed.state is None:
                break
            state, ticked = passed.state, [*ticked, *passed.outputs]
    done = step(state, event, policy, now)
    if not ticked:
        return done
    return Step(
        done.state, (*ticked, *done.outputs), refused=done.refused, erased=done.erased, forwarded=done.forwarded
    )


def step(state: LeadState | None, event: LeadEvent, policy: Policy, now: datetime) -> Step:
    applied = apply(state, event, policy)
    if applied.refused or applied.forwarded:
        return applied  # nothing for this lead's ledger: a forwarded contact attempt counts where it is applied
    outputs = hold_old_escalations(applied.outputs, now, policy)
    return Step(keep_in_ledger(applied.state, event, outputs), outputs, erased=applied.erased)


def fold(
    state: LeadState | None, events: list[LeadEvent], policy: Policy, now: datetime
) -> tuple[LeadState | None, list[Step]]:
    steps = []
    for event in events:
        step = advance(state, event, policy, now)
        state = step.state
        steps.append(step)
    return state, steps


def decide(record: LeadRecord | None, event: LeadEvent, policy: Policy, now: datetime) -> Decision:
    """Decide one event for its lead, so that the outcome depends only on the lead's events and their times,
    never on when they reached the worker (a backlog, a restart, a slow router):
    - time passes first: the instants of the lead's clocks that came before the event fire as their own steps,
      in order (what the live timer and the replay do when they get there first);
    - a lead that asked the router for an owner holds every later event (timer ticks too) until the answer
      comes, then applies the answer at its own time and the held events after it, as a replay does.
    """
    fresh = record is not None and not is_duplicate(record, event.event_id)
    if record is not None and fresh:
        if record.awaiting and event.event_id not in record.awaiting:
            return hold(record, event, (), policy, now)
        ticked: list[Output] = []
        while (tick := due_tick(record, event, now)) is not None:
            decision = decide_one(record, tick, policy, now)
            if not decision.changed:
                break
            record, ticked = decision.record, [*ticked, *decision.outputs]
            if record.awaiting and event.event_id not in record.awaiting:
                # The tick asked the router (an escalation): the event waits for that answer.
                return hold(record, event, tuple(ticked), policy, now)
        if ticked:
            decision = decide(record, event, policy, now)
            outputs = (*ticked, *decision.outputs)
            return Decision(decision.record, outputs, decision.outcome, changed=True, released=decision.released)
    decision = decide_one(record, event, policy, now, fresh=fresh)
    if record is not None and event.event_id in record.awaiting and not decision.record.awaiting:
        return release_held(decision, policy, now)
    if decision.record.held and decision.record.awaiting:
        return answered_already(decision, policy, now)
    return decision


def answered_already(decision: Decision, policy: Policy, now: datetime) -> Decision:
    """A window applied again may ask the router anew, under the id of a request it asked before, while holding
    the events after that request, the answer it already had among them (`apply_again`): the router's repeat
    answer would then be a duplicate, and the lead would wait for ever. The answer is here: it is taken out of
    the held events and applied, and it releases the others."""
    record = decision.record
    answer = next((held for held in record.held if held.event_id in record.awaiting), None)
    if answer is None:
        return decision
    waiting = record.model_copy(update={"held": tuple(held for held in record.held if held is not answer)})
    later = decide(waiting, answer, policy, now)
    return Decision(
        later.record,
        (*decision.outputs, *later.outputs),
        decision.outcome,
        changed=True,
        released=(*decision.released, (answer, later.outcome), *later.released),
    )


def is_window_closed(record: LeadRecord, tick: TimerDue, policy: Policy) -> bool:
    """A timer tick at or past `forget_at`: no lead.created can now come in time for the refused events."""
    until = forget_at(record, policy)
    return until is not None and tick.occurred_at >= until


def due_tick(record: LeadRecord, event: LeadEvent, now: datetime) -> TimerDue | None:
    """The timer event of the lead's earliest instant that came before this event, if one is still to fire."""
    if record.state is None or isinstance(event, TimerDue):
        return None
    instant = next_instant(record.state)
    if instant is None or instant > event.occurred_at or instant > now:
        return None
    return timer_due(record.lead_id, instant)


def hold(record: LeadRecord, event: LeadEvent, outputs: tuple[Output, ...], policy: Policy, now: datetime) -> Decision:
    """Keep the event until the router answers. A lead that has waited too long (`processing.router_wait_seconds`
    of its own event time, timer ticks included, or MAX_HELD events: a router down, a request lost in a crash)
    stops waiting: what it held is applied in arrival order, then this event; a late answer after them."""
    if len(record.held) < MAX_HELD and not has_waited_too_long(record, event, policy):
        waiting = record.model_copy(update={"held": (*record.held, event), "version": record.version + 1})
        return Decision(waiting, outputs, "held", changed=True)
    gave_up = release_held(Decision(record, outputs, "applied", changed=True), policy, now, give_up=True)
    last = decide(gave_up.record, event, policy, now)
    return Decision(
        last.record, (*gave_up.outputs, *last.outputs), last.outcome, True, (*gave_up.released, *last.released)
    )


def has_waited_too_long(record: LeadRecord, event: LeadEvent, policy: Policy) -> bool:
    since = record.awaiting_since
    return since is not None and event.occurred_at > since + timedelta(seconds=policy.processing.router_wait_seconds)


def release_held(decision: Decision, policy: Policy, now: datetime, *, give_up: bool = False) -> Decision:
    """The answer has come (or the lead gives up waiting): the events held meanwhile, in the order they came."""
    record, outputs, released = decision.record, list(decision.outputs), list(decision.released)
    held = record.held
    record = record.model_copy(update={"held": (), **({"awaiting": (), "awaiting_since": None} if give_up else {})})
    for event in held:
        later = decide(record, event, policy, now)
        record, outputs = later.record, [*outputs, *later.outputs]
        released += [(event, later.outcome), *later.released]
    return Decision(record, tuple(outputs), decision.outcome, changed=True, released=tuple(released))


def decide_one(
    record: LeadRecord | None, event: LeadEvent, policy: Policy, now: datetime, *, fresh: bool = False
) -> Decision:
    """One event, in event-time order within the lateness window (see the module docstring). `fresh`: the caller
    has just found the event is no duplicate of this record."""
    if record is None:
        record = LeadRecord(lead_id=event.lead_id, state=None)
    elif not fresh and is_duplicate(record, event.event_id):
        return Decision(record, (), "duplicate", changed=False)
    if isinstance(event, TimerDue) and event.occurred_at <= now and is_window_closed(record, event, policy):
        if record.erased_at is not None:  # the events kept after the erasure go; the marker stays
            return Decision(erased_marker(record, record.pending, record.erased_at, policy), (), "ignored", True)
        return Decision(record, (), "ignored", changed=True, forget=True)
    if isinstance(event, TimerDue) and (record.state is None or event.occurred_at > now):
        # A timer for a lead that is gone, or one that claims a time not yet come: nothing to do.
        return Decision(record, (), "ignored", changed=False)
    if record.erased_at is not None:
        if is_recreation(record, event):  # with the events after the erasure it kept: they sort after it or not
            record = LeadRecord(
                lead_id=record.lead_id,
                state=None,
                seen=record.seen,
                pending=record.pending,
                watermark=record.watermark,
                version=record.version,
            )
        elif not waits_for_recreation(record, event):
            step = refuse(
                None,
                event,
                "lead_erased",
                "this lead was erased; its events are not kept. A new lead.created after the erasure starts over",
            )
            return Decision(record, (*step.outputs, *unclaimed(event)), "refused", changed=False)
    if is_from_future(event, now, policy):
        # A producer clock far ahead would drag the watermark and make every later event "late".
        step = refuse(
            record.state,
            event,
            "future_event",
            f"occurred_at {event.occurred_at.isoformat()} is more than "
            f"{policy.processing.max_clock_skew_seconds:g}s ahead of the worker clock; fix the producer clock",
        )
        return Decision(record, step.outputs, "refused", changed=False)

    event = in_arrival_order(record, event)
    lateness = policy.processing.lateness
    is_late = record.watermark is not None and event.occurred_at < record.watermark - lateness
    pending = list(record.pending)
    held = record.held

    if not pending or comes_after(event, pending[-1].event):
        step = advance(record.state, event, policy, now)
        base = record.state if not pending else record.base
        output_ids = tuple([short_id(o.id) for o in step.outputs]) if step.outputs else ()
        pending.append(PendingEvent.of_valid(event=event, output_ids=output_ids))
        state, erased = step.state, step.erased
        outputs = not_emitted(step.outputs, record)
        before_last: tuple[LeadState | None] | None = (record.state,)
        outcome: Outcome = "late" if is_late else "applied"
        outcome = "refused" if step.refused else ("forwarded" if step.forwarded else outcome)
    else:
        again = apply_again(record, event, pending, emitted_before(record), policy, now=now)
        state, pending, outputs, erased, held = again.state, again.pending, again.outputs, again.erased, again.held
        base = record.base
        before_last = None  # not kept by the fold; a settle here re-applies the prefix instead
        outcome = "late" if is_late and again.outcome == "reordered" else again.outcome

    if state is None and erased:
        return Decision(marker_of_erasure(record, pending, event, policy), outputs, outcome, changed=True)

    watermark = max(record.watermark, event.occurred_at) if record.watermark else event.occurred_at
    awaiting: tuple[str, ...] = ()
    awaiting_since, emitted = None, still_emitted(record, outputs)
    if outputs or record.awaiting:  # most events neither ask the router nor emit anything
        asked = tuple(answer_id(o) for o in outputs if isinstance(o, RouteRequest) and o.lead_id == record.lead_id)
        awaiting = (*(a for a in record.awaiting if a != event.event_id), *asked)
        asked_at = min((o.occurred_at for o in outputs if isinstance(o, RouteRequest)), default=watermark)
        awaiting_since = (record.awaiting_since or min(asked_at, watermark)) if awaiting else None
    settled = settle(base, pending, watermark - lateness, policy, now, before_last=before_last)
    seen = (*record.seen, *settled.ids)[-policy.processing.dedupe_ids :] if settled.ids else record.seen
    # A copy, not a new model: every field is already valid (erased_at is None here), and validating them again
    # costs twice what the copy does.
    new_record = record.model_copy(
        update={
            "state": state,
            "base": settled.base,
            "pending": tuple(settled.pending),
            "seen": seen,
            "watermark": watermark,
            "emitted": emitted,
            "awaiting": awaiting,
            "awaiting_since": awaiting_since,
            "held": held,
            "version": record.version + 1,
        }
    )
    return Decision(new_record, outputs, outcome, changed=True)


@dataclass(frozen=True, slots=True)
class AppliedAgain:
    state: LeadState | None
    pending: list[PendingEvent]
    outputs: tuple[Output, ...]
    erased: bool
    held: tuple[LeadEvent, ...]
    outcome: Outcome


def apply_again(
    record: LeadRecord,
    event: LeadEvent,
    pending: list[PendingEvent],
    already_emitted: set[str],
    policy: Policy,
    *,
    now: datetime,
) -> AppliedAgain:
    """Out of order: insert the event in event-time order and apply the window again from the state before it."""
    insort(pending, PendingEvent(event=event), key=lambda p: order_key(p.event))
    state, steps = fold(record.base, [p.event for p in pending], policy, now)
    held = record.held
    asks_at = first_new_request(steps, already_emitted, record.lead_id)
    if asks_at is not None and asks_at < len(pending) - 1:
        # The window asks the router anew, before events already here: in order, the lead would have held
        # them until the answer; so it holds them now, and their outputs wait for the answer too.
        held = (*(p.event for p in pending[asks_at + 1 :]), *held)
        pending, steps = pending[: asks_at + 1], steps[: asks_at + 1]
        state = steps[-1].state
    # Keep the ids emitted by earlier passes too: a third pass may bring back an output of the first one.
    pending = [
        PendingEvent(
            event=p.event,
            output_ids=tuple(dict.fromkeys((*map(short_id, p.output_ids), *(short_id(o.id) for o in s.outputs)))),
        )
        for p, s in zip(pending, steps, strict=True)
    ]
    outputs = once(o for s in steps for o in s.outputs if short_id(o.id) not in already_emitted)
    in_window = [p.event.event_id for p in pending]
    outcome: Outcome = "held"
    if event.event_id in in_window:
        mine = steps[in_window.index(event.event_id)]
        outcome = "refused" if mine.refused else ("forwarded" if mine.forwarded else "reordered")
    return AppliedAgain(state, pending, outputs, any(s.erased for s in steps), held, outcome)


def first_new_request(steps: list[Step], already_emitted: set[str], lead_id: str) -> int | None:
    """The first step of a window applied again that asks the router for this lead and was not asked before."""
    for n, done in enumerate(steps):
        if any(
            isinstance(o, RouteRequest) and o.lead_id == lead_id and short_id(o.id) not in already_emitted
            for o in done.outputs
        ):
            return n
    return None


class Settled(NamedTuple):
    base: LeadState | None
    pending: list[PendingEvent]
    ids: tuple[str, ...]


def settle(
    base: LeadState | None,
    pending: list[PendingEvent],
    cutoff: datetime,
    policy: Policy,
    now: datetime,
    *,
    before_last: tuple[LeadState | None] | None = None,
) -> Settled:
    """Move events older than the cutoff out of the window: their ids go to `seen`, their effect into `base`.

    The common case costs nothing: a lead's new event comes minutes or days after the previous ones, so every
    pending event but the new one is outside the window and the new base is the state before the new event
    (`before_last`, known on the in-order path). Any other partial settle re-applies the settled prefix to the
    base, so it is done only when the window grows past MAX_PENDING.
    """
    old = 0
    while old < len(pending) and pending[old].event.occurred_at < cutoff:
        old += 1
    if len(pending) - old > HARD_MAX_PENDING:
        old = len(pending) - MAX_PENDING
    if old == 0:
        return Settled(base, pending, ())
    ids = (pending[0].event.event_id,) if old == 1 else tuple([p.event.event_id for p in pending[:old]])
    if old == len(pending):
        return Settled(None, [], ids)
    if old == len(pending) - 1 and before_last is not None:
        return Settled(before_last[0], pending[-1:], ids)
    if len(pending) <= MAX_PENDING:
        return Settled(base, pending, ())
    new_base, _ = fold(base, [p.event for p in pending[:old]], policy, now)
    return Settled(new_base, pending[old:], ids)
