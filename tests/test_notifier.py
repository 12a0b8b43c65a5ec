"""streams/runtime/notifier.py through the real broker (Apache Kafka, the `broker` fixture) with real peers on loopback:
hand-offs reach the owner and the channels once, a breach reaches the manager, digests survive a restart and group
a rep's pending actions at their time, a failing channel is retried and then dead-lettered and counted, and a
record read again after a restart sends nothing twice."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from e2e import Deployment, read_partitions
from notify_support import (
    SMTP_PASSWORD,
    RecordingServer,
    SmtpServer,
    breach,
    default_document,
    eventually,
    handoff,
    met,
    notifications,
    policy_with,
    start_smtp,
    warning,
)
from prometheus_client import generate_latest

from leadflow.schemas.notifications import NOTIFICATION_DEAD_LETTER_ADAPTER, SentMark
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, HandOff, SlaOutput
from leadflow.schemas.policy import Policy, parse_policy
from leadflow.streams.dev.broker import BrokerProcess, free_port
from leadflow.streams.runtime.channels import Secrets
from leadflow.streams.runtime.notifier import Notifier, NotifySettings

pytestmark = pytest.mark.broker

SLACK = "/slack/T000/B000/XXXX"
TASKS = "/hubspot/crm/v3/objects/tasks"


@dataclass
class Peers:
    http: RecordingServer
    smtp: SmtpServer

    def secrets(self) -> dict[str, str]:
        return {
            "LEADFLOW_NOTIFY_SECRET_SLACK_URL": self.http.url(SLACK),
            "LEADFLOW_NOTIFY_SECRET_TEAMS_URL": self.http.url("/teams"),
            "LEADFLOW_NOTIFY_SECRET_SMTP_PASSWORD": SMTP_PASSWORD,
            "LEADFLOW_NOTIFY_SECRET_HUBSPOT_TOKEN": "pat-test-token",
            "LEADFLOW_NOTIFY_SECRET_HOOK_KEY": "hook-test-key",
        }

    def notifications(self, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return notifications(
            webhook=self.http.url("/hook"),
            hubspot=self.http.url("/hubspot"),
            smtp_port=self.smtp.port,
            ca_file=str(self.smtp.cert),
            rules=rules,
        )

    def emails_to(self, address: str) -> list[Any]:
        return [mail for _, rcpts, mail in self.smtp.mailbox.messages if address in rcpts]


# Every rule at once, day or night, so the test does not depend on the hour it runs at.
AT_ONCE = [
    {"kinds": ["handoff"], "to": ["owner"], "channel": "email", "quiet_hours": False},
    {"kinds": ["handoff"], "to": ["owner"], "channel": "crm", "quiet_hours": False},
    {"kinds": ["handoff"], "to": ["channel"], "channel": "sales_slack", "quiet_hours": False},
    {"kinds": ["breach", "escalation"], "to": ["manager"], "channel": "email", "quiet_hours": False},
    {"kinds": ["handoff", "breach"], "to": ["channel"], "channel": "automations", "quiet_hours": False},
    {"kinds": ["warning"], "to": ["owner"], "channel": "email", "cadence": "daily 08:30"},
]


@asynccontextmanager
async def running_peers(directory: Path) -> AsyncIterator[Peers]:
    """An HTTP server recording Slack-, Teams-, webhook- and HubSpot-shaped posts, and an SMTP server, on loopback."""
    http = RecordingServer()
    await http.start()
    smtp = start_smtp(directory)
    try:
        yield Peers(http, smtp)
    finally:
        smtp.controller.stop()
        await http.stop()


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    async with running_peers(tmp_path) as running:
        yield running


@pytest.fixture
def deployment(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    return Deployment(broker, unique_topic_prefix, tmp_path)


def notify_settings(deployment: Deployment, **extra: Any) -> NotifySettings:
    return NotifySettings(
        group_id=f"{deployment.app_id}-notify",
        topic_state=f"{deployment.prefix}notifications.sent",
        topic_deadletter=f"{deployment.prefix}notifications.deadletter",
        port=free_port(),
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        tick_s=0.2,
        **extra,
    )


@asynccontextmanager
async def running(deployment: Deployment, policy: Policy, peers: Peers, **extra: Any) -> AsyncIterator[Notifier]:
    notifier = Notifier(
        deployment.settings(), notify_settings(deployment, **extra), policy, secrets=Secrets(environ=peers.secrets())
    )
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        notifier.stopping.set()
        await asyncio.wait_for(task, 30)
        await notifier.stop()


async def produce(deployment: Deployment, outputs: list[HandOff | SlaOutput]) -> None:
    for output in outputs:
        topic = deployment.handoffs if isinstance(output, HandOff) else deployment.sla
        await deployment.produce([(output.lead_id.encode(), output.model_dump_json().encode())], topic=topic)


def metric(notifier: Notifier, name: str, **labels: str) -> float:
    value = notifier.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def committed(deployment: Deployment, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.broker.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def test_a_handoff_reaches_the_owner_and_the_channels_and_a_breach_the_manager(
    deployment: Deployment, peers: Peers
) -> None:
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))
    now = datetime.now(UTC)
    async with running(deployment, policy, peers) as notifier:
        await produce(deployment, [handoff(lead="lead-a", owner="rep-02", at=now), breach(lead="lead-b", at=now)])
        await eventually(lambda: len(peers.http.received("/hook")) == 2, "the webhook gets the hand-off and the breach")
        await eventually(lambda: peers.emails_to("mgr-enterprise@example.com"), "the manager's e-mail")
        await eventually(lambda: peers.emails_to("rep-02@example.com"), "the owner's e-mail")
        await eventually(lambda: peers.http.received(TASKS) and peers.http.received(SLACK), "the CRM task and Slack")
        await eventually(
            lambda: (
                metric(notifier, "leadflow_notify_sent_total", channel="email", kind="handoff") == 1
                and metric(notifier, "leadflow_notify_sent_total", channel="email", kind="breach") == 1
            ),
            "counted once sent",
        )
        assert "leadflow_notify_delivery_latency_seconds_bucket" in generate_latest(notifier.metrics.registry).decode()
        await eventually(lambda: notifier.consumer is not None, "running")
    (mail,) = peers.emails_to("rep-02@example.com")
    assert mail["Subject"].startswith("New MQL for rep-02")
    (manager_mail,) = peers.emails_to("mgr-enterprise@example.com")
    assert manager_mail["Subject"].startswith("SLA missed (mql_acceptance)")
    (task,) = peers.http.received(TASKS)
    assert task.json()["properties"]["hubspot_owner_id"] == "1002"
    assert len(peers.http.received(SLACK)) == 1
    ends = await committed(deployment, f"{deployment.app_id}-notify", deployment.handoffs)
    assert sum(ends.values()) == 1  # the hand-off's offset is committed once it was delivered


async def test_a_failing_channel_is_retried_then_dead_lettered_and_counted(
    deployment: Deployment, peers: Peers
) -> None:
    await deployment.create_topics()
    peers.http.always["/hook"] = 500  # the automations endpoint keeps failing
    peers.http.answer(SLACK, 429, {"Retry-After": "1"})  # Slack throttles once, then accepts
    policy = policy_with(peers.notifications(AT_ONCE))
    async with running(deployment, policy, peers) as notifier:
        await produce(deployment, [handoff(lead="lead-f", at=datetime.now(UTC))])
        await eventually(
            lambda: metric(notifier, "leadflow_notify_failed_total", channel="automations", kind="handoff") == 1,
            "the webhook's delivery dead-lettered",
        )
        await eventually(
            lambda: metric(notifier, "leadflow_notify_sent_total", channel="sales_slack", kind="handoff") == 1,
            "Slack after its Retry-After",
        )
        assert peers.http.attempts["/hook"] == 3  # max_attempts of the channel
        assert metric(notifier, "leadflow_notify_retried_total", channel="automations", kind="handoff") == 2
        assert metric(notifier, "leadflow_notify_retried_total", channel="sales_slack", kind="handoff") == 1
        assert len(peers.http.received(SLACK)) == 1
        assert peers.http.attempts[SLACK] == 2
    ((key, value),) = await read_partitions(
        deployment.broker.bootstrap, f"{deployment.prefix}notifications.deadletter", 1
    )
    letter = NOTIFICATION_DEAD_LETTER_ADAPTER.validate_json(value or b"")
    assert key == b"automations"
    assert (letter.channel, letter.channel_type, letter.attempts) == ("automations", "webhook", 3)
    assert letter.error.startswith("HTTP 500")
    assert letter.delivery.notices[0].lead_id == "lead-f"
    assert "hook-test-key" not in (value or b"").decode()


async def test_a_digest_survives_a_restart_and_groups_a_reps_pending_actions_at_its_time(
    deployment: Deployment, peers: Peers
) -> None:
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))
    now = datetime.now(UTC)
    outputs: list[HandOff | SlaOutput] = [warning(lead=f"lead-{i}", at=now) for i in range(4)]
    outputs += [warning(lead="lead-x", owner="rep-02", at=now), met(lead="lead-3", at=now)]  # lead-3 done
    async with running(deployment, policy, peers) as notifier:
        await produce(deployment, outputs)
        parked = {"lead-0", "lead-1", "lead-2", "lead-x"}  # lead-3's clock was met: resolved
        await eventually(lambda: {i.notice.lead_id for i in notifier.pending().values()} == parked, "parked")
        await eventually(lambda: metric(notifier, "leadflow_notify_skipped_total", reason="resolved") == 1, "met")
        (due,) = {item.due for item in notifier.pending().values()}
    assert peers.smtp.mailbox.messages == []  # nothing before the digest's time
    async with running(deployment, policy, peers) as restarted:
        assert len(restarted.pending()) == 4  # read back from the state topic
        await restarted.send_due(due - timedelta(seconds=1))
        assert peers.smtp.mailbox.messages == []
        await restarted.send_due(due)
        assert restarted.pending() == {}
    (digest,) = peers.emails_to("rep-01@example.com")
    assert digest["Subject"] == "3 leads need your action"
    body = digest.get_payload(decode=True).decode()
    assert "lead-0" in body
    assert "lead-3" not in body  # its first contact was made: nothing to do
    assert [m["Subject"] for m in peers.emails_to("rep-02@example.com")] == ["1 lead needs your action"]
    local = due.astimezone(ZoneInfo("America/Sao_Paulo"))
    assert (local.hour, local.minute) == (8, 30)


async def test_records_read_again_after_a_restart_send_nothing_twice(deployment: Deployment, peers: Peers) -> None:
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))
    group = f"{deployment.app_id}-notify"
    async with running(deployment, policy, peers):
        await produce(deployment, [handoff(lead="lead-r", at=datetime.now(UTC))])
        await eventually(lambda: len(peers.http.received("/hook")) == 1, "first delivery")
        await eventually(lambda: peers.emails_to("rep-01@example.com"), "first e-mail")
    # As if it had crashed after sending and before committing: the group's offsets go back to the start.
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.broker.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(deployment.handoffs, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()
    assert sum((await committed(deployment, group, deployment.handoffs)).values()) == 0
    async with running(deployment, policy, peers) as restarted:
        await produce(deployment, [handoff(lead="lead-s", at=datetime.now(UTC))])
        await eventually(lambda: len(peers.http.received("/hook")) == 2, "the new hand-off")
        await eventually(lambda: len(peers.emails_to("rep-01@example.com")) == 2, "its e-mail")
        await eventually(
            lambda: metric(restarted, "leadflow_notify_skipped_total", reason="duplicate") == 4,
            "the first hand-off's four deliveries found already sent",
        )
    leads = [post.json()["notices"][0]["lead_id"] for post in peers.http.received("/hook")]
    assert leads == ["lead-r", "lead-s"]
    assert len(peers.http.received(SLACK)) == 2
    assert len(peers.http.received(TASKS)) == 2


async def test_dry_run_prints_what_would_be_sent_and_sends_nothing(deployment: Deployment, peers: Peers) -> None:
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))
    await produce(
        deployment, [handoff(lead="lead-d", at=datetime.now(UTC)), warning(lead="lead-w", at=datetime.now(UTC))]
    )
    out = io.StringIO()
    notifier = Notifier(
        deployment.settings(), notify_settings(deployment), policy, dry_run=True, out=out, secrets=Secrets(environ={})
    )
    await notifier.start()
    try:
        assert await notifier.dry_run_to_end() == 2
    finally:
        await notifier.stop()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert sorted((line["channel"], line["kind"]) for line in lines) == [
        ("automations", "handoff"),
        ("crm", "handoff"),
        ("email", "digest"),
        ("email", "handoff"),
        ("sales_slack", "handoff"),
    ]
    slack = next(line for line in lines if line["channel"] == "sales_slack")
    assert slack["target"] == "Slack webhook (secret slack_url)"
    assert peers.http.posts == []
    assert peers.smtp.mailbox.messages == []
    assert sum((await committed(deployment, f"{deployment.app_id}-notify", deployment.handoffs)).values()) == 0


async def test_a_message_its_rate_limit_holds_back_is_parked_not_blocking(deployment: Deployment, peers: Peers) -> None:
    await deployment.create_topics()
    document = peers.notifications(AT_ONCE)
    document["channels"]["automations"]["rate"] = [{"seconds": 3600, "max": 1}]  # one an hour
    policy = policy_with(document)
    now = datetime.now(UTC)
    async with running(deployment, policy, peers) as notifier:
        await produce(deployment, [handoff(lead="lead-1st", at=now), handoff(lead="lead-2nd", at=now)])
        await eventually(lambda: len(peers.emails_to("rep-01@example.com")) == 2, "both e-mails, not held up")
        await eventually(lambda: len(notifier.deferred()) == 1, "the second webhook parked")
        assert metric(notifier, "leadflow_notify_held_total", channel="automations") == 1
        (parked,) = notifier.deferred().values()
        assert parked.not_before is not None
        assert parked.not_before > datetime.now(UTC) + timedelta(minutes=55)
    assert len(peers.http.received("/hook")) == 1
    async with running(deployment, policy, peers) as restarted:  # a new process: its limits start afresh
        assert len(restarted.deferred()) == 1
        await restarted.send_due(datetime.now(UTC) + timedelta(hours=1))
        assert restarted.deferred() == {}
    assert sorted(p.json()["notices"][0]["lead_id"] for p in peers.http.received("/hook")) == ["lead-1st", "lead-2nd"]


async def test_quiet_hours_hold_a_channel_post_until_the_team_calendar_opens(
    deployment: Deployment, peers: Peers
) -> None:
    await deployment.create_topics()
    today = datetime.now(ZoneInfo("America/Sao_Paulo")).date()
    open_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today.weekday() + 2) % 7]  # closed until then
    calendars = {"inside_sales": {"timezone": "America/Sao_Paulo", "hours": {open_day: ["09:00-10:00"]}}}
    rules = [{"kinds": ["handoff"], "to": ["channel"], "channel": "sales_slack"}]  # quiet_hours: true
    document = default_document()
    document["calendars"] = calendars
    document["notifications"] = peers.notifications(rules)
    policy = parse_policy(document, "test")
    async with running(deployment, policy, peers) as notifier:
        await produce(deployment, [handoff(lead="lead-q", at=datetime.now(UTC))])
        await eventually(lambda: len(notifier.deferred()) == 1, "held until the calendar opens")
        (held,) = notifier.deferred().values()
        opens = held.due.astimezone(ZoneInfo("America/Sao_Paulo"))
        assert (opens.date() - today, opens.hour, opens.minute) == (timedelta(days=2), 9, 0)
        assert peers.http.received(SLACK) == []
        await notifier.send_due(held.due)
        assert len(peers.http.received(SLACK)) == 1
        assert notifier.deferred() == {}


async def test_sent_marks_older_than_anything_that_can_be_read_again_are_forgotten(
    deployment: Deployment, peers: Peers
) -> None:
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))  # stale after a day
    now = datetime.now(UTC)
    old = SentMark(status="sent", channel="email", kind="handoff", at=now - timedelta(days=10))
    recent = SentMark(status="sent", channel="email", kind="digest", at=now - timedelta(days=8))
    async with running(deployment, policy, peers) as notifier:
        await notifier.write({"sent|old": old.model_dump_json(), "sent|recent": recent.model_dump_json()})
        assert await notifier.prune(now) == 1
        assert (notifier.is_done("old"), notifier.is_done("recent")) == (False, True)
    async with running(deployment, policy, peers) as restarted:
        assert (restarted.is_done("old"), restarted.is_done("recent")) == (False, True)


async def test_a_record_it_cannot_read_is_dead_lettered_with_its_bytes_and_the_next_is_delivered(
    deployment: Deployment, peers: Peers
) -> None:
    """Another version's record or a stray producer's on leads.handoffs: to the dead-letter topic with its bytes and
    what is wrong (as the worker does with what it cannot read), counted, and the stream goes on."""
    await deployment.create_topics()
    policy = policy_with(peers.notifications(AT_ONCE))
    stray = orjson.dumps({"type": "handoff", "lead_id": "lead-x"})
    async with running(deployment, policy, peers) as notifier:
        await deployment.produce([(b"lead-x", stray)], topic=deployment.handoffs)
        await produce(deployment, [handoff(lead="lead-a", owner="rep-02", at=datetime.now(UTC))])
        await eventually(lambda: peers.emails_to("rep-02@example.com"), "the next hand-off is delivered")
        await eventually(lambda: metric(notifier, "leadflow_notify_skipped_total", reason="unreadable") == 1, "counted")
    letters = [DEAD_LETTER_ADAPTER.validate_json(v) for _, v in await read_partitions(
        deployment.broker.bootstrap, deployment.deadletter, 4)]  # fmt: skip
    (letter,) = letters
    assert letter.reason == "invalid_event"
    assert base64.b64decode(letter.original_b64) == stray
    assert letter.errors  # names the fields
