"""How a clock ends: met (the allowance used, on time or late) or cancelled (the lead left the stage, ...)."""

from __future__ import annotations

from datetime import datetime

from leadflow.core.sla.clock import calendar_of, clock_id, common, measure
from leadflow.schemas.outputs import SlaCancelled, SlaMet, StageChanged
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import Clock, LeadState


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
