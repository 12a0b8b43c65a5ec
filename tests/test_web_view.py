"""/leads/{id} shows a lead's personal fields only to a caller with the configured token (issue 13, item 5):
the pure filter (core.privacy) and the worker's view through the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from e2e import Deployment
from pydantic import ValidationError

from leadflow.core.decision import decide
from leadflow.core.privacy import PERSONAL_ATTRIBUTES, PERSONAL_FIELDS, is_authorized, public_view
from leadflow.schemas.events import EVENT_ADAPTER, PROFILE_ATTRIBUTES
from leadflow.schemas.policy import load_policy
from leadflow.schemas.state import RECORD_ADAPTER, LeadRecord, LeadState
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.runtime.settings import Settings

POLICY = load_policy()
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
TOKEN = "web-token-0123456789abcdef"
PERSONAL = {"email": "ana@example.com", "job_title": "Head of Growth", "company": "Acme Ltda"}
CODES = {"seniority": "vp", "company_size": 200, "industry": "saas", "country": "BR", "persona": "marketer"}


def created(lead_id: str = "lead-p", **data: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{lead_id}-created",
            "lead_id": lead_id,
            "type": "lead.created",
            "occurred_at": T0.isoformat(),
            "source": "test",
            "data": data,
        }
    )


def record_of(value: bytes) -> LeadRecord:
    return decide(None, EVENT_ADAPTER.validate_json(value), POLICY, T0 + timedelta(seconds=1)).record


RECORD = record_of(created(**PERSONAL, **CODES, phone="+55 11 5555-0100"))


# --- the filter --------------------------------------------------------------------------------------------------


def test_the_personal_fields_are_profile_attributes_the_lead_can_hold() -> None:
    assert set(PERSONAL_ATTRIBUTES) <= set(PROFILE_ATTRIBUTES)
    assert "profile.email" in PERSONAL_FIELDS
    assert RECORD.state is not None
    assert RECORD.state.profile.email == PERSONAL["email"]
    assert RECORD.state.profile.custom  # the phone, as a custom attribute


def test_without_authorization_the_personal_fields_are_removed() -> None:
    view = public_view(RECORD, authorized=False)
    profile = view["state"]["profile"]
    assert not set(PERSONAL) & set(profile)
    assert "custom" not in profile
    text = orjson.dumps(view).decode()
    for secret in [*PERSONAL.values(), "5555-0100"]:
        assert secret not in text
    assert view["withheld"] == ["profile.email", "profile.job_title", "profile.company", "profile.custom"]
    # What is not personal stays: codes routing and fit rules compare, the stage, scores, version and watermark.
    assert {key: profile[key] for key in CODES} == CODES
    assert view["state"]["stage"] == "lead"
    assert RECORD.state is not None
    assert view["state"]["fit"] == RECORD.state.fit > 0
    assert view["version"] == RECORD.version
    # The rest still reads as a lead state (the personal fields are optional).
    LeadState.model_validate(view["state"])


def test_with_authorization_the_full_record() -> None:
    view = public_view(RECORD, authorized=True)
    assert "withheld" not in view
    assert set(view) == {"state", "version", "watermark"}
    assert view == orjson.loads(RECORD_ADAPTER.dump_json(RECORD, include={"state", "version", "watermark"}))
    assert LeadState.model_validate(view["state"]) == RECORD.state


def test_withheld_names_only_what_the_lead_had() -> None:
    view = public_view(record_of(created(**CODES)), authorized=False)
    assert view["withheld"] == []
    assert {key: view["state"]["profile"][key] for key in CODES} == CODES


def test_the_filter_does_not_change_the_record() -> None:
    before = RECORD.model_dump()
    public_view(RECORD, authorized=False)
    assert RECORD.model_dump() == before


@pytest.mark.parametrize(
    ("header", "token", "expected"),
    [
        (f"Bearer {TOKEN}", TOKEN, True),
        (f"bearer {TOKEN}", TOKEN, True),  # the scheme is case-insensitive (RFC 9110)
        (f"  Bearer   {TOKEN} ", TOKEN, True),
        (f"Bearer {TOKEN}x", TOKEN, False),
        (f"Bearer {TOKEN[:-1]}", TOKEN, False),
        (TOKEN, TOKEN, False),  # no scheme
        (f"Basic {TOKEN}", TOKEN, False),
        ("Bearer ", TOKEN, False),
        (None, TOKEN, False),
        ("", TOKEN, False),
        # No token configured: nobody sees personal fields, whatever they send.
        ("Bearer ", None, False),
        ("Bearer ", "", False),
        ("Bearer None", None, False),
        (f"Bearer {TOKEN}", None, False),
    ],
)
def test_is_authorized(header: str | None, token: str | None, expected: bool) -> None:
    assert is_authorized(header, token) is expected


def test_the_web_token_setting() -> None:
    assert Settings().web_token is None
    assert Settings(web_token="   ").web_token is None  # compose's ${LEADFLOW_WEB_TOKEN:-} when unset
    configured = Settings(web_token=TOKEN)
    assert configured.web_token is not None
    assert configured.web_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(configured)
    assert configured.as_env()["LEADFLOW_WEB_TOKEN"] == TOKEN
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(web_token="short")


def test_the_web_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_WEB_TOKEN", TOKEN)
    token = Settings().web_token
    assert token is not None
    assert token.get_secret_value() == TOKEN


# --- through a worker and the real broker --------------------------------------------------------------------------


async def fetch(port: int, path: str, authorization: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response,
    ):
        body = await response.read()
        return response.status, orjson.loads(body) if body else None, dict(response.headers)


@pytest.mark.broker
@pytest.mark.parametrize("configured", [True, False], ids=["token-set", "no-token"])
async def test_the_worker_shows_personal_fields_only_with_the_token(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path, configured: bool
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    value = created("lead-web", **PERSONAL, **CODES)
    await deployment.produce([(b"lead-web", value)])
    env = {"LEADFLOW_WEB_TOKEN": TOKEN} if configured else {}
    worker = deployment.worker(**env).start()
    try:
        await deployment.wait_processed(worker)
        port = deployment.web_port
        anonymous = await fetch(port, "/leads/lead-web")
        wrong = await fetch(port, "/leads/lead-web", "Bearer not-the-token-0123456789")
        right = await fetch(port, "/leads/lead-web", f"Bearer {TOKEN}")
        missing = await fetch(port, "/leads/nobody", f"Bearer {TOKEN}")
        open_views = [await fetch(port, path) for path in ("/healthz", "/funnel")]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = (response.status, await response.text())
            async with session.get(f"http://127.0.0.1:{port}/funnel/leads") as response:
                summaries = (response.status, await response.text())
    finally:
        worker.stop()

    for status, view, headers in (anonymous, wrong):
        assert status == 200
        assert not set(PERSONAL) & set(view["state"]["profile"])
        assert view["withheld"] == ["profile.email", "profile.job_title", "profile.company"]
        assert view["state"]["profile"]["seniority"] == "vp"
        assert headers["Cache-Control"] == "no-store"
    status, view, _ = right
    assert status == 200
    if configured:
        assert "withheld" not in view
        assert {key: view["state"]["profile"][key] for key in PERSONAL} == PERSONAL
    else:  # no token configured: never, whatever the caller sends
        assert not set(PERSONAL) & set(view["state"]["profile"])
    assert missing[0] == 404
    # The open views answer without a token and carry no personal data.
    assert [status for status, _, _ in open_views] == [200, 200]
    assert metrics[0] == summaries[0] == 200
    everything_open = orjson.dumps([body for _, body, _ in open_views]).decode() + metrics[1] + summaries[1]
    assert "lead-web" in summaries[1]  # the summaries are there (so the check below means something)
    for secret in PERSONAL.values():
        assert secret not in everything_open
