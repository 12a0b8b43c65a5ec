"""Routing messages read again (issue 13, item 2): after a crash the router reads its topic again from the last
committed offset while its stored state already holds what came after. A request read again is answered again,
with the same answer (the lead may have lost the first one with the crash, and waits for it), takes no capacity,
moves no turn and counts nothing; a release read again frees nothing. Pure core first, then the router agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from factories import POLICY, make_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agent import capture_outbox
from test_handoff import World, hand_raiser
from test_routing import MONDAY, freed, request, total_load, with_routing

from leadflow.core.decision import decide
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.routing import (
    MAX_ANSWERED,
    MAX_RELEASED,
    RouterAnswer,
    answer_request,
    is_released,
    load,
    release,
)
from leadflow.schemas.events import EVENT_ADAPTER
from leadflow.schemas.outputs import RouteRelease, RouteRequest
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import ROUTING_STATE_ADAPTER, RoutingState
from leadflow.streams.runtime.worker import ROUTING_KEY, Worker


def ask(state: RoutingState, req: RouteRequest, policy: Policy = POLICY) -> RouterAnswer:
    return answer_request(state, req, policy, ROUTER_SOURCE)


def nobody_on_monday() -> Policy:
    """Every owner of latam and of the fallback pool away on MONDAY: nobody can take a latam lead that day."""
    monday = [{"from": "2026-11-23", "to": "2026-11-23"}]
    return with_routing(
        [
            {"name": "latam", "team": "inside_sales", "owners": [{"id": "rep-04", "away": monday}]},
            {"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07", "away": monday}]},
        ]
    )


# --- the pure router ---------------------------------------------------------------------------------------------


def test_a_request_answered_released_and_read_again_gets_the_same_answer_and_changes_nothing() -> None:
    """The kill test's false alarm: request, answer, release, then the same request read again after a crash."""
    req = request("L1", request_id="r1")
    first = ask(RoutingState(), req)
    assert (first.envelope["type"], first.envelope["event_id"], first.counted) == ("lead.assigned", "route:r1", True)
    released = release(first.state, freed("L1", "latam", "rep-04", release_id="rel-1"))
    assert total_load(released) == 0
    again = ask(released, req)
    assert again.envelope == first.envelope, "the same answer: same id, same owner"
    assert again.state == released, "no capacity taken, no turn moved"
    assert (again.replayed, again.counted, again.unassigned) == (True, False, False)
    nxt = ask(again.state, request("L2", request_id="r2"))
    assert nxt.assignment is not None
    assert nxt.assignment.owner_id == "rep-05", "the turn did not move"


def test_a_request_read_again_while_its_lead_is_held_gets_the_same_answer() -> None:
    first = ask(RoutingState(), request("L1", request_id="r1"))
    again = ask(first.state, request("L1", request_id="r1"))
    assert (again.envelope, again.state, again.counted) == (first.envelope, first.state, False)
    assert load(again.state, "latam") == {"rep-04": 1}


def test_a_request_read_again_after_its_lead_moved_to_another_owner_gets_its_own_answer() -> None:
    """r1 went to rep-04; an escalation moved the lead to rep-05 and rep-04 let go. r1 read again still answers
    rep-04 (the lead drops it as a duplicate, or as stale), and the escalation read again answers rep-05."""
    state = ask(RoutingState(), request("L1", request_id="r1")).state
    escalation = request("L1", exclude=("rep-04",), escalated_sla="mql_acceptance", request_id="esc-1")
    moved = ask(state, escalation)
    assert moved.assignment is not None
    assert moved.assignment.owner_id == "rep-05"
    state = release(moved.state, freed("L1", "latam", "rep-04", release_id="rel-esc"))
    first_again = ask(state, request("L1", request_id="r1"))
    assert first_again.assignment is not None
    assert (first_again.assignment.owner_id, first_again.state, first_again.counted) == ("rep-04", state, False)
    escalation_again = ask(state, escalation)
    assert escalation_again.envelope == moved.envelope
    assert escalation_again.envelope["data"]["escalated_sla"] == "mql_acceptance"  # type: ignore[index]
    assert (escalation_again.state, escalation_again.counted) == (state, False)
    assert load(state, "latam") == {"rep-05": 1}


def test_a_request_nobody_could_take_is_counted_once_and_answered_unassigned_again() -> None:
    policy = nobody_on_monday()
    req = request("L1", request_id="r1")
    first = ask(RoutingState(), req, policy)
    assert (first.envelope["type"], first.envelope["event_id"]) == ("route.unassigned", "route:r1")
    assert (first.unassigned, first.counted) == (True, True)
    assert total_load(first.state) == 0
    again = ask(first.state, req, policy)
    assert again.envelope == first.envelope, "still answered: the lead waits for an answer to every request"
    assert (again.unassigned, again.counted, again.state) == (False, False, first.state)
    other = ask(again.state, request("L2", request_id="r2"), policy)
    assert other.unassigned, "another request nobody can take is news"


def test_a_request_nobody_could_take_gets_the_same_answer_even_once_someone_could() -> None:
    """The answer is what the router said then: a policy with an owner back changes new requests, not answers."""
    first = ask(RoutingState(), request("L1", request_id="r1"), nobody_on_monday())
    again = ask(first.state, request("L1", request_id="r1"), POLICY)
    assert (again.envelope, again.state, again.counted) == (first.envelope, first.state, False)


def test_a_release_read_again_does_not_free_a_later_hold_of_the_same_owner() -> None:
    """The lead was released by rep-07, qualified again and routed to rep-07 again; a crash then replays the old
    request, the old release and the new request: the new hold stays."""
    policy = with_routing([{"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]}])
    first, second = request("L1", "general", request_id="r1"), request("L1", "general", request_id="r2")
    old = freed("L1", "general", "rep-07", release_id="rel-1")
    state = ask(RoutingState(), first, policy).state
    state = release(state, old)
    assert is_released(state, old)
    state = ask(state, second, policy).state
    assert load(state, "general") == {"rep-07": 1}
    for message in (first, old, second):  # the log read again
        if isinstance(message, RouteRelease):
            assert release(state, message) == state
        else:
            again = ask(state, message, policy)
            assert (again.state, again.counted) == (state, False)
            assert again.assignment is not None
            assert again.assignment.owner_id == "rep-07"
    later = release(state, freed("L1", "general", "rep-07", release_id="rel-2"))  # another cause: frees the owner
    assert total_load(later) == 0


def test_a_new_request_for_a_released_lead_is_routed_afresh() -> None:
    """A lead recycled and qualified again asks anew (another id): that is no replay."""
    state = ask(RoutingState(), request("L1", request_id="r1")).state
    state = release(state, freed("L1", "latam", "rep-04", release_id="rel-1"))
    anew = ask(state, request("L1", request_id="r2"))
    assert anew.counted
    assert anew.assignment is not None
    assert anew.assignment.owner_id == "rep-05"
    assert load(anew.state, "latam") == {"rep-05": 1}


def test_the_router_keeps_the_newest_answers_and_releases_only() -> None:
    state = RoutingState()
    general = with_routing([{"name": "general", "team": "inside_sales", "owners": [{"id": "rep-07"}]}])
    for n in range(MAX_ANSWERED + 5):
        state = ask(state, request(f"L{n}", "general", request_id=f"r{n}"), general).state
        state = release(state, freed(f"L{n}", "general", "rep-07", release_id=f"rel-{n}"))
    assert len(state.answers) == MAX_ANSWERED
    assert len(state.released) == MAX_RELEASED
    assert next(iter(state.answers)) == "r5", "the oldest answers go first"
    assert state.released[0] == "rel-5"
    assert ask(state, request("L9", "general", request_id=f"r{MAX_ANSWERED}"), general).replayed
    assert not ask(state, request("L0", "general", request_id="r0"), general).replayed, "forgotten: a known limit"


def test_the_routing_record_round_trips_and_an_older_record_still_loads() -> None:
    """The table's codec dumps with exclude_defaults; a record written before answers were kept (ids only in
    `answered`) loads, its ids still count as answered, and they give way as new answers come."""
    state = ask(RoutingState(), request("L1", request_id="r1")).state
    state = ask(state, request("L2", request_id="r2"), nobody_on_monday()).state
    dumped = ROUTING_STATE_ADAPTER.dump_json(state, exclude_defaults=True)
    assert ROUTING_STATE_ADAPTER.validate_json(dumped) == state
    older = ROUTING_STATE_ADAPTER.validate_json(
        b'{"pools":{"latam":{"cursor":1,"open":{"rep-04":["L1"]}}},"answered":["r1","old-2"]}'
    )
    held = ask(older, request("L1", request_id="r1"))
    assert held.assignment is not None
    assert (held.assignment.owner_id, held.counted, load(held.state, "latam")) == ("rep-04", False, {"rep-04": 1})
    gone = ask(older, request("L2", request_id="old-2"))
    assert (gone.envelope["type"], gone.counted, gone.state) == ("route.unassigned", False, older)
    filled = older
    for n in range(MAX_ANSWERED - 1):
        filled = ask(filled, request(f"N{n}", request_id=f"n{n}")).state
    assert filled.answered == ("old-2",)
    filled = ask(filled, request("N", request_id="n")).state
    assert filled.answered == ()


# --- with the lead: the answer lost with a crash, or already had --------------------------------------------------


def test_a_lead_whose_answer_was_lost_takes_the_answer_sent_again() -> None:
    """The lesson of the reverted attempt: the router cannot tell 'answered and released' from 'answer lost with
    the stop', so it answers again; a lead still waiting takes the answer and goes on."""
    world = World(hold=True)
    hand_raiser(world)
    (req,) = [o for o in world.outputs if isinstance(o, RouteRequest)]
    lost = world.queued.pop()  # the answer went down with the worker
    assert world.records["L1"] is not None
    assert world.records["L1"].awaiting == ("route:" + req.id,)
    again = ask(world.routing, req)
    assert EVENT_ADAPTER.validate_python(again.envelope) == lost, "the answer that was lost"
    assert (again.state, again.counted) == (world.routing, False)
    world.feed(EVENT_ADAPTER.validate_python(again.envelope))
    state = world.state()
    assert state.owner_id == "rep-04"
    assert not world.records["L1"].awaiting
    assert world.load() == {"rep-04": 1}, "capacity taken once"


def test_a_lead_that_had_its_answer_drops_the_answer_sent_again() -> None:
    world = World()
    hand_raiser(world)
    (req,) = [o for o in world.outputs if isinstance(o, RouteRequest)]
    world.send("lead.rejected", 2, reason="no_budget")  # back to marketing: the owner lets go
    assert world.load() == {}
    record = world.records["L1"]
    again = ask(world.routing, req)
    assert (again.state, again.counted) == (world.routing, False)
    decision = decide(record, EVENT_ADAPTER.validate_python(again.envelope), POLICY, world.clock or MONDAY)
    assert decision.outcome == "duplicate"
    assert (decision.outputs, decision.changed) == ((), False)


# --- any history, read again from any point ----------------------------------------------------------------------

LEADS = [f"L{i}" for i in range(5)]
step = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(LEADS), st.sampled_from(["enterprise", "latam", "general"]),
              st.sampled_from([MONDAY, MONDAY + timedelta(days=35)])),
    st.tuples(st.just("release"), st.sampled_from(LEADS)),
    st.tuples(st.just("escalate"), st.sampled_from(LEADS)),
)  # fmt: skip


def history(steps: list[tuple[Any, ...]], policy: Policy) -> tuple[RoutingState, list[Any], dict[str, RouterAnswer]]:
    """Play the steps as the leads would send them (a release names the owner the lead holds, with a fresh id),
    and return the router's state, the log of messages it read, and the first answer to each request."""
    state, log, first = RoutingState(), list[Any](), dict[str, RouterAnswer]()
    holds: dict[str, tuple[str, str]] = {}
    for n, op in enumerate(steps):
        message: RouteRequest | RouteRelease | None = None
        if op[0] == "request" and op[1] not in holds:
            message = request(op[1], op[2], op[3], request_id=f"r{n}")
        elif op[0] == "escalate" and op[1] in holds:
            pool, owner = holds[op[1]]
            message = request(op[1], pool, exclude=(owner,), escalated_sla="mql_acceptance", request_id=f"r{n}")
        elif op[0] == "release" and op[1] in holds:
            pool, owner = holds.pop(op[1])
            message = freed(op[1], pool, owner, release_id=f"rel{n}")
        if message is None:
            continue
        log.append(message)
        if isinstance(message, RouteRelease):
            state = release(state, message)
            continue
        answered = ask(state, message, policy)
        first[message.id] = answered
        state = answered.state
        if answered.assignment is not None:
            if message.escalated_sla is not None:  # the lead takes the new owner and lets the old one go
                old_pool, old_owner = holds[message.lead_id]
                state = release(state, freed(message.lead_id, old_pool, old_owner, release_id=f"rel-esc{n}"))
                log.append(freed(message.lead_id, old_pool, old_owner, release_id=f"rel-esc{n}"))
            holds[message.lead_id] = (answered.assignment.pool, answered.assignment.owner_id)
    return state, log, first


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, max_size=30),
    start=st.integers(0, 60),
    capacity=st.integers(1, 3),
    away=st.booleans(),
)
def test_any_history_read_again_from_any_point_changes_nothing_and_counts_nothing(
    steps: list[tuple[Any, ...]], start: int, capacity: int, away: bool
) -> None:
    """Whatever the router read (requests, escalations, releases; owners full or away), reading its log again
    from any offset against the state it stored answers every request as it first did and changes nothing."""

    def change(document: dict[str, Any]) -> None:
        for pool in document["routing"]["pools"]:
            for owner in pool["owners"]:
                owner["capacity"] = capacity
                if away:  # every owner away five weeks after MONDAY: requests then are unassigned
                    owner["away"] = [{"from": "2026-12-28", "to": "2026-12-28"}]

    policy = make_policy(change)
    state, log, first = history(steps, policy)
    for message in log[min(start, len(log)) :]:
        if isinstance(message, RouteRelease):
            assert release(state, message) == state
            continue
        again = ask(state, message, policy)
        assert again.envelope == first[message.id].envelope
        assert (again.state, again.counted, again.unassigned) == (state, False, False)


# --- the router agent (Faust test_context): what it sends, logs and counts -----------------------------------------


def route_message(message: RouteRequest | RouteRelease) -> bytes:
    return message.model_dump_json().encode()


def unassigned_count(worker: Worker, pool: str) -> float:
    return worker.metrics.registry.get_sample_value("leadflow_routing_unassigned_total", {"pool": pool}) or 0.0


async def wait_for(condition: Callable[[], bool]) -> None:
    """The agent answers before it stores the batch's state: wait for what the test needs to see."""
    for _ in range(200):  # up to 10 s
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the router agent did not get there in 10 s")


def table(worker: Worker) -> RoutingState:
    return worker.routing.get(ROUTING_KEY) or RoutingState()


@pytest.mark.parametrize("policy", ["default", "nobody"])
async def test_the_router_agent_answers_a_replay_again_and_neither_counts_nor_warns(
    policy: str, worker: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Request, answer, release; then the request read again, and a new request behind it on the partition."""
    answers: list[tuple[bytes, bytes]] = []

    def capture(key: bytes | None, value: bytes | None, headers: object) -> None:
        assert key is not None
        assert value is not None
        answers.append((key, value))

    capture_outbox(
        monkeypatch, worker, {worker.settings.topic_events: capture, worker.settings.topic_deadletter: capture}
    )
    rules = nobody_on_monday() if policy == "nobody" else POLICY
    monkeypatch.setattr(worker, "policy", rules)
    pool = "latam" if policy == "nobody" else "enterprise"
    lead, later = f"replay-{policy}", f"replay-{policy}-later"
    req = request(lead, pool, request_id=f"replay-req-{policy}")
    new = request(later, pool, request_id=f"replay-new-{policy}")
    worker.app.finalize()
    worker.app.flow_control.resume()
    before = unassigned_count(worker, pool)
    with caplog.at_level(logging.DEBUG, logger="leadflow.streams.runtime.worker"):
        async with worker.route_leads.test_context() as router:
            await router.put(route_message(req), key=pool.encode())
            await wait_for(lambda: bool(answers) and req.id in table(worker).answers)
            first = orjson.loads(answers[0][1])
            if first["type"] == "lead.assigned":
                owner = first["data"]["owner_id"]
                await router.put(route_message(freed(lead, pool, owner, release_id=f"rel-{lead}")), key=pool.encode())
                await wait_for(lambda: f"rel-{lead}" in table(worker).released)
            stored = table(worker)
            first_counted = unassigned_count(worker, pool) - before
            await router.put(route_message(req), key=pool.encode())  # read again after a restart
            await router.put(route_message(new), key=pool.encode())
            await wait_for(lambda: len(answers) == 3 and new.id in table(worker).answers)
            state = table(worker)
    assert answers[1] == answers[0], "the same answer, to the same lead's partition"
    assert answers[0][0] == lead.encode()
    assert state == ask(stored, new, rules).state, "the replay took no capacity and moved no turn"
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING and "no owner for lead" in r.message]
    if policy == "nobody":
        assert first["type"] == "route.unassigned"
        assert first_counted == 1, "the first time is news"
        assert unassigned_count(worker, pool) - before == 2, "the replay counts nothing, the new request does"
        assert [f"route request {req.id}" in w for w in warnings] == [True, False]
        assert "fallback pool general is away" in warnings[0]
    else:
        assert first["type"] == "lead.assigned"
        assert unassigned_count(worker, pool) - before == 0
        assert warnings == []
    replays = [r for r in caplog.records if "read again" in r.message and req.id in r.message]
    assert [r.levelno for r in replays] == [logging.DEBUG]
