"""What a breach does next, as the policy says: the `breaches` step of the chain (core.pipeline).

On the lead first (`on_breach`, from the ON_BREACH table: `recycle` sends it back to marketing), then on people
(`escalate`: notify the pool's manager and/or reassign to the pool's next owner). Actions on people are held back
for breaches older than the escalation horizon: history, not news (`hold_old_escalations`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from leadflow.core.ids import output_id
from leadflow.core.lifecycle import is_allowed, move
from leadflow.core.sla.follow import follow
from leadflow.core.step import Step
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import Output, RouteRequest, SlaBreached, SlaEscalated, StageChanged
from leadflow.schemas.policy import OnBreach, Policy
from leadflow.schemas.state import LeadState

# (event, the step so far, the breached SLA) -> the step after the action.
BreachAction = Callable[[LeadEvent, Step, SlaBreached, Policy], Step]


def breaches(before: LeadState | None, event: LeadEvent, step: Step, policy: Policy) -> Step:
    """The chain step: each breach's action on the lead (the first one that acts), then the escalations."""
    breached = [o for o in step.outputs if isinstance(o, SlaBreached)]
    if not breached:
        return step
    for breach in breached:
        spec = policy.sla_specs.get(breach.sla)
        acted = ON_BREACH[spec.on_breach if spec else "none"](event, step, breach, policy)
        if acted is not step:
            step = acted
            break  # the lead has moved: a second action would act on a lead the first one changed
    after = step.state
    if after is None:
        return step
    escalations = [
        o for breach in step.outputs if isinstance(breach, SlaBreached) for o in escalate(after, breach, policy)
    ]
    return Step(after, (*step.outputs, *escalations), erased=step.erased) if escalations else step


def keep(event: LeadEvent, step: Step, breach: SlaBreached, policy: Policy) -> Step:
    return step


def recycle(event: LeadEvent, step: Step, breach: SlaBreached, policy: Policy) -> Step:
    """A counted SLA missed (e.g. too few contact attempts): the lead goes back to marketing, its clocks follow."""
    state = step.state
    if state is None or not is_allowed(policy, state.stage, "nurturing"):
        return step
    moved = move(state, "nurturing", event, policy, f"sla:{breach.sla}")
    changes = [o for o in moved.outputs if isinstance(o, StageChanged)]
    followed, more = follow(state, moved.state, event, changes, policy)
    return Step(followed, (*step.outputs, *moved.outputs, *more), erased=step.erased)


# What `on_breach` does to the lead; a new action is a word in schemas.policy.OnBreach and a function here.
ON_BREACH: dict[OnBreach, BreachAction] = {"none": keep, "recycle": recycle}


def escalate(state: LeadState, breach: SlaBreached, policy: Policy) -> list[Output]:
    """What the policy does about a breach: tell the pool's manager, and/or ask for the pool's next owner.

    Owner and pool come from the breach (the lead may have been recycled by the same breach)."""
    spec = policy.sla_specs.get(breach.sla)
    if spec is None or not spec.escalate or breach.owner_id is None:
        return []
    pool = policy.routing.by_name.get(breach.pool) if policy.routing and breach.pool else None
    still_theirs = state.owner_id == breach.owner_id and state.pool == breach.pool
    clock = state.clocks.get(breach.sla)
    reassigned = clock.reassignments if clock is not None and clock.started_at == breach.started_at else 0
    reassign = "reassign" in spec.escalate and pool is not None and still_theirs and reassigned < spec.max_reassignments
    actions = tuple(a for a in spec.escalate if a != "reassign" or reassign)
    if not actions:
        return []
    outputs: list[Output] = [
        SlaEscalated(
            **breach.model_dump(exclude={"type", "id", "not_escalated"}),
            id=output_id(breach.id, "escalated"),
            actions=actions,
            manager_id=pool.manager if pool and "notify" in spec.escalate else None,
        )
    ]
    if reassign and pool is not None:
        # The old owner keeps the lead (and its capacity) until the new one takes it.
        outputs.append(
            RouteRequest(
                id=output_id(breach.id, "reassign"),
                lead_id=state.lead_id,
                pool=pool.name,
                exclude=(breach.owner_id,),
                escalated_sla=breach.sla,
                occurred_at=breach.occurred_at,
            )
        )
    return outputs


def is_escalating(breach: SlaBreached, policy: Policy) -> bool:
    spec = policy.sla_specs.get(breach.sla)
    return spec is not None and bool(spec.escalate)


def is_recent(breach: SlaBreached, now: datetime, policy: Policy) -> bool:
    return breach.occurred_at >= now - timedelta(seconds=policy.processing.escalation_horizon_seconds)


def hold_old_escalations(outputs: tuple[Output, ...], now: datetime, policy: Policy) -> tuple[Output, ...]:
    """Actions on people (reassign, notify) only for recent breaches. A breach older than the horizon (a backlog
    after an outage, history sent through the live topic) is true history: it is emitted, marked not escalated
    with the reason, and nobody is reassigned or paged today for a deadline that passed long ago."""
    if not outputs:
        return outputs
    breaches = (o for o in outputs if isinstance(o, SlaBreached) and is_escalating(o, policy))
    old = {breach.id for breach in breaches if not is_recent(breach, now, policy)}
    if not old:
        return outputs
    actions = {output_id(breach_id, what) for breach_id in old for what in ("escalated", "reassign")}
    horizon = policy.processing.escalation_horizon_seconds
    reason = f"older than processing.escalation_horizon_seconds ({horizon:g} s) when seen: history, not escalated"
    return tuple(
        o.model_copy(update={"not_escalated": reason}) if o.id in old else o for o in outputs if o.id not in actions
    )
