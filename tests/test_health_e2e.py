"""Health that tells the truth (issue 13, item 1), through real worker processes and real brokers: readiness 503
while a restarted worker recovers, then 200; /leads/{id} 503 meanwhile instead of "no lead"; a killed broker shows
as not ready and as leadflow_broker_reachable 0; the error log stays short during the outage; the worker stops
within its bound after SIGTERM with the broker down; a lead of another worker's partition is a redirect there."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from e2e import PARTITIONS, Deployment
from test_e2e_report import second_worker, wait_split

from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker
from leadflow.streams.dev.worker_process import WorkerProcess
from leadflow.streams.runtime.health import PROBE_INTERVAL_S, PROBE_TIMEOUT_S
from leadflow.streams.runtime.metrics import Partitioner
from leadflow.streams.runtime.settings import Settings

pytestmark = pytest.mark.broker

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
TOKEN = "health-web-token-0123456789abcdef"
BOUND_S = Settings().shutdown_timeout_s  # the stated bound: a stop signal ends the worker within it
UNREACHABLE_WITHIN_S = PROBE_INTERVAL_S + PROBE_TIMEOUT_S + 5  # a probe, its timeout, a scrape's worth


def created(lead_id: str, **data: Any) -> tuple[bytes, bytes]:
    body = {"event_id": f"{lead_id}-c", "lead_id": lead_id, "type": "lead.created", "occurred_at": T0.isoformat(),
            "source": "health", "data": data}  # fmt: skip
    return lead_id.encode(), orjson.dumps(body)


async def get(url: str, *, token: str | None = None, redirects: bool = False) -> tuple[int, Any, dict[str, str]] | None:
    """(status, JSON body or None, headers), or None when nothing answers (not listening yet)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, allow_redirects=redirects) as answer,
        ):
            body = await answer.read()
            try:
                parsed = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                parsed = body.decode(errors="replace")
            return answer.status, parsed, dict(answer.headers)
    except (aiohttp.ClientError, TimeoutError):
        return None


def expect(answer: tuple[int, Any, dict[str, str]] | None, status: int) -> tuple[Any, dict[str, str]]:
    """The body and headers of an answer that must have come with `status`."""
    assert answer is not None, f"no answer (expected {status})"
    assert answer[0] == status, answer
    return answer[1], answer[2]


async def metric(port: int, name: str) -> float | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientError:
        return None
    found = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else None


async def wait_ready(port: int, worker: WorkerProcess, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while (answer := await get(f"http://127.0.0.1:{port}/readyz")) is None or answer[0] != 200:
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"not ready within {timeout_s} s: {answer}\n{worker.log_tail()}"
        await asyncio.sleep(0.2)


def stop_timed(worker: WorkerProcess, limit_s: float) -> tuple[float, int | None]:
    """SIGTERM and wait (SIGKILL after `limit_s`); returns the seconds it took and the exit code (None: killed)."""
    assert worker.process is not None
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        code: int | None = worker.process.wait(limit_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        code = None
    return time.monotonic() - started, code


async def test_readiness_is_503_while_a_restarted_worker_recovers_then_200(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    await deployment.produce([created(f"rec-{n}", country="BR") for n in range(3000)])
    first = deployment.worker("worker-1").start()
    try:
        await deployment.wait_processed(first)
    finally:
        first.stop()

    restarted = deployment.worker("worker-2").start()
    base = f"http://127.0.0.1:{deployment.web_port}"
    readiness: list[tuple[int, Any]] = []
    lead_answers: list[tuple[int, Any, dict[str, str]]] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            ready, lead = await get(f"{base}/readyz"), await get(f"{base}/leads/rec-7")
            if ready is not None:
                readiness.append(ready[:2])
            if lead is not None and (ready is None or ready[0] != 200):
                lead_answers.append(lead)
            if ready is not None and ready[0] == 200:
                break
            assert restarted.exit_code() is None, restarted.log_tail()
            assert time.monotonic() < deadline, f"never ready: {readiness[-3:]}\n{restarted.log_tail()}"
            await asyncio.sleep(0.05)
        after = await get(f"{base}/leads/rec-7")
        alive = await get(f"{base}/healthz")
    finally:
        restarted.stop()

    not_ready = [body for status, body in readiness if status == 503]
    assert not_ready, f"the worker was never seen not ready: {readiness}"
    assert all(body["status"] == "not ready" and body["reasons"] for body in not_ready)
    assert any("assignment" in reason or "recovering" in reason for body in not_ready for reason in body["reasons"])
    assert readiness[-1] == (200, {"status": "ready", "app": deployment.app_id})
    # Meanwhile /leads/{id} said "recovering, retry" (never "no lead").
    assert all(status == 503 for status, _, _ in lead_answers), [a[:2] for a in lead_answers]
    assert all(headers.get("Retry-After") for _, _, headers in lead_answers)
    expect(after, 200)
    assert expect(alive, 200)[0]["status"] == "alive"
    print(f"{len(not_ready)} answers 503 (e.g. {not_ready[0]['reasons']}), then ready; /leads: {len(lead_answers)}")


def log_lines_after(path: Path, marker: str) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    for index, line in enumerate(lines):
        if marker in line:
            return lines[index:]
    return []


async def test_a_killed_broker_makes_the_worker_not_ready_and_it_still_stops_within_its_bound(
    tmp_path: Path, unique_topic_prefix: str
) -> None:
    own = EmbeddedBroker(tmp_path / "tansu").start()  # this test kills its broker: not the session's
    try:
        deployment = Deployment(own, unique_topic_prefix, tmp_path)
        await deployment.create_topics()
        await deployment.produce([created(f"out-{n}") for n in range(50)])
        worker = deployment.worker("worker").start()
        port = deployment.web_port
        try:
            await deployment.wait_processed(worker)
            await wait_ready(port, worker)
            assert await metric(port, "leadflow_broker_reachable") == 1
            assert await metric(port, "leadflow_ready") == 1

            assert own.pid is not None
            os.killpg(own.pid, signal.SIGKILL)
            killed = time.monotonic()
            with worker.log_path.open("a") as log:  # a marker in the worker's log (appended by the test)
                log.write("=== test: broker killed ===\n")
            while True:
                answer = await get(f"http://127.0.0.1:{port}/readyz")
                reachable = await metric(port, "leadflow_broker_reachable")
                if answer is not None and answer[0] == 503 and reachable == 0:
                    break
                assert time.monotonic() - killed < UNREACHABLE_WITHIN_S, (answer, reachable, worker.log_tail())
                await asyncio.sleep(0.2)
            noticed = time.monotonic() - killed
            assert any("broker does not answer" in reason for reason in answer[1]["reasons"]), answer
            assert answer[2].get("Retry-After")
            assert await metric(port, "leadflow_ready") == 0
            expect(await get(f"http://127.0.0.1:{port}/healthz"), 200)  # alive all the same: restarting won't help
            await asyncio.sleep(12)  # an outage long enough for the clients' retries to pile up
            outage = time.monotonic() - killed
            took, code = stop_timed(worker, BOUND_S + 10)
        finally:
            worker.kill()
    finally:
        own.stop()

    assert code is not None, f"not stopped within {BOUND_S + 10:.0f} s of SIGTERM:\n{worker.log_tail(60)}"
    assert took <= BOUND_S + 3, f"stopped {took:.1f} s after SIGTERM (bound {BOUND_S:.0f} s)"
    check_outage_log(worker.log_path, outage + took, code)
    print(f"not ready {noticed:.1f} s after the kill; stopped {took:.1f} s after SIGTERM (exit {code})")


def check_outage_log(path: Path, seconds: float, code: int) -> None:
    """Few warning and error lines during the outage, summaries standing for the rest; a forced exit says what it
    could not flush."""
    lines = log_lines_after(path, "=== test: broker killed ===")
    problems = [line for line in lines if re.search(r"\[(WARNING|ERROR|CRITICAL)\]", line)]
    summaries = [line for line in lines if re.search(r"repeated \d+ times in the last \d+ s", line)]
    repeated = sum(int(m.group(1)) for line in summaries if (m := re.search(r"repeated (\d+) times", line)))
    print(
        f"{len(problems)} warning/error lines in {seconds:.0f} s of outage, {len(summaries)} summaries for {repeated}"
    )
    assert summaries, "\n".join(lines[-60:])
    assert repeated > len(problems), "the limiter kept nothing back"
    assert len(problems) / seconds < 5, f"{len(problems)} lines in {seconds:.0f} s"
    if code != 0:  # the watchdog ended it: it says so, and what it could not flush
        assert any("did not stop within" in line and "Not flushed" in line for line in lines), lines[-20:]


async def test_a_lead_of_another_workers_partition_is_a_redirect_to_that_worker(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    leads = [f"red-{n}" for n in range(40)]
    await deployment.produce([created(lead, email=f"{lead}@example.com", country="BR") for lead in leads])
    env = {"LEADFLOW_WEB_TOKEN": TOKEN, "LEADFLOW_COMMIT_INTERVAL_S": "0.5"}
    one = deployment.worker("worker-1", **env)
    two, port_two = second_worker(deployment, env)
    workers = [one.start(), two.start()]
    urls = [f"http://127.0.0.1:{deployment.web_port}", f"http://127.0.0.1:{port_two}"]
    try:
        await deployment.wait_processed(one)
        held = await wait_split(urls, deployment.events, workers)
        for port, worker in zip([deployment.web_port, port_two], workers, strict=True):
            await wait_ready(port, worker)
        partition_of = Partitioner(PARTITIONS)
        (lead,) = [lead for lead in leads if partition_of(lead.encode()) in held[1]][:1]
        redirect = await get(f"{urls[0]}/leads/{lead}", token=TOKEN)
        assert redirect is not None
        status, body, headers = redirect
        assert status == 307, redirect
        assert headers["Location"].startswith(f"{urls[1]}/leads/{lead}"), headers
        assert body["owner"] == urls[1]
        followed = await get(headers["Location"], token=TOKEN)  # the token goes again to the other origin
        anonymous = await get(headers["Location"])
        own = await get(f"{urls[1]}/leads/{lead}")
        # Already redirected once and still not the owner: 503 naming the partition, never a loop.
        loop = await get(f"{urls[0]}/leads/{lead}?redirected=1")
        stops = [stop_timed(worker, BOUND_S + 10) for worker in workers]  # broker up: within the bound too
    finally:
        for worker in workers:
            worker.stop()

    assert expect(followed, 200)[0]["state"]["profile"]["email"] == f"{lead}@example.com"  # with the token
    public = expect(anonymous, 200)[0]
    assert "email" not in public["state"]["profile"]
    assert public["withheld"] == ["profile.email"]
    expect(own, 200)
    assert str(partition_of(lead.encode())) in expect(loop, 503)[0]["error"]
    assert all(code is not None and took <= BOUND_S + 3 for took, code in stops), stops
