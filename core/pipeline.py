"""The per-event chain: what one event does to one lead, step by step.

    lifecycle  stage, scores and facts; a request the policy does not allow is refused   core.lifecycle
    clocks     SLA clocks come due, are met, paused, resumed, cancelled, started          core.sla.follow
    breaches   what the policy does about each new breach: recycle, notify, reassign      core.sla.breach
    routing    a route request or hand-off on entering mql; capacity released            core.handoff

Each step is pure: the lead before the event, the event, and what the steps before it produced (`Step`) give the
next `Step`. A refused or forwarded event stops after the lifecycle. `core.decision` runs the chain in event-time
order, holds old escalations back and keeps the outputs in the lead's ledger.
"""

from __future__ import annotations

from collections.abc import Callable

from leadflow.core.handoff import follow as follow_routing
from leadflow.core.lifecycle import apply_lifecycle
from leadflow.core.sla.breach import breaches
from leadflow.core.sla.follow import clocks
from leadflow.core.step import Step
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadState

# (the lead before the event, the event, the step so far, the policy) -> the step after this one.
Consequence = Callable[[LeadState | None, LeadEvent, Step, Policy], Step]


def routing(before: LeadState | None, event: LeadEvent, step: Step, policy: Policy) -> Step:
    more = follow_routing(before, step.state, event, step.outputs, policy)
    return Step(step.state, (*step.outputs, *more), erased=step.erased) if more else step


# What an applied event leads to, in order, after the lifecycle.
CONSEQUENCES: tuple[Consequence, ...] = (clocks, breaches, routing)


def apply(state: LeadState | None, event: LeadEvent, policy: Policy) -> Step:
    """Apply one event to one lead, in event-time order: the lifecycle, then its consequences.

    A refused event changes nothing, its time included: SLA clocks only move with applied events. (One
    exception: a merged lead keeps the leads a merge notice names even when it reports the notice as closing a
    cycle: what a lead knows of the leads merged into it only grows.) A forwarded event is not applied here.
    """
    step = apply_lifecycle(state, event, policy)
    if step.refused or step.forwarded:
        return step
    done = step
    for consequence in CONSEQUENCES:
        done = consequence(state, event, done, policy)
    return done
