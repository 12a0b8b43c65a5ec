"""The webhook gateway over real HTTP on loopback, producing into the real (embedded) broker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from e2e import PARTITIONS, Deployment, read_topic, topic_size

from leadflow.core.identity import lead_id_for_email
from leadflow.schemas.policy import Policy, load_policy
from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker, free_port
from leadflow.streams.runtime.gateway import Gateway, GatewaySettings, web_app
from leadflow.streams.runtime.settings import Settings

pytestmark = pytest.mark.broker

KEY = "test-identity-key"
HUBSPOT_SECRET = "hubspot-client-secret"
MAUTIC_SECRET = "mautic-webhook-secret"
TOKEN = "shared-token"


@dataclass
class Running:
    """A gateway served on a loopback port."""

    gateway: Gateway
    url: str
    deployment: Deployment

    async def post(
        self, source: str, body: bytes, headers: dict[str, str] | None = None, path_qs: str = ""
    ) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/ingest/{source}{path_qs}", data=body, headers=headers or {}) as answer,
        ):
            return answer.status, await answer.json()

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}{path}") as answer:
            return answer.status, await answer.text()

    async def events(self) -> list[tuple[bytes | None, dict[str, Any]]]:
        records = await read_topic(self.deployment.broker.bootstrap, self.deployment.events)
        return [(key, orjson.loads(value or b"null")) for key, value in records]

    def hubspot_headers(self, body: bytes, source_path: str = "/ingest/hubspot", age_s: float = 0.0) -> dict[str, str]:
        timestamp = str(int((time.time() - age_s) * 1000))
        message = b"POST" + (self.url + source_path).encode() + body + timestamp.encode()
        digest = hmac.new(HUBSPOT_SECRET.encode(), message, hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
            "X-HubSpot-Request-Timestamp": timestamp,
        }


def gateway_settings(**overrides: Any) -> GatewaySettings:
    given: dict[str, Any] = {
        "port": free_port(),
        "identity_key": KEY,
        "hubspot_client_secret": HUBSPOT_SECRET,
        "mautic_secret": MAUTIC_SECRET,
        "rdstation_token": TOKEN,
        "forms_token": TOKEN,
        "canonical_token": TOKEN,
        "max_body_bytes": 64 * 1024,
        "ack_timeout_s": 3.0,
    }
    return GatewaySettings(**(given | overrides))


async def serve(
    settings: Settings, config: GatewaySettings, *, wait_ready: bool = True, policy: Policy | None = None
) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings, config, policy or load_policy())
    runner = web.AppRunner(web_app(gateway))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port)
    await site.start()
    try:
        if wait_ready:
            deadline = time.monotonic() + 30
            while not gateway.ready:
                assert time.monotonic() < deadline, "the gateway did not connect to the broker"
                await asyncio.sleep(0.05)
        yield gateway
    finally:
        await runner.cleanup()


@pytest.fixture
async def running(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> AsyncIterator[Running]:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    config = gateway_settings()
    async for gateway in serve(deployment.settings(), config):
        yield Running(gateway, f"http://127.0.0.1:{config.port}", deployment)


def envelope(event_id: str, lead_id: str = "crm-1", kind: str = "lead.created", **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "lead_id": lead_id,
        "type": kind,
        "occurred_at": "2026-12-01T10:00:00Z",
        "source": "crm",
        "data": data,
    }


BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def test_canonical_envelopes_one_array_or_lines_land_keyed_by_lead_id(running: Running) -> None:
    one = orjson.dumps(envelope("e1", country="BR"))
    array = orjson.dumps([envelope("e2", "crm-2"), envelope("e3", "crm-3", "activity", action="page_view")])
    lines = orjson.dumps(envelope("e4", "crm-4")) + b"\n" + orjson.dumps(envelope("e5", "crm-5")) + b"\n"
    for body, count in ((one, 1), (array, 2), (lines, 2)):
        status, answer = await running.post("canonical", body, BEARER)
        assert (status, answer["accepted"]) == (202, count), answer
    events = await running.events()
    assert sorted(e["event_id"] for _, e in events) == ["e1", "e2", "e3", "e4", "e5"]
    assert all(key == e["lead_id"].encode() for key, e in events)
    (first,) = [e for _, e in events if e["event_id"] == "e1"]
    assert first["data"] == {"country": "BR"}
    assert first["type"] == "lead.created"


async def test_an_invalid_envelope_is_422_naming_the_field_and_nothing_is_produced(running: Running) -> None:
    bad = envelope("e1", "crm-1", "lead.rejected")  # data.reason is required
    status, answer = await running.post("canonical", orjson.dumps(bad), BEARER)
    assert status == 422, answer
    assert "reason" in answer["error"], answer
    internal = envelope("e2", "crm-1", "timer.due")
    status, answer = await running.post("canonical", orjson.dumps(internal), BEARER)
    assert status == 422, answer
    assert "timer.due" in answer["error"], answer
    assert await topic_size(running.deployment.broker.bootstrap, running.deployment.events, PARTITIONS) == 0


async def test_bad_or_stale_hubspot_signatures_are_401_and_nothing_is_produced(running: Running) -> None:
    body = orjson.dumps(
        [
            {
                "eventId": 7,
                "subscriptionId": 1,
                "portalId": 99,
                "appId": 5,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "contact.creation",
                "attemptNumber": 0,
                "objectId": 1234,
                "changeFlag": "CREATED",
                "changeSource": "CRM_UI",
            }
        ]
    )
    tampered = running.hubspot_headers(body)
    tampered["X-HubSpot-Signature-v3"] = base64.b64encode(b"x" * 32).decode()
    assert (await running.post("hubspot", body, tampered))[0] == 401
    assert (await running.post("hubspot", body, running.hubspot_headers(body, age_s=600)))[0] == 401
    assert (await running.post("hubspot", body, {"Content-Type": "application/json"}))[0] == 401
    assert await topic_size(running.deployment.broker.bootstrap, running.deployment.events, PARTITIONS) == 0
    status, answer = await running.post("hubspot", body, running.hubspot_headers(body))
    assert status == 202, answer
    assert await topic_size(running.deployment.broker.bootstrap, running.deployment.events, PARTITIONS) == 1


async def test_a_redelivered_webhook_has_the_same_event_ids(running: Running) -> None:
    body = orjson.dumps(
        {
            "mautic.lead_post_save_new": [
                {
                    "contact": {
                        "id": 52,
                        "points": 0,
                        "fields": {"core": {"email": {"alias": "email", "value": "ana@example.com"}}},
                    }
                }
            ],
            "timestamp": "2026-12-01T10:00:00+00:00",
        }
    )
    signature = base64.b64encode(hmac.new(MAUTIC_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json", "Webhook-Signature": signature}
    first = await running.post("mautic", body, headers)
    again = await running.post("mautic", body, headers)
    assert first[0] == again[0] == 202, (first, again)
    assert first[1]["event_ids"] == again[1]["event_ids"]
    events = await running.events()
    assert {e["lead_id"] for _, e in events} == {lead_id_for_email(KEY.encode(), "ana@example.com")}


async def test_unknown_source_disabled_source_oversize_and_unmappable(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    config = gateway_settings(mautic_secret=None)
    async for _ in serve(deployment.settings(), config):
        run = Running(_, f"http://127.0.0.1:{config.port}", deployment)
        assert (await run.post("salesforce", b"{}", BEARER))[0] == 404
        assert (await run.post("mautic", b"{}", {"Content-Type": "application/json"}))[0] == 403
        huge = b'{"leads": [' + b'"x",' * 20_000 + b'"x"]}'
        status, answer = await run.post("rdstation", huge, BEARER)
        assert status == 413
        assert "bytes" in answer["error"]
        status, answer = await run.post("rdstation", b'{"nothing": "here"}', BEARER)
        assert status == 422, answer
        assert answer["field"], answer
        assert "@" not in answer["error"]
        assert await topic_size(broker.bootstrap, deployment.events, PARTITIONS) == 0
        status, metrics = await run.get("/metrics")
        assert status == 200
        assert 'leadflow_ingest_requests_total{outcome="unknown_source",source="unknown"} 1.0' in metrics
        assert 'leadflow_ingest_requests_total{outcome="too_large",source="rdstation"} 1.0' in metrics
        assert 'leadflow_ingest_rejections_total{reason="unmappable",source="rdstation"} 1.0' in metrics


async def test_broker_down_is_503_with_retry_after_and_readyz_says_not_ready(
    unique_topic_prefix: str, tmp_path: Path
) -> None:
    with EmbeddedBroker(tmp_path / "own-broker") as own:
        deployment = Deployment(own, unique_topic_prefix, tmp_path)
        config = gateway_settings()
        async for gateway in serve(deployment.settings(), config):
            run = Running(gateway, f"http://127.0.0.1:{config.port}", deployment)
            assert (await run.get("/readyz"))[0] == 200
            status, _ = await run.post("canonical", orjson.dumps(envelope("before")), BEARER)
            assert status == 202
            own.stop()
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{run.url}/ingest/canonical", data=orjson.dumps(envelope("during")), headers=BEARER
                ) as answer,
            ):
                assert answer.status == 503
                assert answer.headers["Retry-After"] == "5"
            assert (await run.get("/healthz"))[0] == 200


async def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    """The broker's own record size limit on one topic, once the broker applies it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})])
        deadline = time.monotonic() + 30
        while True:
            [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            values = {entry[0]: entry[1] for entry in described.resources[0][4]}
            if values.get("max.message.bytes") == str(limit):
                return
            assert time.monotonic() < deadline, "the broker did not apply max.message.bytes"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def test_the_retry_of_a_request_answered_503_creates_its_new_lead(running: Running) -> None:
    """The events topic refuses the request's records (the broker's size limit, set below any event): 503. The
    person must not be remembered then, or the tool's retry finds them known, sends no lead.created, and the
    worker refuses their facts as unknown_lead."""
    form = "form_id=trial&email=nova%40example.io&job_title=CTO&submission_id=sub-503"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-www-form-urlencoded"}
    bootstrap, topic = running.deployment.broker.bootstrap, running.deployment.events
    await set_max_message_bytes(bootstrap, topic, 64)
    status, _ = await running.post("forms", form.encode(), headers)
    assert status == 503
    await set_max_message_bytes(bootstrap, topic, 1_048_588)
    status, answer = await running.post("forms", form.encode(), headers)
    assert status == 202, answer
    lead = lead_id_for_email(KEY.encode(), "nova@example.io")
    landed = [e for _, e in await running.events()]
    assert [(e["lead_id"], e["type"]) for e in landed] == [
        (lead, "lead.created"),
        (lead, "lead.updated"),
        (lead, "activity"),
    ]
    assert [e["event_id"] for e in landed] == answer["event_ids"]


async def test_concurrent_requests_naming_one_new_person_create_one_lead(running: Running) -> None:
    """Requests about one person wait for each other from reading the identity table to storing what they
    learned (the broker round trips included); requests about other people go on meanwhile."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-www-form-urlencoded"}

    def form(email: str, n: int) -> bytes:
        return f"form_id=trial&email={email}&submission_id=sub-{n}".encode()

    same = [running.post("forms", form("rui%40example.io", n), headers) for n in range(6)]
    others = [running.post("forms", form(f"p{n}%40example.io", 100 + n), headers) for n in range(6)]
    answers = await asyncio.gather(*same, *others)
    assert [status for status, _ in answers] == [202] * 12
    created = [e["lead_id"] for _, e in await running.events() if e["type"] == "lead.created"]
    people = ["rui@example.io", *(f"p{n}@example.io" for n in range(6))]
    assert sorted(created) == sorted(lead_id_for_email(KEY.encode(), p) for p in people)


async def test_a_gateway_started_without_a_broker_answers_503_until_it_connects(tmp_path: Path) -> None:
    nowhere = Settings(broker=f"kafka://127.0.0.1:{free_port()}", embedded=True)
    config = gateway_settings()
    async for gateway in serve(nowhere, config, wait_ready=False):
        run = Running(gateway, f"http://127.0.0.1:{config.port}", Deployment.__new__(Deployment))
        assert (await run.get("/readyz"))[0] == 503
        assert (await run.post("canonical", orjson.dumps(envelope("e1")), BEARER))[0] == 503
        assert (await run.get("/healthz"))[0] == 200


async def test_an_event_over_the_workers_size_limit_is_422_not_accepted(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """The gateway reads each event as the worker will, under the worker's limit (LEADFLOW_MAX_EVENT_BYTES): an
    event the worker would dead-letter as too large is refused, not answered 202."""
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    config = gateway_settings()
    settings = deployment.settings().model_copy(update={"max_event_bytes": 1024})
    async for gateway in serve(settings, config):
        run = Running(gateway, f"http://127.0.0.1:{config.port}", deployment)
        small = envelope("e1", "crm-1", "activity", action="page_view", url="https://example.com/" + "a" * 100)
        large = envelope("e2", "crm-2", "activity", action="page_view", url="https://example.com/" + "a" * 1500)
        status, answer = await run.post("canonical", orjson.dumps(small), BEARER)
        assert status == 202, answer
        status, answer = await run.post("canonical", orjson.dumps(large), BEARER)
        assert status == 422, answer
        assert "1,024-byte limit" in answer["error"], answer
        events = await run.events()
        assert [e["event_id"] for _, e in events] == ["e1"]
