"""What the notifier's tests share: outputs as the worker writes them, policies with a notifications section, and
real protocol peers on loopback (an HTTP server that records Slack-, Teams-, webhook- and HubSpot-shaped posts and
answers what a test scripts, and an SMTP server with STARTTLS and AUTH)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from leadflow.schemas.outputs import (
    HandOff,
    HandOffSla,
    ScoreSummary,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaWarning,
)
from leadflow.schemas.policy import Policy, parse_policy
from leadflow.streams.dev.broker import free_port

T0 = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # Monday 10:00 in São Paulo: working time of inside_sales
SMTP_USER, SMTP_PASSWORD = "leadflow", "smtp-test-password"


def default_document() -> dict[str, Any]:
    text = resources.files("leadflow.schemas").joinpath("default_policy.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def policy_with(notifications: dict[str, Any], **sections: Any) -> Policy:
    document = default_document()
    document["notifications"] = notifications
    document.update(sections)
    return parse_policy(document, "test")


def handoff(
    lead: str = "lead-1",
    owner: str = "rep-01",
    pool: str | None = "enterprise",
    at: datetime = T0,
    *,
    hand_raiser: bool = False,
    profile: dict[str, str | int] | None = None,
    previous_owner: str | None = None,
    reason: str = "routed",
) -> HandOff:
    allowance = 900.0 if hand_raiser else 7200.0
    return HandOff.model_validate(
        {
            "id": f"handoff-{lead}-{owner}-{at.timestamp():.0f}",
            "lead_id": lead,
            "owner_id": owner,
            "team": "inside_sales",
            "pool": pool,
            "reason": reason,
            "previous_owner_id": previous_owner,
            "stage": "mql",
            "occurred_at": at,
            "slas": [
                HandOffSla(
                    sla="first_contact",
                    started_at=at,
                    deadline=at + timedelta(seconds=allowance),
                    allowance_s=allowance,
                    business=not hand_raiser,
                ),
                HandOffSla(
                    sla="mql_acceptance",
                    started_at=at,
                    deadline=at + timedelta(hours=8),
                    allowance_s=28800,
                    business=True,
                ),
            ],
            "score": ScoreSummary(
                fit=55,
                engagement=42,
                hand_raiser=hand_raiser,
                top_actions=(("demo_request", 30.0),) if hand_raiser else (("pricing_view", 30.0), ("page_view", 8.0)),
                mql_reason="hand_raiser" if hand_raiser else "score",
            ),
            "profile": profile
            if profile is not None
            else {"company": "Acme Ltda", "job_title": "CFO", "company_size": 1200, "country": "BR"},
            "missing_fields": ["industry"],
        }
    )


def _sla_fields(lead: str, sla: str, owner: str, pool: str, *, at: datetime, deadline: datetime) -> dict[str, Any]:
    return {
        "lead_id": lead,
        "sla": sla,
        "owner_id": owner,
        "team": "inside_sales",
        "pool": pool,
        "started_at": at - timedelta(hours=1),
        "deadline": deadline,
        "occurred_at": at,
    }


def warning(lead: str = "lead-1", sla: str = "first_contact", owner: str = "rep-01", at: datetime = T0) -> SlaWarning:
    fields = _sla_fields(lead, sla, owner, "enterprise", at=at, deadline=at + timedelta(hours=1))
    return SlaWarning(id=f"warn-{lead}-{sla}-{at.timestamp():.0f}", fraction=0.5, **fields)


def breach(
    lead: str = "lead-1", sla: str = "mql_acceptance", owner: str = "rep-01", at: datetime = T0, old: bool = False
) -> SlaBreached:
    fields = _sla_fields(lead, sla, owner, "enterprise", at=at, deadline=at)
    return SlaBreached(
        id=f"breach-{lead}-{sla}-{at.timestamp():.0f}", not_escalated="history" if old else None, **fields
    )


def escalated(lead: str = "lead-1", sla: str = "mql_acceptance", at: datetime = T0) -> SlaEscalated:
    fields = _sla_fields(lead, sla, "rep-01", "enterprise", at=at, deadline=at)
    return SlaEscalated(
        id=f"esc-{lead}-{sla}-{at.timestamp():.0f}",
        actions=("reassign", "notify"),
        manager_id="mgr-enterprise",
        **fields,
    )


def met(lead: str = "lead-1", sla: str = "first_contact", at: datetime = T0) -> SlaMet:
    fields = _sla_fields(lead, sla, "rep-01", "enterprise", at=at, deadline=at + timedelta(hours=1))
    return SlaMet(id=f"met-{lead}-{sla}", used_s=60.0, late=False, **fields)


def cancelled(lead: str = "lead-1", sla: str = "first_contact", at: datetime = T0) -> SlaCancelled:
    fields = _sla_fields(lead, sla, "rep-01", "enterprise", at=at, deadline=at + timedelta(hours=1))
    return SlaCancelled(id=f"cancel-{lead}-{sla}", reason="left:mql", **fields)


# -- an HTTP peer ---------------------------------------------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RecordingServer:
    """Records every POST; answers each path from its script (status, headers) in order, then 200 "ok"."""

    posts: list[Post] = field(default_factory=list)
    script: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=lambda: defaultdict(deque))
    always: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.script[path].append((status, headers or {}))

    def received(self, path: str) -> list[Post]:
        """Posts answered 2xx on a path (what the service accepted)."""
        return [p for p in self.posts if p.path == path and p.headers.get("x-test-status", "200").startswith("2")]

    async def start(self) -> None:
        async def record(request: web.Request) -> web.Response:
            path = request.path
            self.attempts[path] += 1
            status, headers = self.script[path].popleft() if self.script[path] else (self.always.get(path, 0), {})
            status = status or (201 if path.endswith("/crm/v3/objects/tasks") else 200)
            body = await request.read()
            self.posts.append(
                Post(path, {**{k.lower(): v for k, v in request.headers.items()}, "x-test-status": str(status)}, body)
            )
            if status == 201:
                return web.json_response({"id": str(len(self.posts)), "properties": {}}, status=201)
            return web.Response(status=status, text="ok" if status < 300 else "failure", headers=headers)

        app = web.Application()
        app.router.add_post("/{tail:.*}", record)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- an SMTP peer ---------------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


class Mailbox:
    """aiosmtpd handler: keeps every accepted message; a recipient in `temporary` is answered 451 once."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.temporary: set[str] = set()

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.temporary:
            self.temporary.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(data)))
        return "250 Message accepted for delivery"


def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    controller: Controller
    port: int
    cert: Path


def start_smtp(directory: Path, *, implicit_tls: bool = False) -> SmtpServer:
    """An SMTP server on loopback that requires TLS (STARTTLS, or implicit TLS as on port 465) before AUTH, and
    AUTH before mail."""
    cert, key = self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    mailbox = Mailbox()
    port = free_port()
    # aiosmtpd's auth_require_tls looks for a STARTTLS upgrade; an implicit-TLS socket is encrypted from the start
    tls: dict[str, Any] = (
        {"ssl_context": context, "auth_require_tls": False}
        if implicit_tls
        else {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    )
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_required=True, **tls
    )
    controller.start()
    return SmtpServer(mailbox, controller, port, cert)


async def eventually(predicate: Any, what: str, tries: int = 200, every_s: float = 0.05) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"not within {tries * every_s:.0f} s: {what}")


def notifications(
    *, slack: str = "http://127.0.0.1:9/slack", webhook: str = "http://127.0.0.1:9/hook", hubspot: str = "http://127.0.0.1:9",
    smtp_port: int = 2525, ca_file: str | None = None, rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A notifications section with every channel type; the URLs and the SMTP port point at test peers."""
    return {
        "language": "en",
        "timezone": "America/Sao_Paulo",
        "crm_url": "https://crm.example.com/leads/{lead_id}",
        "channels": {
            "sales_slack": {"type": "slack", "secret": "slack_url"},
            "managers_teams": {"type": "teams", "secret": "teams_url"},
            "email": {
                "type": "email",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "tls": "starttls",
                "username": SMTP_USER,
                "secret": "smtp_password",
                "sender": "leadflow <leadflow@example.com>",
                "ca_file": ca_file,
                "max_attempts": 3,
            },
            "crm": {"type": "hubspot", "secret": "hubspot_token", "url": hubspot, "max_attempts": 3},
            "automations": {"type": "webhook", "url": webhook, "secret": "hook_key", "max_attempts": 3},
        },
        "people": {
            **{f"rep-0{i}": {"email": f"rep-0{i}@example.com", "hubspot_owner_id": f"100{i}"} for i in range(1, 9)},
            "rep-04": {"email": "rep-04@example.com", "hubspot_owner_id": "1004", "language": "pt-BR"},
            "rep-06": {"email": "rep-06@example.com", "hubspot_owner_id": "1006", "language": "es"},
            "mgr-enterprise": {"email": "mgr-enterprise@example.com"},
            "mgr-latam": {"email": "mgr-latam@example.com"},
            "mgr-general": {"email": "mgr-general@example.com"},
        },
        "rules": rules
        if rules is not None
        else [
            {"kinds": ["handoff"], "to": ["owner"], "channel": "email", "quiet_hours": False},
            {"kinds": ["handoff"], "to": ["owner"], "channel": "crm", "quiet_hours": False},
            {"kinds": ["handoff"], "to": ["channel"], "channel": "sales_slack"},
            {"kinds": ["warning", "breach"], "to": ["owner"], "channel": "email", "cadence": "daily 08:30"},
            {"kinds": ["breach", "escalation"], "to": ["manager"], "channel": "email"},
            {"kinds": ["escalation"], "to": ["channel"], "channel": "managers_teams"},
            {"kinds": ["handoff", "breach"], "to": ["channel"], "channel": "automations", "quiet_hours": False},
        ],
    }
