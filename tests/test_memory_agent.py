"""The lead agent (Faust's test_context, memory:// store) keeps no record for a lead that does not exist.

An event for an unknown lead is refused and its record kept for the lateness window only (core.decision.forget_at):
the agent indexes the record's end in the timer index, and the timer tick at that instant deletes it from the table.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from test_agent import capture_outbox

from leadflow.core.decision import forget_at
from leadflow.core.intake import INTERNAL_HEADER, internal_proof
from leadflow.schemas.outputs import TRANSITION_ADAPTER, EventRefused
from leadflow.streams.runtime.worker import Worker, timer_event


def unknown_lead_event(event_id: str, lead_id: str, at: datetime) -> bytes:
    body = {
        "event_id": event_id,
        "lead_id": lead_id,
        "type": "activity",
        "occurred_at": at.isoformat(),
        "source": "t",
        "data": {"action": "page_view"},
    }
    return orjson.dumps(body)


def indexed(worker: Worker, lead_id: str) -> float | None:
    for index in worker.timers.indexes.values():
        if lead_id in index.due_at:
            return index.due_at[lead_id]
    return None


async def test_the_agent_forgets_an_unknown_lead_when_its_window_closes(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    changed = asyncio.Event()

    def capture(key: bytes | None, value: bytes | None, headers: object = None) -> None:
        assert value is not None
        sent.append(value)
        changed.set()

    async def wait_for(n: int) -> None:
        async with asyncio.timeout(10):
            while len(sent) < n:
                changed.clear()
                await changed.wait()

    capture_outbox(monkeypatch, worker, {worker.settings.topic_transitions: capture})
    worker.app.finalize()
    worker.app.flow_control.resume()
    long_ago = datetime.now(UTC) - timedelta(seconds=worker.policy.processing.lateness_seconds + 600)
    async with worker.process.test_context() as agent:
        await agent.put(unknown_lead_event("m1", "memory-ghost", long_ago), key=b"memory-ghost")
        await wait_for(1)
        record = worker.leads[b"memory-ghost"]
        assert record.state is None
        until = forget_at(record, worker.policy)
        assert until is not None
        assert indexed(worker, "memory-ghost") == until.timestamp(), "the record's end is in the timer index"
        tick = timer_event("memory-ghost", until.timestamp())
        await agent.put(
            tick, key=b"memory-ghost", headers=[(INTERNAL_HEADER, internal_proof(tick, worker.internal_key))]
        )
        await agent.put(unknown_lead_event("m2", "memory-ghost-2", long_ago), key=b"memory-ghost-2")
        await wait_for(2)
    refusals = [TRANSITION_ADAPTER.validate_json(v) for v in sent]
    assert [(r.lead_id, r.reason) for r in refusals if isinstance(r, EventRefused)] == [
        ("memory-ghost", "unknown_lead"),
        ("memory-ghost-2", "unknown_lead"),
    ]
    assert b"memory-ghost" not in worker.leads
    assert indexed(worker, "memory-ghost") is None
    assert b"memory-ghost-2" in worker.leads  # its own window is still to be closed by its own tick
