"""streams/runtime/channels.py against real protocol peers on loopback: an HTTP server recording Slack-, Teams-,
webhook- and HubSpot-shaped posts (and answering 429 and 500 when told), and an SMTP server that requires STARTTLS
and AUTH. Never the internet."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from notify_support import (
    SMTP_PASSWORD,
    RecordingServer,
    SmtpServer,
    handoff,
    notifications,
    policy_with,
    start_smtp,
)

from leadflow.core.delivery import Refused, Retry, Sent, check
from leadflow.core.messages import Renderer
from leadflow.core.notifications import notice_of
from leadflow.schemas.notifications import Delivery
from leadflow.schemas.policy import Policy
from leadflow.streams.runtime.channels import ChannelConfigError, Secrets, Transport, build_channels, check_secrets

SECRETS = {
    "LEADFLOW_NOTIFY_SECRET_TEAMS_URL": "",
    "LEADFLOW_NOTIFY_SECRET_SMTP_PASSWORD": SMTP_PASSWORD,
    "LEADFLOW_NOTIFY_SECRET_HUBSPOT_TOKEN": "pat-test-token",
    "LEADFLOW_NOTIFY_SECRET_HOOK_KEY": "hook-test-key",
}


@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    recording = RecordingServer()
    await recording.start()
    yield recording
    await recording.stop()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    running = start_smtp(tmp_path)
    yield running
    running.controller.stop()


def setup(server: RecordingServer, smtp_port: int = 2525, ca: Path | None = None) -> tuple[Policy, Secrets]:
    policy = policy_with(
        notifications(
            webhook=server.url("/hook"),
            hubspot=server.url("/hubspot"),
            smtp_port=smtp_port,
            ca_file=str(ca) if ca else None,
        )
    )
    env = {
        **SECRETS,
        "LEADFLOW_NOTIFY_SECRET_SLACK_URL": server.url("/slack/T000/B000/XXXX"),
        "LEADFLOW_NOTIFY_SECRET_TEAMS_URL": server.url("/teams/webhook"),
    }
    return policy, Secrets(environ=env)


def delivery(channel: str, recipient: str | None, policy: Policy) -> Delivery:
    notice = notice_of(handoff(hand_raiser=True), policy)
    assert notice is not None
    return Delivery(
        id=f"d-{channel}",
        channel=channel,
        recipient=recipient,
        kind="handoff",
        language="en",
        zone="America/Sao_Paulo",
        due=notice.occurred_at,
        notices=(notice,),
    )


async def send(policy: Policy, secrets: Secrets, channel: str, recipient: str | None) -> Sent | Retry | Refused:
    async with aiohttp.ClientSession() as session:
        channels = build_channels(policy.notifications, secrets, Transport(session, 5.0))
        target = channels[channel]
        d = delivery(channel, recipient, policy)
        message = Renderer().message(d, policy, target.spec.type, target.spec.is_private)
        return await target.send(d, message)


async def test_slack_through_slack_sdks_webhook_client(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    assert isinstance(await send(policy, secrets, "sales_slack", None), Sent)
    (post,) = server.received("/slack/T000/B000/XXXX")
    body = post.json()
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "actions"]
    assert post.headers["content-type"].startswith("application/json")
    assert "Acme" not in post.body.decode()  # a shared channel


async def test_a_429_is_retried_after_its_retry_after_and_a_500_is_retried(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    server.answer("/slack/T000/B000/XXXX", 429, {"Retry-After": "2"})
    server.answer("/slack/T000/B000/XXXX", 500)
    assert await send(policy, secrets, "sales_slack", None) == Retry("HTTP 429: failure", 2.0)
    result = await send(policy, secrets, "sales_slack", None)
    assert isinstance(result, Retry)
    assert result.after_s is None
    server.answer("/slack/T000/B000/XXXX", 404)  # Slack: no_service (a deleted webhook)
    assert isinstance(await send(policy, secrets, "sales_slack", None), Refused)


async def test_teams_receives_an_adaptive_card(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    assert isinstance(await send(policy, secrets, "managers_teams", None), Sent)
    (post,) = server.received("/teams/webhook")
    assert post.json()["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"


async def test_the_generic_webhook_is_signed_and_carries_its_delivery_id(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    assert isinstance(await send(policy, secrets, "automations", None), Sent)
    (post,) = server.received("/hook")
    timestamp, signature = post.headers["x-leadflow-timestamp"], post.headers["x-leadflow-signature"]
    assert check(b"hook-test-key", timestamp, post.body, signature, now_s=float(timestamp))
    assert not check(b"wrong-key", timestamp, post.body, signature, now_s=float(timestamp))
    assert post.headers["x-leadflow-delivery"] == "d-automations"
    assert post.json()["kind"] == "handoff"


async def test_a_hubspot_task_is_posted_to_the_tasks_api_with_the_token(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    assert isinstance(await send(policy, secrets, "crm", "rep-01"), Sent)
    (post,) = server.received("/hubspot/crm/v3/objects/tasks")
    assert post.headers["authorization"] == "Bearer pat-test-token"
    properties = post.json()["properties"]
    assert properties["hubspot_owner_id"] == "1001"
    assert properties["hs_task_subject"].startswith("New MQL for rep-01")


async def test_a_person_without_a_hubspot_owner_id_is_refused_without_a_request(server: RecordingServer) -> None:
    policy, secrets = setup(server)
    result = await send(policy, secrets, "crm", "someone-else")
    assert isinstance(result, Refused)
    assert "hubspot_owner_id" in result.reason
    assert server.posts == []


async def test_email_over_starttls_with_login(server: RecordingServer, smtp: SmtpServer) -> None:
    policy, secrets = setup(server, smtp.port, smtp.cert)
    assert isinstance(await send(policy, secrets, "email", "rep-01"), Sent)
    ((sender, recipients, mail),) = smtp.mailbox.messages
    assert sender == "leadflow@example.com"
    assert recipients == ["rep-01@example.com"]
    assert mail["Subject"].startswith("New MQL for rep-01: Acme Ltda")
    assert "make the first contact attempt by" in mail.get_payload(decode=True).decode()


# aiosmtpd cannot tell that an implicit-TLS socket is encrypted and warns that AUTH does not require TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_email_over_implicit_tls(server: RecordingServer, tmp_path: Path) -> None:
    smtp = start_smtp(tmp_path, implicit_tls=True)
    try:
        policy, secrets = setup(server, smtp.port, smtp.cert)
        document = policy.notifications.model_dump()
        assert document["channels"]["email"]["tls"] == "starttls"
        policy = policy_with(
            {
                **notifications(smtp_port=smtp.port, ca_file=str(smtp.cert)),
                "channels": {
                    **notifications(smtp_port=smtp.port, ca_file=str(smtp.cert))["channels"],
                    "email": {
                        **notifications(smtp_port=smtp.port, ca_file=str(smtp.cert))["channels"]["email"],
                        "tls": "tls",
                    },
                },
            }
        )
        assert isinstance(await send(policy, secrets, "email", "rep-02"), Sent)
        ((_, recipients, _),) = smtp.mailbox.messages
        assert recipients == ["rep-02@example.com"]
    finally:
        smtp.controller.stop()


async def test_a_wrong_smtp_password_is_refused_and_a_451_retried(server: RecordingServer, smtp: SmtpServer) -> None:
    policy, secrets = setup(server, smtp.port, smtp.cert)
    wrong = Secrets(environ={**secrets.environ, "LEADFLOW_NOTIFY_SECRET_SMTP_PASSWORD": "not-it"})
    refused = await send(policy, wrong, "email", "rep-01")
    assert isinstance(refused, Refused)
    assert refused.reason.startswith("SMTP 535")
    smtp.mailbox.temporary.add("rep-01@example.com")
    assert isinstance(await send(policy, secrets, "email", "rep-01"), Retry)
    assert smtp.mailbox.messages == []
    assert isinstance(await send(policy, secrets, "email", "rep-01"), Sent)


async def test_an_smtp_server_whose_certificate_is_not_trusted_is_not_sent_to(
    server: RecordingServer, smtp: SmtpServer
) -> None:
    policy, secrets = setup(server, smtp.port, ca=None)  # the system's CAs do not know the test certificate
    assert isinstance(await send(policy, secrets, "email", "rep-01"), Retry)
    assert smtp.mailbox.messages == []


def test_secrets_from_the_environment_or_a_file_and_a_missing_one_named(tmp_path: Path) -> None:
    (tmp_path / "leadflow_notify_secret_hook_key").write_text("from-a-file\n")
    secrets = Secrets(tmp_path, environ={"LEADFLOW_NOTIFY_SECRET_SLACK_URL": "https://hooks.slack.test/x"})
    assert secrets.get("slack_url") == "https://hooks.slack.test/x"
    assert secrets.get("hook_key") == "from-a-file"
    policy = policy_with(notifications())
    with pytest.raises(ChannelConfigError) as error:
        check_secrets(policy.notifications, secrets)
    message = str(error.value)
    assert "LEADFLOW_NOTIFY_SECRET_" in message
    assert "leadflow_notify_secret_" in message
    assert str(tmp_path) in message


def test_a_secret_quoted_in_an_error_is_redacted() -> None:
    secrets = Secrets(environ={"LEADFLOW_NOTIFY_SECRET_SLACK_URL": "https://hooks.slack.test/T1/B2/abc"})
    assert secrets.get("slack_url") is not None
    assert secrets.redact("InvalidURL: https://hooks.slack.test/T1/B2/abc (bad)") == "InvalidURL: *** (bad)"


async def test_even_at_debug_level_no_webhook_url_reaches_the_log(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    policy, secrets = setup(server)
    with caplog.at_level(logging.DEBUG):
        assert isinstance(await send(policy, secrets, "sales_slack", None), Sent)
    assert "/slack/T000/B000/XXXX" not in caplog.text
