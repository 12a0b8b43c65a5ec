"""End to end on the real embedded broker: a worker process, real topics, real consumer group, real changelog."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from e2e import Deployment, read_topic

from leadflow.core.decision import decide
from leadflow.schemas.events import EVENT_ADAPTER, LeadEvent
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, TRANSITION_ADAPTER, EventRefused, Forward, StageChanged
from leadflow.schemas.policy import Policy, load_policy
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord, LeadState
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.simulator import journeys, records

pytestmark = pytest.mark.broker

POLICY = load_policy()
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def event(event_id: str, lead: str, kind: str, seconds: int, **data: Any) -> tuple[bytes, bytes]:
    body = {
        "event_id": event_id,
        "lead_id": lead,
        "type": kind,
        "occurred_at": (T0 + timedelta(seconds=seconds)).isoformat(),
        "source": "e2e",
        "data": data,
    }
    return lead.encode(), orjson.dumps(body)


@pytest.fixture
async def deployment(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    deployed = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployed.create_topics()
    return deployed


def scenario() -> list[tuple[bytes | None, bytes]]:
    a, b, c = "lead-a", "lead-b", "lead-c"
    good_fit = {"seniority": "vp", "company_size": 200, "industry": "saas"}
    return [
        event("a1", a, "lead.created", 0, **good_fit),
        event("a2", a, "activity", 10, action="pricing_view"),
        event("a3", a, "activity", 20, action="form_submit"),
        event("a4", a, "activity", 30, action="form_submit"),  # engagement 35 >= 30, fit 45 >= 40: MQL
        event("a5", a, "lead.accepted", 40),
        event("a6", a, "deal.stage_changed", 50, stage="qualified_call", bant={"need": True}),
        event("a7", a, "deal.stage_changed", 60, stage="proposal_sent"),  # budget, authority missing
        event("a8", a, "deal.stage_changed", 70, stage="proposal_sent", bant={"budget": True, "authority": True}),
        event("a9", a, "deal.won", 80, amount=12000),
        event("a2", a, "activity", 10, action="pricing_view"),  # a redelivery: same event id
        event("b1", b, "lead.created", 0, persona="student"),
        event("b2", b, "activity", 5, action="demo_request"),  # hand-raiser: MQL at once
        event("b3", b, "lead.rejected", 15, reason="spam"),  # not a policy reason: refused
        event("b4", b, "lead.rejected", 25, reason="student"),
        # Hostile input: each must land in the dead-letter topic with a reason; the worker keeps going.
        (b"x", b"{not json"),
        (b"x", orjson.dumps({"event_id": "h1", "lead_id": "x", "type": "lead.exploded", "occurred_at": "2026-01-01T00:00:00Z", "source": "s"})),
        (b"x", orjson.dumps({"lead_id": "x", "type": "lead.created"})),
        (b"x", orjson.dumps({"event_id": 7, "lead_id": "x", "type": "activity", "occurred_at": "2026-01-01T00:00:00Z", "source": "s", "data": {"action": 3}})),
        (b"x", b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'),
        (b"x", orjson.dumps({"event_id": "h2", "lead_id": "x", "type": "lead.created", "occurred_at": "2026-01-01T00:00:00", "source": "s"})),
        (b"someone-else", event("h3", "x", "lead.created", 0)[1]),
        event("c1", c, "lead.created", 90),
    ]  # fmt: skip


EXPECTED_DEAD_LETTERS = [
    ("invalid_json", "(record): not valid JSON"),
    ("unknown_type", "type: 'lead.exploded' is not a known event type"),
    ("invalid_event", "event_id: is required"),
    ("invalid_event", "event_id: must be a string"),
    ("payload_too_large", "(record): 5,242,891 bytes is over the 1,048,576-byte limit"),
    ("invalid_event", "occurred_at: must include a UTC offset"),
    ("key_mismatch", "(record key): b'someone-else' is not the lead_id 'x'"),
]


async def test_scenario_gives_exact_transitions_and_dead_letters(deployment: Deployment) -> None:
    sent = scenario()
    await deployment.produce(sent)
    worker = deployment.worker().start()
    try:
        await deployment.wait_processed(worker)
    finally:
        worker.stop()

    outputs = [
        TRANSITION_ADAPTER.validate_json(v or b"")
        for _, v in await read_topic(deployment.broker.bootstrap, deployment.transitions)
    ]
    by_lead: dict[str, list[str]] = {}
    for output in outputs:
        if isinstance(output, StageChanged):
            by_lead.setdefault(output.lead_id, []).append(f"{output.from_stage}->{output.to_stage} ({output.reason})")
        elif isinstance(output, EventRefused):
            by_lead.setdefault(output.lead_id, []).append(f"refused {output.event_id}: {output.reason}")
    assert by_lead == {
        "lead-a": [
            "None->lead (created)",
            "lead->mql (score)",
            "mql->sal (accepted)",
            "sal->sql (deal:qualified_call)",
            "refused a7: missing_prerequisites",
            "sql->opportunity (deal:proposal_sent)",
            "opportunity->customer (won)",
        ],
        "lead-b": [
            "None->lead (created)",
            "lead->mql (hand_raiser)",
            "refused b3: invalid_rejection_reason",
            "mql->nurturing (rejected:student)",
        ],
        "lead-c": ["None->lead (created)"],
    }
    assert len({o.id for o in outputs}) == len(outputs)

    letters = [
        DEAD_LETTER_ADAPTER.validate_json(v or b"")
        for _, v in await read_topic(deployment.broker.bootstrap, deployment.deadletter)
    ]
    letters.sort(key=lambda letter: (letter.partition, letter.offset))
    hostile_values = {value for key, value in sent if key in (b"x", b"someone-else")}
    assert {base64.b64decode(letter.original_b64) for letter in letters} == hostile_values
    found = sorted((letter.reason, letter.errors[0]) for letter in letters)
    for (reason, start), (got_reason, got_error) in zip(sorted(EXPECTED_DEAD_LETTERS), found, strict=True):
        assert got_reason == reason
        assert got_error.startswith(start), got_error


def expected_records(sent: list[tuple[bytes, bytes]], now: datetime, policy: Policy) -> dict[str, LeadRecord]:
    """What an uninterrupted run gives: the core applied to each lead's events in produced order, and what a
    merged lead sends back through the events topic (its merge notice: core.merges) to the lead it goes to."""
    result: dict[str, LeadRecord] = {}

    def apply(event: LeadEvent) -> None:
        decision = decide(result.get(event.lead_id), event, policy, now)
        result[event.lead_id] = decision.record
        for output in decision.outputs:
            if isinstance(output, Forward):
                apply(output.event)

    for _, value in sent:
        apply(EVENT_ADAPTER.validate_json(value))
    return result


def without_slas(tmp_path: Path) -> Path:
    """The default policy without SLA clocks and routing: their timers and the router's answers add events of
    their own, at times of their own, which the expected records (a replay of what was sent) cannot know."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document.pop("slas")
    document.pop("routing")
    path = tmp_path / "policy-without-slas.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def final_table(deployment: Deployment) -> dict[str, LeadRecord | None]:
    table: dict[str, LeadRecord | None] = {}
    for key, value in await read_topic(deployment.broker.bootstrap, deployment.changelog):
        assert key is not None
        table[key.decode()] = None if value is None else LEAD_RECORD_ENCODING.decode(value)
    return table


WEB_TOKEN = "e2e-web-token-0123456789abcdef"


async def lead_views(port: int, lead_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """What the running worker holds for each lead (its table, as recovered), through /leads/{id}, personal fields
    included: the worker runs with LEADFLOW_WEB_TOKEN=WEB_TOKEN and the requests carry it."""
    views: dict[str, dict[str, Any] | None] = {}
    headers = {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for lead_id in lead_ids:
            async with session.get(f"http://127.0.0.1:{port}/leads/{lead_id}") as response:
                views[lead_id] = await response.json() if response.status == 200 else None
    return views


@pytest.mark.parametrize(
    ("store", "stop"),
    [("memory://", None), ("memory://", "mid-stream"), ("rocksdb://", "between-halves")],
    ids=["uninterrupted", "stopped-and-restarted", "rocksdb-restarted"],
)
async def test_worker_stopped_mid_stream_restarts_without_loss(
    deployment: Deployment, store: str, stop: str | None
) -> None:
    """With rocksdb:// (the production store) the second worker opens the first one's database (the same data
    directory) and reads the changelog from where that database stood; it is stopped once the first half is
    processed, so that the second half lands on the restored leads."""
    sent = records(journeys(seed=11, n_leads=400, start=T0 - timedelta(days=60)), seed=11)
    first, second = sent[: len(sent) // 2], sent[len(sent) // 2 :]
    policy_path = without_slas(deployment.workdir)
    tuning = {
        "LEADFLOW_BATCH_MAX": "20",
        "LEADFLOW_COMMIT_INTERVAL_S": "0.3",
        "LEADFLOW_POLICY": str(policy_path),
        "LEADFLOW_WEB_TOKEN": WEB_TOKEN,
        "LEADFLOW_STORE": store,
    }
    worker = deployment.worker("worker-1", **tuning).start()
    await deployment.produce(first)
    await deployment.wait_processed(worker)
    if stop == "between-halves":
        worker.stop()
        worker = deployment.worker("worker-2", **tuning).start()
    await deployment.produce(second)
    if stop == "mid-stream":
        worker.stop()  # while the second half is being processed; Faust commits what it finished
        at_stop = await deployment.committed()
        assert sum(at_stop.values()) < len(sent), "the stop came after the whole input: not mid-stream"
        worker = deployment.worker("worker-2", **tuning).start()
    try:
        await deployment.wait_processed(worker)
        expected = expected_records(sent, datetime.now(UTC), load_policy(policy_path))
        views = await lead_views(deployment.web_port, sorted(expected))
    finally:
        worker.stop()

    assert_table_is(await final_table(deployment), expected)
    for lead_id, record in expected.items():  # the running worker held the same (its table, as recovered)
        view = views[lead_id]
        if record.state is None:
            assert view is None, lead_id
        else:
            assert view is not None, lead_id
            assert view["version"] == record.version, lead_id
            assert LeadState.model_validate(view["state"]) == record.state, lead_id


def assert_table_is(table: dict[str, LeadRecord | None], expected: dict[str, LeadRecord]) -> None:
    """The changelog's table holds exactly the expected leads, each at the expected version and state."""
    assert set(table) == set(expected)
    for lead_id, record in expected.items():
        got = table[lead_id]
        assert got is not None, lead_id
        assert (got.version, got.state) == (record.version, record.state), (
            lead_id,
            got.version,
            record.version,
            state_diff(got.state, record.state),
        )


def state_diff(got: LeadState | None, want: LeadState | None) -> dict[str, Any]:
    mine, theirs = (got.model_dump() if got else {}), (want.model_dump() if want else {})
    return {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
