"""Routing and the hand-off end to end: the router's answer comes back through the broker, a HandOff appears on
leads.handoffs, and a breached MQL acceptance is escalated to the next owner of the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e import Deployment, read_topic
from test_e2e_sla import fast_policy, record, sla_outputs
from test_metrics import sample_value, scrape

from leadflow.core.routing import ANSWER_DELAY
from leadflow.schemas.outputs import (
    DEAD_LETTER_ADAPTER,
    HANDOFF_ADAPTER,
    DeadLetter,
    HandOff,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaStarted,
)
from leadflow.schemas.policy import load_policy
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.worker_process import WorkerProcess

pytestmark = pytest.mark.broker
LATAM = {"country": "BR", "company_size": 80}


@pytest.fixture
async def deployment(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    deployed = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployed.create_topics()
    return deployed


def mql(lead: str, at: datetime) -> list[tuple[bytes, bytes]]:
    return [
        record(lead, f"{lead}-1", "lead.created", at, **LATAM),
        record(lead, f"{lead}-2", "activity", at + timedelta(milliseconds=1), action="demo_request"),
    ]


async def handoffs(deployment: Deployment) -> list[HandOff]:
    return [HANDOFF_ADAPTER.validate_json(v or b"") for _, v in await read_topic(deployment.broker.bootstrap,
                                                                                 deployment.handoffs)]  # fmt: skip


async def wait_until(
    deployment: Deployment, worker: WorkerProcess, done: Callable[[list[HandOff]], bool], timeout_s: float = 60
) -> list[HandOff]:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await handoffs(deployment)
        if done(seen):
            return seen
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"hand-offs so far: {seen}\n{worker.log_tail()}"
        await asyncio.sleep(0.2)


async def test_each_mql_is_routed_round_robin_and_handed_off(deployment: Deployment) -> None:
    leads = [f"mql-{i}" for i in range(3)]
    worker = deployment.worker().start()
    try:
        now = datetime.now(UTC)
        for lead in leads:  # one after the other, so the turns follow the lead order
            await deployment.produce(mql(lead, now))
            await wait_until(deployment, worker, lambda seen, lead=lead: lead in {h.lead_id for h in seen})
        samples = await scrape(deployment.web_port)  # the router's state, as managers see it
    finally:
        worker.stop()
    latam = load_policy().routing.by_name["latam"]  # type: ignore[union-attr]
    for owner in latam.owners:
        assert sample_value(samples, "leadflow_routing_open_mqls", pool="latam", owner=owner.id) == 1
        assert sample_value(samples, "leadflow_routing_capacity", pool="latam", owner=owner.id) == owner.capacity
    assert sample_value(samples, "leadflow_routing_open_mqls", pool="general", owner="rep-07") == 0
    by_lead = {h.lead_id: h for h in await handoffs(deployment)}
    assert [by_lead[lead].owner_id for lead in leads] == [o.id for o in latam.owners]
    first = by_lead[leads[0]]
    assert (first.pool, first.reason, first.team, first.stage) == ("latam", "routed", "inside_sales", "mql")
    assert {s.sla for s in first.slas} == {"mql_acceptance", "first_contact"}
    assert all(s.deadline > s.started_at for s in first.slas)
    assert first.score.hand_raiser
    assert first.score.mql_reason == "hand_raiser"
    assert first.profile["country"] == "BR"


async def test_a_breached_acceptance_is_escalated_to_the_next_owner(deployment: Deployment, tmp_path: Path) -> None:
    policy = fast_policy(tmp_path, hand_raiser_minutes=60, acceptance_minutes=0.05)  # accept within 3 s
    worker = deployment.worker(LEADFLOW_POLICY=str(policy)).start()
    try:
        await deployment.produce(mql("esc-1", datetime.now(UTC)))
        seen = await wait_until(deployment, worker, lambda seen: any(h.reason == "escalated" for h in seen))
        await deployment.produce([record("esc-1", "esc-1-3", "lead.accepted", datetime.now(UTC))])
        await deployment.wait_processed(worker)
        # The SLA outputs of the acceptance are sent after its offset is committed: wait for the met clock.
        deadline = time.monotonic() + 30
        while not any(isinstance(o, SlaMet) for o in await sla_outputs(deployment)):
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.2)
    finally:
        worker.stop()
    routed, escalated = seen[0], next(h for h in seen if h.reason == "escalated")
    assert escalated.previous_owner_id == routed.owner_id != escalated.owner_id
    assert escalated.pool == routed.pool == "latam"
    acceptance = [o for o in await sla_outputs(deployment) if o.sla == "mql_acceptance"]
    first_breach = next(o for o in acceptance if isinstance(o, SlaBreached))
    assert [o.id for o in acceptance if isinstance(o, SlaBreached)].count(first_breach.id) == 1
    (notice,) = [o for o in acceptance if isinstance(o, SlaEscalated) and o.started_at == first_breach.started_at]
    assert (notice.actions, notice.manager_id, notice.owner_id) == (
        ("reassign", "notify"),
        "mgr-latam",
        routed.owner_id,
    )
    assert any(isinstance(o, SlaCancelled) and o.reason == "reassigned" for o in acceptance)
    restarted = [o for o in acceptance if isinstance(o, SlaStarted) and o.owner_id == escalated.owner_id]
    assert restarted
    assert restarted[0].started_at == first_breach.deadline + ANSWER_DELAY
    assert any(isinstance(o, SlaMet) for o in acceptance)


async def test_an_unreadable_routing_record_is_dead_lettered_and_routing_goes_on(deployment: Deployment) -> None:
    worker = deployment.worker().start()
    try:
        await deployment.produce([(b"latam", b"not json"), (b"latam", b'{"type": "route.maybe"}')], deployment.routing)
        await deployment.produce(mql("after-bad", datetime.now(UTC)))
        await wait_until(deployment, worker, lambda seen: "after-bad" in {h.lead_id for h in seen})
        deadline = time.monotonic() + 30
        while len(letters := await dead_letters(deployment)) < 2:
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.2)
    finally:
        worker.stop()
    assert sorted((d.reason, d.topic) for d in letters) == [
        ("invalid_json", deployment.routing),
        ("unknown_type", deployment.routing),
    ]


async def dead_letters(deployment: Deployment) -> list[DeadLetter]:
    records = await read_topic(deployment.broker.bootstrap, deployment.deadletter)
    return [DEAD_LETTER_ADAPTER.validate_json(v or b"") for _, v in records]
