"""Senders: one per channel of the policy's notifications, each turning a rendered message into its service's
request and the answer into Sent, Retry or Refused (core/delivery.py). Payloads are built in core/messages.py.

- Slack: an incoming webhook through slack_sdk's AsyncWebhookClient (Block Kit blocks).
- Microsoft Teams: an incoming webhook (Workflows) with an Adaptive Card; no maintained async client exists for
  these, so a plain aiohttp post.
- E-mail: aiosmtplib (STARTTLS or implicit TLS, login, a CA bundle for a private CA).
- Generic webhook: a JSON post signed with HMAC-SHA256 (core/delivery.py `sign`), for n8n, Zapier, WhatsApp
  gateways and in-house tools.
- HubSpot: `POST /crm/v3/objects/tasks` with a private app's token (aiohttp: HubSpot's own Python client is
  synchronous); its base URL is configurable. Another CRM is another class with the same two methods.

Secrets (webhook URLs, tokens, keys, passwords) come from the environment or a secrets directory, never from the
policy, and are never logged: `describe` (used by --dry-run) names the secret, not its value.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, assert_never

import aiohttp
import aiosmtplib
import orjson
from slack_sdk.webhook.async_client import AsyncWebhookClient

from leadflow.core.delivery import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refused,
    Result,
    Retry,
    Sent,
    classify_http,
    classify_smtp,
    sign,
)
from leadflow.core.messages import Message, email_message, hubspot_task, slack_payload, teams_payload, webhook_payload
from leadflow.schemas.notifications import Delivery
from leadflow.schemas.policy import ChannelSpec, Notifications

HUBSPOT_API = "https://api.hubapi.com"
# slack_sdk logs the webhook URL (the secret) at debug level when its logger's level allows debug, which a logger
# left at NOTSET does: give it its own logger, never below WARNING, whatever level the notifier runs at.
QUIET_SLACK_LOG = logging.getLogger("leadflow.notify.slack_sdk")
QUIET_SLACK_LOG.setLevel(logging.WARNING)
TASKS_PATH = "/crm/v3/objects/tasks"
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class ChannelConfigError(ValueError):
    """A channel cannot be used as configured (a secret that is not set): one line naming the fix."""


class Secrets:
    """Secret values by name: the environment variable LEADFLOW_NOTIFY_SECRET_<NAME>, else the file
    leadflow_notify_secret_<name> in `directory` (Docker and Kubernetes secrets)."""

    def __init__(self, directory: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.environ = os.environ if environ is None else environ
        self.values: set[str] = set()  # every secret handed out, so that `redact` can hide it

    @staticmethod
    def variable(name: str) -> str:
        return f"LEADFLOW_NOTIFY_SECRET_{name.upper()}"

    def get(self, name: str) -> str | None:
        value = self.environ.get(self.variable(name), "").strip()
        if not value and self.directory is not None:
            path = self.directory / f"leadflow_notify_secret_{name}"
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
        if value:
            self.values.add(value)
        return value or None

    def redact(self, text: str) -> str:
        """`text` with every secret handed out replaced by ***: for a service's error, which may quote a URL."""
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def require(self, channel: str, name: str) -> str:
        value = self.get(name)
        if value is None:
            where = f" or the file leadflow_notify_secret_{name} in {self.directory}" if self.directory else ""
            raise ChannelConfigError(
                f"notifications.channels.{channel}.secret: {name} is not set: set {self.variable(name)}{where} "
                "(README, 'Notifications')"
            )
        return value


class Channel(Protocol):
    name: str
    spec: ChannelSpec

    async def send(self, delivery: Delivery, message: Message) -> Result: ...

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        """What would be sent, for --dry-run: the target (never a secret) and the payload."""
        ...


@dataclass
class Transport:
    """What every HTTP sender shares: one aiohttp session and the request timeout."""

    session: aiohttp.ClientSession
    timeout_s: float


async def _post(transport: Transport, url: str, body: bytes, headers: Mapping[str, str]) -> Result:
    try:
        async with transport.session.post(
            url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=transport.timeout_s)
        ) as answer:
            text = await answer.text(errors="replace")
            return classify_http(answer.status, text, answer.headers.get("Retry-After"), datetime.now(UTC))
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return Retry(f"{type(error).__name__}: {error}"[:200])


def _person(notifications: Notifications, delivery: Delivery) -> Any:
    return notifications.people.get(delivery.recipient) if delivery.recipient is not None else None


class SlackChannel:
    def __init__(self, name: str, spec: ChannelSpec, url: str, transport: Transport, notifications: Notifications):
        self.name, self.spec, self.notifications = name, spec, notifications
        self.transport = transport
        self.client = AsyncWebhookClient(
            url, timeout=int(max(1, transport.timeout_s)), session=transport.session, logger=QUIET_SLACK_LOG
        )

    def payload(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        person = _person(self.notifications, delivery)
        return slack_payload(message, mention=person.slack_user if person is not None else None)

    async def send(self, delivery: Delivery, message: Message) -> Result:
        try:
            answer = await self.client.send_dict(self.payload(delivery, message))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Retry(f"{type(error).__name__}: {error}"[:200])
        headers = answer.headers or {}
        retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        value = retry_after[0] if isinstance(retry_after, list) else retry_after
        return classify_http(answer.status_code, answer.body or "", value, datetime.now(UTC))

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        return {"target": f"Slack webhook (secret {self.spec.secret})", "payload": self.payload(delivery, message)}


class TeamsChannel:
    def __init__(self, name: str, spec: ChannelSpec, url: str, transport: Transport):
        self.name, self.spec, self.url, self.transport = name, spec, url, transport

    async def send(self, delivery: Delivery, message: Message) -> Result:
        body = orjson.dumps(teams_payload(message))
        return await _post(self.transport, self.url, body, {"Content-Type": "application/json"})

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        return {"target": f"Teams webhook (secret {self.spec.secret})", "payload": teams_payload(message)}


class WebhookChannel:
    def __init__(self, name: str, spec: ChannelSpec, key: str, transport: Transport):
        assert spec.url is not None  # the policy requires it
        self.name, self.spec, self.url, self.key, self.transport = name, spec, spec.url, key.encode(), transport

    def payload(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        return webhook_payload(message, delivery, self.spec.is_private)

    async def send(self, delivery: Delivery, message: Message) -> Result:
        body = orjson.dumps(self.payload(delivery, message))
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.key, timestamp, body),
            DELIVERY_HEADER: delivery.id,  # the same message always carries the same id: receivers can dedupe
        }
        return await _post(self.transport, self.url, body, headers)

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        target = self.url.split("?", 1)[0]  # a query string may carry a token
        return {"target": target, "payload": self.payload(delivery, message)}


class HubSpotChannel:
    def __init__(self, name: str, spec: ChannelSpec, token: str, transport: Transport, notifications: Notifications):
        self.name, self.spec, self.token, self.transport = name, spec, token, transport
        self.notifications = notifications
        self.url = (spec.url or HUBSPOT_API).rstrip("/") + TASKS_PATH

    def owner(self, delivery: Delivery) -> str | None:
        person = _person(self.notifications, delivery)
        return person.hubspot_owner_id if person is not None else None

    async def send(self, delivery: Delivery, message: Message) -> Result:
        owner = self.owner(delivery)
        if owner is None:
            return Refused(f"no HubSpot owner id for {delivery.recipient}: notifications.people.<id>.hubspot_owner_id")
        body = orjson.dumps(hubspot_task(message, delivery, owner))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        return await _post(self.transport, self.url, body, headers)

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        return {"target": f"POST {self.url}", "payload": hubspot_task(message, delivery, self.owner(delivery))}


class EmailChannel:
    def __init__(
        self, name: str, spec: ChannelSpec, password: str | None, timeout_s: float, notifications: Notifications
    ):
        assert spec.smtp_host is not None and spec.sender is not None  # noqa: PT018 - the policy requires both
        self.name, self.spec, self.password, self.timeout_s = name, spec, password, timeout_s
        self.notifications = notifications
        self.port = spec.smtp_port or SMTP_PORTS[spec.tls]
        self.context = ssl.create_default_context(cafile=spec.ca_file) if spec.tls != "none" else None

    def address(self, delivery: Delivery) -> str | None:
        if delivery.recipient is None:
            return self.spec.address
        person = _person(self.notifications, delivery)
        return person.email if person is not None else None

    async def send(self, delivery: Delivery, message: Message) -> Result:
        to = self.address(delivery)
        if to is None:
            return Refused(f"no e-mail address for {delivery.recipient}: notifications.people.<id>.email")
        assert self.spec.sender is not None
        mail = email_message(message, delivery, self.spec.sender, to)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.spec.smtp_host,
                port=self.port,
                username=self.spec.username,
                password=self.password if self.spec.username else None,
                use_tls=self.spec.tls == "tls",
                start_tls=self.spec.tls == "starttls",
                tls_context=self.context,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            worst = max(error.recipients, key=lambda r: r.code)
            return classify_smtp(worst.code, worst.message)
        except aiosmtplib.SMTPResponseException as error:
            return classify_smtp(error.code, error.message)
        except (aiosmtplib.SMTPException, TimeoutError, OSError) as error:
            return Retry(f"{type(error).__name__}: {error}"[:200])
        return Sent(f"SMTP accepted for {to}")

    def describe(self, delivery: Delivery, message: Message) -> dict[str, Any]:
        to = self.address(delivery)
        mail = email_message(message, delivery, self.spec.sender or "", to or "(no address)")
        return {
            "target": f"smtp://{self.spec.smtp_host}:{self.port} ({self.spec.tls})",
            "payload": {"to": to, "subject": message.subject, "body": mail.get_content()},
        }


def check_secrets(notifications: Notifications, secrets: Secrets) -> None:
    """Raise ChannelConfigError for the first secret a used channel needs and that is not set."""
    for name in dict.fromkeys(rule.channel for rule in notifications.rules):
        spec = notifications.channels[name]
        if spec.secret is not None and (spec.type != "email" or spec.username is not None):
            secrets.require(name, spec.secret)


def build_channels(
    notifications: Notifications, secrets: Secrets, transport: Transport, *, require_secrets: bool = True
) -> dict[str, Channel]:
    """A sender for every channel a rule uses. A secret that is not set raises ChannelConfigError naming the
    variable and the file to set (unless `require_secrets` is False: --dry-run shows what would be sent)."""
    used = dict.fromkeys(rule.channel for rule in notifications.rules)
    channels: dict[str, Channel] = {}
    for name in used:
        spec = notifications.channels[name]

        def secret(spec: ChannelSpec = spec, name: str = name) -> str:
            if spec.secret is None:
                return ""
            if not require_secrets:
                return secrets.get(spec.secret) or "http://dry-run.invalid/"
            return secrets.require(name, spec.secret)

        match spec.type:
            case "slack":
                channels[name] = SlackChannel(name, spec, secret(), transport, notifications)
            case "teams":
                channels[name] = TeamsChannel(name, spec, secret(), transport)
            case "webhook":
                channels[name] = WebhookChannel(name, spec, secret(), transport)
            case "hubspot":
                channels[name] = HubSpotChannel(name, spec, secret(), transport, notifications)
            case "email":
                password = secret() if spec.secret is not None else None
                channels[name] = EmailChannel(name, spec, password, transport.timeout_s, notifications)
            case unknown:
                assert_never(unknown)
    return channels
