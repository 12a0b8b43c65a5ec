"""The SLA timer sends each instant of a lead once (streams.runtime.worker.Timers).

A tick the sweep sent goes through the lead's partition of the events topic, behind whatever waits there: with a
backlog (a restart, an outage, a burst) the lead's earlier events are applied before it. Each of them stores the
lead, whose record still holds the instant the tick is for; the deadline index must not take that instant back,
or the next sweep sends the tick again (seen in the throughput benchmark: 1,171 of 4,030 ticks sent twice or more,
each one written, read back and dropped by the lead as a duplicate). No broker: the agent runs in Faust's
test_context, what it sends is captured where it enters the outbox, and the ticks are handed back to it as the
events topic would.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from test_agent import capture_outbox, router_answer

from leadflow.core.decision import wake_at
from leadflow.core.intake import INTERNAL_HEADER, internal_proof
from leadflow.streams.runtime.worker import Worker

LEAD = "tick-lead"
KEY = LEAD.encode()
START = datetime.now(UTC) - timedelta(days=30)  # every instant of the lead's clocks has passed


def envelope(event_id: str, kind: str, seconds: int, **data: object) -> bytes:
    body = {
        "event_id": event_id,
        "lead_id": LEAD,
        "type": kind,
        "occurred_at": (START + timedelta(seconds=seconds)).isoformat(),
        "source": "t",
        "data": data,
    }
    return orjson.dumps(body)


class Sent:
    """What the worker sends, captured where it enters the outbox: the records it appends to the events topic (the
    ticks) and its route requests; `batch` is set at the end of each of the agent's batches (the outbox's send)."""

    def __init__(self, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[bytes] = []
        self.requests: list[bytes] = []
        self.batch = asyncio.Event()
        settings = worker.settings
        capture_outbox(
            monkeypatch,
            worker,
            {
                settings.topic_events: lambda key, value, headers: self.events.append(value or b""),
                settings.topic_routing: lambda key, value, headers: self.requests.append(value or b""),
            },
        )

        async def send() -> None:
            self.batch.set()

        monkeypatch.setattr(worker.outbox, "send", send)

    def ticks(self) -> list[bytes]:
        return [value for value in self.events if orjson.loads(value)["type"] == "timer.due"]

    def tick_ids(self) -> list[str]:
        return [orjson.loads(value)["event_id"] for value in self.ticks()]


async def test_a_lead_stored_while_its_tick_is_on_the_way_does_not_get_that_tick_again(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(worker, monkeypatch)
    partition = worker.partition_of(KEY)
    monkeypatch.setattr(worker, "active_events_partitions", lambda: [partition])
    worker.app.finalize()
    worker.app.flow_control.resume()

    async with worker.process.test_context() as agent:
        version = 0

        async def apply(value: bytes, *, internal: bool = False) -> None:
            """Hand the agent one record of the lead's partition and wait until it stored the lead again."""
            nonlocal version
            headers = [(INTERNAL_HEADER, internal_proof(value, worker.internal_key))] if internal else None
            await agent.put(value, key=KEY, headers=headers)
            async with asyncio.timeout(10):
                while (record := worker.leads.get(KEY)) is None or record.version <= version:
                    sent.batch.clear()
                    await sent.batch.wait()
            version = record.version

        def sweep() -> list[str]:
            before = len(sent.tick_ids())
            worker.timers.sweep(datetime.now(UTC))
            return sent.tick_ids()[before:]

        await apply(envelope("t1", "lead.created", 0))
        await apply(envelope("t2", "activity", 60, action="demo_request"))  # a hand-raiser: an MQL, routed
        (request,) = sent.requests
        await apply(router_answer(worker, request), internal=True)  # an owner: its clocks run
        await worker.timers.rebuild()
        worker.timers.clock.caught_up(partition, time.time())  # nothing waited on the partition: its time is now
        first = wake_at(worker.leads[KEY], worker.policy)
        assert first is not None

        assert sweep() == [f"timer:{first.isoformat()}"]
        # An event of the lead that was in the partition before the tick (dated before the instant) is applied.
        await apply(envelope("t3", "activity", 90, action="page_view"))
        assert wake_at(worker.leads[KEY], worker.policy) == first, "the lead has not seen its tick yet"
        again = sweep()
        assert f"timer:{first.isoformat()}" not in again, "the tick on its way was sent again"

        # The tick comes back and is applied: the lead's clocks move on and the timer goes on with them.
        await apply(sent.ticks()[0], internal=True)
        after = wake_at(worker.leads[KEY], worker.policy)
        assert after is not None
        assert after > first
        later = sweep()
        everything = sent.tick_ids()
        assert len(everything) == len(set(everything)), f"a tick sent twice: {everything}"
        assert f"timer:{after.isoformat()}" in again + later, "the lead's next instant is sent"
