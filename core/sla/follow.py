"""What one applied event does to the lead's clocks: the `clocks` step of the chain (core.pipeline).

In order: the instants that came due by the event's time (core.sla.due); a counted SLA counts the event, an
event that meets a clock meets it; a pause or a resume; leaving the stages a clock runs in meets or cancels it;
entering a stage, or an event, starts the clocks the policy starts there.
"""

from __future__ import annotations

from datetime import datetime

from leadflow.core.sla.clock import mql_reason, pause, resume, start
from leadflow.core.sla.due import due
from leadflow.core.sla.outcome import cancelled, left_reason, met
from leadflow.core.step import Step
from leadflow.schemas.events import LeadEvent, LeadPaused, LeadResumed
from leadflow.schemas.outputs import SlaOutput, StageChanged
from leadflow.schemas.policy import Policy, SlaSpec
from leadflow.schemas.state import Clock, LeadState

Clocks = dict[str, Clock]


def clocks(before: LeadState | None, event: LeadEvent, step: Step, policy: Policy) -> Step:
    """The chain step: the clocks after what the lifecycle did (its stage changes)."""
    changes = [o for o in step.outputs if isinstance(o, StageChanged)]
    state, outputs = follow(before, step.state, event, changes, policy)
    if state is step.state and not outputs:
        return step
    return Step(state, (*step.outputs, *outputs), erased=step.erased)


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
    specs = policy.sla_specs
    running, closed = count_and_meet(state, state.clocks, event, specs, policy)
    outputs += closed
    if isinstance(event, LeadPaused):
        running = {name: pause(clock, at) for name, clock in running.items()}
    elif isinstance(event, LeadResumed):
        running = {name: resume(clock, at, policy) for name, clock in running.items()}
    for change in changes:
        running, left = leave(state, running, change, specs, at=at, policy=policy)
        running, started = start_where(state, running, policy, at, stage=change.to_stage, why=change.reason)
        outputs += [*left, *started]
    if event.type in policy.sla_start_events:
        running, started = start_where(state, running, policy, at, event_type=event.type, why=mql_reason(state))
        outputs += started
    if running == state.clocks and not outputs:
        return state, outputs
    return state.model_copy(update={"clocks": running}), outputs


def count_and_meet(
    state: LeadState, running: Clocks, event: LeadEvent, specs: dict[str, SlaSpec], policy: Policy
) -> tuple[Clocks, list[SlaOutput]]:
    """A counted SLA counts the event (met at its `at_least`); an event the SLA waits for meets it. The clocks
    are copied only when the event changes one: most events (an activity) neither count nor meet any."""
    outputs: list[SlaOutput] = []
    at = event.occurred_at
    kind = event.type
    kept = running
    for name, clock in running.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.count_event == kind and spec.at_least is not None:
            kept = dict(kept) if kept is running else kept
            counted = kept[name] = clock.model_copy(update={"count": clock.count + 1})
            if counted.count >= spec.at_least:
                outputs.append(met(state, counted, at, policy))
                del kept[name]
        elif kind in spec.met_by:
            kept = dict(kept) if kept is running else kept
            outputs.append(met(state, clock, at, policy))
            del kept[name]
    return kept, outputs


def leave(
    state: LeadState, running: Clocks, change: StageChanged, specs: dict[str, SlaSpec], *, at: datetime, policy: Policy
) -> tuple[Clocks, list[SlaOutput]]:
    """The lead left the stages a clock runs in: met (`met_on_leaving`) or cancelled."""
    kept = dict(running)
    outputs: list[SlaOutput] = []
    for name, clock in running.items():
        spec = specs.get(name)
        if spec is None or not spec.stages or change.to_stage in spec.stages:
            continue
        if spec.met_on_leaving:
            outputs.append(met(state, clock, at, policy))
        else:
            outputs.append(cancelled(state, clock, at, left_reason(change)))
        del kept[name]
    return kept, outputs


def start_where(
    state: LeadState,
    running: Clocks,
    policy: Policy,
    at: datetime,
    *,
    why: str,
    stage: str | None = None,
    event_type: str | None = None,
) -> tuple[Clocks, list[SlaOutput]]:
    """The clocks the policy starts on entering `stage` (or on an event of `event_type`) and not yet running;
    a hand-raiser (`why`) gets the hand-raiser allowance."""
    started: list[SlaOutput] = []
    for spec in policy.slas:
        starts_here = spec.starts_on_stage == stage if stage is not None else spec.starts_on_event == event_type
        if starts_here and spec.name not in running:
            clock, output = start(state, spec, at, why == "hand_raiser", policy)
            running = {**running, spec.name: clock}
            started.append(output)
    return running, started
