"""Time passes: the warnings and breaches of a lead's open clocks whose instant has come."""

from __future__ import annotations

from datetime import datetime

from leadflow.core.deadlines import next_instant
from leadflow.core.sla.clock import clock_id, common
from leadflow.schemas.outputs import SlaBreached, SlaOutput, SlaWarning
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadState


def due(state: LeadState, at: datetime, policy: Policy) -> tuple[LeadState, list[SlaOutput]]:
    """Warnings and breaches of the open clocks whose instant is at or before `at` (paused clocks wait)."""
    outputs: list[SlaOutput] = []
    instant = next_instant(state)
    if instant is None or instant > at:
        return state, outputs  # the common case: most events come between a clock's instants
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
