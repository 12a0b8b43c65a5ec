"""`leadflow ingest`: the front door. Marketing tools' webhooks in, canonical events on `leads.events` out.

POST /ingest/{source} (hubspot, rdstation, mautic, forms, canonical):
  unknown source 404 · source without a secret set 403 · body over the cap 413 · bad or missing signature 401 ·
  a payload the adapter cannot map, or an event the worker would refuse to read, 422 naming the field ·
  broker unreachable or not acknowledging 503 (Retry-After: the tool retries) · 202 once the broker acknowledged
  every event (acks=all). Nothing is produced for a request answered otherwise.
GET /healthz (the process is up), /readyz (producer connected and identity table loaded), /metrics.

The handler stays thin: authenticity (core/signature.py), mapping (core/adapters), identity (core/identity.py)
and validation (core/intake.py, the worker's own) are pure; this module sends and counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import ChainMap
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.core.adapters import Delivery, Draft, Rejection
from leadflow.core.adapters.registry import ADAPTERS
from leadflow.core.identity import Resolution, aliases_named, forget, resolve
from leadflow.core.ids import output_id
from leadflow.core.intake import decode
from leadflow.core.signature import Refusal, check_hubspot_v3, check_mautic, check_token
from leadflow.schemas.outputs import DeadLetter
from leadflow.schemas.policy import Policy
from leadflow.streams.runtime.identity_store import AliasLocks, IdentityStore
from leadflow.streams.runtime.producer import producer_options
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import client_options, create_leadflow_topics

log = logging.getLogger("leadflow.ingest")

SOURCES = tuple(ADAPTERS)  # the path names /ingest/{source} answers
Outcome = Literal["accepted", "unknown_source", "disabled", "too_large", "unauthorized", "unmappable", "unavailable"]


class GatewaySettings(BaseSettings):
    """`leadflow ingest` settings: environment variables LEADFLOW_INGEST_*, or files named after them (lower case,
    e.g. `leadflow_ingest_hubspot_client_secret`) in the directory `leadflow ingest --secrets-dir` names (Docker and
    Kubernetes secrets). Secrets are never logged."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_INGEST_", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger requests are answered 413")
    public_url: str | None = Field(
        default=None,
        description="the gateway's address as the tools call it (https://hooks.example.com), for HubSpot's "
        "signature, which covers the full URI; default: the request's scheme and Host header",
    )
    ack_timeout_s: float = Field(default=10.0, gt=0, description="longest wait for the broker before answering 503")
    identity_key: SecretStr | None = Field(default=None, description="key of the lead_id hash (required)")
    hubspot_client_secret: SecretStr | None = None
    mautic_secret: SecretStr | None = None
    rdstation_token: SecretStr | None = None
    forms_token: SecretStr | None = None
    canonical_token: SecretStr | None = None
    forms_public: bool = Field(
        default=False, description="accept web forms without a token (a browser posts them: a token would be public)"
    )


def load_gateway_settings(secrets_dir: Path | None = None) -> GatewaySettings:
    return GatewaySettings(_secrets_dir=secrets_dir)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "leadflow_ingest_requests", "Webhook requests by source and outcome", ["source", "outcome"], registry=r
        )
        self.events = Counter(
            "leadflow_ingest_events", "Canonical events produced by source and type", ["source", "type"], registry=r
        )
        self.rejections = Counter(
            "leadflow_ingest_rejections", "Requests refused, by source and reason", ["source", "reason"], registry=r
        )
        self.latency = Histogram(
            "leadflow_ingest_request_duration_seconds",
            "Time from request to answer (202 includes the broker's acknowledgement)",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ready = Gauge("leadflow_ingest_ready", "1 when the gateway can accept requests", registry=r)
        self.aliases = Gauge("leadflow_ingest_identity_aliases", "Aliases in the identity table", registry=r)


class Unavailable(Exception):
    """The broker did not acknowledge in time: answer 503 so the tool retries."""


class Gateway:
    def __init__(self, settings: Settings, gateway: GatewaySettings, policy: Policy) -> None:
        if gateway.identity_key is None or len(gateway.identity_key.get_secret_value()) < 16:
            raise ValueError(
                "LEADFLOW_INGEST_IDENTITY_KEY is not set (or under 16 characters): give the gateway a secret key "
                "(e.g. `openssl rand -hex 32`) "
                "for the lead_id hash, and keep it: another key gives every person another lead_id"
            )
        self.settings = settings
        self.config = gateway
        self.policy = policy
        self.key = gateway.identity_key.get_secret_value().encode()
        self.metrics = GatewayMetrics()
        self.identities = IdentityStore(settings.bootstrap, settings.topic_identities, client_options(settings))
        self.producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.alias_locks = AliasLocks()
        for source in SOURCES:
            for outcome in Outcome.__args__:  # type: ignore[attr-defined]
                self.metrics.requests.labels(source, outcome)

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.producer is not None and self.identities.loaded.is_set()

    async def start(self) -> None:
        """Connect in the background: until the broker answers, requests get 503 and /readyz says why."""
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap,
                request_timeout_ms=int(self.config.ack_timeout_s * 1000),
                **producer_options(embedded=self.settings.embedded, settings=self.settings),
            )
            connected = False
            try:
                await create_leadflow_topics(
                    self.settings
                )  # before any client touches them (streams/runtime/topics.py)
                await producer.start()
                await self.identities.start()
                connected = True
            except (KafkaError, OSError, TimeoutError) as error:
                log.warning("broker %s not reachable (%s); retrying in %.1f s", self.settings.bootstrap, error, delay)
            finally:
                if not connected:  # failed, or cancelled by stop(): leave nothing open
                    await asyncio.gather(producer.stop(), self.identities.stop(), return_exceptions=True)
            if connected:
                self.producer = producer
                self.metrics.ready.set(1)
                log.info("connected to %s; %d identity aliases", self.settings.bootstrap, len(self.identities.table))
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        self.metrics.ready.set(0)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        await self.identities.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    # -- requests ---------------------------------------------------------------------------------------------

    def secret(self, source: str) -> bytes | None:
        value: SecretStr | None = getattr(self.config, f"{source}_client_secret", None) or getattr(
            self.config, f"{source}_secret", None
        )
        value = value or getattr(self.config, f"{source}_token", None)
        secret = value.get_secret_value().encode() if value is not None else b""
        return secret or None  # an empty setting (compose's default) leaves the source disabled

    def authenticate(self, source: str, request: RequestParts, now_s: float) -> Refusal | None:
        if source == "forms" and self.config.forms_public and self.config.forms_token is None:
            return None
        secret = self.secret(source)
        if secret is None:
            return Refusal("disabled", f"{source} is not enabled here: set its secret (README, 'Webhook gateway')")
        match source:
            case "hubspot":
                uri = (self.config.public_url or request.origin).rstrip("/") + request.path_qs
                return check_hubspot_v3(
                    secret, method=request.method, uri=uri, body=request.body, headers=request.headers, now_s=now_s
                )
            case "mautic":
                return check_mautic(secret, request.body, request.headers)
            case _:
                return check_token(secret, request.headers, request.query)

    async def accept(self, source: str, request: RequestParts) -> tuple[int, dict[str, Any]]:
        """The answer (status, JSON body) to one webhook request; produces only on 202."""
        if source not in ADAPTERS:
            return 404, {"error": f"unknown source {source[:40]!r}; use one of: {', '.join(SOURCES)}"}
        refusal = self.authenticate(source, request, time.time())
        if refusal is not None:
            self.metrics.rejections.labels(source, f"auth_{refusal.reason}").inc()
            status = 403 if refusal.reason == "disabled" else 401
            return status, {"error": refusal.detail}
        if not self.ready:
            return 503, {"error": "not ready: the broker is not reachable yet; retry shortly"}
        delivery = Delivery(
            body=request.body,
            content_type=request.content_type,
            headers=request.headers,
            received_at=datetime.now(UTC),
            policy=self.policy,
        )
        adapted = ADAPTERS[source](delivery)
        if isinstance(adapted, Rejection):
            self.metrics.rejections.labels(source, "unmappable").inc()
            return 422, {"error": str(adapted), "field": adapted.field}
        async with self.alias_locks.holding(aliases_named(adapted, self.key)):
            records = self.envelopes(adapted, delivery.received_at)
            if isinstance(records, Rejection):
                self.metrics.rejections.labels(source, "invalid_event").inc()
                return 422, {"error": str(records), "field": records.field}
            envelopes, remember, forgotten = records
            # The events first, then the aliases: an alias stored before its lead.created is acknowledged would
            # let the tool's retry of a request answered 503 find the person known, send no lead.created, and
            # have its facts refused as unknown_lead. A failure between the two makes the retry send the same
            # lead.created again (same id: the worker drops it as a duplicate).
            await self.acknowledged(self.produce, envelopes)
            if remember:
                await self.acknowledged(self.identities.remember, remember)
            if forgotten:
                await self.acknowledged(self.identities.forget, forgotten)
        for envelope in envelopes:
            self.metrics.events.labels(source, envelope["type"]).inc()
        self.metrics.aliases.set(len(self.identities.table))
        return 202, {"accepted": len(envelopes), "event_ids": [e["event_id"] for e in envelopes]}

    def envelopes(
        self, drafts: tuple[Draft, ...], received_at: datetime
    ) -> tuple[list[dict[str, Any]], dict[str, str], list[str]] | Rejection:
        """Drafts -> envelopes with their lead_ids (merges first), checked as the worker will read them."""
        # Reads fall through to the gateway's table, this request's decisions stay in the overlay until stored: no
        # copy of a table that may hold millions of aliases.
        table: ChainMap[str, str] = ChainMap({}, self.identities.table)
        remember: dict[str, str] = {}
        forgotten: list[str] = []
        envelopes: list[dict[str, Any]] = []
        for i, draft in enumerate(drafts):
            who = resolve(draft.person, table, self.key)
            if who is None:
                return Rejection(f"(event {i})", "names no person: give an e-mail or the tool's contact id")
            self._learn(who, table, remember)
            envelopes += [merge_envelope(old, who.lead_id, draft) for old in who.merged]
            if who.is_new and draft.type not in NO_CREATE_BEFORE:
                envelopes.append(created_envelope(who.lead_id, draft))
            data = dict(draft.data)
            if draft.merged_into is not None:
                into = resolve(draft.merged_into, table, self.key)
                if into is None:
                    return Rejection(f"(event {i}).merged_into", "names no person")
                self._learn(into, table, remember)
                if into.lead_id == who.lead_id:
                    continue  # already one lead: nothing to merge
                for alias in (*draft.person.tool_ids,):
                    table[alias] = remember[alias] = into.lead_id
                data["into_lead_id"] = into.lead_id
            envelope = {
                "event_id": draft.event_id,
                "lead_id": who.lead_id,
                "type": draft.type,
                "occurred_at": draft.occurred_at.isoformat(),
                "source": draft.source,
                "data": data,
                **({"actor": dict(draft.actor)} if draft.actor else {}),
            }
            problem = invalid(envelope, received_at, self.settings.max_event_bytes)
            if problem is not None:
                return Rejection(f"(event {i}) {problem.split(':', 1)[0]}", problem.split(":", 1)[-1].strip())
            envelopes.append(envelope)
            if draft.type == "lead.erased":
                gone = forget(draft.person, table, self.key)
                forgotten += gone
                for alias in gone:
                    table.pop(alias, None)
                    remember.pop(alias, None)
        return envelopes, remember, forgotten

    @staticmethod
    def _learn(who: Resolution, table: MutableMapping[str, str], remember: dict[str, str]) -> None:
        table.update(who.remember)
        remember.update(who.remember)

    async def produce(self, producer: AIOKafkaProducer, envelopes: list[dict[str, Any]]) -> None:
        topic = self.settings.topic_events
        sends = [await producer.send(topic, key=e["lead_id"].encode(), value=orjson.dumps(e)) for e in envelopes]
        await asyncio.gather(*sends)

    async def acknowledged(self, write: Callable[[AIOKafkaProducer, Any], Awaitable[None]], what: Any) -> None:
        """`write(producer, what)` acknowledged by the broker within the timeout, else Unavailable (503)."""
        producer = self.producer
        if producer is None:
            raise Unavailable("no producer")
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                await write(producer, what)
        except (KafkaError, TimeoutError, OSError) as error:
            raise Unavailable(type(error).__name__) from error


# A conversion or a form names a person the tools may know and leadflow does not: their lead is created first
# (a lead.created for a lead that exists after all is refused as lead_exists, harmless). Not before these:
NO_CREATE_BEFORE = ("lead.created", "lead.erased", "lead.merged")


def created_envelope(lead_id: str, draft: Draft) -> dict[str, Any]:
    return {
        "event_id": output_id("identity", "created", draft.event_id),
        "lead_id": lead_id,
        "type": "lead.created",
        "occurred_at": draft.occurred_at.isoformat(),
        "source": draft.source,
        "data": {},
    }


def merge_envelope(old: str, into: str, draft: Draft) -> dict[str, Any]:
    """The identity step found two leads for one person: the tool id's lead merges into the e-mail's lead."""
    return {
        "event_id": output_id("identity", old, into),
        "lead_id": old,
        "type": "lead.merged",
        "occurred_at": draft.occurred_at.isoformat(),
        "source": "leadflow.identity",
        "data": {"into_lead_id": into},
    }


def invalid(envelope: dict[str, Any], received_at: datetime, max_bytes: int) -> str | None:
    """The worker's own reading of the record (core/intake.py), under the worker's size limit
    (LEADFLOW_MAX_EVENT_BYTES): the first problem, or None when it is valid."""
    key = str(envelope["lead_id"]).encode()
    read = decode(
        key, orjson.dumps(envelope), topic="ingest", partition=0, offset=0, received_at=received_at, max_bytes=max_bytes
    )
    return read.errors[0] if isinstance(read, DeadLetter) else None


@dataclass(frozen=True)
class RequestParts:
    """What authenticity checks and adapters read of an HTTP request."""

    method: str
    origin: str  # scheme://host as the caller addressed us
    path_qs: str
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    content_type: str


def web_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=gateway.config.max_body_bytes)

    async def ingest(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        label = source if source in SOURCES else "unknown"
        started = time.perf_counter()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            gateway.metrics.requests.labels(label, "too_large").inc()
            gateway.metrics.rejections.labels(label, "too_large").inc()
            return web.json_response(
                {"error": f"body over {gateway.config.max_body_bytes:,} bytes; send smaller batches"}, status=413
            )
        parts = RequestParts(
            method=request.method,
            origin=f"{request.headers.get('X-Forwarded-Proto', request.scheme)}://{request.host}",
            path_qs=request.path_qs,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query),
            content_type=request.content_type.lower(),
        )
        try:
            status, answer = await gateway.accept(source, parts)
        except Unavailable as error:
            log.warning("%s: broker did not acknowledge (%s): answered 503", label, error)
            status, answer = 503, {"error": "the broker did not acknowledge; retry later"}
        outcome: Outcome = {
            202: "accepted",
            404: "unknown_source",
            403: "disabled",
            401: "unauthorized",
            422: "unmappable",
        }.get(status, "unavailable")  # type: ignore[assignment]
        gateway.metrics.requests.labels(label, outcome).inc()
        if label != "unknown":
            gateway.metrics.latency.labels(label).observe(time.perf_counter() - started)
        headers = {"Retry-After": "5"} if status == 503 else None
        return web.json_response(answer, status=status, headers=headers)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if gateway.ready:
            return web.json_response({"status": "ready", "identity_aliases": len(gateway.identities.table)})
        return web.json_response({"status": "not ready", "why": "connecting to the broker"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(gateway.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def lifecycle(_: web.Application) -> Any:
        await gateway.start()
        yield
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/ingest/{source}", ingest)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One line per request without the query string: `?token=` may carry a secret, and no header is logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.3fs", request.method, request.path, response.status, time)


def serve(settings: Settings, gateway_settings: GatewaySettings, policy: Policy) -> None:
    """Run until SIGINT/SIGTERM; on a signal, stop accepting, finish requests in flight (up to 30 s), then stop
    the producer (which flushes)."""
    gateway = Gateway(settings, gateway_settings, policy)
    enabled = [s for s in SOURCES if gateway.secret(s) is not None or (s == "forms" and gateway_settings.forms_public)]
    log.info("sources enabled: %s", ", ".join(enabled) or "none (set the secrets: README, 'Webhook gateway')")
    web.run_app(
        web_app(gateway),
        host=gateway_settings.host,
        port=gateway_settings.port,
        shutdown_timeout=30.0,
        access_log_class=PathOnlyAccessLogger,
        print=lambda line: log.info("%s", line),
    )
