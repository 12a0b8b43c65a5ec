"""`leadflow notify`: hand-offs and SLA warnings, breaches and escalations to people (issue 14).

A consumer group of its own on `leads.handoffs` and `leads.sla`. For each record: the pure core decides who hears
about it, where and when (core/notifications.py); messages due now are rendered (core/messages.py) and sent
(streams/runtime/channels.py), the others wait in a digest or for the end of quiet hours. Offsets are committed
only once every message of the batch is sent, dead-lettered, or durably parked: at-least-once from the topics.

What was sent, and what waits, is kept in a compacted topic, `leads.notifications.sent` (key `sent|<delivery id>`,
`pending|<bucket>|<notice id>`, `deferred|<delivery id>`), read whole at start: a record read again after a
restart finds its delivery marked sent and sends nothing, and digests survive restarts. A delivery's id is
derived from the notice, channel and recipient, so it is the same however often its record is read. The one
window left is a crash between a service's acceptance and the mark (milliseconds): webhooks and e-mails then
carry the same delivery id / Message-ID, so receivers can drop the duplicate.

Each channel sends one message at a time within the rate limits its service documents (core/delivery.py); a
429 or a 5xx is retried with exponential backoff (a 429 after its Retry-After), and a delivery that fails
`max_attempts` times, or is refused (a 4xx), goes to `leads.notifications.deadletter` and is counted
(LeadNotificationsFailing). GET /healthz, /readyz, /metrics on LEADFLOW_NOTIFY_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.core.delivery import RateLimiter, Refused, Result, Retry, Sent, backoff_s
from leadflow.core.intake import Origin, unreadable
from leadflow.core.messages import Renderer, TemplateProblem
from leadflow.core.notifications import digests_due, notice_of, plan, resolves
from leadflow.schemas.notifications import (
    NOTIFICATION_DEAD_LETTER_ADAPTER,
    PENDING_ADAPTER,
    SENT_ADAPTER,
    Delivery,
    NotificationDeadLetter,
    PendingItem,
    SentMark,
)
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, DeadLetter, HandOff, SlaOutput
from leadflow.schemas.policy import NOTICE_KINDS, Policy
from leadflow.streams.runtime.channels import Channel, Secrets, Transport, build_channels, check_secrets
from leadflow.streams.runtime.identity_store import IdentityStore
from leadflow.streams.runtime.producer import producer_options
from leadflow.streams.runtime.routes import KEEP_FOREVER, value_adapters
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import client_options, create_leadflow_topics, ensure_topics

log = logging.getLogger("leadflow.notify")

# Delivery latency buckets: seconds to a day, with the default policy's SLA allowances (15 min, 2 h, 8 h).
LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 28800, 86400)
KINDS = (*NOTICE_KINDS, "digest")
PRUNE_EVERY_S = 3600.0
MARK_KEPT_BEYOND_STALE = timedelta(days=8)  # a weekly digest waits up to 7 days


class NotifySettings(BaseSettings):
    """`leadflow notify` settings: environment variables LEADFLOW_NOTIFY_*. Channel secrets are read by name
    (streams/runtime/channels.py Secrets): LEADFLOW_NOTIFY_SECRET_<NAME> or files in LEADFLOW_NOTIFY_SECRETS_DIR."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_NOTIFY_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=6070, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    group_id: str = Field(default="leadflow-notify", description="the notifier's consumer group")
    topic_state: str = Field(default="leads.notifications.sent", description="what was sent and what waits")
    topic_deadletter: str = Field(default="leads.notifications.deadletter", description="deliveries given up")
    secrets_dir: Path | None = Field(default=None, description="a directory of secret files")
    templates_dir: Path | None = Field(default=None, description="operator templates overriding the shipped ones")
    backoff_base_s: float = Field(default=2.0, gt=0, description="wait before the first retry; doubles each time")
    backoff_max_s: float = Field(
        default=60.0, gt=0, description="longest wait between two attempts (the batch waits: keep it short)"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="longest wait for a service's answer")
    tick_s: float = Field(default=1.0, gt=0, description="how often due digests are looked for")
    max_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="a message its channel's rate limits hold back longer than this is parked in the state topic "
        "and sent when the limits allow, so a backlog on a slow channel never stalls the others",
    )


@dataclass
class NotifyMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.sent = Counter(
            "leadflow_notify_sent", "Messages delivered, by channel and kind", ["channel", "kind"], registry=r
        )
        self.failed = Counter(
            "leadflow_notify_failed",
            "Messages dead-lettered (refused, or failing every attempt), by channel and kind",
            ["channel", "kind"],
            registry=r,
        )
        self.retried = Counter(
            "leadflow_notify_retried",
            "Attempts retried (429, 5xx, timeouts), by channel and kind",
            ["channel", "kind"],
            registry=r,
        )
        self.skipped = Counter(
            "leadflow_notify_skipped",
            "Notices or deliveries not sent: duplicate (already sent), stale (history), resolved (no longer "
            "needs action), unreadable (a record that is not a hand-off or an SLA output: dead-lettered)",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "leadflow_notify_delivery_latency_seconds",
            "From when a message was due to its delivery (retries and rate limits included)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.held = Counter(
            "leadflow_notify_held",
            "Messages parked because the channel's rate limits held them back (sent later, not lost)",
            ["channel"],
            registry=r,
        )
        self.pending = Gauge(
            "leadflow_notify_pending", "Notices waiting for a digest or the end of quiet hours", registry=r
        )
        self.ready = Gauge("leadflow_notify_ready", "1 when the notifier consumes and delivers", registry=r)


def decode(
    record: ConsumerRecord[bytes, bytes], topics: Mapping[str, TypeAdapter[Any]]
) -> HandOff | SlaOutput | DeadLetter:
    """A hand-off or an SLA output, by its topic's schema (`topics`: streams.runtime.routes.value_adapters), or the
    dead letter of a record that is neither (another version, a stray producer), with its bytes and what is wrong
    (logged by offset, never its content)."""
    try:
        output: HandOff | SlaOutput = topics[record.topic].validate_json(record.value or b"")
        return output
    except ValidationError as error:
        log.warning(
            "%s[%d]@%d is not a hand-off or an SLA output: dead-lettered", record.topic, record.partition, record.offset
        )
        return unreadable(
            error, Origin(record.key, record.value, record.topic, record.partition, record.offset, datetime.now(UTC))
        )


class Notifier:
    def __init__(
        self,
        settings: Settings,
        notify: NotifySettings,
        policy: Policy,
        *,
        dry_run: bool = False,
        out: TextIO = sys.stdout,
        secrets: Secrets | None = None,
    ) -> None:
        self.settings, self.config, self.policy, self.dry_run, self.out = settings, notify, policy, dry_run, out
        self.secrets = secrets or Secrets(notify.secrets_dir)
        if not dry_run:
            check_secrets(policy.notifications, self.secrets)  # before anything starts: one line naming the fix
        self.metrics = NotifyMetrics()
        self.renderer = Renderer(notify.templates_dir)
        self.state = IdentityStore(settings.bootstrap, notify.topic_state, client_options(settings))
        self.topics = value_adapters(settings, ("handoffs", "sla"))
        self.channels: dict[str, Channel] = {}
        self.limiters: dict[str, RateLimiter] = {}
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.session: aiohttp.ClientSession | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.stopping = asyncio.Event()
        self.ready = False
        for channel in policy.notifications.channels:
            for kind in KINDS:
                for counter in (self.metrics.sent, self.metrics.failed, self.metrics.retried):
                    counter.labels(channel, kind)
        for reason in ("duplicate", "stale", "resolved", "unreadable"):
            self.metrics.skipped.labels(reason)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        transport = Transport(self.session, self.config.timeout_s)
        self.channels = build_channels(
            self.policy.notifications, self.secrets, transport, require_secrets=not self.dry_run
        )
        self.limiters = {
            name: RateLimiter([(w.seconds, w.max) for w in channel.spec.limits])
            for name, channel in self.channels.items()
        }
        if not self.dry_run:
            await create_leadflow_topics(self.settings)
            await ensure_topics(
                self.settings.bootstrap,
                {self.config.topic_state: 1, self.config.topic_deadletter: 1},
                compacted={self.config.topic_state},
                configs={self.config.topic_deadletter: KEEP_FOREVER},
                replication_factor=self.settings.replication_factor,
                min_insync_replicas=self.settings.min_insync_replicas,
                client=client_options(self.settings),
            )
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap,
                **producer_options(embedded=self.settings.embedded, settings=self.settings),
            )
            await self.producer.start()
            await self.state.start()
        elif await self._state_exists():
            await self.state.start()  # read only: a dry run shows what is already sent as such
        fast = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000} if self.settings.fast_group else {}
        self.consumer = AIOKafkaConsumer(
            *(() if self.dry_run else self.topics),  # a dry run reads at the group's offsets without joining it
            bootstrap_servers=self.settings.bootstrap,
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # a batch is committed once delivered: retries with backoff may take minutes (rate limits never do:
            # a message held back longer than max_wait_s is parked instead)
            max_poll_interval_ms=900_000,
            **fast,
            **client_options(self.settings),
        )
        await self.consumer.start()
        if self.dry_run:
            self.consumer.assign(await self._partitions())
        self.metrics.pending.set(len(self.pending()) + len(self.deferred()))
        self.metrics.ready.set(1)
        self.ready = True
        log.info(
            "notifying through %s; %d sent marks and %d waiting notices restored",
            ", ".join(f"{n} ({c.spec.type})" for n, c in self.channels.items()) or "no channel (no rules)",
            sum(1 for k in self.state.table if k.startswith("sent|")),
            len(self.pending()) + len(self.deferred()),
        )

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of the hand-offs and SLA topics (those that exist), for a dry run's manual assignment."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap, **client_options(self.settings))
        await admin.start()
        try:
            described = await admin.describe_topics(list(self.topics))
        finally:
            await admin.close()
        return [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        ]

    async def _state_exists(self) -> bool:
        probe = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, **client_options(self.settings))
        await probe.start()
        try:
            return self.config.topic_state in await probe.topics()
        finally:
            await probe.stop()

    async def stop(self) -> None:
        self.metrics.ready.set(0)
        self.ready = False
        if self.consumer is not None:
            await asyncio.gather(self.consumer.stop(), return_exceptions=True)
            self.consumer = None
        await self.state.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- state ------------------------------------------------------------------------------------------------

    def is_done(self, delivery_id: str) -> bool:
        return f"sent|{delivery_id}" in self.state.table

    def pending(self) -> dict[str, PendingItem]:
        return {
            key: PENDING_ADAPTER.validate_json(value)
            for key, value in self.state.table.items()
            if key.startswith("pending|")
        }

    def deferred(self) -> dict[str, Delivery]:
        return {
            key: Delivery.model_validate_json(value)
            for key, value in self.state.table.items()
            if key.startswith("deferred|")
        }

    async def write(self, entries: dict[str, str]) -> None:
        if self.dry_run or not entries:
            self.state.table.update(entries)
            return
        assert self.producer is not None
        await self.state.remember(self.producer, entries)

    async def drop(self, keys: Iterable[str]) -> None:
        keys = [k for k in keys if k in self.state.table]
        if self.dry_run or not keys:
            for key in keys:
                self.state.table.pop(key, None)
            return
        assert self.producer is not None
        await self.state.forget(self.producer, keys)

    # -- the loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume, deliver, commit, send due digests (and, hourly, forget old sent marks); until `stopping`."""
        assert self.consumer is not None
        next_prune = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_prune:
                await self.prune(datetime.now(UTC))
                next_prune = time.monotonic() + PRUNE_EVERY_S
            batches = await self.consumer.getmany(timeout_ms=int(self.config.tick_s * 1000), max_records=500)
            records = [record for batch in batches.values() for record in batch]
            await self.handle(records, datetime.now(UTC))
            if records and not self.dry_run:
                await self.consumer.commit({tp: batch[-1].offset + 1 for tp, batch in batches.items() if batch})
            await self.send_due(datetime.now(UTC))

    async def prune(self, now: datetime) -> int:
        """Tombstone sent marks nothing can ask about any more: a record that old is stale (it plans nothing), and
        the longest a digest waits is a week. Keeps the state topic, and the table read at start, bounded."""
        horizon = now - timedelta(seconds=self.policy.notifications.stale_after_seconds) - MARK_KEPT_BEYOND_STALE
        old = [
            key
            for key, value in self.state.table.items()
            if key.startswith("sent|") and SENT_ADAPTER.validate_json(value).at < horizon
        ]
        await self.drop(old)
        return len(old)

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]], now: datetime) -> None:
        """Plan every record's messages; park digests and quiet-hour messages durably; send what is due."""
        due: dict[str, Delivery] = {}
        parked: dict[str, str] = {}
        resolved: list[str] = []
        pending = self.pending()
        for record in records:
            output = decode(record, self.topics)
            if isinstance(output, DeadLetter):
                self.metrics.skipped.labels("unreadable").inc()
                await self.send_dead_letter(output, record.key)
                continue
            for key, item in pending.items():
                if resolves(item, output):
                    resolved.append(key)
            notice = notice_of(output, self.policy)
            if notice is None:
                continue
            planned = plan(notice, self.policy, now)
            if (
                not planned
                and (now - notice.occurred_at).total_seconds() > self.policy.notifications.stale_after_seconds
            ):
                self.metrics.skipped.labels("stale").inc()
            for step in planned:
                if isinstance(step, PendingItem):
                    key = f"pending|{step.bucket}|{step.notice.id}"
                    parked[key] = PENDING_ADAPTER.dump_json(step).decode()
                    pending[key] = step
                elif step.due > now:
                    parked[f"deferred|{step.id}"] = step.model_dump_json()
                else:
                    due[step.id] = step
        self.metrics.skipped.labels("resolved").inc(len(set(resolved)))
        await self.write(parked)
        await self.drop(set(resolved))
        await self.deliver_all(due.values(), now)
        self.metrics.pending.set(len(self.pending()) + len(self.deferred()))

    async def send_due(self, now: datetime) -> None:
        pending = self.pending()
        digests = digests_due(pending.values(), now)
        deferred = {key: d for key, d in self.deferred().items() if (d.not_before or d.due) <= now}
        if not digests and not deferred:
            return
        await self.deliver_all([*digests, *deferred.values()], now)
        done = {d.id for d in digests if self.is_done(d.id)}
        buckets = {key for key, item in pending.items() if _digest_id(item) in done}
        parked_again = {k for k, d in deferred.items() if not self.is_done(d.id)}  # still held back
        await self.drop([*buckets, *(k for k in deferred if k not in parked_again)])
        self.metrics.pending.set(len(self.pending()) + len(self.deferred()))

    async def deliver_all(self, deliveries: Iterable[Delivery], now: datetime) -> None:
        """Every delivery, channels side by side, one message at a time within a channel (its rate limits)."""
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_channel[delivery.channel].append(delivery)

        async def one_channel(items: list[Delivery]) -> None:
            for delivery in items:
                await self.deliver(delivery)

        await asyncio.gather(*(one_channel(items) for items in by_channel.values()))

    async def deliver(self, delivery: Delivery) -> None:
        if self.is_done(delivery.id):
            self.metrics.skipped.labels("duplicate").inc()
            return
        channel = self.channels[delivery.channel]
        held = self.limiters[delivery.channel].wait_s(time.monotonic())
        if held > self.config.max_wait_s and not self.dry_run:
            not_before = datetime.now(UTC) + timedelta(seconds=held)
            parked = delivery.model_copy(update={"not_before": not_before})
            await self.write({f"deferred|{delivery.id}": parked.model_dump_json()})
            self.metrics.held.labels(delivery.channel).inc()
            return
        try:
            message = self.renderer.message(delivery, self.policy, channel.spec.type, channel.spec.is_private)
        except TemplateProblem as error:
            await self.dead_letter(delivery, channel, 0, str(error))
            return
        if self.dry_run:
            line: dict[str, Any] = {"delivery": delivery.id, "channel": delivery.channel, "type": channel.spec.type}
            line |= {"kind": delivery.kind, "recipient": delivery.recipient, "due": delivery.due.isoformat()}
            line |= channel.describe(delivery, message)
            self.out.write(orjson.dumps(line).decode() + "\n")
            self.out.flush()
            self.state.table[f"sent|{delivery.id}"] = "dry-run"
            return
        attempt, result = 0, None
        while attempt < channel.spec.max_attempts:
            attempt += 1
            result = await self.attempt(delivery, channel, message)
            if not isinstance(result, Retry):
                break
            if attempt < channel.spec.max_attempts:
                self.metrics.retried.labels(delivery.channel, delivery.kind).inc()
                wait = max(
                    backoff_s(attempt, self.config.backoff_base_s, self.config.backoff_max_s), result.after_s or 0
                )
                log.warning("%s: %s delivery %s: %s; retry %d in %.1f s", delivery.channel, delivery.kind,
                            delivery.id, self.secrets.redact(result.reason), attempt, wait)  # fmt: skip
                if result.after_s is not None and wait > self.config.max_wait_s:
                    # throttled for long (a 429's Retry-After): park it rather than hold the batch; not a failure
                    not_before = datetime.now(UTC) + timedelta(seconds=wait)
                    parked = delivery.model_copy(update={"not_before": not_before})
                    await self.write({f"deferred|{delivery.id}": parked.model_dump_json()})
                    self.metrics.held.labels(delivery.channel).inc()
                    return
                await asyncio.sleep(wait)
        match result:
            case Sent():
                mark = SentMark(status="sent", channel=delivery.channel, kind=delivery.kind, at=datetime.now(UTC))
                await self.write({f"sent|{delivery.id}": mark.model_dump_json()})
                self.metrics.sent.labels(delivery.channel, delivery.kind).inc()
                self.metrics.latency.labels(delivery.channel).observe(
                    max(0.0, (datetime.now(UTC) - delivery.due).total_seconds())
                )
            case Retry(reason=reason) | Refused(reason=reason):
                await self.dead_letter(delivery, channel, attempt, reason)
            case None:  # pragma: no cover - max_attempts >= 1
                raise AssertionError("no attempt made")

    async def attempt(self, delivery: Delivery, channel: Channel, message: Any) -> Result:
        """One send within the channel's rate limits; a 429's Retry-After pauses the whole channel."""
        limiter = self.limiters[delivery.channel]
        async with self.locks[delivery.channel]:
            wait = limiter.wait_s(time.monotonic())  # exact: nobody else sends on this channel meanwhile
            if wait > 0:
                await asyncio.sleep(wait)
            limiter.record(time.monotonic())
            result = await channel.send(delivery, message)
            if isinstance(result, Retry) and result.after_s is not None:
                limiter.pause(time.monotonic(), result.after_s)
            return result

    async def send_dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        """A record the notifier cannot read goes to the worker's dead-letter topic with its bytes, as the worker's
        own unreadable records do: nothing it consumes is dropped silently (a dry run writes nothing)."""
        if self.dry_run:
            return
        assert self.producer is not None
        await self.producer.send_and_wait(
            self.settings.topic_deadletter, key=key, value=DEAD_LETTER_ADAPTER.dump_json(letter)
        )

    async def dead_letter(self, delivery: Delivery, channel: Channel, attempts: int, error: str) -> None:
        error = self.secrets.redact(error)
        log.error("%s: %s delivery %s dead-lettered after %d attempts: %s", delivery.channel, delivery.kind,
                  delivery.id, attempts, error)  # fmt: skip
        now = datetime.now(UTC)
        letter = NotificationDeadLetter(
            id=delivery.id,
            channel=delivery.channel,
            channel_type=channel.spec.type,
            kind=delivery.kind,
            recipient=delivery.recipient,
            attempts=attempts,
            error=error,
            failed_at=now,
            delivery=delivery,
        )
        assert self.producer is not None
        await self.producer.send_and_wait(
            self.config.topic_deadletter,
            key=delivery.channel.encode(),
            value=NOTIFICATION_DEAD_LETTER_ADAPTER.dump_json(letter),
        )
        mark = SentMark(status="dead_lettered", channel=delivery.channel, kind=delivery.kind, at=now)
        await self.write({f"sent|{delivery.id}": mark.model_dump_json()})
        self.metrics.failed.labels(delivery.channel, delivery.kind).inc()

    async def dry_run_to_end(self) -> int:
        """--dry-run: read from the group's position to the current end, print each message that would be sent
        now, then the digests and quiet-hour messages as they would go out. Commits nothing, writes nothing."""
        assert self.consumer is not None
        assignment = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(assignment) if assignment else {}
        read = 0
        while any([await self.consumer.position(tp) < end for tp, end in ends.items()]):
            batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            records = [record for batch in batches.values() for record in batch]
            read += len(records)
            await self.handle(records, datetime.now(UTC))
        later = [*digests_due(self.pending().values(), datetime.max.replace(tzinfo=UTC)), *self.deferred().values()]
        await self.deliver_all(later, datetime.now(UTC))
        return read


def _digest_id(item: PendingItem) -> str:
    from leadflow.core.ids import output_id

    return output_id("digest", item.bucket)


def web_app(notifier: Notifier) -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if notifier.ready:
            return web.json_response({"status": "ready", "channels": sorted(notifier.channels)})
        return web.json_response({"status": "not ready", "why": "connecting to the broker"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(notifier.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: Settings, notify: NotifySettings, policy: Policy, *, dry_run: bool = False) -> int:
    """Run until SIGINT/SIGTERM (the batch in hand is finished and committed first); --dry-run: to the end."""
    notifier = Notifier(settings, notify, policy, dry_run=dry_run)
    if dry_run:
        await notifier.start()
        try:
            read = await notifier.dry_run_to_end()
        finally:
            await notifier.stop()
        print(f"dry run: {read} records read; nothing sent, nothing committed", file=sys.stderr)
        return 0
    runner = web.AppRunner(web_app(notifier), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, notify.host, notify.port).start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, notifier.stopping.set)
    try:
        await _retrying(notifier, notifier.stopping)
        if not notifier.stopping.is_set():
            await notifier.run()
    finally:
        await notifier.stop()
        await runner.cleanup()
    log.info("stopped")
    return 0


async def _retrying(notifier: Notifier, stopping: asyncio.Event) -> None:
    """Start, retrying while the broker is unreachable (the compose stack starts everything at once)."""
    from aiokafka.errors import KafkaError

    delay = 0.5
    while not stopping.is_set():
        try:
            await notifier.start()
            return
        except (KafkaError, OSError, TimeoutError) as error:
            log.warning("broker not reachable (%s); retrying in %.1f s", error, delay)
            await notifier.stop()  # leave nothing half open
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(delay * 2, 10.0)
