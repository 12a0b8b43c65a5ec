"""core/messages.py: what people read, in their language and their team's time zone, without personal data in
shared channels; each channel's documented shape; operator overrides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from notify_support import T0, breach, escalated, handoff, notifications, policy_with, warning

from leadflow.core.messages import (
    Renderer,
    TemplateProblem,
    email_message,
    hubspot_task,
    slack_payload,
    teams_payload,
    webhook_payload,
)
from leadflow.core.notifications import digests_due, notice_of, plan
from leadflow.schemas.notifications import Delivery, PendingItem
from leadflow.schemas.outputs import HandOff, SlaOutput

POLICY = policy_with(notifications())
RENDERER = Renderer()


def delivery_for(output: HandOff | SlaOutput, language: str = "en", kind: str | None = None) -> Delivery:
    notice = notice_of(output, POLICY)
    assert notice is not None
    return Delivery(
        id="d-1",
        channel="email",
        recipient=notice.owner_id,
        kind=kind or notice.kind,  # type: ignore[arg-type]
        language=language,
        zone="America/Sao_Paulo",
        due=T0,
        notices=(notice,),
    )


def test_a_handoff_says_what_to_do_by_when_in_the_team_zone_why_and_the_crm_link() -> None:
    message = RENDERER.message(delivery_for(handoff(hand_raiser=True)), POLICY, "email", private=True)
    assert message.subject == "New MQL for rep-01: Acme Ltda (CFO, 1200, BR)"
    # 13:15 UTC is 10:15 in São Paulo (UTC-3)
    assert "make the first contact attempt by Mon 7 Dec, 10:15 (America/Sao_Paulo)" in message.body
    assert "Why it qualified: they raised a hand (demo_request)." in message.body
    assert "mql_acceptance by Mon 7 Dec, 18:00" in message.body
    assert "Still to find out: industry." in message.body
    assert message.link == "https://crm.example.com/leads/lead-1"


@pytest.mark.parametrize(
    ("language", "subject", "action", "date"),
    [
        ("pt-BR", "Novo MQL para rep-01", "fazer a primeira tentativa de contato até", "seg. 7 dez., 12:00"),
        ("es", "Nuevo MQL para rep-01", "hacer el primer intento de contacto antes de", "lun 7 dic, 12:00"),
        ("en", "New MQL for rep-01", "make the first contact attempt by", "Mon 7 Dec, 12:00"),
    ],
)
def test_every_language_has_its_words_and_its_dates(language: str, subject: str, action: str, date: str) -> None:
    message = RENDERER.message(delivery_for(handoff(), language), POLICY, "email", private=True)
    assert message.subject.startswith(subject)
    assert action in message.body
    assert date in message.body


@pytest.mark.parametrize("language", ["en", "pt-BR", "es"])
@pytest.mark.parametrize("kind", ["warning", "breach", "escalation"])
def test_every_kind_renders_in_every_language(language: str, kind: str) -> None:
    output = {"warning": warning, "breach": breach, "escalation": escalated}[kind]()
    message = RENDERER.message(delivery_for(output, language), POLICY, "slack", private=False)
    assert message.subject
    assert "lead-1" in message.subject + message.body
    assert "{{" not in message.body


def test_shared_channels_never_show_personal_fields() -> None:
    output = handoff(profile={"company": "Acme Ltda", "job_title": "CFO", "company_size": 1200, "country": "BR"})
    shared = RENDERER.message(delivery_for(output), POLICY, "slack", private=False)
    private = RENDERER.message(delivery_for(output), POLICY, "email", private=True)
    assert "Acme" not in shared.subject + shared.body
    assert "CFO" not in shared.subject + shared.body
    assert "lead-1" in shared.subject
    assert "Acme Ltda" in private.subject
    payload = webhook_payload(shared, delivery_for(output), private=False)
    assert payload["notices"][0]["profile"] == {"company_size": 1200, "country": "BR"}
    assert "Acme" not in str(payload)


def test_a_digest_lists_each_lead_with_its_action_and_deadline() -> None:
    items: list[PendingItem] = []
    for i, output in enumerate([warning(lead="a"), breach(lead="b"), warning(lead="c", sla="mql_acceptance")]):
        notice = notice_of(output, POLICY)
        assert notice is not None
        items += [p for p in plan(notice, POLICY, T0 + timedelta(seconds=i)) if isinstance(p, PendingItem)]
    (digest,) = digests_due(items, T0 + timedelta(days=1))
    message = RENDERER.message(digest, POLICY, "email", private=True)
    assert message.subject == "3 leads need your action"
    lines = message.body.splitlines()
    assert lines[0].startswith("- Overdue: b: accept or reject this MQL")
    assert any(line.startswith("- Due soon: a: make the first contact attempt by") for line in lines)
    assert "https://crm.example.com/leads/c" in message.body


def test_slack_blocks_escape_mrkdwn_and_carry_a_link_button() -> None:
    output = handoff(profile={"company_size": 10, "country": "BR", "segment": "<smb & co>"})
    message = RENDERER.message(delivery_for(output), POLICY, "slack", private=False)
    payload = slack_payload(message, mention="U123")
    header, section, actions = payload["blocks"]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith("<@U123> ")
    assert "&lt;smb &amp; co&gt;" in payload["text"]  # mrkdwn: escaped
    assert "<smb & co>" in header["text"]["text"]  # plain_text: as is
    assert actions["elements"][0]["url"] == "https://crm.example.com/leads/lead-1"


def test_teams_gets_an_adaptive_card_attachment() -> None:
    message = RENDERER.message(delivery_for(escalated()), POLICY, "teams", private=False)
    payload = teams_payload(message)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == message.subject
    assert card["actions"][0]["type"] == "Action.OpenUrl"


def test_a_hubspot_task_is_due_at_the_deadline_for_the_owner() -> None:
    delivery = delivery_for(handoff(hand_raiser=True))
    message = RENDERER.message(delivery, POLICY, "hubspot", private=True)
    task = hubspot_task(message, delivery, "1001")
    properties = task["properties"]
    assert properties["hs_timestamp"] == (T0 + timedelta(minutes=15)).isoformat()
    assert properties["hubspot_owner_id"] == "1001"
    assert properties["hs_task_priority"] == "HIGH"
    assert properties["hs_task_type"] == "CALL"
    assert properties["hs_task_status"] == "NOT_STARTED"
    assert "https://crm.example.com/leads/lead-1" in properties["hs_task_body"]


def test_an_email_has_a_stable_message_id() -> None:
    delivery = delivery_for(handoff())
    message = RENDERER.message(delivery, POLICY, "email", private=True)
    mail = email_message(message, delivery, "leadflow <leadflow@example.com>", "rep-01@example.com")
    assert mail["Message-ID"] == "<d-1@leadflow.notify>"
    assert mail["Subject"] == message.subject
    assert "Open in the CRM: https://crm.example.com/leads/lead-1" in mail.get_content()


def test_an_operator_template_overrides_the_shipped_one_per_channel_type(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "handoff.slack.j2").write_text("Baton for {{ n.owner }}\nCall {{ n.lead_id }} now.\n")
    renderer = Renderer(tmp_path)
    slack = renderer.message(delivery_for(handoff()), POLICY, "slack", private=False)
    email = renderer.message(delivery_for(handoff()), POLICY, "email", private=True)
    assert (slack.subject, slack.body) == ("Baton for rep-01", "Call lead-1 now.")
    assert email.subject.startswith("New MQL for rep-01")  # the shipped template still serves e-mail


def test_a_broken_override_is_a_template_problem_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "handoff.j2").write_text("Hi {{ n.no_such_field }}\n")
    with pytest.raises(TemplateProblem, match=r"en/handoff\.j2"):
        Renderer(tmp_path).message(delivery_for(handoff()), POLICY, "email", private=True)
