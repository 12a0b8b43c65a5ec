"""`leadflow notify` as a process beside a real worker on the real broker: a hand-off in the running system reaches
the owner's channels, a breached acceptance reaches the pool's manager, a restart sends nothing twice; and
configuration errors are one line naming the fix."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e import Deployment
from notify_support import default_document, eventually, handoff
from test_e2e_sla import fast_policy, record
from test_notifier import AT_ONCE, SLACK, TASKS, Peers, running_peers

from leadflow.streams.dev.broker import BrokerProcess, free_port

pytestmark = pytest.mark.broker
ENTERPRISE = {"country": "BR", "company_size": 1200}  # the enterprise pool: rep-01, rep-02, rep-03; mgr-enterprise


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    async with running_peers(tmp_path) as running:
        yield running


def mql(lead: str, at: datetime) -> list[tuple[bytes, bytes]]:
    return [
        record(lead, f"{lead}-1", "lead.created", at, **ENTERPRISE),
        record(lead, f"{lead}-2", "activity", at + timedelta(milliseconds=1), action="demo_request"),
    ]


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "leadflow.streams.cli", "notify", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


async def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        return get(port, "/readyz")[0] == 200

    await eventually(ready, "notify ready (its log: notify.log in the test's tmp dir)", tries=600)


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0, log.read_text()


async def test_the_running_system_passes_the_baton_and_a_restart_sends_nothing_twice(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path, peers: Peers
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    policy = fast_policy(tmp_path, hand_raiser_minutes=60, acceptance_minutes=0.05)  # accept within 3 s
    document: dict[str, Any] = yaml.safe_load(policy.read_text())
    document["notifications"] = peers.notifications(AT_ONCE)
    policy.write_text(yaml.safe_dump(document))
    port, log = free_port(), tmp_path / "notify.log"
    env = {
        **deployment.settings().as_env(),
        "LEADFLOW_POLICY": str(policy),
        "LEADFLOW_NOTIFY_PORT": str(port),
        "LEADFLOW_NOTIFY_GROUP_ID": f"{deployment.app_id}-notify",
        "LEADFLOW_NOTIFY_TOPIC_STATE": f"{deployment.prefix}notifications.sent",
        "LEADFLOW_NOTIFY_TOPIC_DEADLETTER": f"{deployment.prefix}notifications.deadletter",
        **peers.secrets(),
    }
    worker = deployment.worker(LEADFLOW_POLICY=str(policy)).start()
    notify = start(env, log)
    try:
        await wait_ready(notify, port, log)
        await deployment.produce(mql("baton-1", datetime.now(UTC)))
        await eventually(lambda: peers.emails_to("rep-01@example.com"), f"the owner's e-mail\n{worker.log_tail()}", 600)
        await eventually(lambda: peers.http.received(TASKS) and peers.http.received(SLACK), "the CRM task and Slack")
        # Nobody accepts within 3 s: the breach reaches the pool's manager, and the lead goes to the next rep.
        await eventually(lambda: peers.emails_to("mgr-enterprise@example.com"), f"the manager\n{log.read_text()}", 600)
        await eventually(lambda: peers.emails_to("rep-02@example.com"), "the next owner's hand-off", 600)
        status, metrics = get(port, "/metrics")
        assert status == 200
        assert 'leadflow_notify_sent_total{channel="email",kind="handoff"}' in metrics
        stop(notify, log)

        notify = start(env, log)
        await wait_ready(notify, port, log)
        await deployment.produce(mql("baton-2", datetime.now(UTC)))
        await eventually(
            lambda: any("baton-2" in post.body.decode() for post in peers.http.received("/hook")),
            f"the second lead\n{log.read_text()}",
            600,
        )
        stop(notify, log)
    finally:
        worker.stop()
        if notify.poll() is None:
            notify.kill()
    hook_ids = [post.headers["x-leadflow-delivery"] for post in peers.http.received("/hook")]
    assert len(hook_ids) == len(set(hook_ids)), "a webhook delivery was sent twice"
    message_ids = [mail["Message-ID"] for _, _, mail in peers.smtp.mailbox.messages]
    assert len(message_ids) == len(set(message_ids)), "an e-mail was sent twice"
    (manager_mail, *_) = peers.emails_to("mgr-enterprise@example.com")
    assert "mql_acceptance" in manager_mail["Subject"]
    text = log.read_text()
    for secret in peers.secrets().values():
        assert secret not in text, "a secret reached the log"


def test_a_channel_secret_that_is_not_set_is_named(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    policy.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadflow.streams.cli",
            "notify",
            "--policy",
            str(policy),
            "--broker",
            "kafka://127.0.0.1:9",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "LEADFLOW_NOTIFY_SECRET_" in done.stderr
    assert "notifications.channels." in done.stderr


def test_a_policy_without_rules_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["notifications"]["rules"] = []
    policy.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", "notify", "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no rules" in done.stderr


async def test_dry_run_on_the_command_line_needs_no_secret_and_sends_nothing(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path, peers: Peers
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    lead = handoff(lead="dry-1", at=datetime.now(UTC))
    await deployment.produce([(b"dry-1", lead.model_dump_json().encode())], topic=deployment.handoffs)
    policy = tmp_path / "policy.yaml"
    document = default_document()
    document["notifications"] = peers.notifications(AT_ONCE)
    policy.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env |= {**deployment.settings().as_env(), "LEADFLOW_NOTIFY_GROUP_ID": f"{deployment.app_id}-notify"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "leadflow.streams.cli", "notify", "--dry-run", "--policy", str(policy)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(line["channel"], line["recipient"]) for line in lines} == {
        ("email", "rep-01"),
        ("crm", "rep-01"),
        ("sales_slack", None),
        ("automations", None),
    }
    assert "dry run: 1 records read" in done.stderr
    assert peers.http.posts == []
    assert peers.smtp.mailbox.messages == []
