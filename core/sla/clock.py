"""A clock's arithmetic: open it (in wall time or in a team's business time), restart, pause, resume, measure."""

from __future__ import annotations

from datetime import datetime, timedelta

from leadflow.core.calendar import BusinessCalendar, calendar_for
from leadflow.core.ids import output_id
from leadflow.schemas.outputs import SlaOutput, SlaStarted
from leadflow.schemas.policy import Policy, SlaSpec
from leadflow.schemas.state import Clock, LeadState


def mql_reason(state: LeadState) -> str:
    """Why the lead last became MQL (score, hand_raiser, external...), or "none"."""
    return next((entry.reason for entry in reversed(state.history) if entry.stage == "mql"), "none")


def calendar_of(clock: Clock, policy: Policy) -> BusinessCalendar | None:
    return calendar_for(policy.calendars[clock.calendar]) if clock.calendar else None


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
    spec = policy.sla_specs.get(old.sla)
    warn_at = spec.warn_at if spec is not None else ()
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
    calendar = calendar_for(policy.calendars[calendar_name]) if calendar_name else None
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
