"""Messages people read: a delivery rendered with its language's template, then shaped for its channel. Pure.

Templates are jinja2 files `<language>/<kind>.j2` (kind: handoff, warning, breach, escalation, digest) in
core/templates, or `<language>/<kind>.<channel type>.j2` for one channel type only; an operator's directory
(LEADFLOW_NOTIFY_TEMPLATES_DIR) holding a file of the same relative path overrides it. The first line a template
writes is the subject, the rest the body. Times are stated in the team calendar's time zone with babel, in the
reader's language. A channel that is not private (Slack, Teams, a webhook by default) never shows the lead's
personal fields (core/privacy.py: e-mail, job title, company).

Channel shapes follow each service's documented format: Slack incoming webhooks take `text` plus Block Kit
`blocks`; Teams incoming webhooks (Workflows) take a message with an Adaptive Card attachment; HubSpot's
`POST /crm/v3/objects/tasks` takes `properties`; e-mail is a plain-text MIME message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, TemplateError

from leadflow.core.privacy import PERSONAL_ATTRIBUTES
from leadflow.schemas.notifications import Delivery, Notice
from leadflow.schemas.policy import Policy

LOCALES = {"en": "en", "pt-BR": "pt_BR", "es": "es"}
LINK_LABELS = {"en": "Open in the CRM", "pt-BR": "Abrir no CRM", "es": "Abrir en el CRM"}
DATE_FORMAT = "EEE d MMM, HH:mm"
PUBLIC_FACTS = ("seniority", "company_size", "industry", "country", "segment", "persona")
PRIVATE_FACTS = ("job_title", *PUBLIC_FACTS)
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000


class TemplateProblem(ValueError):
    """A template that cannot be rendered (a typo in an operator's override): the delivery is dead-lettered."""


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    link: str | None
    link_label: str


class Renderer:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[Any] = [FileSystemLoader(str(override_dir))] if override_dir is not None else []
        loaders.append(PackageLoader("leadflow.core", "templates"))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=False,  # plain text; each channel escapes what its format needs
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def message(self, delivery: Delivery, policy: Policy, channel_type: str, private: bool) -> Message:
        language = delivery.language if delivery.language in LOCALES else "en"
        names = [f"{language}/{delivery.kind}.{channel_type}.j2", f"{language}/{delivery.kind}.j2"]
        link = crm_link(policy, delivery.notices[0].lead_id) if delivery.kind != "digest" else None
        context = {
            "kind": delivery.kind,
            "recipient": delivery.recipient,
            "channel": delivery.channel,
            "zone": delivery.zone,
            "n": notice_context(delivery.notices[0], policy, delivery.zone, language, private),
            "items": [notice_context(n, policy, delivery.zone, language, private) for n in delivery.notices],
            "link": link,
        }
        try:
            text = self.env.select_template(names).render(context)
        except TemplateError as error:
            raise TemplateProblem(f"template {names[-1]}: {error}") from error
        subject, _, body = text.strip().partition("\n")
        return Message(subject=subject.strip(), body=body.strip(), link=link, link_label=LINK_LABELS[language])


def crm_link(policy: Policy, lead_id: str) -> str | None:
    template = policy.notifications.crm_url
    return template.replace("{lead_id}", quote(lead_id, safe="")) if template else None


def when(at: datetime | None, zone: str, language: str) -> str:
    """A time as the reader says it, in the team's zone: `Mon 7 Dec, 14:00 (America/Sao_Paulo)`."""
    if at is None:
        return "-"
    text = format_datetime(at, DATE_FORMAT, tzinfo=ZoneInfo(zone), locale=LOCALES[language])
    return f"{text} ({zone})"


def notice_context(notice: Notice, policy: Policy, zone: str, language: str, private: bool) -> dict[str, Any]:
    handoff = notice.handoff
    profile: Mapping[str, str | int] = handoff.profile if handoff is not None else {}
    facts = [str(profile[key]) for key in (PRIVATE_FACTS if private else PUBLIC_FACTS) if key in profile]
    company = profile.get("company") if private else None
    score = handoff.score if handoff is not None else None
    return {
        "kind": notice.kind,
        "lead_id": notice.lead_id,
        "lead": str(company) if company else notice.lead_id,
        "facts": facts,
        "owner": notice.owner_id or "-",
        "manager": notice.manager_id or "-",
        "team": notice.team or "-",
        "pool": notice.pool or "-",
        "sla": notice.sla,
        "deadline": when(notice.deadline, zone, language),
        "percent": round(notice.fraction * 100) if notice.fraction is not None else None,
        "slas": [
            {"name": s.sla, "deadline": when(s.deadline, zone, language)}
            for s in sorted(handoff.slas, key=lambda s: s.deadline)
        ]
        if handoff is not None
        else [],
        "reason": score.mql_reason if score is not None else None,
        "hand_raiser": score.hand_raiser if score is not None else False,
        "fit": score.fit if score is not None else None,
        "engagement": score.engagement if score is not None else None,
        "actions": [action for action, _ in score.top_actions[:3]] if score is not None else [],
        "missing": list(handoff.missing_fields) if handoff is not None else [],
        "previous_owner": handoff.previous_owner_id if handoff is not None else None,
        "link": crm_link(policy, notice.lead_id),
        "private": private,
        "personal": [key for key in PERSONAL_ATTRIBUTES if key in profile] if private else [],
    }


# -- channel shapes ------------------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves &, < and > (https://api.slack.com/reference/surfaces/formatting#escaping).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message, mention: str | None = None) -> dict[str, Any]:
    """An incoming-webhook body: `text` (the notification's fallback) and Block Kit blocks."""
    body = _slack_escape(message.body)
    if mention:
        body = f"<@{mention}> {body}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:SLACK_HEADER_MAX]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:SLACK_SECTION_MAX] or "-"}},
    ]
    if message.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": message.link_label}, "url": message.link}
                ],
            }
        )
    return {"text": _slack_escape(message.subject), "blocks": blocks}


def teams_payload(message: Message) -> dict[str, Any]:
    """A Teams incoming-webhook body: a message whose attachment is an Adaptive Card (schema 1.4)."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": message.subject, "weight": "Bolder", "size": "Medium", "wrap": True},
            # TextBlock markdown needs a blank line for a line break
            {"type": "TextBlock", "text": message.body.replace("\n", "\n\n"), "wrap": True},
        ],
    }
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": message.link_label, "url": message.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def email_message(message: Message, delivery: Delivery, sender: str, to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = to
    # The same delivery always has the same Message-ID, so a mail system can drop a duplicate.
    mail["Message-ID"] = f"<{delivery.id}@leadflow.notify>"
    body = message.body + (f"\n\n{message.link_label}: {message.link}" if message.link else "")
    mail.set_content(body)
    return mail


def hubspot_task(message: Message, delivery: Delivery, owner_id: str | None) -> dict[str, Any]:
    """The body of HubSpot's `POST /crm/v3/objects/tasks`: a to-do due at the SLA deadline, for the owner."""
    notice = delivery.notices[0]
    deadline = notice.deadline or delivery.due
    urgent = delivery.kind in ("breach", "escalation") or (
        notice.handoff is not None and notice.handoff.score.hand_raiser
    )
    body = message.body + (f"\n\n{message.link_label}: {message.link}" if message.link else "")
    properties = {
        "hs_timestamp": deadline.isoformat(),
        "hs_task_subject": message.subject,
        "hs_task_body": body,
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH" if urgent else "MEDIUM",
        "hs_task_type": "CALL" if notice.sla == "first_contact" else "TODO",
    }
    if owner_id is not None:
        properties["hubspot_owner_id"] = owner_id
    return {"properties": properties}


def webhook_payload(message: Message, delivery: Delivery, private: bool) -> dict[str, Any]:
    """The generic webhook's JSON: the message as text plus the facts a machine needs (no personal field unless
    the channel is private)."""
    notices = []
    for notice in delivery.notices:
        data = notice.model_dump(mode="json", exclude={"handoff"})
        if notice.handoff is not None:
            profile = notice.handoff.profile
            keep = (*PRIVATE_FACTS, "company") if private else PUBLIC_FACTS
            data["profile"] = {key: profile[key] for key in keep if key in profile}
            data["slas"] = [s.model_dump(mode="json") for s in notice.handoff.slas]
            data["mql_reason"] = notice.handoff.score.mql_reason
        notices.append(data)
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "channel": delivery.channel,
        "recipient": delivery.recipient,
        "language": delivery.language,
        "subject": message.subject,
        "text": message.body,
        "link": message.link,
        "due": delivery.due.isoformat(),
        "notices": notices,
    }
