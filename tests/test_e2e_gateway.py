"""End to end: tools' webhooks through the gateway (real HTTP on loopback) into the real broker, and a worker
process turning them into lifecycle transitions; one person across HubSpot, RD Station and Mautic is one lead."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from e2e import Deployment, read_topic
from test_e2e import final_table
from test_gateway import KEY, MAUTIC_SECRET, TOKEN, Running, gateway_settings, serve

from leadflow.core.identity import lead_id_for_email, lead_id_for_tool_id
from leadflow.schemas.outputs import TRANSITION_ADAPTER, StageChanged
from leadflow.schemas.policy import load_policy
from leadflow.streams.dev.broker import BrokerProcess

pytestmark = pytest.mark.broker

DATA = Path(__file__).parent / "data" / "webhooks"
ANA = "ana.lima@example.com"


def policy_with_forms(directory: Path) -> Path:
    """The shipped policy plus the Mautic form of the fixture as a demo request (a hand-raiser)."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text(encoding="utf-8"))
    document["forms"] = [
        {
            "source": "mautic",
            "id": "9",
            "persona": "operations_manager",
            "buying_stage": "decision",
            "action": "demo_request",
        }
    ]
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    load_policy(path)
    return path


def hubspot(event_id: int, object_id: int, kind: str, **fields: Any) -> bytes:
    return orjson.dumps(
        [
            {
                "eventId": event_id,
                "subscriptionId": 11,
                "portalId": 99,
                "appId": 5,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": kind,
                "attemptNumber": 0,
                "objectId": object_id,
                "changeSource": "CRM_UI",
                **fields,
            }
        ]
    )


def rdstation_conversion() -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {
            "event_type": "WEBHOOK.CONVERTED",
            "entity_type": "CONTACT",
            "event_identifier": "ebook-sla",
            "timestamp": now,
            "event_timestamp": now,
            "contact": {
                "uuid": "6a1d0f5e-0000-4000-8000-000000000001",
                "email": ANA.upper(),
                "name": "Ana Lima",
                "job_title": "Head of Operations",
                "company": {"name": "Lima Logística"},
                "cf_origem": "webinar",
                "funnel": {"name": "default", "lifecycle_stage": "Lead", "opportunity": False, "origin": "Orgânico"},
            },
        }
    )


async def test_one_person_across_tools_becomes_one_mql_and_a_form_hand_raiser_qualifies(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    policy = policy_with_forms(tmp_path)
    worker = deployment.worker("worker", LEADFLOW_POLICY=str(policy)).start()
    config = gateway_settings()
    try:
        async for gateway in serve(deployment.settings(), config, policy=load_policy(policy)):
            run = Running(gateway, f"http://127.0.0.1:{config.port}", deployment)

            async def post_hubspot(body: bytes, run: Running = run) -> dict[str, Any]:
                status, answer = await run.post("hubspot", body, run.hubspot_headers(body))
                assert status == 202, answer
                return answer

            await post_hubspot(hubspot(1, 501, "contact.creation", changeFlag="CREATED"))  # no e-mail yet
            status, answer = await run.post("rdstation", rdstation_conversion(), {"X-Leadflow-Token": TOKEN})
            assert status == 202, answer
            await post_hubspot(hubspot(2, 501, "contact.propertyChange", propertyName="email", propertyValue=ANA))
            stage = {"propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead"}
            mql = hubspot(3, 501, "contact.propertyChange", **stage)
            first = await post_hubspot(mql)
            again = await post_hubspot(mql)  # HubSpot retries: the same event ids, applied once
            assert first["event_ids"] == again["event_ids"]

            form = (DATA / "mautic_form_on_submit.json").read_bytes()
            signature = base64.b64encode(hmac.new(MAUTIC_SECRET.encode(), form, hashlib.sha256).digest()).decode()
            headers = {"Content-Type": "application/json", "Webhook-Signature": signature}
            status, answer = await run.post("mautic", form, headers)
            assert status == 202, answer
        await deployment.wait_all_committed(worker)
    finally:
        worker.stop()

    key = KEY.encode()
    ana, contact = lead_id_for_email(key, ANA), lead_id_for_tool_id(key, "hubspot:99:501")
    diana = lead_id_for_email(key, form_email(form))
    table = await final_table(deployment)
    ana_record, contact_record, diana_record = table[ana], table[contact], table[diana]
    assert ana_record is not None
    assert ana_record.state is not None
    assert contact_record is not None
    assert contact_record.state is not None
    assert diana_record is not None
    assert diana_record.state is not None
    # HubSpot's contact was a lead of its own until its e-mail linked it to RD Station's: merged, not lost.
    assert contact_record.state.merged_into == ana
    assert ana_record.state.stage == "mql"
    assert ana_record.state.profile.email == ANA
    assert ana_record.state.profile.job_title == "Head of Operations"
    assert ana_record.state.profile.custom.get("cf_origem") == "webinar"
    assert diana_record.state.stage == "mql"
    assert diana_record.state.profile.persona == "operations_manager"

    changes = [
        TRANSITION_ADAPTER.validate_json(value or b"")
        for _, value in await read_topic(broker.bootstrap, deployment.transitions)
    ]
    to_mql = [(c.lead_id, c.reason) for c in changes if isinstance(c, StageChanged) and c.to_stage == "mql"]
    assert sorted(to_mql) == sorted([(ana, "external"), (diana, "hand_raiser")])


def form_email(body: bytes) -> str:
    submission = orjson.loads(body)["mautic.form_on_submit"][0]["submission"]
    email = submission["lead"]["fields"]["core"]["email"]["value"]
    assert isinstance(email, str)
    return email
