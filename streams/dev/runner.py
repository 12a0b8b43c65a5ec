"""`leadflow run`: the main job on one machine.

Starts the embedded Kafka-protocol broker (unless --broker names one), creates the topics, starts a worker
process, runs the live simulator in this process, and shows the funnel as the worker's outputs arrive on
`leads.transitions` and `leads.deadletter`. Ctrl-C or --for ends it; every child process is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from leadflow.core.funnel import FunnelTally
from leadflow.schemas.policy import Allowance, Policy, load_policy
from leadflow.streams.cli.report_client import ReportSourceError, merged_report
from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker
from leadflow.streams.dev.simulator import LiveSimulator
from leadflow.streams.dev.worker_process import WorkerProcess
from leadflow.streams.runtime.producer import kafka_sender
from leadflow.streams.runtime.routes import value_adapters
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import client_options, create_leadflow_topics

DRAIN_QUIET_S = 3.0  # after the simulator stops: wait until outputs are quiet this long...
DRAIN_MAX_S = 30.0  # ...but no longer than this
DEMO_GRACE_S = 1.0  # processing.sla_grace_seconds of the compressed demo policy (see `compressed`)


@dataclass(frozen=True)
class RunOptions:
    broker: str | None
    duration_s: float | None
    leads_per_s: float
    speed: float
    bad_ratio: float
    partitions: int
    web_port: int
    web_host: str  # where the worker's web server listens (LEADFLOW_WEB_HOST); run reads it there
    workdir: Path
    policy: Path | None
    report_json: Path | None
    live: bool
    real_time_slas: bool = False
    embedded_broker: Literal["auto", "kafka", "tansu"] = "auto"


def local_broker(choice: Literal["auto", "kafka", "tansu"], workdir: Path) -> BrokerProcess:
    """The broker `leadflow run` starts when no --broker is given. `auto`: Apache Kafka, the production engine
    (exact offsets and lag, no one-record-per-batch workaround), when Java is installed and its jars are cached
    or Maven can fetch them; else tansu, the zero-JVM broker (starts in 0.1 s, keeps nothing)."""
    from leadflow.streams.dev.kafka import ApacheKafka, can_run_kafka

    if choice == "kafka" or (choice == "auto" and can_run_kafka()):
        return ApacheKafka(workdir / "kafka")
    return EmbeddedBroker(workdir)


class OutputReader:
    """Reads the worker's outputs into a FunnelTally (no consumer group: a view, not a processor)."""

    def __init__(self, settings: Settings, tally: FunnelTally) -> None:
        self.settings = settings
        self.tally = tally
        self.last_output_at = time.monotonic()
        self.unreadable = 0
        self.adapters = value_adapters(settings, ("transitions", "deadletter", "sla", "handoffs"))

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *self.adapters,
            bootstrap_servers=self.settings.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **client_options(self.settings),  # TLS / SASL, as the worker's
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                now = time.time()
                for tp, messages in batches.items():
                    adapter = self.adapters[tp.topic]
                    for message in messages:
                        try:
                            self.tally.add(adapter.validate_json(message.value or b""), seen_at=now)
                        except ValidationError:
                            self.unreadable += 1
                        self.last_output_at = time.monotonic()
        finally:
            await consumer.stop()


def render(tally: FunnelTally, simulator: LiveSimulator, started: float, note: str) -> Group:
    counts, reached = tally.stage_counts(), tally.reached()
    stages = Table(title="leads per stage", show_edge=False)
    stages.add_column("stage")
    stages.add_column("now", justify="right")
    stages.add_column("ever reached", justify="right")
    for stage in tally.stages:
        stages.add_row(stage, str(counts[stage]), str(reached[stage]))
    flow = Table(title="flow", show_edge=False)
    flow.add_column("measure")
    flow.add_column("value", justify="right")
    flow.add_row("elapsed", f"{time.monotonic() - started:,.0f} s")
    flow.add_row("events sent", f"{simulator.events_sent:,}")
    flow.add_row("leads started", f"{simulator.leads_started:,}")
    flow.add_row("transitions", f"{tally.transitions:,}")
    flow.add_row("transitions / min", f"{tally.per_minute(time.time()):,}")
    flow.add_row("dead letters", f"{sum(tally.dead_letters.values()):,}")
    flow.add_row("refused events", f"{sum(tally.refusals.values()):,}")
    reasons = Table(title="rejections · refusals · dead letters", show_edge=False)
    reasons.add_column("kind")
    reasons.add_column("reason")
    reasons.add_column("count", justify="right")
    for kind, counter in (("rejected", tally.rejections), ("refused", tally.refusals), ("dead", tally.dead_letters)):
        for reason, n in counter.most_common(5):
            reasons.add_row(kind, reason, str(n))
    clocks = Table(title="SLA clocks", show_edge=False)
    for column in ("sla", "open", "met", "warned", "breached", "escalated", "compliance"):
        clocks.add_column(column, justify="left" if column == "sla" else "right")
    for name, figures in tally.sla_report().items():
        clocks.add_row(
            name,
            *(f"{figures[k]:,.0f}" for k in ("open", "met", "warnings", "breached", "escalated")),
            f"{figures['compliance']:.0%}",
        )
    handoffs = Table(title="hand-offs", show_edge=False)
    handoffs.add_column("pool")
    handoffs.add_column("count", justify="right")
    for pool, n in sorted(tally.handoffs.items()):
        handoffs.add_row(pool, f"{n:,}")
    grid = Table.grid(padding=(0, 4))
    grid.add_row(stages, flow, reasons)
    lower = Table.grid(padding=(0, 4))
    lower.add_row(clocks, handoffs)
    return Group(grid, lower, note)


def compressed(policy: Policy, speed: float) -> Policy:
    """The policy with every SLA allowance divided by the simulator's speed, as wall-clock minutes.

    The simulator lives a lead's days in seconds; its SLA clocks must run at the same pace, or every
    commitment would be met. Business calendars cannot apply at that pace, so a business-hour allowance
    becomes the wall time it spans on average (8 business hours in a 40-hour week: 8 x 168 / 40 hours).
    """
    week_s = 7 * 86_400

    def squeeze(allowance: Allowance, calendar: str | None) -> Allowance:
        working_s = policy.calendars[calendar].weekly_working_seconds if calendar and allowance.is_business else 0
        wall_s = allowance.seconds * week_s / working_s if working_s else allowance.seconds
        return Allowance(minutes=wall_s / speed / 60)

    slas = tuple(
        spec.model_copy(
            update={
                "allowance": squeeze(spec.allowance, spec.calendar),
                "overrides": tuple(
                    o.model_copy(update={"allowance": squeeze(o.allowance, spec.calendar)}) for o in spec.overrides
                ),
            }
        )
        for spec in policy.slas
    )
    # The grace for late producers is wall time too: the simulator sends each event when it is due, so a
    # second covers its delivery (30 s would be two months of simulated time).
    processing = policy.processing.model_copy(update={"sla_grace_seconds": DEMO_GRACE_S})
    updated = policy.model_copy(update={"slas": slas, "processing": processing})
    return Policy.model_validate(updated.model_dump(by_alias=True))


def web_url(options: RunOptions) -> str:
    """Where this process reaches the worker's web server: loopback when it listens on every address."""
    host = "127.0.0.1" if options.web_host in ("", "0.0.0.0", "::") else options.web_host
    return f"http://{f'[{host}]' if ':' in host else host}:{options.web_port}"


async def final_report(tally: FunnelTally, policy: Policy, url: str, console: Console) -> dict[str, Any]:
    """The funnel report as the worker computes it from its table (GUIDE section 3: the shape `/funnel` and
    `leadflow replay` give), with what only the output stream shows (dead letters, refusals) beside it."""
    stream = tally.report()
    extra = {key: stream[key] for key in ("dead_letters", "refusals", "transitions")}
    try:
        report = await merged_report([url], policy, datetime.now(UTC))
    except ReportSourceError as error:
        console.print(f"[yellow]the worker's report could not be read ({error}); the stream's tally is written[/]")
        return stream
    return {**report, **extra}


async def run(options: RunOptions) -> int:  # noqa: PLR0915 - one linear start/run/stop sequence
    options.workdir.mkdir(parents=True, exist_ok=True)
    console = Console() if options.live else Console(width=120)  # a log file gets the full table
    policy = load_policy(options.policy)  # fail before starting anything if the policy is bad
    policy_file = options.policy
    if not options.real_time_slas:
        policy_file = options.workdir / "policy-compressed.yaml"
        policy_file.write_text(yaml.safe_dump(compressed(policy, options.speed).model_dump(mode="json", by_alias=True)))
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:  # the terminal is gone: writing to it would fail, the children must still stop
            console.quiet = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        loop.add_signal_handler(sig, on_signal, sig)
    broker: BrokerProcess | None = None
    worker = None
    tally = FunnelTally(stages=policy.all_stages, funnel=policy.lifecycle.stages)
    try:
        if not options.broker:
            broker = local_broker(options.embedded_broker, options.workdir).start()
            await asyncio.sleep(0)  # a signal that came during the (blocking) start is handled here
            if stop.is_set():
                return 0
        url = options.broker or (broker.url if broker else "")
        tansu = broker is not None and broker.one_record_per_batch
        settings = Settings(
            broker=url if "://" in url else f"kafka://{url}",
            embedded=tansu,
            fast_group=broker is not None,
            partitions=options.partitions,
            web_port=options.web_port,
            web_host=options.web_host,
            data_dir=options.workdir / "worker-data",
            policy=policy_file,
        )
        await create_leadflow_topics(settings)
        worker = WorkerProcess(settings.as_env(), options.workdir / "worker.log").start()
        console.print(
            f"broker {settings.bootstrap} ({f'{broker.name} pid {broker.pid}' if broker else 'external'}) · "
            f"worker pid {worker.pid}, "
            f"log {options.workdir / 'worker.log'} · web {web_url(options)}/healthz · "
            f"metrics {web_url(options)}/metrics"
        )
        simulator = LiveSimulator(
            leads_per_s=options.leads_per_s,
            speed=options.speed,
            bad_ratio=options.bad_ratio,
            id_prefix=f"run{datetime.now(UTC):%H%M%S}",
        )
        reader = OutputReader(settings, tally)
        reader_stop = asyncio.Event()
        reader_task = asyncio.create_task(reader.run(reader_stop))
        started = time.monotonic()
        async with kafka_sender(settings.bootstrap, settings.topic_events, embedded=tansu, settings=settings) as send:
            sim_task = asyncio.create_task(simulator.run(send, duration_s=options.duration_s, stop=stop))
            live_view = Live(console=console, refresh_per_second=2) if options.live else None
            with live_view or contextlib.nullcontext():
                while not sim_task.done():
                    if live_view:
                        live_view.update(render(tally, simulator, started, "Ctrl-C stops"))
                    if worker.exit_code() is not None:
                        stop.set()
                        console.print(f"[red]worker exited with {worker.exit_code()}; see its log[/red]")
                    await asyncio.wait({sim_task}, timeout=0.5)
                await sim_task
                # Let the worker finish what was sent, so the summary covers every event.
                drain_started = time.monotonic()
                while (
                    not stop.is_set()
                    and time.monotonic() - reader.last_output_at < DRAIN_QUIET_S
                    and time.monotonic() - drain_started < DRAIN_MAX_S
                ):
                    if live_view:
                        live_view.update(render(tally, simulator, started, "draining the worker..."))
                    await asyncio.sleep(0.25)
        reader_stop.set()
        await reader_task
        console.print(render(tally, simulator, started, "final summary"))
        report = await final_report(tally, policy, web_url(options), console)
        if options.report_json:
            options.report_json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
            console.print(f"report written to {options.report_json}")
        return 0 if worker.exit_code() is None else 1
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
