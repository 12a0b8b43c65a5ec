"""Routing: which pool a lead belongs to, and which owner of the pool takes it next.

`pool_for(profile, policy)` is read by the lead side (the lead's own partition). `route(state, request, policy)`
and `release(state, message)` run in the router, which holds every pool's turn and load in one `RoutingState`.
Round robin within the pool, skipping owners who are away on the request's day or at their capacity of open
MQLs; when nobody in the pool is free, the fallback pool takes the lead, and when nobody there is free either,
its least loaded owner who is not away does (a lead must never wait for an owner that will not come).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from core.scoring import is_match
from schemas.events import Profile
from schemas.outputs import RouteRelease, RouteRequest
from schemas.policy import Owner, Policy, Pool, Routing
from schemas.state import PoolState, RoutingState

# The answer is dated just after the request, so in event-time order it comes after the event that asked.
ANSWER_DELAY = timedelta(milliseconds=1)
# Route request ids remembered, so a redelivered request is answered again, never routed twice.
MAX_ANSWERED = 2000


@dataclass(frozen=True, slots=True)
class Assignment:
    lead_id: str
    owner_id: str
    pool: str
    team: str
    reason: Literal["routed", "fallback", "escalated"]
    request: RouteRequest


def pool_for(profile: Profile, routing: Routing) -> str:
    """The first pool whose conditions all hold (a pool with none takes anyone), else the fallback pool."""
    for pool in routing.pools:
        if all(is_match(condition, profile) for condition in pool.when):
            return pool.name
    return routing.fallback_pool


def is_away(owner: Owner, at: datetime, timezone: str) -> bool:
    day = at.astimezone(ZoneInfo(timezone)).date()
    return any(period.from_ <= day <= period.to for period in owner.away)


def is_full(owner: Owner, load: int) -> bool:
    return owner.capacity is not None and load >= owner.capacity


def team_timezone(pool: Pool, policy: Policy) -> str:
    calendar = policy.calendars.get(pool.team)
    assert policy.routing is not None
    return calendar.timezone if calendar else policy.routing.timezone


def holder(pools: dict[str, PoolState], lead_id: str, exclude: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """(pool, owner) holding the lead as an open MQL, if any (owners in `exclude` do not count)."""
    for name, pool in pools.items():
        for owner, leads in pool.open.items():
            if lead_id in leads and owner not in exclude:
                return name, owner
    return None


def next_owner(pool: Pool, state: PoolState, request: RouteRequest, policy: Policy) -> int | None:
    """Index of the first owner from the pool's turn on who is free: not excluded, not away, not full."""
    timezone = team_timezone(pool, policy)
    n = len(pool.owners)
    for step in range(n):
        index = (state.cursor + step) % n
        owner = pool.owners[index]
        if owner.id in request.exclude or is_away(owner, request.occurred_at, timezone):
            continue
        if not is_full(owner, len(state.open.get(owner.id, ()))):
            return index
    return None


def least_loaded(pool: Pool, state: PoolState, request: RouteRequest, policy: Policy) -> int | None:
    timezone = team_timezone(pool, policy)
    candidates = [
        (len(state.open.get(owner.id, ())), index)
        for index, owner in enumerate(pool.owners)
        if owner.id not in request.exclude and not is_away(owner, request.occurred_at, timezone)
    ]
    return min(candidates)[1] if candidates else None


def take(state: RoutingState, pool: Pool, index: int, lead_id: str) -> RoutingState:
    pool_state = state.pools.get(pool.name, PoolState())
    owner = pool.owners[index].id
    taken = PoolState(
        cursor=(index + 1) % len(pool.owners),
        open={**pool_state.open, owner: (*pool_state.open.get(owner, ()), lead_id)},
    )
    return state.model_copy(update={"pools": {**state.pools, pool.name: taken}})


def remember(state: RoutingState, request_id: str) -> RoutingState:
    return state.model_copy(update={"answered": (*state.answered, request_id)[-MAX_ANSWERED:]})


def route(state: RoutingState, request: RouteRequest, policy: Policy) -> tuple[RoutingState, Assignment | None]:
    """Pick the lead's owner. A request seen before is answered with the owner it got (if still held)."""
    routing = policy.routing
    if routing is None:
        return state, None
    held = holder(state.pools, request.lead_id, request.exclude)
    if held is not None:  # routed already (a redelivered request): the same answer again
        pool = routing.by_name.get(held[0]) or routing.by_name[routing.fallback_pool]
        if request.id not in state.answered:  # so that it is not routed anew once the lead lets go
            state = remember(state, request.id)
        return state, assignment(request, pool, held[1], "escalated" if request.escalated_sla else "routed")
    if request.id in state.answered:
        return state, None  # answered before, and released since: the lead has moved on
    state = remember(state, request.id)
    pool = routing.by_name.get(request.pool) or routing.by_name[routing.fallback_pool]
    reason: Literal["routed", "fallback", "escalated"] = "escalated" if request.escalated_sla else "routed"
    index = next_owner(pool, state.pools.get(pool.name, PoolState()), request, policy)
    if index is None:
        pool, reason = routing.by_name[routing.fallback_pool], "fallback"
        fallback_state = state.pools.get(pool.name, PoolState())
        index = next_owner(pool, fallback_state, request, policy)
        if index is None:
            index = least_loaded(pool, fallback_state, request, policy)
    if index is None:
        return state, None
    return take(state, pool, index, request.lead_id), assignment(request, pool, pool.owners[index].id, reason)


def assignment(
    request: RouteRequest, pool: Pool, owner_id: str, reason: Literal["routed", "fallback", "escalated"]
) -> Assignment:
    return Assignment(request.lead_id, owner_id, pool.name, pool.team, reason, request)


def answer_id(request: RouteRequest) -> str:
    """The event id of the router's answer to a request (an assignment or route.unassigned): one per request,
    so an answer sent twice is a duplicate for the lead."""
    return f"route:{request.id}"


def assigned_event(assignment: Assignment, source: str) -> dict[str, object]:
    """The router's answer as a `lead.assigned` envelope for the lead's own partition."""
    data: dict[str, object] = {
        "owner_id": assignment.owner_id,
        "team": assignment.team,
        "pool": assignment.pool,
        "reason": assignment.reason,
    }
    if assignment.request.escalated_sla is not None:
        data["escalated_sla"] = assignment.request.escalated_sla
    return answer(assignment.request, "lead.assigned", data, source)


def answer_to(
    state: RoutingState, request: RouteRequest, policy: Policy, source: str
) -> tuple[RoutingState, dict[str, object], Assignment | None]:
    """Route a request and build the answer the lead waits for: `lead.assigned` with the owner, or
    `route.unassigned` when nobody can take it (the router agent and the replay answer the same way)."""
    state, assignment = route(state, request, policy)
    envelope = assigned_event(assignment, source) if assignment else unassigned_event(request, source)
    return state, envelope, assignment


def unassigned_event(request: RouteRequest, source: str) -> dict[str, object]:
    """The router's answer when nobody can take the lead: the lead waits for an answer to every request."""
    return answer(request, "route.unassigned", {"pool": request.pool}, source)


def answer(request: RouteRequest, kind: str, data: dict[str, object], source: str) -> dict[str, object]:
    """An answer envelope: dated just after the request, with the id that follows from the request's."""
    return {
        "event_id": answer_id(request),
        "lead_id": request.lead_id,
        "type": kind,
        "occurred_at": (request.occurred_at + ANSWER_DELAY).isoformat(),
        "source": source,
        "actor": {"team": "system", "user_id": "router"},
        "data": data,
    }


def release(state: RoutingState, message: RouteRelease) -> RoutingState:
    """The owner no longer holds the lead as an open MQL. Idempotent: releasing twice changes nothing."""
    pool_state = state.pools.get(message.pool)
    if pool_state is None or message.lead_id not in pool_state.open.get(message.owner_id, ()):
        return state
    leads = tuple(lead for lead in pool_state.open[message.owner_id] if lead != message.lead_id)
    opened = {owner: held for owner, held in pool_state.open.items() if owner != message.owner_id}
    if leads:
        opened[message.owner_id] = leads
    released = pool_state.model_copy(update={"open": opened})
    return state.model_copy(update={"pools": {**state.pools, message.pool: released}})


def load(state: RoutingState, pool: str) -> dict[str, int]:
    """Open MQLs per owner of a pool (for views and metrics)."""
    pool_state = state.pools.get(pool, PoolState())
    return {owner: len(leads) for owner, leads in pool_state.open.items()}
