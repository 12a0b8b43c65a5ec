"""The router read again after a crash, end to end on the broker: a restarted router reads its topic again from
the last committed offset while its stored state already holds what came after (issue 13, item 2)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from e2e import Deployment, read_partitions, read_topic
from test_e2e_routing import deployment, handoffs, mql, wait_until
from test_e2e_sla import record
from test_metrics import sample_value, scrape

from schemas.policy import load_policy

pytestmark = pytest.mark.broker
__all__ = ["deployment"]  # the fixture, shared with test_e2e_routing


async def test_routing_messages_read_again_after_a_crash_change_nothing_and_raise_no_alarm(
    deployment: Deployment,
) -> None:
    """A restarted router reads its topic again from the last committed offset: a lead routed and released since
    must not be answered route.unassigned, logged as 'no owner' or counted in leadflow_routing_unassigned_total."""
    worker = deployment.worker().start()
    try:
        now = datetime.now(UTC)
        await deployment.produce(mql("replayed", now))
        await wait_until(deployment, worker, lambda seen: "replayed" in {h.lead_id for h in seen})
        await deployment.produce([record("replayed", "replayed-3", "lead.disqualified", now + timedelta(seconds=1))])
        deadline = time.monotonic() + 30
        while len(messages := await read_partitions(deployment.broker.bootstrap, deployment.routing, 1)) < 2:
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.2)
        assert [orjson.loads(v or b"")["type"] for _, v in messages] == ["route.request", "route.release"]
        await deployment.produce([(k, v or b"") for k, v in messages], deployment.routing)  # read again
        await deployment.produce(mql("after-replay", now + timedelta(seconds=2)))  # behind them on the one partition
        await wait_until(deployment, worker, lambda seen: "after-replay" in {h.lead_id for h in seen})
        samples = await scrape(deployment.web_port)
    finally:
        worker.stop()
    assert sample_value(samples, "leadflow_routing_unassigned_total", pool="latam") in (None, 0)
    latam = load_policy().routing.by_name["latam"]  # type: ignore[union-attr]
    first, second = latam.owners[0].id, latam.owners[1].id
    assert sample_value(samples, "leadflow_routing_open_mqls", pool="latam", owner=first) == 0, "released, for good"
    assert sample_value(samples, "leadflow_routing_open_mqls", pool="latam", owner=second) == 1
    by_lead = {h.lead_id: h for h in await handoffs(deployment)}
    assert by_lead["after-replay"].owner_id == second, "the replay did not move the turn"
    answers = [orjson.loads(v or b"") for _, v in await read_topic(deployment.broker.bootstrap, deployment.events)]
    assert [a["type"] for a in answers if a.get("source") == "leadflow.routing"] == ["lead.assigned"] * 2
    assert "no owner for lead" not in worker.log_path.read_text(errors="replace")
