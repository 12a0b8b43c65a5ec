"""SLA timers end to end: breaches fire with no event for the lead, once, and survive a worker restart."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from e2e import Deployment, read_topic

from leadflow.schemas.outputs import SLA_ADAPTER, SlaBreached, SlaStarted, SlaWarning
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.worker_process import WorkerProcess

pytestmark = pytest.mark.broker
POLL_S = 0.2


def fast_policy(tmp_path: Path, hand_raiser_minutes: float, acceptance_minutes: float | None = None) -> Path:
    """The default policy with a short hand-raiser first-contact allowance (and optionally a short wall-clock
    MQL acceptance), so a deadline passes in a test."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["processing"]["sla_grace_seconds"] = 2  # instants fire 2 s after they pass (default 30)
    for sla in document["slas"]:
        if sla["name"] == "first_contact":
            sla["overrides"] = [{"when": "hand_raiser", "allowance": {"minutes": hand_raiser_minutes}}]
        if sla["name"] == "mql_acceptance" and acceptance_minutes is not None:
            sla["allowance"] = {"minutes": acceptance_minutes}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def record(lead: str, event_id: str, kind: str, when: datetime, **data: Any) -> tuple[bytes, bytes]:
    body = {"event_id": event_id, "lead_id": lead, "type": kind, "occurred_at": when.isoformat(), "source": "t"}
    return lead.encode(), orjson.dumps({**body, "data": data})


def hand_raiser(lead: str, at: datetime) -> list[tuple[bytes, bytes]]:
    return [
        record(lead, f"{lead}-1", "lead.created", at),
        record(lead, f"{lead}-2", "activity", at + timedelta(milliseconds=1), action="demo_request"),
    ]


async def sla_outputs(deployment: Deployment) -> list[Any]:
    return [
        SLA_ADAPTER.validate_json(v or b"") for _, v in await read_topic(deployment.broker.bootstrap, deployment.sla)
    ]


async def wait_for_breaches(
    deployment: Deployment, leads: set[str], worker: WorkerProcess, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        breached = {o.lead_id for o in await sla_outputs(deployment) if isinstance(o, SlaBreached)}
        if leads <= breached:
            return
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"no breach for {sorted(leads - breached)}\n{worker.log_tail()}"
        await asyncio.sleep(POLL_S)


@pytest.fixture
async def deployment(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    deployed = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployed.create_topics()
    return deployed


async def test_a_deadline_passes_with_no_event_and_exactly_one_breach_appears(
    deployment: Deployment, tmp_path: Path
) -> None:
    policy = fast_policy(tmp_path, hand_raiser_minutes=0.05)  # 3 s
    worker = deployment.worker(LEADFLOW_POLICY=str(policy)).start()
    try:
        await deployment.produce(hand_raiser("hr-1", datetime.now(UTC)))
        await wait_for_breaches(deployment, {"hr-1"}, worker)
        # Another event for the lead, and the timer keeps sweeping: still one breach.
        await deployment.produce([record("hr-1", "hr-1-3", "lead.paused", datetime.now(UTC))])
        await deployment.wait_processed(worker)
    finally:
        worker.stop()
    outputs = [o for o in await sla_outputs(deployment) if o.sla == "first_contact"]
    assert [type(o).__name__ for o in outputs if not isinstance(o, SlaWarning)].count("SlaBreached") == 1
    (breach,) = [o for o in outputs if isinstance(o, SlaBreached)]
    (started,) = [o for o in outputs if isinstance(o, SlaStarted)]
    assert breach.deadline - started.started_at == timedelta(seconds=3)
    assert sorted(o.fraction for o in outputs if isinstance(o, SlaWarning)) == [0.5, 0.9]


async def test_deadlines_pending_at_a_stop_fire_once_after_the_restart(deployment: Deployment, tmp_path: Path) -> None:
    policy = fast_policy(tmp_path, hand_raiser_minutes=1)  # 60 s, most of it already used below
    started_at = datetime.now(UTC) - timedelta(seconds=40)
    deadline = started_at + timedelta(seconds=60)
    leads = {f"hr-{i}" for i in range(5)}
    worker = deployment.worker("worker-1", LEADFLOW_POLICY=str(policy)).start()
    try:
        await deployment.produce([r for lead in sorted(leads) for r in hand_raiser(lead, started_at)])
        await deployment.wait_processed(worker)
    finally:
        worker.stop()
    before = await sla_outputs(deployment)
    assert {o.lead_id for o in before if isinstance(o, SlaStarted)} == leads
    assert not [o for o in before if isinstance(o, SlaBreached)], "stopped too late: the deadlines had passed"
    await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))  # no worker runs meanwhile
    restarted = deployment.worker("worker-2", LEADFLOW_POLICY=str(policy)).start()
    try:
        await wait_for_breaches(deployment, leads, restarted)
        await deployment.wait_processed(restarted)
    finally:
        restarted.stop()
    breaches = [o for o in await sla_outputs(deployment) if isinstance(o, SlaBreached)]
    assert sorted(b.lead_id for b in breaches) == sorted(leads), "one breach per clock, none lost"
    assert len({b.id for b in breaches}) == len(leads)
    assert all(b.occurred_at == b.deadline for b in breaches)


async def test_a_killed_worker_loses_no_breach_and_emits_each_once_per_id(
    deployment: Deployment, tmp_path: Path
) -> None:
    """SIGKILL (no clean shutdown, no final commit) while deadlines are pending: after the restart every
    breach is emitted, each with one id per clock (a redelivered record may repeat an id, never add one)."""
    policy = fast_policy(tmp_path, hand_raiser_minutes=1)
    started_at = datetime.now(UTC) - timedelta(seconds=45)  # deadlines in ~15 s
    leads = {f"kill-{i}" for i in range(6)}
    worker = deployment.worker("worker-1", LEADFLOW_POLICY=str(policy)).start()
    try:
        await deployment.produce([r for lead in sorted(leads) for r in hand_raiser(lead, started_at)])
        await deployment.wait_processed(worker)
        assert not [o for o in await sla_outputs(deployment) if isinstance(o, SlaBreached)], "killed too late"
    finally:
        worker.kill()
    restarted = deployment.worker("worker-2", LEADFLOW_POLICY=str(policy)).start()
    try:
        await wait_for_breaches(deployment, leads, restarted, timeout_s=90)
    finally:
        restarted.stop()
    breaches = [o for o in await sla_outputs(deployment) if isinstance(o, SlaBreached) and o.sla == "first_contact"]
    ids_per_lead = {lead: {b.id for b in breaches if b.lead_id == lead} for lead in leads}
    assert all(len(ids) == 1 for ids in ids_per_lead.values()), ids_per_lead
