"""Helpers for the adapter tests: a policy with forms, deliveries, and the canonical check of a draft."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from leadflow.core.adapters import Adapted, Delivery, Draft, Rejection
from leadflow.schemas.events import EVENT_ADAPTER, LeadEvent
from leadflow.schemas.policy import Policy, parse_policy

DATA = Path(__file__).parent / "data" / "webhooks"
RECEIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FORMS: list[dict[str, Any]] = [
    {
        "source": "hubspot",
        "name": "Demo request - pricing page",
        "action": "demo_request",
        "persona": "ops_manager",
        "buying_stage": "decision",
    },
    {
        "source": "rdstation",
        "id": "ebook-gestao-estoque",
        "action": "content_download",
        "persona": "buyer",
        "buying_stage": "awareness",
        "fields": {"cf_numero_de_funcionarios": "company_size_band", "cf_segmento": "industry"},
    },
    {
        "source": "rdstation",
        "id": "contato-vendas",
        "action": "contact_sales",
        "fields": {"cargo": "seniority", "pais": "country"},
    },
    {
        "source": "mautic",
        "id": "9",
        "action": "demo_request",
        "persona": "marketing_lead",
        "fields": {"cargo": "job_title", "tamanho_empresa": "company_size", "pais": "country"},
    },
    {
        "source": "forms",
        "id": "trial-signup",
        "name": "Free trial",
        "persona": "developer",
        "buying_stage": "consideration",
        "fields": {"work_email": "email", "role": "job_title", "employees": "company_size", "nation": "country"},
    },
]


def policy_with_forms() -> Policy:
    text = resources.files("leadflow.schemas").joinpath("default_policy.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["forms"] = FORMS
    return parse_policy(document, "test policy")


POLICY = policy_with_forms()


def delivery(body: bytes | str | object, content_type: str = "application/json", policy: Policy = POLICY) -> Delivery:
    if isinstance(body, str):
        raw = body.encode()
    elif isinstance(body, bytes):
        raw = body
    else:
        raw = json.dumps(body).encode()
    return Delivery(body=raw, content_type=content_type, headers={}, received_at=RECEIVED, policy=policy)


def fixture(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def drafts(adapted: Adapted) -> tuple[Draft, ...]:
    assert not isinstance(adapted, Rejection), str(adapted)
    return adapted


def rejection(adapted: Adapted) -> Rejection:
    assert isinstance(adapted, Rejection), adapted
    return adapted


def envelope(draft: Draft, lead_id: str = "L-test") -> LeadEvent:
    """The draft as the gateway would produce it once identity set its lead_id: it must be a valid event."""
    data = dict(draft.data)
    if draft.type == "lead.merged":
        assert draft.merged_into is not None
        data["into_lead_id"] = "L-into"
    document: dict[str, Any] = {
        "event_id": draft.event_id,
        "lead_id": draft.person.lead_id or lead_id,
        "type": draft.type,
        "occurred_at": draft.occurred_at.isoformat(),
        "source": draft.source,
        "data": data,
    }
    if draft.actor is not None:
        document["actor"] = dict(draft.actor)
    return EVENT_ADAPTER.validate_json(json.dumps(document))


def valid(adapted: Adapted) -> tuple[Draft, ...]:
    found = drafts(adapted)
    for draft in found:
        envelope(draft)
    return found
