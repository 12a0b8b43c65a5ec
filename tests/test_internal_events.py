"""Internal events (the SLA timer's `timer.due`, the router's `route.unassigned` and `lead.assigned` answers, a
merged lead's `lead.absorbed` notice and the events it forwards, ids `fwd:...`) are accepted only with the proof a
worker signs them with: a producer of the events topic cannot forge them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e import Deployment, read_topic
from pydantic import ValidationError
from test_agent import capture_outbox

from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.intake import INTERNAL_HEADER, decode, header, internal_proof, is_internal_proof
from leadflow.schemas.events import Activity, LeadAbsorbed, LeadAssigned, RouteUnassigned, TimerDue
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, DeadLetter
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.worker import Worker

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = b"a-worker-secret-of-32-bytes-long"
WHERE: dict[str, Any] = {"topic": "leads.events", "partition": 0, "offset": 9, "received_at": AT}


def envelope(
    kind: str, lead: str = "L1", source: str = "leadflow.timer", event_id: str | None = None, **data: Any
) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id or f"{kind}:1",
            "lead_id": lead,
            "type": kind,
            "occurred_at": AT.isoformat(),
            "source": source,
            "data": data,
        }
    )


INTERNAL = [
    (envelope("timer.due"), TimerDue, "type: timer.due is written by leadflow itself (its SLA timer and router)"),
    (
        envelope("route.unassigned", source=ROUTER_SOURCE, pool="latam"),
        RouteUnassigned,
        "type: route.unassigned is written by leadflow itself",
    ),
    (
        envelope("lead.assigned", source=ROUTER_SOURCE, owner_id="rep-1", pool="latam", reason="routed"),
        LeadAssigned,
        "source: 'leadflow.routing' is reserved for leadflow's router",
    ),
    (
        envelope("lead.absorbed", source="leadflow.merge", from_lead_id="L0"),
        LeadAbsorbed,
        "type: lead.absorbed is written by leadflow itself (a merged lead's notice)",
    ),
    (
        envelope("activity", source="hubspot", event_id="fwd:1:L0:e-9", action="pricing_view"),
        Activity,
        "event_id: 'fwd:1:L0:e-9' is leadflow's own (an id starting with 'fwd:'",
    ),
]


@pytest.mark.parametrize(("value", "kind", "problem"), INTERNAL)
def test_an_internal_event_without_a_valid_proof_is_dead_lettered(value: bytes, kind: type, problem: str) -> None:
    for proof in (None, b"", b"0" * 64, internal_proof(value, b"another-key-of-the-same-length!!")):
        letter = decode(b"L1", value, **WHERE, proof=proof, internal_key=KEY)
        assert isinstance(letter, DeadLetter), proof
        assert letter.reason == "invalid_event"
        (line,) = letter.errors
        assert line.startswith(problem)
        assert f"no valid {INTERNAL_HEADER} header" in line
        assert "LEADFLOW_INTERNAL_KEY" in line
    # Safe by default: without a key (a caller that does not say which) no internal event is accepted.
    assert isinstance(decode(b"L1", value, **WHERE, proof=internal_proof(value, KEY)), DeadLetter)


@pytest.mark.parametrize(("value", "kind", "problem"), INTERNAL)
def test_a_signed_internal_event_is_accepted(value: bytes, kind: type, problem: str) -> None:
    assert isinstance(decode(b"L1", value, **WHERE, proof=internal_proof(value, KEY), internal_key=KEY), kind)


def test_a_proof_is_for_one_value_only() -> None:
    value = envelope("timer.due")
    proof = internal_proof(value, KEY)
    moved = value.replace(b'"L1"', b'"L2"')  # the same tick for another lead
    assert isinstance(decode(b"L2", moved, **WHERE, proof=proof, internal_key=KEY), DeadLetter)
    assert is_internal_proof(value, proof, KEY)
    assert not is_internal_proof(value, proof.upper(), KEY)
    assert not is_internal_proof(value, proof, None)


def test_a_tools_own_assignment_needs_no_proof() -> None:
    value = envelope("lead.assigned", source="hubspot", owner_id="rep-1")
    assert isinstance(decode(b"L1", value, **WHERE, internal_key=KEY), LeadAssigned)


def test_the_proof_header_is_read_from_pairs_or_a_mapping() -> None:
    assert header([("leadflow-policy", b"p"), (INTERNAL_HEADER, b"x")], INTERNAL_HEADER) == b"x"
    assert header({INTERNAL_HEADER: b"y"}, INTERNAL_HEADER) == b"y"
    assert header(None, INTERNAL_HEADER) is None
    assert header([("other", b"z")], INTERNAL_HEADER) is None


def test_the_internal_key_is_a_setting_with_a_dev_default() -> None:
    assert len(Settings().internal_key.get_secret_value()) >= 16
    assert Settings(internal_key="x" * 32).as_env()["LEADFLOW_INTERNAL_KEY"] == "x" * 32  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="internal_key"):
        Settings(internal_key="short")  # type: ignore[arg-type]


async def test_the_agent_dead_letters_a_forged_timer_and_applies_a_signed_one(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters: list[bytes] = []
    done = asyncio.Event()

    def dead_letter(key: bytes | None, value: bytes | None, headers: object) -> None:
        assert value is not None
        letters.append(value)
        done.set()

    capture_outbox(monkeypatch, worker, {worker.settings.topic_deadletter: dead_letter})
    lead = "internal-lead"
    created = orjson.loads(envelope("lead.created", lead=lead, source="t"))
    created["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    tick = orjson.loads(envelope("timer.due", lead=lead))
    tick["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    tick_value = orjson.dumps(tick)
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.process.test_context() as agent:
        await agent.put(orjson.dumps(created), key=lead.encode())
        await agent.put(tick_value, key=lead.encode())  # forged: no proof
        async with asyncio.timeout(10):
            await done.wait()
        signed = [(INTERNAL_HEADER, internal_proof(tick_value, worker.internal_key))]
        await agent.put(tick_value, key=lead.encode(), headers=signed)
        for _ in range(200):  # until the batch that holds the signed tick is written to the table, up to 10 s
            record = worker.leads.get(lead.encode())
            if record is not None and "timer.due:1" in {p.event.event_id for p in record.pending} | set(record.seen):
                break
            await asyncio.sleep(0.05)
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(v) for v in letters]
    assert letter.errors[0].startswith("type: timer.due is written by leadflow itself")
    record = worker.leads[lead.encode()]
    assert "timer.due:1" in {p.event.event_id for p in record.pending} | set(record.seen), "the signed tick applied"


@pytest.mark.broker
async def test_a_producer_cannot_forge_internal_events_on_the_broker(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    now = datetime.now(UTC) - timedelta(minutes=5)
    lead = "forged-lead"
    created = orjson.loads(envelope("lead.created", lead=lead, source="e2e"))
    created["occurred_at"] = now.isoformat()
    forged = []
    for value, _, _ in INTERNAL:
        body = orjson.loads(value)
        body["lead_id"], body["occurred_at"] = lead, (now + timedelta(seconds=1)).isoformat()
        forged.append(orjson.dumps(body))
    await deployment.produce([(lead.encode(), orjson.dumps(created)), *((lead.encode(), v) for v in forged)])
    worker = deployment.worker().start()
    try:
        await deployment.wait_processed(worker)
    finally:
        worker.stop()
    letters = [
        DEAD_LETTER_ADAPTER.validate_json(v or b"")
        for _, v in await read_topic(broker.bootstrap, deployment.deadletter)
    ]
    assert sorted(letter.errors[0].split(" is ")[0] for letter in letters) == [
        "event_id: 'fwd:1:L0:e-9'",
        "source: 'leadflow.routing'",
        "type: lead.absorbed",
        "type: route.unassigned",
        "type: timer.due",
    ]
