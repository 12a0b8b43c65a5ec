"""`leadflow ingest` as a process: clear errors at start, secrets and personal data kept out of its log, and a
graceful stop (SIGTERM) that finishes the request in flight before the producer stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from e2e import Deployment, read_topic, topic_size

from leadflow.streams.dev.broker import BrokerProcess, free_port

pytestmark = pytest.mark.broker

TOKEN = "process-test-token"
KEY = "process-test-identity-key"


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "leadflow.streams.cli", "ingest", "--embedded"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def ingest_env(deployment: Deployment, port: int) -> dict[str, str]:
    return {
        **deployment.settings().as_env(),
        "LEADFLOW_INGEST_PORT": str(port),
        "LEADFLOW_INGEST_IDENTITY_KEY": KEY,
        "LEADFLOW_INGEST_FORMS_TOKEN": TOKEN,
        "LEADFLOW_INGEST_CANONICAL_TOKEN": TOKEN,
    }


@pytest.fixture
def gateway(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Iterator[tuple[Deployment, int, Path]]:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    port, log = free_port(), tmp_path / "ingest.log"
    process = start(ingest_env(deployment, port), log)
    try:
        deadline = time.monotonic() + 30
        while not ready(port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield deployment, port, log
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()


def ready(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_without_an_identity_key_it_exits_naming_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", "ingest", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "LEADFLOW_INGEST_IDENTITY_KEY" in done.stderr
    assert "openssl rand -hex 32" in done.stderr


async def test_no_token_and_no_email_reaches_the_log(gateway: tuple[Deployment, int, Path]) -> None:
    deployment, port, log = gateway
    form = {"form_id": "contact", "email": "carla.secret@example.com", "job_title": "CFO", "submission_id": "s-1"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/ingest/forms?token={TOKEN}", data=form) as accepted,
        session.post(f"http://127.0.0.1:{port}/ingest/forms?token=wrong-{TOKEN}", data=form) as refused,
        session.post(f"http://127.0.0.1:{port}/ingest/forms?token={TOKEN}", data={"form_id": "x"}) as unmapped,
    ):
        assert (accepted.status, refused.status, unmapped.status) == (202, 401, 422)
    events = [orjson.loads(v or b"") for _, v in await read_topic(deployment.broker.bootstrap, deployment.events)]
    assert any(e["data"].get("email") == "carla.secret@example.com" for e in events)
    for _ in range(200):  # the access log's last line is written after the answer: wait for it, up to 10 s
        text = log.read_text()
        if "POST /ingest/forms 422" in text:
            break
        await asyncio.sleep(0.05)
    assert "POST /ingest/forms 202" in text
    assert TOKEN not in text
    assert "carla" not in text
    assert KEY not in text


async def test_sigterm_finishes_the_request_in_flight(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """A batch big enough that its acknowledgement takes a while: SIGTERM lands while the gateway waits for the
    broker, and the answer is still 202 with every record stored."""
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    port, log = free_port(), tmp_path / "ingest.log"
    process = start(ingest_env(deployment, port), log)
    batch = [
        {
            "event_id": f"in-flight-{i}",
            "lead_id": f"crm-{i}",
            "type": "lead.created",
            "occurred_at": "2026-12-01T10:00:00Z",
            "source": "crm",
            "data": {},
        }
        for i in range(3000)
    ]
    try:
        deadline = time.monotonic() + 30
        while not ready(port):
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            posting = asyncio.create_task(
                session.post(f"http://127.0.0.1:{port}/ingest/canonical", data=orjson.dumps(batch), headers=headers)
            )
            # The gateway has the request and is producing it: its first records are in the topic.
            while not posting.done() and await topic_size(broker.bootstrap, deployment.events) == 0:
                assert time.monotonic() < deadline + 30, log.read_text()
                await asyncio.sleep(0.02)
            assert not posting.done(), "the batch was acknowledged before the signal: not in flight"
            process.send_signal(signal.SIGTERM)
            async with await posting as answer:
                assert answer.status == 202, await answer.text()
                assert (await answer.json())["accepted"] == len(batch)
        assert process.wait(timeout=40) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    records = await read_topic(broker.bootstrap, deployment.events)
    assert sorted(orjson.loads(v or b"")["event_id"] for _, v in records) == sorted(e["event_id"] for e in batch)
