"""The router, pure: pool choice, round robin skipping away and full owners, fallback, last resort, idempotency."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import POLICY, make_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.core.routing import (
    ANSWER_DELAY,
    Assignment,
    assigned_event,
    is_away,
    load,
    pool_for,
    release,
    route,
    without,
)
from leadflow.schemas.events import EVENT_ADAPTER, LeadAssigned, Profile
from leadflow.schemas.outputs import RouteRelease, RouteRequest
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import RoutingState

SP = ZoneInfo("America/Sao_Paulo")
# A working Monday, far from rep-06's vacation (2026-12-21 to 2027-01-04 in São Paulo).
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=SP)
LATAM = ("rep-04", "rep-05", "rep-06")
ROUTING = POLICY.routing
assert ROUTING is not None


def request(
    lead: str,
    pool: str = "latam",
    at: datetime = MONDAY,
    *,
    exclude: tuple[str, ...] = (),
    escalated_sla: str | None = None,
    request_id: str | None = None,
) -> RouteRequest:
    return RouteRequest(
        id=request_id or f"req-{lead}-{pool}-{at.isoformat()}-{'-'.join(exclude)}",
        lead_id=lead,
        pool=pool,
        exclude=exclude,
        escalated_sla=escalated_sla,
        occurred_at=at,
    )


def freed(lead: str, pool: str, owner: str, at: datetime = MONDAY, *, release_id: str | None = None) -> RouteRelease:
    """A release (its id names its cause, as core.handoff's do: one release per cause)."""
    return RouteRelease(
        id=release_id or f"rel-{lead}-{pool}-{owner}", lead_id=lead, pool=pool, owner_id=owner, occurred_at=at
    )


def routed(state: RoutingState, req: RouteRequest, policy: Policy = POLICY) -> tuple[RoutingState, Assignment]:
    state, answer = route(state, req, policy)
    assert answer is not None, f"nobody took {req}"
    return state, answer


def owners_for(leads: list[str], policy: Policy = POLICY, pool: str = "latam", at: datetime = MONDAY) -> list[str]:
    state = RoutingState()
    picked = []
    for lead in leads:
        state, answer = routed(state, request(lead, pool, at), policy)
        picked.append(answer.owner_id)
    return picked


def total_load(state: RoutingState) -> int:
    return sum(len(leads) for pool in state.pools.values() for leads in pool.open.values())


def with_routing(pools: list[dict[str, Any]], fallback: str = "general", **extra: Any) -> Policy:
    """The default policy with its routing section replaced (escalation kept: it needs routing)."""

    def change(document: dict[str, Any]) -> None:
        document["routing"] = {"fallback_pool": fallback, "pools": pools, **extra}

    return make_policy(change)


def capped(latam: int | None = 1, general: int | None = None, away: tuple[str, ...] = ()) -> Policy:
    """latam (rep-04..06) and general (rep-07, rep-08) with the given capacities; `away` are away all of 2026."""

    def owner(owner_id: str, capacity: int | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": owner_id}
        if capacity is not None:
            spec["capacity"] = capacity
        if owner_id in away:
            spec["away"] = [{"from": "2026-01-01", "to": "2026-12-31"}]
        return spec

    return with_routing(
        [
            {
                "name": "latam",
                "team": "inside_sales",
                "manager": "mgr-latam",
                "when": [{"attribute": "country", "in": ["BR"]}],
                "owners": [owner(o, latam) for o in LATAM],
            },
            {"name": "general", "team": "inside_sales", "owners": [owner(o, general) for o in ("rep-07", "rep-08")]},
        ]
    )


# --- which pool ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "pool"),
    [
        ({"company_size": 5000, "country": "BR"}, "enterprise"),  # the first matching pool wins
        ({"company_size": 1000}, "enterprise"),  # min is inclusive
        ({"company_size": 999, "country": "BR"}, "latam"),
        ({"country": "MX"}, "latam"),
        ({"country": "US", "company_size": 50}, "general"),  # no pool matches: the fallback
        ({}, "general"),  # nothing known: conditions on missing attributes do not hold
    ],
)
def test_the_first_pool_whose_conditions_all_hold_takes_the_lead(profile: dict[str, Any], pool: str) -> None:
    assert ROUTING is not None
    assert pool_for(Profile.model_validate(profile), ROUTING) == pool


def test_every_condition_of_a_pool_must_hold() -> None:
    policy = with_routing(
        [
            {
                "name": "br_enterprise",
                "team": "inside_sales",
                "when": [{"attribute": "country", "equals": "BR"}, {"attribute": "company_size", "min": 1000}],
                "owners": [{"id": "rep-01"}],
            },
            {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]},
        ]
    )
    assert policy.routing is not None
    assert pool_for(Profile(country="BR", company_size=2000), policy.routing) == "br_enterprise"
    assert pool_for(Profile(country="BR", company_size=20), policy.routing) == "general"
    assert pool_for(Profile(country="US", company_size=2000), policy.routing) == "general"


def test_a_pool_without_conditions_takes_anyone_who_reaches_it() -> None:
    policy = with_routing(
        [
            {"name": "vip", "team": "inside_sales", "when": [{"attribute": "persona", "equals": "vip"}],
             "owners": [{"id": "rep-01"}]},
            {"name": "smb", "team": "inside_sales", "owners": [{"id": "rep-02"}]},
            {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]},
        ]
    )  # fmt: skip
    assert policy.routing is not None
    assert pool_for(Profile(persona="vip"), policy.routing) == "vip"
    assert pool_for(Profile(country="US"), policy.routing) == "smb"


# --- round robin -----------------------------------------------------------------------------------------------


def test_owners_take_leads_in_turn_across_requests() -> None:
    assert owners_for([f"L{i}" for i in range(7)]) == [*LATAM, *LATAM, "rep-04"]


def test_each_pool_keeps_its_own_turn() -> None:
    state = RoutingState()
    picked = []
    for lead, pool in [("a", "latam"), ("b", "enterprise"), ("c", "latam"), ("d", "enterprise"), ("e", "general")]:
        state, answer = routed(state, request(lead, pool))
        picked.append((answer.pool, answer.owner_id, answer.reason, answer.team))
    assert picked == [
        ("latam", "rep-04", "routed", "inside_sales"),
        ("enterprise", "rep-01", "routed", "inside_sales"),
        ("latam", "rep-05", "routed", "inside_sales"),
        ("enterprise", "rep-02", "routed", "inside_sales"),
        ("general", "rep-07", "routed", "inside_sales"),
    ]
    assert load(state, "latam") == {"rep-04": 1, "rep-05": 1}
    assert load(state, "enterprise") == {"rep-01": 1, "rep-02": 1}
    assert load(state, "general") == {"rep-07": 1}


def test_a_request_for_an_unknown_pool_goes_to_the_fallback_pool() -> None:
    _, answer = routed(RoutingState(), request("L1", "gone"))
    assert (answer.pool, answer.owner_id) == ("general", "rep-07")


# --- away ------------------------------------------------------------------------------------------------------


def test_an_owner_away_on_the_request_day_is_skipped_and_the_turn_goes_on() -> None:
    vacation = datetime(2026, 12, 28, 10, 0, tzinfo=SP)  # rep-06 is away 2026-12-21..2027-01-04
    assert owners_for([f"L{i}" for i in range(5)], at=vacation) == ["rep-04", "rep-05", "rep-04", "rep-05", "rep-04"]


@pytest.mark.parametrize(
    ("at", "away"),
    [
        (datetime(2026, 12, 21, 2, 59, tzinfo=UTC), False),  # 23:59 on Dec 20 in São Paulo: the day before
        (datetime(2026, 12, 21, 3, 0, tzinfo=UTC), True),  # 00:00 on Dec 21 in São Paulo: the first day
        (datetime(2026, 12, 21, 1, 0, tzinfo=UTC), False),  # Dec 21 in UTC, still Dec 20 in São Paulo
        (datetime(2027, 1, 4, 23, 59, tzinfo=SP), True),  # the last day is included
        (datetime(2027, 1, 5, 1, 0, tzinfo=UTC), True),  # Jan 5 in UTC, still Jan 4 (away) in São Paulo
        (datetime(2027, 1, 5, 3, 0, tzinfo=UTC), False),  # Jan 5 00:00 in São Paulo: back
    ],
)
def test_away_days_are_whole_days_in_the_pool_teams_time_zone(at: datetime, away: bool) -> None:
    third = owners_for(["L1", "L2", "L3"], at=at)[2]  # the third turn is rep-06's
    assert third == ("rep-04" if away else "rep-06")


def test_a_team_without_calendar_counts_away_days_in_the_routing_time_zone() -> None:
    def pools(timezone: str) -> Policy:
        return with_routing(
            [
                {"name": "field", "team": "field_sales", "owners": [
                    {"id": "rep-10", "away": [{"from": "2027-01-04", "to": "2027-01-04"}]}, {"id": "rep-11"}]},
                {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]},
            ],
            timezone=timezone,
        )  # fmt: skip

    at = datetime(2027, 1, 5, 1, 0, tzinfo=UTC)  # Jan 5 in UTC, Jan 4 in São Paulo
    assert owners_for(["L1"], pools("UTC"), "field", at) == ["rep-10"]
    assert owners_for(["L1"], pools("America/Sao_Paulo"), "field", at) == ["rep-11"]


# --- capacity, fallback, last resort ---------------------------------------------------------------------------


def test_an_owner_at_capacity_is_skipped_until_a_lead_is_released() -> None:
    policy = capped(latam=1)
    state = RoutingState()
    for lead in ("L1", "L2"):
        state, _ = routed(state, request(lead), policy)  # rep-04, rep-05
    state = release(state, freed("L1", "latam", "rep-04"))
    state, third = routed(state, request("L3"), policy)
    state, fourth = routed(state, request("L4"), policy)  # rep-05 and rep-06 are full: rep-04 again
    assert (third.owner_id, fourth.owner_id) == ("rep-06", "rep-04")
    assert load(state, "latam") == {"rep-04": 1, "rep-05": 1, "rep-06": 1}


def test_when_the_pool_is_full_the_fallback_pool_takes_the_lead_in_its_own_turn() -> None:
    policy = capped(latam=1)
    state = RoutingState()
    answers = []
    for i in range(6):
        state, answer = routed(state, request(f"L{i}"), policy)
        answers.append((answer.pool, answer.owner_id, answer.reason))
    assert answers == [
        ("latam", "rep-04", "routed"),
        ("latam", "rep-05", "routed"),
        ("latam", "rep-06", "routed"),
        ("general", "rep-07", "fallback"),
        ("general", "rep-08", "fallback"),
        ("general", "rep-07", "fallback"),
    ]
    assert load(state, "general") == {"rep-07": 2, "rep-08": 1}


def test_when_everyone_in_the_pool_is_away_the_fallback_pool_takes_the_lead() -> None:
    policy = capped(latam=None, away=LATAM)
    _, answer = routed(RoutingState(), request("L1"), policy)
    assert (answer.pool, answer.owner_id, answer.reason) == ("general", "rep-07", "fallback")


def test_last_resort_is_the_least_loaded_fallback_owner_who_is_not_away_even_over_capacity() -> None:
    policy = capped(latam=1, general=1)
    state = RoutingState()
    for i in range(5):  # latam 3, general 2: everyone is full
        state, _ = routed(state, request(f"L{i}"), policy)
    state, sixth = routed(state, request("L5"), policy)  # a tie (1 and 1): the first in the pool's order
    state, seventh = routed(state, request("L6"), policy)  # rep-07 holds 2, rep-08 holds 1
    assert [(a.pool, a.owner_id, a.reason) for a in (sixth, seventh)] == [
        ("general", "rep-07", "fallback"),
        ("general", "rep-08", "fallback"),
    ]
    assert load(state, "general") == {"rep-07": 2, "rep-08": 2}
    state = release(state, freed("L0", "latam", "rep-04"))
    state, eighth = routed(state, request("L7"), policy)
    assert (eighth.pool, eighth.owner_id, eighth.reason) == ("latam", "rep-04", "routed"), "room in latam again"


def test_last_resort_skips_away_fallback_owners() -> None:
    policy = capped(latam=1, general=1, away=("rep-07",))
    state = RoutingState()
    answers = []
    for i in range(6):
        state, answer = routed(state, request(f"L{i}"), policy)
        answers.append(answer.owner_id)
    assert answers == [*LATAM, "rep-08", "rep-08", "rep-08"]
    assert load(state, "general") == {"rep-08": 3}


def test_nobody_at_all_gives_no_owner_and_takes_no_capacity() -> None:
    november = [{"from": "2026-11-01", "to": "2026-11-30"}]
    monday = [{"from": "2026-11-23", "to": "2026-11-23"}]
    policy = with_routing(
        [
            {"name": "latam", "team": "inside_sales", "owners": [{"id": "rep-04", "away": november}]},
            {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07", "away": monday}]},
        ]
    )
    state, answer = route(RoutingState(), request("L1"), policy)
    assert answer is None
    assert total_load(state) == 0
    _, next_day = route(state, request("L2", at=MONDAY + timedelta(days=1)), policy)
    assert next_day is not None
    assert next_day.owner_id == "rep-07"


def test_a_policy_without_routing_routes_nothing() -> None:
    def change(document: dict[str, Any]) -> None:
        del document["routing"]
        for sla in document["slas"]:
            sla.pop("escalate", None)

    policy = make_policy(change)
    state, answer = route(RoutingState(), request("L1"), policy)
    assert answer is None
    assert state == RoutingState()


# --- idempotency -----------------------------------------------------------------------------------------------


def test_the_same_request_twice_gets_the_same_owner_and_takes_capacity_once() -> None:
    state, first = routed(RoutingState(), request("L1"))
    again, second = routed(state, request("L1"))
    assert second.owner_id == first.owner_id
    assert again.pools == state.pools
    assert load(again, "latam") == {"rep-04": 1}
    _, next_lead = routed(again, request("L2"))
    assert next_lead.owner_id == "rep-05", "a redelivery does not move the turn"


def test_a_new_request_for_a_lead_already_held_gets_its_owner() -> None:
    state, first = routed(RoutingState(), request("L1", request_id="r1"))
    state, second = routed(state, request("L1", request_id="r2"))
    assert second.owner_id == first.owner_id
    assert load(state, "latam") == {"rep-04": 1}


def test_a_request_redelivered_after_its_release_is_answered_the_same_and_not_routed_again() -> None:
    """The lead may have lost the first answer (it waits for one, core.decision): the same answer, no capacity."""
    state, first = routed(RoutingState(), request("L1"))
    state = release(state, freed("L1", "latam", first.owner_id))
    again_state, again = route(state, request("L1"), POLICY)
    assert again == first
    assert again_state == state
    assert total_load(again_state) == 0


def test_a_request_answered_for_a_held_lead_and_redelivered_after_release_is_not_routed_again() -> None:
    """r2 was answered with the holder of r1; once the lead lets go, r2 coming again must not take an owner (the
    lead already saw the answer to r2 and would drop a second one as a duplicate, leaving the capacity taken)."""
    state, _ = routed(RoutingState(), request("L1", request_id="r1"))
    state, _ = routed(state, request("L1", request_id="r2"))
    state = release(state, freed("L1", "latam", "rep-04"))
    state, again = route(state, request("L1", request_id="r2"), POLICY)
    assert again is not None
    assert again.owner_id == "rep-04", "the answer r2 got"
    assert total_load(state) == 0


def test_release_is_idempotent_and_ignores_what_is_not_held() -> None:
    state, _ = routed(RoutingState(), request("L1"))
    state, _ = routed(state, request("L2"))
    once = release(state, freed("L1", "latam", "rep-04"))
    assert release(once, freed("L1", "latam", "rep-04")) == once
    assert release(once, freed("L2", "latam", "rep-04")) == once, "not rep-04's lead"
    assert release(once, freed("L2", "general", "rep-05")) == once, "not in that pool"
    assert release(once, freed("L9", "latam", "rep-05")) == once, "an unknown lead"
    assert load(once, "latam") == {"rep-05": 1}
    assert release(RoutingState(), freed("L1", "latam", "rep-04")) == RoutingState()


# --- escalation ------------------------------------------------------------------------------------------------


def test_an_escalation_goes_to_another_owner_of_the_pool() -> None:
    state, first = routed(RoutingState(), request("L1"))
    state, _ = routed(state, request("L2"))  # rep-05; the turn is rep-06's
    escalation = request("L1", exclude=(first.owner_id,), escalated_sla="mql_acceptance")
    state, answer = routed(state, escalation)
    assert (answer.owner_id, answer.pool, answer.reason) == ("rep-06", "latam", "escalated")
    # The old owner holds the lead until the lead takes the new one and lets the old one go.
    assert load(state, "latam") == {"rep-04": 1, "rep-05": 1, "rep-06": 1}
    _, again = routed(state, escalation)
    assert again.owner_id == "rep-06", "a redelivered escalation gets the same new owner"
    state = release(state, freed("L1", "latam", "rep-04"))
    assert load(state, "latam") == {"rep-05": 1, "rep-06": 1}


def test_an_escalation_skips_the_old_owner_even_when_it_is_their_turn() -> None:
    state, first = routed(RoutingState(), request("L1"))
    state, _ = routed(state, request("L2"))
    state, _ = routed(state, request("L3"))  # the turn is rep-04's again
    _, answer = routed(state, request("L1", exclude=(first.owner_id,), escalated_sla="mql_acceptance"))
    assert answer.owner_id == "rep-05"


def test_an_escalation_in_a_pool_of_one_goes_to_the_fallback_pool() -> None:
    policy = with_routing(
        [
            {"name": "solo", "team": "inside_sales", "owners": [{"id": "rep-01"}]},
            {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]},
        ]
    )
    state, _ = routed(RoutingState(), request("L1", "solo"), policy)
    _, answer = routed(state, request("L1", "solo", exclude=("rep-01",), escalated_sla="mql_acceptance"), policy)
    assert (answer.pool, answer.owner_id, answer.reason) == ("general", "rep-07", "fallback")


def test_an_escalation_never_returns_to_the_excluded_owner_even_as_last_resort() -> None:
    policy = with_routing([{"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]}])
    state, _ = routed(RoutingState(), request("L1", "general"), policy)
    state, answer = route(state, request("L1", "general", exclude=("rep-07",), escalated_sla="x"), policy)
    assert answer is None
    assert load(state, "general") == {"rep-07": 1}, "the old owner keeps the lead"


# --- the answer as an event ------------------------------------------------------------------------------------


def test_the_answer_is_a_valid_lead_assigned_just_after_the_request() -> None:
    req = request("L1", exclude=("rep-09",), escalated_sla="mql_acceptance", request_id="abc")
    _, answer = routed(RoutingState(), req)
    event = EVENT_ADAPTER.validate_python(assigned_event(answer, "leadflow.routing"))
    assert isinstance(event, LeadAssigned)
    assert event.event_id == "route:abc"
    assert event.lead_id == "L1"
    assert event.source == "leadflow.routing"
    assert event.occurred_at == MONDAY + ANSWER_DELAY
    assert event.data.model_dump() == {
        "owner_id": "rep-04",
        "team": "inside_sales",
        "pool": "latam",
        "reason": "escalated",
        "escalated_sla": "mql_acceptance",
    }
    plain = EVENT_ADAPTER.validate_python(assigned_event(routed(RoutingState(), request("L2"))[1], "x"))
    assert isinstance(plain, LeadAssigned)
    assert plain.data.escalated_sla is None


# --- properties ------------------------------------------------------------------------------------------------

LEADS = [f"L{i}" for i in range(8)]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAYS = [MONDAY, datetime(2026, 12, 28, 10, 0, tzinfo=SP), datetime(2027, 1, 5, 1, 0, tzinfo=UTC)]


def property_policy(latam: int, general: int | None) -> Policy:
    def change(document: dict[str, Any]) -> None:
        pools = document["routing"]["pools"]
        for pool in pools:
            for owner in pool["owners"]:
                capacity = latam if pool["name"] != "general" else general
                owner.pop("capacity", None)
                if capacity is not None:
                    owner["capacity"] = capacity

    return make_policy(change)


operation = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(LEADS), st.sampled_from(["enterprise", "latam", "general"]),
              st.sampled_from(DAYS)),
    st.tuples(st.just("redeliver"), st.integers(0, 50)),
    st.tuples(st.just("release"), st.sampled_from(LEADS), st.booleans()),
    st.tuples(st.just("escalate"), st.sampled_from(LEADS), st.sampled_from(DAYS)),
)  # fmt: skip


class Model:
    """What the router should hold, kept by hand: lead -> (pool, owner); and the counts of takes and releases."""

    def __init__(self, policy: Policy) -> None:
        assert policy.routing is not None
        self.policy = policy
        self.routing = policy.routing
        self.state = RoutingState()
        self.held: dict[str, tuple[str, str]] = {}
        self.sent: list[RouteRequest] = []
        self.answers: dict[str, Assignment | None] = {}  # request id -> its first answer
        self.taken = self.released = 0

    def release(self, lead: str, right: bool) -> None:
        pool, owner = self.held.get(lead, ("latam", "rep-04"))
        cause = f"rel{self.taken}-{self.released}"  # one release per cause, as core.handoff's
        self.state = release(self.state, freed(lead, pool, owner if right else "nobody", release_id=cause))
        if right and lead in self.held:
            del self.held[lead]
            self.released += 1

    def route(self, req: RouteRequest) -> None:
        before = self.state
        self.sent.append(req)
        self.state, answer = route(self.state, req, self.policy)
        if req.id in self.answers:
            assert answer == self.answers[req.id], "a request read again gets the answer it got"
            assert self.state == before, "and changes nothing"
            return
        self.answers[req.id] = answer
        if answer is None:
            assert self.state.pools == before.pools
            return
        assert answer.lead_id == req.lead_id
        assert answer.owner_id not in req.exclude
        if req.lead_id in self.held and self.held[req.lead_id][1] not in req.exclude:
            assert (answer.pool, answer.owner_id) == self.held[req.lead_id], "a held lead keeps its owner"
            assert self.state.pools == before.pools
            return
        assert answer.pool in (req.pool, self.routing.fallback_pool)
        self.taken += 1
        self.check_capacity(req, answer, load(before, answer.pool))
        if req.escalated_sla and req.lead_id in self.held:
            # The lead takes the new owner and lets the old one go (as core.handoff does).
            self.release(req.lead_id, right=True)
        self.held[req.lead_id] = (answer.pool, answer.owner_id)

    def check_capacity(self, req: RouteRequest, answer: Assignment, was: dict[str, int]) -> None:
        pool = self.routing.by_name[answer.pool]
        owner = next(o for o in pool.owners if o.id == answer.owner_id)
        if owner.capacity is None or was.get(owner.id, 0) < owner.capacity:
            return
        # Over capacity only as the last resort: the least loaded of the fallback pool's owners who are not away
        # (nor excluded), every one of them full.
        assert (answer.pool, answer.reason) == (self.routing.fallback_pool, "fallback")
        timezone = self.policy.calendars["inside_sales"].timezone
        others = [o for o in pool.owners if o.id not in req.exclude and not is_away(o, req.occurred_at, timezone)]
        assert all(o.capacity is not None and was.get(o.id, 0) >= o.capacity for o in others)
        assert was.get(owner.id, 0) == min(was.get(o.id, 0) for o in others)

    def check(self) -> None:
        state = self.state
        assert total_load(state) == self.taken - self.released == len(self.held), "loads = routed - released"
        holders = Counter(lead for pool in state.pools.values() for leads in pool.open.values() for lead in leads)
        assert all(count == 1 for count in holders.values()), f"a lead held twice: {holders}"
        actual = {lead: (name, owner) for name, pool in state.pools.items() for owner, leads in pool.open.items()
                  for lead in leads}  # fmt: skip
        assert actual == self.held
        for name, pool_state in state.pools.items():
            if name == self.routing.fallback_pool:
                continue
            capacities = {o.id: o.capacity for o in self.routing.by_name[name].owners}
            for owner, leads in pool_state.open.items():
                cap = capacities[owner]
                assert cap is None or len(leads) <= cap, f"{owner} of {name} over capacity"


@PROPERTY
@given(
    capacity=st.integers(1, 3),
    general=st.one_of(st.none(), st.integers(1, 2)),
    operations=st.lists(operation, max_size=40),
)
def test_capacity_load_and_holders_stay_consistent(
    capacity: int, general: int | None, operations: list[tuple[Any, ...]]
) -> None:
    """Any sequence of requests, redeliveries, escalations and releases: no owner of a pool other than the
    fallback ever holds more than their capacity, the fallback pool only as the last resort, the loads add up to
    the leads routed minus those released, and each lead is held by one owner at most."""
    model = Model(property_policy(capacity, general))
    for n, op in enumerate(operations):
        if op[0] == "request":
            model.route(request(op[1], op[2], op[3], request_id=f"r{n}"))
        elif op[0] == "redeliver" and model.sent:
            model.route(model.sent[op[1] % len(model.sent)])
        elif op[0] == "escalate" and op[1] in model.held:
            pool, owner = model.held[op[1]]
            model.route(request(op[1], pool, op[2], exclude=(owner,), escalated_sla="mql_acceptance",
                                request_id=f"r{n}"))  # fmt: skip
        elif op[0] == "release":
            model.release(op[1], op[2])
        model.check()


@given(st.lists(st.sampled_from(["L1", "L2", "L3", "L4"]), max_size=12), st.sampled_from(["L1", "L2", "L5"]))
def test_without_drops_every_place_of_the_lead_and_keeps_the_order(leads: list[str], lead_id: str) -> None:
    assert without(tuple(leads), lead_id) == tuple(lead for lead in leads if lead != lead_id)
