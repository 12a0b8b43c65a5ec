"""The lead agent inside Faust's test_context (memory channel, memory:// store): decode, decide, store, send.

There is no broker here, so what the agent sends is captured where it enters the outbox (streams.runtime.outbox, whose
bulk sending is tested against a real broker in tests/test_outbox.py); the path through the real broker is covered
by tests/test_e2e.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest
from factories import at, make_event
from faust.streams import _current_event

from leadflow.core.decision import decide, wake_at
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.intake import INTERNAL_HEADER, internal_proof
from leadflow.core.routing import assigned_event, route
from leadflow.schemas.outputs import (
    DEAD_LETTER_ADAPTER,
    ROUTING_ADAPTER,
    TRANSITION_ADAPTER,
    RouteRequest,
    StageChanged,
)
from leadflow.schemas.state import LeadRecord, RoutingState
from leadflow.streams.runtime import worker as worker_module
from leadflow.streams.runtime.worker import Worker

Sink = Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], None]


class Record:
    """A record as Faust hands it to a table's store (only its message is read)."""

    def __init__(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        self.message = SimpleNamespace(key=key, value=value, partition=partition)


@contextlib.contextmanager
def in_partition(partition: int) -> Iterator[None]:
    """Table writes inside go to `partition`, as inside the agent (streams.runtime.worker.as_current)."""
    event = Record(None, None, partition)  # held here: Faust keeps only a weak reference
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def capture_outbox(monkeypatch: pytest.MonkeyPatch, worker: Worker, sinks: dict[str, Sink]) -> None:
    """Records the agents put in the outbox go to `sinks[topic]` (other topics: dropped); nothing is sent."""

    def add(
        topic: str, key: bytes | None, value: bytes | None, headers: object = None, partition: object = None
    ) -> None:
        if topic in sinks:
            sinks[topic](key, value, list(headers or []))  # type: ignore[call-overload]

    async def send() -> None:
        pass

    monkeypatch.setattr(worker.outbox, "add", add)
    monkeypatch.setattr(worker.outbox, "send", send)


class Captured:
    def __init__(self) -> None:
        self.transitions: list[bytes] = []
        self.dead_letters: list[bytes] = []
        self.sla: list[bytes] = []
        self.routing: list[bytes] = []
        self.headers: list[object] = []  # the headers of every record sent, in order
        self.changed = asyncio.Event()

    def total(self) -> int:
        return len(self.transitions) + len(self.dead_letters)

    async def wait_for(self, total: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.total() < total:
                self.changed.clear()
                await self.changed.wait()


def envelope(event_id: str, kind: str, seconds: int, **data: object) -> bytes:
    at = datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=seconds)
    body = {
        "event_id": event_id,
        "lead_id": "agent-lead",
        "type": kind,
        "occurred_at": at.isoformat(),
        "source": "t",
        "data": data,
    }
    return orjson.dumps(body)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, worker: Worker) -> Captured:
    sink = Captured()

    def capture(into: list[bytes]) -> Sink:
        def record(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
            assert value is not None
            into.append(value)
            sink.headers.append(headers)
            sink.changed.set()

        return record

    settings = worker.settings
    capture_outbox(
        monkeypatch,
        worker,
        {
            settings.topic_transitions: capture(sink.transitions),
            settings.topic_deadletter: capture(sink.dead_letters),
            settings.topic_sla: capture(sink.sla),
            settings.topic_routing: capture(sink.routing),
        },
    )
    return sink


def router_answer(worker: Worker, message: bytes) -> bytes:
    """What the router agent answers to a route request (no router runs in test_context)."""
    request = ROUTING_ADAPTER.validate_json(message)
    assert isinstance(request, RouteRequest)
    _, assignment = route(RoutingState(), request, worker.policy)
    assert assignment is not None
    return orjson.dumps(assigned_event(assignment, ROUTER_SOURCE))


async def test_agent_decides_stores_and_dead_letters(worker: Worker, captured: Captured) -> None:
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.process.test_context() as agent:
        await agent.put(envelope("e1", "lead.created", 0, seniority="vp"), key=b"agent-lead")
        await agent.put(b"{oops", key=b"agent-lead")
        await agent.put(envelope("e2", "activity", 5, action="demo_request"), key=b"agent-lead")
        await captured.wait_for(3)
        await agent.put(envelope("e2", "activity", 5, action="demo_request"), key=b"agent-lead")  # redelivery
        await agent.put(envelope("e3", "lead.accepted", 9), key=b"agent-lead")  # held: the lead waits for an owner
        (request,) = [m for m in captured.routing if b'"route.request"' in m]
        answer = router_answer(worker, request)  # the router signs its answers (core.intake: internal records)
        await agent.put(
            answer, key=b"agent-lead", headers=[(INTERNAL_HEADER, internal_proof(answer, worker.internal_key))]
        )
        await captured.wait_for(4)

    changes = [TRANSITION_ADAPTER.validate_json(v) for v in captured.transitions]
    assert [(c.from_stage, c.to_stage, c.reason) for c in changes if isinstance(c, StageChanged)] == [
        (None, "lead", "created"),
        ("lead", "mql", "hand_raiser"),
        ("mql", "sal", "accepted"),
    ]
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(v) for v in captured.dead_letters]
    assert letter.reason == "invalid_json"
    assert letter.original_b64 == "e29vcHM="  # base64 of the original bytes b"{oops"
    record = worker.leads[b"agent-lead"]
    assert record.state is not None
    assert record.state.stage == "sal"
    assert record.state.owner_id is not None, "the router's answer came before the held acceptance"
    assert record.version == 5  # e1, e2, e3 held, the answer, e3 applied; the redelivered e2 changed nothing
    policy = worker.policy
    stamp = f"{policy.name}@{policy.version}#{policy.fingerprint}".encode()
    assert captured.headers, "nothing was sent"
    assert all(h == [("leadflow-policy", stamp)] for h in captured.headers), "every output names the policy in force"


async def test_a_defect_in_the_core_costs_one_event_not_the_worker(
    worker: Worker, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decide = worker_module.decide

    def fails_on_e2(record, event, policy, now):  # type: ignore[no-untyped-def]
        if event.event_id == "x2":
            raise RuntimeError("boom")
        return real_decide(record, event, policy, now)

    monkeypatch.setattr(worker_module, "decide", fails_on_e2)
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.process.test_context() as agent:
        await agent.put(envelope("x1", "lead.created", 0).replace(b"agent-lead", b"agent-lead-2"), key=b"agent-lead-2")
        await agent.put(envelope("x2", "lead.paused", 1).replace(b"agent-lead", b"agent-lead-2"), key=b"agent-lead-2")
        await agent.put(
            envelope("x3", "lead.qualified", 2).replace(b"agent-lead", b"agent-lead-2"), key=b"agent-lead-2"
        )
        await captured.wait_for(3)
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(v) for v in captured.dead_letters]
    assert (letter.reason, letter.errors) == ("internal_error", ("(worker): RuntimeError: boom",))
    stages = [
        c.to_stage for c in map(TRANSITION_ADAPTER.validate_json, captured.transitions) if isinstance(c, StageChanged)
    ]
    assert stages == ["lead", "mql"]
    record = worker.leads[b"agent-lead-2"]
    assert record.state is not None
    assert record.state.stage == "mql"


async def test_a_defect_after_the_decision_costs_one_event_not_the_batch(
    worker: Worker, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust acknowledges a batch its agent fails on: a defect past `decide` (the deadline index here, the metrics)
    must cost one record, dead-lettered, while the other leads of the batch are stored."""
    real_wake_at = worker_module.wake_at

    def fails_for_lead_3(record, policy):  # type: ignore[no-untyped-def]
        if record is not None and record.lead_id == "agent-lead-3":
            raise RuntimeError("index")
        return real_wake_at(record, policy)

    def observe_fails(*args: object) -> None:
        raise RuntimeError("metrics")

    monkeypatch.setattr(worker_module, "wake_at", fails_for_lead_3)
    monkeypatch.setattr(worker.metrics, "observe", observe_fails)
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.process.test_context() as agent:
        for n in (3, 4):
            lead = f"agent-lead-{n}".encode()
            await agent.put(envelope(f"c{n}", "lead.created", 0).replace(b"agent-lead", lead), key=lead)
        await captured.wait_for(3)
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(v) for v in captured.dead_letters]
    assert (letter.reason, letter.errors) == ("internal_error", ("(worker): RuntimeError: index",))
    assert orjson.loads(base64.b64decode(letter.original_b64))["event_id"] == "c3"
    assert len(captured.transitions) == 2  # both leads created: the metrics' failure cost no record
    record = worker.leads[b"agent-lead-4"]
    assert record.state is not None
    assert record.state.stage == "lead"


def route_request(request_id: str, lead: str) -> bytes:
    body = {"type": "route.request", "id": request_id, "lead_id": lead, "pool": "latam",
            "occurred_at": datetime.now(UTC).isoformat()}  # fmt: skip
    return orjson.dumps(body)


async def test_the_router_answers_on_the_leads_partition_and_a_defect_costs_one_request(
    worker: Worker, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[tuple[bytes, bytes]] = []
    dead_letters = captured.dead_letters

    def answer(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        assert key is not None
        assert value is not None
        assert headers == [(INTERNAL_HEADER, internal_proof(value, worker.internal_key))], "answers are signed"
        answers.append((key, value))
        captured.changed.set()

    def dead_letter(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        assert value is not None
        dead_letters.append(value)
        captured.changed.set()

    real_answer = worker_module.answer_request

    def fails_on_r2(state, request, policy, source):  # type: ignore[no-untyped-def]
        if request.id == "r2":
            raise RuntimeError("boom")
        return real_answer(state, request, policy, source)

    sinks = {worker.settings.topic_events: answer, worker.settings.topic_deadletter: dead_letter}
    capture_outbox(monkeypatch, worker, sinks)
    monkeypatch.setattr(worker_module, "answer_request", fails_on_r2)
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.route_leads.test_context() as router:
        for request_id, lead in (("r1", "lead-a"), ("r2", "lead-b"), ("r3", "lead-c")):
            await router.put(route_request(request_id, lead), key=b"latam")
        async with asyncio.timeout(10):
            while len(answers) + len(captured.dead_letters) < 4:
                captured.changed.clear()
                await captured.changed.wait()
    sent = [(key, orjson.loads(value)) for key, value in answers]
    assert [(key, a["type"], a["data"].get("owner_id"), a["source"]) for key, a in sent] == [
        (b"lead-a", "lead.assigned", "rep-04", "leadflow.routing"),
        (b"lead-b", "route.unassigned", None, "leadflow.routing"),  # still answered: the lead waits for it
        (b"lead-c", "lead.assigned", "rep-05", "leadflow.routing"),
    ]
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(v) for v in captured.dead_letters]
    assert (letter.reason, letter.errors) == ("internal_error", ("(router): RuntimeError: boom",))
    state = worker.routing[worker_module.ROUTING_KEY]
    assert state.pools["latam"].open == {"rep-04": ("lead-a",), "rep-05": ("lead-c",)}


def hand_raiser(worker: Worker, lead_id: str) -> LeadRecord:
    """A lead that asked for a demo: an MQL with its acceptance clock running (an instant in the index)."""
    record = None
    for event in (
        make_event("lead.created", 0, lead_id=lead_id),
        make_event("activity", 60, lead_id=lead_id, action="demo_request"),
    ):
        record = decide(record, event, worker.policy, at(120)).record
    assert record is not None
    assert record.state is not None
    assert record.state.clocks
    return record


async def test_the_deadline_index_is_rebuilt_a_chunk_at_a_time_and_a_rebalance_abandons_the_walk(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large table must not stall the stream while the index is rebuilt after a rebalance: the event loop runs
    between chunks. The index ends with every lead's next instant; a rebalance during the walk abandons it."""
    monkeypatch.setattr(worker_module, "REBUILD_CHUNK", 2)
    monkeypatch.setattr(worker, "active_events_partitions", lambda: list(range(worker.settings.partitions)))
    records = {f"rebuild-{n}".encode(): hand_raiser(worker, f"rebuild-{n}") for n in range(6)}
    store = worker.leads.data
    for key, record in records.items():
        with in_partition(worker.partition_of(key)):
            store[key] = record
    ticks = 0

    async def count_turns() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    turns = asyncio.create_task(count_turns())
    try:
        await asyncio.sleep(0)
        before = ticks
        await worker.timers.rebuild()
        between = ticks - before
        expected = {
            key.decode(): instant.timestamp()
            for key, record in records.items()
            if (instant := wake_at(record, worker.policy)) is not None
        }
        indexed = {lead: stamp for index in worker.timers.indexes.values() for lead, stamp in index.due_at.items()}
        assert {lead: indexed.get(lead) for lead in expected} == expected
        assert not worker.timers.stale
        assert between >= len(records) // 2, f"the loop ran {between} times during a walk of 3 chunks"

        worker.timers.assigned([])  # the partitions went elsewhere and came back: they are walked again
        walk = asyncio.create_task(worker.timers.rebuild())
        await asyncio.sleep(0)  # the first chunk is read
        worker.timers.mark_stale()  # a rebalance meanwhile
        await walk
        partial = {lead: stamp for index in worker.timers.indexes.values() for lead, stamp in index.due_at.items()}
        assert worker.timers.stale, "the next sweep starts over"
        assert len(partial) <= worker_module.REBUILD_CHUNK < len(indexed), "abandoned after its first chunk"
    finally:
        turns.cancel()
        for key in records:
            del store[key]
        worker.timers.mark_stale()
