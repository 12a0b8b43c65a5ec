"""Routing: which pool a lead belongs to, and which owner of the pool takes it next.

`pool_for(profile, policy)` is read by the lead side (the lead's own partition). `route(state, request, policy)`
and `release(state, message)` run in the router, which holds every pool's turn and load in one `RoutingState`.
Round robin within the pool, skipping owners who are away on the request's day or at their capacity of open
MQLs; when nobody in the pool is free, the fallback pool takes the lead, and when nobody there is free either,
its least loaded owner who is not away does (a lead must never wait for an owner that will not come).

Every routing message may be read twice: a redelivery, or, after a crash, the routing topic read again from the
last committed offset while the stored state already holds what came after. So the router keeps the answer it
gave each recent request (`RoutingState.answers`) and the ids of recent releases (`RoutingState.released`). A
request read again is answered again with the same answer (same id, same owner, or route.unassigned again: the
lead may have lost the first answer with the crash, and waits for it, core.decision), takes no capacity, moves
no turn and is no news (`RouterAnswer.counted` is False: nothing to count, nothing to warn about); a release
read again frees nothing (the owner may hold the lead again since, for a later request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from leadflow.core.scoring import is_match
from leadflow.schemas.events import Profile
from leadflow.schemas.outputs import RouteRelease, RouteRequest
from leadflow.schemas.policy import Owner, Policy, Pool, Routing
from leadflow.schemas.state import PoolState, RouteAnswer, RoutingState

# The answer is dated just after the request, so in event-time order it comes after the event that asked.
ANSWER_DELAY = timedelta(milliseconds=1)
# Answers remembered (all pools together, the most recent requests), so a request read again is answered the same
# way, never routed twice. A crash replays the routing messages after the last committed offset: 1,007 requests
# in one kill test, so twice that. Each costs ~110 bytes in the routing table's one record.
MAX_ANSWERED = 2000
# Release ids remembered, so a release read again does not free a later hold of the same lead by the same owner.
MAX_RELEASED = 2000


@dataclass(frozen=True, slots=True)
class Assignment:
    lead_id: str
    owner_id: str
    pool: str
    team: str
    reason: Literal["routed", "fallback", "escalated"]
    request: RouteRequest


@dataclass(frozen=True, slots=True)
class RouterAnswer:
    """What the router does with one route request: the state it keeps, the answer it sends the lead (always one),
    the owner (None: nobody could take the lead, the answer is route.unassigned), and whether the request was
    answered before (`replayed`: the same answer again, nothing changed)."""

    state: RoutingState
    envelope: dict[str, object]
    assignment: Assignment | None
    replayed: bool

    @property
    def counted(self) -> bool:
        """Whether the answer is news for the router's counters and logs: a replayed request is not."""
        return not self.replayed

    @property
    def unassigned(self) -> bool:
        """Nobody could take the lead, and this is the first time the router says so (count it, warn)."""
        return self.assignment is None and self.counted


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


def remember(state: RoutingState, request_id: str, answered: Assignment | None) -> RoutingState:
    """Keep the answer to a new request: the newest MAX_ANSWERED answers (legacy ids give way to them)."""
    if answered is None:
        kept = RouteAnswer()
    else:
        kept = RouteAnswer(owner_id=answered.owner_id, pool=answered.pool, team=answered.team, reason=answered.reason)
    # copy() and not {**answers, id: kept}: it clones the table even with the holes the oldest answers leave behind
    # (~4 µs for 2,000 answers, where rebuilding it takes ~36).
    answers = state.answers.copy()
    answers[request_id] = kept
    while len(answers) > MAX_ANSWERED:
        del answers[next(iter(answers))]
    legacy = state.answered[max(0, len(state.answered) - (MAX_ANSWERED - len(answers))) :]
    return state.model_copy(update={"answers": answers, "answered": legacy})


def previous_answer(state: RoutingState, request: RouteRequest) -> Assignment | None:
    """The answer the request got the first time (it has one: `is_answered`)."""
    kept = state.answers[request.id]
    if kept.owner_id is None or kept.pool is None or kept.team is None or kept.reason is None:
        return None
    return Assignment(request.lead_id, kept.owner_id, kept.pool, kept.team, kept.reason, request)


def is_answered(state: RoutingState, request: RouteRequest) -> bool:
    """The router answered this request before (its answer is kept): it is read again."""
    return request.id in state.answers


def route(state: RoutingState, request: RouteRequest, policy: Policy) -> tuple[RoutingState, Assignment | None]:
    """Pick the lead's owner (None: nobody can take the lead). See `routed`."""
    state, answered, _ = routed(state, request, policy)
    return state, answered


def routed(state: RoutingState, request: RouteRequest, policy: Policy) -> tuple[RoutingState, Assignment | None, bool]:
    """Pick the lead's owner, and say whether the request was answered before (then no capacity or turn moves).

    A request answered before gets the answer it got, whatever happened since (the lead took its owner and let
    go, or someone else holds it now): the lead drops an answer it has seen (same id) and takes one it lost. A
    request the router does not remember for a lead held by an owner it does not exclude (a redelivery older
    than the answers kept, or from before they were kept) gets that owner and takes no capacity. One from
    before answers were kept (`answered`), whose lead nobody holds now, was answered then: route.unassigned,
    not counted (the lead has, in all likelihood, had its answer and drops this one as a duplicate)."""
    routing = policy.routing
    if routing is None:
        return state, None, False
    if is_answered(state, request):
        return state, previous_answer(state, request), True
    held = holder(state.pools, request.lead_id, request.exclude)
    if held is not None:  # routed already: the same owner again, no capacity taken
        pool = routing.by_name.get(held[0]) or routing.by_name[routing.fallback_pool]
        answered = assignment(request, pool, held[1], "escalated" if request.escalated_sla else "routed")
        return remember(state, request.id, answered), answered, request.id in state.answered
    if request.id in state.answered:
        return state, None, True  # answered by an older version, and released since: the lead has moved on
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
        return remember(state, request.id, None), None, False
    answered = assignment(request, pool, pool.owners[index].id, reason)
    return remember(take(state, pool, index, request.lead_id), request.id, answered), answered, False


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


def answer_request(state: RoutingState, request: RouteRequest, policy: Policy, source: str) -> RouterAnswer:
    """Route a request and build the answer the lead waits for: `lead.assigned` with the owner, or
    `route.unassigned` when nobody can take it; a request answered before gets the same answer, `replayed`."""
    state, assignment, replayed = routed(state, request, policy)
    envelope = assigned_event(assignment, source) if assignment else unassigned_event(request, source)
    return RouterAnswer(state, envelope, assignment, replayed)


def answer_to(
    state: RoutingState, request: RouteRequest, policy: Policy, source: str
) -> tuple[RoutingState, dict[str, object], Assignment | None]:
    """`answer_request` as (state, answer, owner) (the router agent and the replay answer the same way)."""
    answered = answer_request(state, request, policy, source)
    return answered.state, answered.envelope, answered.assignment


def why_unassigned(request: RouteRequest, policy: Policy) -> str:
    """Why nobody could take the lead, in words, for the router's warning (only news is warned about)."""
    if policy.routing is None:
        return "the policy has no routing section"
    excluded = f" or excluded by the escalation of {request.escalated_sla}" if request.exclude else ""
    return (
        f"every owner of pool {request.pool} and of the fallback pool {policy.routing.fallback_pool} is away on the "
        f"request's day ({request.occurred_at.isoformat()}){excluded}; the lead goes on without an owner"
    )


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


def is_released(state: RoutingState, message: RouteRelease) -> bool:
    """The release freed its owner before (its id is kept): it is read again."""
    return message.id in state.released


def release(state: RoutingState, message: RouteRelease) -> RoutingState:
    """The owner no longer holds the lead as an open MQL. Idempotent: releasing twice changes nothing, and a
    release read again does not free a later hold of the same lead by the same owner."""
    pool_state = state.pools.get(message.pool)
    if pool_state is None or message.lead_id not in pool_state.open.get(message.owner_id, ()):
        return state
    if is_released(state, message):
        return state
    leads = without(pool_state.open[message.owner_id], message.lead_id)
    opened = {owner: held for owner, held in pool_state.open.items() if owner != message.owner_id}
    if leads:
        opened[message.owner_id] = leads
    released = pool_state.model_copy(update={"open": opened})
    return state.model_copy(
        update={
            "pools": {**state.pools, message.pool: released},
            "released": (*state.released, message.id)[-MAX_RELEASED:],
        }
    )


def without(leads: tuple[str, ...], lead_id: str) -> tuple[str, ...]:
    """The lead ids but this one, in order: slices around each place it holds (an owner holds hundreds of open
    MQLs, and comparing them one by one in Python cost ten times more)."""
    while lead_id in leads:
        at = leads.index(lead_id)
        leads = leads[:at] + leads[at + 1 :]
    return leads


def load(state: RoutingState, pool: str) -> dict[str, int]:
    """Open MQLs per owner of a pool (for views and metrics)."""
    pool_state = state.pools.get(pool, PoolState())
    return {owner: len(leads) for owner, leads in pool_state.open.items()}
