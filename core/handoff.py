"""The hand-off, on the lead's side: ask the router for an owner, take the answer, pass the baton, escalate.

When a lead enters `mql` without an owner, it asks the router (`RouteRequest`, pool chosen from its profile).
The router's answer comes back as a `lead.assigned` from source `leadflow.routing`; taking it sets the owner and
emits a `HandOff` (who, which SLAs run and by when, why the lead is worth it, which of the fields the policy
requires in its stage it still lacks). An external `lead.assigned` overrides routing. A lead that stops holding
an owner's capacity (it leaves `mql`, changes owner, is merged or erased) releases it (`RouteRelease`). A breach
of an SLA with `escalate` notifies the pool's manager and/or asks for the next owner of the pool; when that owner
arrives the clock restarts (the breach stays counted).
"""

from __future__ import annotations

from datetime import datetime

from leadflow.core.completeness import missing_fields
from leadflow.core.ids import output_id
from leadflow.core.routing import pool_for
from leadflow.core.sla.clock import mql_reason, restart
from leadflow.core.sla.outcome import cancelled
from leadflow.schemas.events import LeadAssigned, LeadEvent
from leadflow.schemas.outputs import (
    HandOff,
    HandOffReason,
    HandOffSla,
    Output,
    RouteRelease,
    RouteRequest,
    ScoreSummary,
    StageChanged,
)
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadState

ROUTER_SOURCE = "leadflow.routing"
ROUTED_STAGE = "mql"  # capacity counts open MQLs: a lead holds its owner's capacity while it is an MQL
TOP_ACTIONS = 5
PROFILE_FIELDS = ("company", "job_title", "seniority", "company_size", "industry", "country", "persona", "segment")


def holds(state: LeadState | None) -> tuple[str, str] | None:
    """(pool, owner) whose capacity the lead takes up: an open MQL routed from a pool."""
    if state is None or state.stage != ROUTED_STAGE or state.merged_into is not None:
        return None
    if state.pool is None or state.owner_id is None:
        return None
    return state.pool, state.owner_id


def is_sales_stage(state: LeadState, policy: Policy) -> bool:
    return policy.stage_rank(state.stage) >= policy.stage_rank(ROUTED_STAGE) >= 0


def hand_off(
    state: LeadState, event: LeadEvent, policy: Policy, reason: HandOffReason, previous_owner: str | None = None
) -> HandOff:
    assert state.owner_id is not None
    top = sorted(state.engagement.items(), key=lambda item: (-item[1], item[0]))[:TOP_ACTIONS]
    profile = state.profile.model_dump(include=set(PROFILE_FIELDS), exclude_none=True)
    return HandOff(
        # The previous owner is part of the id: when a late event is applied in its place, the owner change it
        # then precedes is handed off again (from another owner), so the last hand-off names the current owner.
        id=output_id(state.lead_id, event.event_id, "handoff", state.owner_id, previous_owner or ""),
        lead_id=state.lead_id,
        owner_id=state.owner_id,
        team=state.team,
        pool=state.pool,
        reason=reason,
        previous_owner_id=previous_owner,
        stage=state.stage,
        occurred_at=event.occurred_at,
        slas=tuple(
            HandOffSla(
                sla=clock.sla,
                started_at=clock.started_at,
                deadline=clock.deadline,
                allowance_s=clock.allowance_s,
                business=clock.calendar is not None,
            )
            for clock in state.clocks.values()
        ),
        score=ScoreSummary(
            fit=state.fit,
            engagement=state.engagement_score,
            hand_raiser=mql_reason(state) == "hand_raiser",
            top_actions=tuple((action, round(points, 1)) for action, points in top if points > 0),
            mql_reason=mql_reason(state),
        ),
        profile=profile,
        missing_fields=missing_fields(state.profile, state.stage, policy),
    )


def release(lead_id: str, held: tuple[str, str], cause: str, at: datetime) -> RouteRelease:
    pool, owner = held
    return RouteRelease(
        id=output_id(lead_id, cause, "release", pool, owner),
        lead_id=lead_id,
        pool=pool,
        owner_id=owner,
        occurred_at=at,
    )


def is_router_answer(event: LeadEvent) -> bool:
    return isinstance(event, LeadAssigned) and event.source == ROUTER_SOURCE and event.data.pool is not None


def unclaimed(event: LeadEvent) -> tuple[RouteRelease, ...]:
    """A router answer for a lead that can no longer take it (merged, erased): give the capacity back."""
    if isinstance(event, LeadAssigned) and is_router_answer(event):
        assert event.data.pool is not None
        return (release(event.lead_id, (event.data.pool, event.data.owner_id), event.event_id, event.occurred_at),)
    return ()


def is_stale_answer(state: LeadState, event: LeadAssigned) -> bool:
    """A router answer that came too late: the lead moved on, or someone else already took it."""
    data = event.data
    if data.escalated_sla is not None:
        # Answers take effect on arrival (core.decision), after whatever saw the breach; an external owner since
        # (no pool) wins.
        clock = state.clocks.get(data.escalated_sla)
        return clock is None or not clock.breached or state.owner_id == data.owner_id or state.pool is None
    return state.stage != ROUTED_STAGE or state.owner_id is not None


def assign(state: LeadState, event: LeadAssigned, policy: Policy) -> tuple[LeadState, tuple[Output, ...]]:
    """Apply a lead.assigned: the router's answer, or an external assignment (which wins over routing)."""
    data = event.data
    routed = is_router_answer(event)
    if routed and is_stale_answer(state, event):
        assert data.pool is not None
        if holds(state) == (data.pool, data.owner_id):
            return state, ()  # the router answered again with the owner the lead holds: keep it
        return state, (release(state.lead_id, (data.pool, data.owner_id), event.event_id, event.occurred_at),)
    previous = state.owner_id
    updated = state.model_copy(
        update={
            "owner_id": data.owner_id,
            "team": data.team or state.team,
            "pool": data.pool if routed else None,
            "updated_at": max(state.updated_at, event.occurred_at),
        }
    )
    outputs: list[Output] = []
    if routed and data.escalated_sla in updated.clocks:
        # The new owner gets the full allowance again; the breach of the old clock stays counted.
        old = updated.clocks[data.escalated_sla]
        clock, started = restart(updated, old, event.occurred_at, policy)
        outputs += [cancelled(state, old, event.occurred_at, "reassigned"), started]
        updated = updated.model_copy(update={"clocks": {**updated.clocks, clock.sla: clock}})
    if previous != data.owner_id and is_sales_stage(updated, policy):
        reason: HandOffReason = (data.reason or "routed") if routed else "assigned"
        outputs.append(hand_off(updated, event, policy, reason, previous))
    if routed and holds(updated) is None:
        # Reassigned outside mql (an escalated SLA that runs in later stages): the router counted the new owner,
        # but only open MQLs take capacity, and nothing else would give it back.
        assert data.pool is not None
        outputs.append(release(state.lead_id, (data.pool, data.owner_id), event.event_id, event.occurred_at))
    return updated, tuple(outputs)


def follow(
    before: LeadState | None, after: LeadState | None, event: LeadEvent, outputs: tuple[Output, ...], policy: Policy
) -> tuple[Output, ...]:
    """The routing consequences of one applied event: a route request or hand-off on entering mql, and the
    release of capacity the lead no longer takes up."""
    more: list[Output] = []
    if after is not None and outputs:
        entered = any(isinstance(o, StageChanged) and o.to_stage == ROUTED_STAGE for o in outputs)
        if entered and after.stage == ROUTED_STAGE:
            if after.owner_id is not None:
                more.append(hand_off(after, event, policy, "assigned"))
            elif policy.routing is not None:
                more.append(
                    RouteRequest(
                        id=output_id(after.lead_id, event.event_id, "route"),
                        lead_id=after.lead_id,
                        pool=pool_for(after.profile, policy.routing),
                        occurred_at=event.occurred_at,
                    )
                )
    held = holds(before)
    if before is not None and held is not None and holds(after) != held:
        more.insert(0, release(before.lead_id, held, event.event_id, event.occurred_at))
    return tuple(more)
