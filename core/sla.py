"""SLA clocks: start on entering a stage, warn, breach, meet, pause and resume, cancel on leaving.

`follow(before, step, event, policy)` runs after the lifecycle has applied an event; `due(state, at, policy)`
emits the warnings and breaches whose instant has come (at an event's time here; the durable timers of the
shell will call it at deadlines too). Output ids depend on the clock (lead, SLA, start) and what happened, not
on what triggered the check, so a breach seen by an event and by a timer is the same output, emitted once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.calendar import BusinessCalendar
from core.ids import output_id
from schemas.events import LeadEvent, LeadPaused, LeadResumed
from schemas.outputs import SlaBreached, SlaCancelled, SlaMet, SlaOutput, SlaStarted, SlaWarning, StageChanged
from schemas.policy import Policy, SlaSpec
from schemas.state import Clock, LeadState


def mql_reason(state: LeadState) -> str:
    """Why the lead last became MQL (score, hand_raiser, external...), or "none"."""
    return next((entry.reason for entry in reversed(state.history) if entry.stage == "mql"), "none")


def calendar_of(clock: Clock, policy: Policy) -> BusinessCalendar | None:
    return BusinessCalendar.from_spec(policy.calendars[clock.calendar]) if clock.calendar else None


def later(start: datetime, seconds: float, calendar: BusinessCalendar | None) -> datetime:
    return calendar.add(start, seconds) if calendar else start + timedelta(seconds=seconds)


def measure(a: datetime, b: datetime, calendar: BusinessCalendar | None) -> float:
    return calendar.elapsed(a, b) if calendar else max(0.0, (b - a).total_seconds())


def clock_id(state: LeadState, clock: Clock, *what: str) -> str:
    return output_id(state.lead_id, "sla", clock.sla, clock.started_at.isoformat(), *what)


def common(state: LeadState, clock: Clock, at: datetime) -> dict[str, object]:
    return {
        "lead_id": state.lead_id,
        "sla": clock.sla,
        "owner_id": state.owner_id,
        "team": state.team,
        "pool": state.pool,
        "started_at": clock.started_at,
        "deadline": clock.deadline,
        "occurred_at": at,
    }


def start(state: LeadState, spec: SlaSpec, at: datetime, hand_raiser: bool, policy: Policy) -> tuple[Clock, SlaOutput]:
    allowance = spec.allowance_for(hand_raiser)
    calendar = spec.calendar if allowance.is_business else None
    return open_clock(
        state, spec.name, at, allowance_s=allowance.seconds, calendar_name=calendar, warn_at=spec.warn_at, policy=policy
    )


def restart(state: LeadState, old: Clock, at: datetime, policy: Policy) -> tuple[Clock, SlaOutput]:
    """The same commitment from `at` on, with the full allowance (an escalation gave the lead a new owner)."""
    warn_at = next((spec.warn_at for spec in policy.slas if spec.name == old.sla), ())
    clock, started = open_clock(
        state, old.sla, at, allowance_s=old.allowance_s, calendar_name=old.calendar, warn_at=warn_at, policy=policy
    )
    return clock.model_copy(update={"reassignments": old.reassignments + 1}), started


def open_clock(
    state: LeadState,
    sla: str,
    at: datetime,
    *,
    allowance_s: float,
    calendar_name: str | None,
    warn_at: tuple[float, ...],
    policy: Policy,
) -> tuple[Clock, SlaOutput]:
    calendar = BusinessCalendar.from_spec(policy.calendars[calendar_name]) if calendar_name else None
    clock = Clock(
        sla=sla,
        started_at=at,
        deadline=later(at, allowance_s, calendar),
        allowance_s=allowance_s,
        calendar=calendar_name,
        warnings=tuple((f, later(at, allowance_s * f, calendar)) for f in sorted(warn_at)),
    )
    started = SlaStarted(
        id=clock_id(state, clock, "started"),
        **common(state, clock, at),
        allowance_s=allowance_s,
        business=calendar is not None,
    )
    return clock, started


def due(state: LeadState, at: datetime, policy: Policy) -> tuple[LeadState, list[SlaOutput]]:
    """Warnings and breaches of the open clocks whose instant is at or before `at` (paused clocks wait)."""
    outputs: list[SlaOutput] = []
    clocks = dict(state.clocks)
    for name, clock in state.clocks.items():
        if clock.paused_at is not None:
            continue
        for fraction, instant in clock.warnings:
            if instant <= at:
                outputs.append(
                    SlaWarning(
                        id=clock_id(state, clock, "warning", f"{fraction:g}"),
                        **common(state, clock, instant),
                        fraction=fraction,
                    )
                )
        remaining = tuple(w for w in clock.warnings if w[1] > at)
        breached = clock.breached or clock.deadline <= at
        if breached and not clock.breached:
            outputs.append(SlaBreached(id=clock_id(state, clock, "breached"), **common(state, clock, clock.deadline)))
        if remaining != clock.warnings or breached != clock.breached:
            clocks[name] = clock.model_copy(update={"warnings": remaining, "breached": breached})
    if not outputs and clocks == state.clocks:
        return state, outputs
    return state.model_copy(update={"clocks": clocks}), outputs


def met(state: LeadState, clock: Clock, at: datetime, policy: Policy) -> SlaMet:
    calendar = calendar_of(clock, policy)
    stopped = clock.paused_at or at  # a clock met while paused used what it had used at the pause
    if stopped <= clock.deadline:
        used = clock.allowance_s - measure(stopped, clock.deadline, calendar)
    else:
        used = clock.allowance_s + measure(clock.deadline, stopped, calendar)
    return SlaMet(
        id=clock_id(state, clock, "met"),
        **common(state, clock, at),
        used_s=round(used, 3),
        late=stopped > clock.deadline,
    )


def cancelled(state: LeadState, clock: Clock, at: datetime, reason: str) -> SlaCancelled:
    return SlaCancelled(id=clock_id(state, clock, "cancelled"), **common(state, clock, at), reason=reason)


def left_reason(change: StageChanged) -> str:
    """Why leaving a stage cancelled a clock: `left:mql`, or `left:mql skipped:sal,sql,opportunity` when a fact
    jumped over stages (their clocks never started, and this one closes as leaving the stage closes it)."""
    left = f"left:{change.from_stage}"
    return f"{left} skipped:{','.join(change.skipped)}" if change.skipped else left


def pause(clock: Clock, at: datetime) -> Clock:
    return clock if clock.paused_at else clock.model_copy(update={"paused_at": at})


def resume(clock: Clock, at: datetime, policy: Policy) -> Clock:
    """Shift the deadline and the warnings to come by the pause: what was left at the pause is left now."""
    if clock.paused_at is None:
        return clock
    calendar = calendar_of(clock, policy)
    paused_at = clock.paused_at
    return clock.model_copy(
        update={
            "paused_at": None,
            "deadline": later(at, measure(paused_at, clock.deadline, calendar), calendar),
            "warnings": tuple((f, later(at, measure(paused_at, w, calendar), calendar)) for f, w in clock.warnings),
        }
    )


def follow(before: LeadState | None, after: LeadState | None, event: LeadEvent, changes: list[StageChanged],
           policy: Policy) -> tuple[LeadState | None, list[SlaOutput]]:  # fmt: skip
    """The SLA consequences of one applied event: due checks at its time, met, pause/resume, leave, start."""
    if after is None:
        if before is None:
            return None, []
        return None, [cancelled(before, c, event.occurred_at, "erased") for c in before.clocks.values()]
    at = event.occurred_at
    state, outputs = due(after, at, policy)
    if state.merged_into is not None and state.clocks:
        # A merged lead is closed here; the surviving lead carries the commitments from now on.
        outputs.extend(cancelled(state, c, at, f"merged:{state.merged_into}") for c in state.clocks.values())
        return state.model_copy(update={"clocks": {}}), outputs
    clocks = dict(state.clocks)
    specs = {spec.name: spec for spec in policy.slas}
    for name, clock in list(clocks.items()):
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.count_event == event.type and spec.at_least is not None:
            counted = clocks[name] = clock.model_copy(update={"count": clock.count + 1})
            if counted.count >= spec.at_least:
                outputs.append(met(state, counted, at, policy))
                del clocks[name]
        elif event.type in spec.met_by:
            outputs.append(met(state, clock, at, policy))
            del clocks[name]
    if isinstance(event, LeadPaused):
        clocks = {name: pause(clock, at) for name, clock in clocks.items()}
    elif isinstance(event, LeadResumed):
        clocks = {name: resume(clock, at, policy) for name, clock in clocks.items()}
    for change in changes:
        for name, clock in list(clocks.items()):
            spec = specs.get(name)
            if spec is None or not spec.stages or change.to_stage in spec.stages:
                continue
            if spec.met_on_leaving:
                outputs.append(met(state, clock, at, policy))
            else:
                outputs.append(cancelled(state, clock, at, left_reason(change)))
            del clocks[name]
        for spec in policy.slas:
            if spec.starts_on_stage == change.to_stage and spec.name not in clocks:
                clock, started = start(state, spec, at, change.reason == "hand_raiser", policy)
                clocks[spec.name] = clock
                outputs.append(started)
    for spec in policy.slas:
        if spec.starts_on_event == event.type and spec.name not in clocks:
            clock, started = start(state, spec, at, mql_reason(state) == "hand_raiser", policy)
            clocks[spec.name] = clock
            outputs.append(started)
    if clocks == state.clocks and not outputs:
        return state, outputs
    return state.model_copy(update={"clocks": clocks}), outputs
