"""One notion of time (issue 9, item 2): SLA instants are decided at the lead's partition time, not when a wall
clock passes them, so a backlog (a stopped or crashed worker, an outage) gives the outcomes an uninterrupted
run gives; and breaches too old to act on are history, not escalations.

The comparison tests run two deployments side by side on the same broker: one producer loop writes every record
of a real-time stream (each event produced at its own occurred_at) to both events topics. The reference worker
runs uninterrupted; the other one is stopped or killed part way and restarted while the stream goes on. At the
end, after both have applied everything and every clock has been decided, they must agree lead by lead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from pprint import pformat
from typing import Any, TypeVar

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from e2e import PARTITIONS, Deployment, produce_in_real_time, read_partitions, topic_size
from pydantic import TypeAdapter
from test_e2e import final_table

from leadflow.core.deadlines import next_instant
from leadflow.schemas.outputs import (
    HANDOFF_ADAPTER,
    ROUTING_ADAPTER,
    SLA_ADAPTER,
    HandOff,
    RouteRequest,
    SlaBreached,
    SlaEscalated,
    SlaMet,
    SlaOutput,
    SlaWarning,
)
from leadflow.schemas.record_encoding import ROUTING_STATE_ENCODING
from leadflow.schemas.state import LeadRecord, RoutingState
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.worker_process import WorkerProcess

pytestmark = pytest.mark.broker

GRACE_S = 2.0  # processing.sla_grace_seconds of the short policy
# Offsets (seconds from the moment a lead becomes MQL) of what each kind of lead does next, chosen against the
# short policy below: mql_acceptance 12 s (warning at 6 s, breach at 12 s, decided at 14 s, escalated: the next
# owner's clock restarts at 12.001 s, warning at 18 s, breach at 24 s, notify only), first_contact 30 s
# (warning at 15 s), contact_attempts 2 attempts within 24 s of the acceptance (warning at 12 s, recycle).
# A lead's own events stay at least a second or two away from its own instants, and away from the router's
# round trips (the MQL hand-off right after M, the reassignment right after 14 s), so the uninterrupted
# reference itself does not depend on how fast a worker answers.
JOURNEYS: dict[str, list[tuple[float, str, dict[str, Any]]]] = {
    # accepted well in time, contacted in time twice: every clock met
    "early": [
        (4, "lead.accepted", {}),
        (9, "contact.attempted", {"channel": "phone", "outcome": "no_answer"}),
        (20, "contact.attempted", {"channel": "email", "outcome": "replied"}),
    ],
    # accepted after the acceptance warning, never contacted: first_contact breached, contact_attempts
    # breached (recycle to nurturing, manager notified)
    "warned": [(9, "lead.accepted", {})],
    # not accepted in time: breach, reassigned to the pool's next owner, who accepts and contacts in time
    "escalated": [
        (17, "lead.accepted", {}),
        (22, "contact.attempted", {"channel": "phone", "outcome": "connected"}),
        (26, "contact.attempted", {"channel": "email", "outcome": "replied"}),
    ],
    # never accepted: breach, reassignment, second breach (notify only), first_contact breached
    "never": [],
    # rejected in time: back to nurturing, clocks stop
    "rejected": [(4, "lead.rejected", {"reason": "no_budget"})],
    # never an MQL: no clocks at all
    "cold": [],
}
TAIL_S = 36.0  # the last instant of any kind (contact_attempts breach of a "warned" lead at 33 s) plus grace


def short_sla_policy(directory: Path) -> Path:
    """The default policy with wall-clock SLAs of seconds (no business calendars: the test may run on a
    weekend), a small grace, and routing over two pools without capacity limits or away days (so the pool a
    lead lands in never depends on the order the router sees requests in; only the owner within it does)."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["name"] = "short-slas"
    document["processing"]["sla_grace_seconds"] = GRACE_S
    document["slas"] = [
        {"name": "mql_acceptance", "starts_on_stage": "mql", "met_by": ["lead.accepted", "lead.rejected"],
         "allowance": {"minutes": 0.2}, "warn_at": [0.5], "escalate": ["reassign", "notify"]},
        {"name": "first_contact", "starts_on_stage": "mql", "met_by": ["contact.attempted"],
         "runs_in": ["mql", "sal", "sql", "opportunity"], "allowance": {"minutes": 0.5}, "warn_at": [0.5]},
        {"name": "contact_attempts", "starts_on_stage": "sal", "count_event": "contact.attempted",
         "at_least": 2, "allowance": {"minutes": 0.4}, "warn_at": [0.5], "on_breach": "recycle",
         "escalate": ["notify"]},
    ]  # fmt: skip
    document["routing"] = {
        "fallback_pool": "general",
        "pools": [
            {"name": "latam", "team": "inside_sales", "manager": "mgr-latam",
             "when": [{"attribute": "country", "in": ["BR", "MX"]}],
             "owners": [{"id": "rep-a"}, {"id": "rep-b"}, {"id": "rep-c"}]},
            {"name": "general", "team": "marketing", "manager": "mgr-general",
             "owners": [{"id": "rep-x"}, {"id": "rep-y"}]},
        ],
    }  # fmt: skip
    path = directory / "policy-short-slas.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def envelope(lead: str, event_id: str, kind: str, at: float, **data: Any) -> bytes:
    when = datetime.fromtimestamp(at, UTC).isoformat()
    return orjson.dumps(
        {"event_id": event_id, "lead_id": lead, "type": kind, "occurred_at": when, "source": "e2e", "data": data}
    )


@dataclass
class Stream:
    """A real-time stream generated up front: (unix time, key, value), each to be produced at its time."""

    records: list[tuple[float, bytes, bytes]] = field(default_factory=list)
    kind: dict[str, str] = field(default_factory=dict)  # lead -> journey name
    last_event: dict[str, str] = field(default_factory=dict)  # lead -> id of its last event in time
    mql_at: dict[str, float] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)

    def add(self, lead: str, at: float, kind: str, **data: Any) -> None:
        """The lead's next event (each lead's events are added in time order)."""
        event_id = f"{lead}-{self.count[lead]}"
        self.count[lead] += 1
        self.records.append((at, lead.encode(), envelope(lead, event_id, kind, at, **data)))
        self.last_event[lead] = event_id

    @property
    def start(self) -> float:
        return min(at for at, _, _ in self.records)


def real_time_stream(start: float, n_leads: int, spread_s: float, seed: int) -> Stream:
    """`n_leads` leads, one every spread_s / n_leads seconds from `start`, each on one of the JOURNEYS; half
    become MQL by raising their hand (a demo request), half by score (fit and two forms)."""
    rng = random.Random(seed)
    kinds = [list(JOURNEYS)[i % len(JOURNEYS)] for i in range(n_leads)]
    rng.shuffle(kinds)
    stream = Stream()
    for i, kind in enumerate(kinds):
        lead = f"{kind}-{i:03d}"
        mql = start + 6.0 + i * spread_s / n_leads  # the score path starts 6 s before the MQL moment
        country = rng.choice(["BR", "MX", "US", "PT", "DE"])
        profile = {"seniority": "vp", "company_size": 200, "industry": "saas", "country": country}
        stream.kind[lead] = kind
        if kind == "cold":
            stream.add(lead, mql - 3, "lead.created", country=country)
            stream.add(lead, mql, "activity", action="page_view")
            stream.add(lead, mql + 5, "activity", action="page_view")
            continue
        stream.mql_at[lead] = mql
        if i % 2:
            stream.add(lead, mql - 3, "lead.created", **profile)
            stream.add(lead, mql, "activity", action="demo_request")
        else:
            stream.add(lead, mql - 6, "lead.created", **profile)
            stream.add(lead, mql - 4, "activity", action="pricing_view")
            stream.add(lead, mql - 2, "activity", action="form_submit")
            stream.add(lead, mql, "activity", action="form_submit")  # fit 50, engagement 35: MQL
        for offset, event_type, data in JOURNEYS[kind]:
            stream.add(lead, mql + offset, event_type, **data)
    return stream


@dataclass
class Outcome:
    """What a deployment ended with."""

    table: dict[str, LeadRecord | None]
    sla: dict[str, SlaOutput]  # deduped by id
    handoffs: dict[str, HandOff]
    routing: RoutingState | None

    def state_of(self, lead: str) -> tuple[object, ...] | None:
        record = self.table.get(lead)
        if record is None or record.state is None:
            return None
        state = record.state
        return (state.stage, state.owner_id is not None, state.team, state.pool)

    def sla_of(self, lead: str) -> set[tuple[str, str]]:
        return {(o.id, o.type) for o in self.sla.values() if o.lead_id == lead}


Model = TypeVar("Model")


async def read_models(
    deployment: Deployment, topic: str, adapter: TypeAdapter[Model], partitions: int = PARTITIONS
) -> list[Model]:
    records = await read_partitions(deployment.broker.bootstrap, topic, partitions)
    return [adapter.validate_json(v or b"") for _, v in records]


async def outcome(deployment: Deployment) -> Outcome:
    sla = {o.id: o for o in await read_models(deployment, deployment.sla, SLA_ADAPTER)}
    handoffs = {h.id: h for h in await read_models(deployment, deployment.handoffs, HANDOFF_ADAPTER)}
    routing: RoutingState | None = None
    for key, value in await read_partitions(deployment.broker.bootstrap, f"{deployment.app_id}-routing-changelog", 1):
        if key == b"pools" and value is not None:
            routing = ROUTING_STATE_ENCODING.decode(value)
    return Outcome(await final_table(deployment), sla, handoffs, routing)


def is_applied(record: LeadRecord | None, event_id: str) -> bool:
    return record is not None and (event_id in record.seen or any(p.event.event_id == event_id for p in record.pending))


async def events_of(deployment: Deployment, leads: set[str]) -> list[tuple[int, int, str, str]]:
    """(partition, offset, event id, type) of every record of the events topic keyed by one of `leads`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(deployment.events, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        found = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                for m in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if m.key is not None and m.key.decode() in leads:
                        body = orjson.loads(m.value or b"{}")
                        found.append((tp.partition, m.offset, body.get("event_id", "?"), body.get("type", "?")))
        return found
    finally:
        await consumer.stop()


def why_behind(record: LeadRecord | None) -> str:
    """What a lead whose last event is not applied is doing: waiting for a router answer, holding events."""
    if record is None:
        return "no record"
    held = [e.event_id for e in record.held]
    return f"v{record.version} awaiting {record.awaiting} held {held} pending {len(record.pending)}"


async def wait_settled(
    deployment: Deployment, stream: Stream, worker: Callable[[], WorkerProcess], timeout_s: float = 120
) -> None:
    """Until the deployment has applied every lead's last event, no lead has an SLA instant still to come
    (every clock met, breached, cancelled), and its output, changelog and events topics have been quiet for
    3 s (no router answer or release in flight)."""
    bootstrap = deployment.broker.bootstrap
    topics = [deployment.sla, deployment.handoffs, deployment.events, deployment.changelog]
    deadline = time.monotonic() + timeout_s
    quiet: tuple[int, ...] | None = None
    quiet_since = time.monotonic()
    while True:
        sizes = (*[await topic_size(bootstrap, t) for t in topics], await topic_size(bootstrap, deployment.routing, 1))
        if sizes != quiet:
            quiet, quiet_since = sizes, time.monotonic()
        elif time.monotonic() - quiet_since >= 3.0:
            table = await final_table(deployment)
            behind = [lead for lead, event_id in stream.last_event.items() if not is_applied(table.get(lead), event_id)]
            ticking = [lead for lead, r in table.items() if r is not None and next_instant(r.state) is not None]
            if not behind and not ticking:
                return
        running = worker()
        assert running.exit_code() is None, running.log_tail()
        if time.monotonic() > deadline:
            table = await final_table(deployment)
            behind = [lead for lead, event_id in stream.last_event.items() if not is_applied(table.get(lead), event_id)]
            ticking = [lead for lead, r in table.items() if r is not None and next_instant(r.state) is not None]
            why = {lead: why_behind(table.get(lead)) for lead in behind[:10]}
            where = await events_of(deployment, set(behind[:3]))
            raise TimeoutError(
                f"not settled: behind {why}, ticking {ticking[:10]}\ncommitted {await deployment.committed()}, "
                f"their events (partition, offset, id, type): {where}\n{running.log_tail(60)}"
            )
        await asyncio.sleep(0.5)


async def wait_quiet(deployment: Deployment, quiet_s: float = 3.0) -> None:
    """Until the deployment's outputs, events and routing topics have not grown for `quiet_s`."""
    bootstrap = deployment.broker.bootstrap
    before: tuple[int, ...] | None = None
    while True:
        sizes = (
            *[await topic_size(bootstrap, t) for t in (deployment.sla, deployment.handoffs, deployment.events)],
            await topic_size(bootstrap, deployment.routing, 1),
        )
        if sizes == before:
            return
        before = sizes
        await asyncio.sleep(quiet_s)


def compare(reference: Outcome, trial: Outcome, stream: Stream) -> dict[str, Any]:
    """Lead-by-lead differences, summarised per journey and per SLA output type (for the assertion message)."""
    states = [lead for lead in stream.kind if reference.state_of(lead) != trial.state_of(lead)]
    slas = [lead for lead in stream.kind if reference.sla_of(lead) != trial.sla_of(lead)]
    extra: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for lead in slas:
        extra.update(kind for _, kind in trial.sla_of(lead) - reference.sla_of(lead))
        missing.update(kind for _, kind in reference.sla_of(lead) - trial.sla_of(lead))
    return {
        "leads": len(stream.kind),
        "states_differ": len(states),
        "states_differ_by_journey": dict(Counter(stream.kind[lead] for lead in states)),
        "state_examples": {lead: (reference.state_of(lead), trial.state_of(lead)) for lead in states[:5]},
        "mql_s_range_of_leads_that_differ": mql_range(stream, {*states, *slas}),
        "sla_examples": {lead: sla_diff(reference, trial, stream, lead) for lead in slas[:4]},
        "sla_differ": len(slas),
        "sla_differ_by_journey": dict(Counter(stream.kind[lead] for lead in slas)),
        "sla_outputs": (len(reference.sla), len(trial.sla)),
        "sla_extra_by_type": dict(extra),
        "sla_missing_by_type": dict(missing),
        "handoffs": (len(reference.handoffs), len(trial.handoffs)),
        "handoffs_by_reason": (dict(Counter(h.reason for h in reference.handoffs.values())),
                               dict(Counter(h.reason for h in trial.handoffs.values()))),
    }  # fmt: skip


def mql_range(stream: Stream, leads: set[str]) -> tuple[float, float] | None:
    """When the leads became MQL (seconds from the stream's start): where in the stream the differences are."""
    times = [stream.mql_at[lead] - stream.start for lead in leads if lead in stream.mql_at]
    return (round(min(times), 1), round(max(times), 1)) if times else None


def describe(output: SlaOutput, mql_at: float) -> str:
    """An SLA output in a few words, times in seconds from the lead's MQL moment."""
    started = output.started_at.timestamp() - mql_at
    detail = {"sla.warning": f" {getattr(output, 'fraction', '')}", "sla.met": f" late={getattr(output, 'late', '')}",
              "sla.cancelled": f" {getattr(output, 'reason', '')}"}.get(output.type, "")  # fmt: skip
    return f"{output.type} {output.sla} started+{started:.3f}s{detail} owner={output.owner_id}"


def sla_diff(reference: Outcome, trial: Outcome, stream: Stream, lead: str) -> dict[str, list[str]]:
    mql_at = stream.mql_at.get(lead, 0.0)
    ours, theirs = reference.sla_of(lead), trial.sla_of(lead)
    return {
        "missing": sorted(describe(reference.sla[i], mql_at) for i, _ in ours - theirs),
        "extra": sorted(describe(trial.sla[i], mql_at) for i, _ in theirs - ours),
    }


def one_owner_per_mql(result: Outcome) -> list[str]:
    """MQLs without an owner, or not held (exactly once, by that owner) in the router's load."""
    wrong = []
    for lead, record in result.table.items():
        state = record.state if record else None
        if state is None or state.stage != "mql":
            continue
        holders = [
            (pool, owner)
            for pool, pool_state in (result.routing.pools.items() if result.routing else ())
            for owner, held in pool_state.open.items()
            if lead in held
        ]
        if state.owner_id is None or holders != [(state.pool, state.owner_id)]:
            wrong.append(f"{lead}: owner {state.owner_id} pool {state.pool}, router holds {holders}")
    return wrong


@dataclass
class Pair:
    reference: Deployment
    trial: Deployment


@pytest.fixture
async def pair(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> Pair:
    deployments = Pair(
        Deployment(broker, f"{unique_topic_prefix}ref.", tmp_path / "reference"),
        Deployment(broker, f"{unique_topic_prefix}trial.", tmp_path / "trial"),
    )
    await deployments.reference.create_topics()
    await deployments.trial.create_topics()
    return deployments


async def warm_up(deployment: Deployment, worker: WorkerProcess) -> None:
    """Until the worker has joined its group and processes (its first record)."""
    now = time.time()
    await deployment.produce([(b"warm-up", envelope("warm-up", "warm-up-0", "lead.created", now))])
    await deployment.wait_processed(worker, timeout_s=90)


async def until(at: float) -> None:
    """Scenario scheduling (not synchronisation): act at a given moment of the real-time stream."""
    await asyncio.sleep(max(0.0, at - time.time()))


async def side_by_side(
    pair: Pair,
    tmp_path: Path,
    stream_of: Callable[[float], Stream],
    interrupt: Callable[[Deployment, list[WorkerProcess], float, dict[str, str]], Awaitable[None]],
    trial_records: Callable[[Stream], list[tuple[float, bytes, bytes]]] | None = None,
) -> tuple[Outcome, Outcome, Stream, list[WorkerProcess]]:
    """Run the stream through both deployments; `interrupt(trial, workers, start, env)` stops and restarts the
    trial's worker (appending each new worker to `workers`) while the stream is produced. One producer sends the
    stream to both; with `trial_records` each deployment has its own producer (so the two may be on different
    brokers) and the trial gets those records (the same events, or the same events delivered otherwise)."""
    env = {"LEADFLOW_POLICY": str(short_sla_policy(tmp_path))}
    reference = pair.reference.worker("worker", **env).start()
    workers = [pair.trial.worker("worker-1", **env).start()]
    try:
        await asyncio.gather(warm_up(pair.reference, reference), warm_up(pair.trial, workers[0]))
        start = time.time() + 1.0
        stream = stream_of(start)
        if trial_records is None:
            producing = asyncio.gather(produce_in_real_time([pair.reference, pair.trial], stream.records))
        else:
            producing = asyncio.gather(
                produce_in_real_time([pair.reference], stream.records),
                produce_in_real_time([pair.trial], trial_records(stream)),
            )
        await interrupt(pair.trial, workers, start, env)
        lags = await producing
        assert max(lags) < 1.0, f"the producers fell {lags} s behind the real-time schedule: the scenario did not hold"
        await asyncio.gather(
            wait_settled(pair.reference, stream, lambda: reference),
            wait_settled(pair.trial, stream, lambda: workers[-1]),
        )
        # And the group knows it (Kafka admin API): every record of the events topic is processed and committed,
        # so a further restart would not process any of them again.
        await asyncio.gather(
            pair.reference.wait_all_committed(reference, timeout_s=30),
            pair.trial.wait_all_committed(workers[-1], timeout_s=30),
        )
        return await outcome(pair.reference), await outcome(pair.trial), stream, workers
    finally:
        await asyncio.gather(asyncio.to_thread(reference.stop), *(asyncio.to_thread(w.stop) for w in workers))


def assert_same_outcomes(reference: Outcome, trial: Outcome, stream: Stream) -> None:
    # The reference is the scenario it was designed to be: clocks met in time, warnings, breaches, escalations.
    kinds = Counter(o.type for o in reference.sla.values())
    assert all(kinds[k] > 0 for k in ("sla.met", "sla.warning", "sla.breached", "sla.escalated")), kinds
    assert any(h.reason == "escalated" for h in reference.handoffs.values())
    assert one_owner_per_mql(reference) == []
    diff = compare(reference, trial, stream)
    report = pformat(diff, width=116, sort_dicts=False)
    assert (diff["states_differ"], diff["sla_differ"]) == (0, 0), report
    assert len(trial.handoffs) == len(reference.handoffs), report
    assert one_owner_per_mql(trial) == [], report


async def test_backlog_after_restart_gives_uninterrupted_outcomes(pair: Pair, tmp_path: Path) -> None:
    """The trial's worker is stopped (SIGTERM) 14 s into the stream and restarted 18 s later: its backlog holds
    acceptances that met their clocks in time, and deadlines the wall clock passed meanwhile."""
    stopped_at: list[float] = []
    backlog: list[int] = []

    async def interrupt(trial: Deployment, workers: list[WorkerProcess], start: float, env: dict[str, str]) -> None:
        await until(start + 14)
        await asyncio.to_thread(workers[-1].stop)
        stopped_at.append(time.time())
        await until(start + 32)
        backlog.append(sum(trial.produced.values()) - sum((await trial.committed()).values()))
        workers.append(trial.worker("worker-2", **env).start())

    reference, trial, stream, _ = await side_by_side(
        pair, tmp_path, lambda start: real_time_stream(start, n_leads=180, spread_s=36, seed=7), interrupt
    )
    # The backlog held acceptances that met their clocks in time.
    (down,) = stopped_at
    in_time = [
        lead
        for lead, kind in stream.kind.items()
        if kind == "early" and down < stream.mql_at[lead] + 4 < down + 18
        and any(isinstance(o, SlaMet) and o.lead_id == lead and o.sla == "mql_acceptance" and not o.late
                for o in reference.sla.values())
    ]  # fmt: skip
    assert len(in_time) >= 5, in_time
    assert backlog[0] > 50, backlog
    assert_same_outcomes(reference, trial, stream)


async def committed_total(deployment: Deployment) -> int:
    return sum((await deployment.committed()).values())


async def wait_progress(deployment: Deployment, worker: WorkerProcess, beyond: int, timeout_s: float = 60) -> int:
    """Until the deployment's group has committed more than `beyond` records: the worker has joined, recovered
    its table and processed some of the stream."""
    deadline = time.monotonic() + timeout_s
    while (done := await committed_total(deployment)) <= beyond:
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"no progress past {beyond}\n{worker.log_tail()}"
        await asyncio.sleep(0.3)
    return done


async def test_worker_killed_five_times_gives_uninterrupted_outcomes(pair: Pair, tmp_path: Path) -> None:
    """SIGKILL (no commit, no flush) five times during the stream, each time once the worker has processed part
    of it, and restarted a second later."""
    kills: list[float] = []  # when each kill happened (wall clock)

    async def interrupt(trial: Deployment, workers: list[WorkerProcess], start: float, env: dict[str, str]) -> None:
        committed = await committed_total(trial)
        for n, at in enumerate((5, 11, 17, 23, 29), start=2):  # each waits for progress: restarts take seconds
            await until(start + at)
            committed = await wait_progress(trial, workers[-1], committed)
            await asyncio.to_thread(workers[-1].kill)
            kills.append(time.time())
            await asyncio.sleep(1.0)  # a supervisor's restart delay
            workers.append(trial.worker(f"worker-{n}", **env).start())

    reference, trial, stream, workers = await side_by_side(
        pair, tmp_path, lambda start: real_time_stream(start, n_leads=180, spread_s=48, seed=13), interrupt
    )
    assert len(workers) == 6
    # Each kill fell inside the stream: records were still to be produced after it. (Not a count of the events
    # topic: the workers' timer and router write there too.)
    last = max(at for at, _, _ in stream.records)
    assert all(at < last for at in kills), f"a kill came after the whole stream ({last:.1f}): {kills}"
    assert_same_outcomes(reference, trial, stream)


def week_old_policy(directory: Path) -> Path:
    """The default policy (escalate: reassign, notify; default grace and escalation horizon) with its
    business-hour allowances as the same wall-clock spans, so the deadlines do not depend on the weekday."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    for sla in document["slas"]:
        if "business_hours" in sla["allowance"]:
            sla["allowance"] = {"minutes": sla["allowance"]["business_hours"] * 60}
    path = directory / "policy-wall-clock.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def week_old_journeys(week_ago: float, never: list[str]) -> list[tuple[bytes | None, bytes]]:
    """Hand-raisers (MQL at once, routed) dated a week ago: `never` are never accepted nor contacted;
    "old-met" is accepted and contacted within minutes."""
    records: list[tuple[bytes | None, bytes]] = []
    for i, lead in enumerate([*never, "old-met"]):
        at = week_ago + 60 * i
        profile = {"country": "BR" if i % 2 else "US", "company_size": 80}
        records.append((lead.encode(), envelope(lead, f"{lead}-1", "lead.created", at, **profile)))
        records.append((lead.encode(), envelope(lead, f"{lead}-2", "activity", at + 1, action="demo_request")))
    records.append((b"old-met", envelope("old-met", "old-met-3", "lead.accepted", week_ago + 600)))
    contact = {"channel": "phone", "outcome": "connected"}
    records.append((b"old-met", envelope("old-met", "old-met-4", "contact.attempted", week_ago + 660, **contact)))
    return records


async def wait_for_breaches(deployment: Deployment, wanted: set[tuple[str, str]], worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 90
    while True:
        sla = await read_models(deployment, deployment.sla, SLA_ADAPTER)
        breached = {(o.lead_id, o.sla) for o in sla if isinstance(o, SlaBreached)}
        if wanted <= breached:
            return
        assert worker.exit_code() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"breaches so far: {sorted(breached)}\n{worker.log_tail()}"
        await asyncio.sleep(0.3)


async def test_week_old_events_emit_past_breaches_without_escalation(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """A journey dated a week ago, sent to the live topic (`leadflow produce` of an old export): the breaches
    are history (sla.breached with not_escalated), nobody is reassigned or notified today."""
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    never = [f"old-{i}" for i in range(8)]
    worker = deployment.worker(LEADFLOW_POLICY=str(week_old_policy(tmp_path))).start()
    try:
        await deployment.produce(week_old_journeys(time.time() - 7 * 86400, never))
        await wait_for_breaches(deployment, {(lead, s) for lead in never for s in ("mql_acceptance", "first_contact")},
                                worker)  # fmt: skip
        await deployment.wait_processed(worker)
        await wait_quiet(deployment)  # whatever the breaches set off (a reassignment round trip) has landed
        await deployment.wait_processed(worker)
        table = await final_table(deployment)
    finally:
        worker.stop()

    sla = list({o.id: o for o in await read_models(deployment, deployment.sla, SLA_ADAPTER)}.values())
    handoffs = await read_models(deployment, deployment.handoffs, HANDOFF_ADAPTER)
    routing = await read_models(deployment, deployment.routing, ROUTING_ADAPTER, partitions=1)
    escalations = [o for o in sla if isinstance(o, SlaEscalated)]
    reassigned = [h for h in handoffs if h.reason == "escalated"]
    requests = [m for m in routing if isinstance(m, RouteRequest) and m.escalated_sla is not None]
    acted = (len(escalations), len(reassigned), len(requests))
    assert acted == (0, 0, 0), f"acted today on week-old breaches: (sla.escalated, hand-offs, route requests) {acted}"
    acceptance = [o for o in sla if isinstance(o, SlaBreached) and o.sla == "mql_acceptance"]
    assert sorted(o.lead_id for o in acceptance) == sorted(never), "one breach per lead: its clock never restarted"
    assert all(o.occurred_at == o.deadline for o in acceptance)
    not_escalated = {o.lead_id: o.not_escalated for o in acceptance}
    assert all(not_escalated.values()), f"breached a week ago, but not_escalated unset: {not_escalated}"
    # Each lead kept the owner it was routed to; the lead accepted and contacted in time met both clocks (its
    # owner is not checked: sent all at once, it is accepted before the router's answer comes back).
    routed = {h.lead_id: h.owner_id for h in handoffs if h.reason in ("routed", "fallback")}
    kept = {lead: (r.state.stage, r.state.owner_id) if r and r.state else None for lead, r in table.items()}
    assert {lead: kept.get(lead) for lead in never} == {lead: ("mql", routed[lead]) for lead in never}
    met = {o.sla for o in sla if isinstance(o, SlaMet) and o.lead_id == "old-met" and not o.late}
    assert met == {"mql_acceptance", "first_contact"}
    assert not [o for o in sla if o.lead_id == "old-met" and isinstance(o, SlaBreached | SlaWarning)
                and o.sla in met]  # fmt: skip


async def test_an_acceptance_delivered_late_within_the_grace_meets_its_clock(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """Producers deliver a little late (a CRM webhook retry): an acceptance dated before the deadline and
    appended within `sla_grace_seconds` after it meets the clock; one appended after the grace finds it
    breached. (The wall clock alone would breach both.)"""
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    worker = deployment.worker(LEADFLOW_POLICY=str(short_sla_policy(tmp_path))).start()
    try:
        await warm_up(deployment, worker)
        mql = time.time()
        profile = {"country": "BR"}
        for lead in ("in-grace", "after-grace"):
            await deployment.produce([(lead.encode(), envelope(lead, f"{lead}-0", "lead.created", mql, **profile)),
                                      (lead.encode(), envelope(lead, f"{lead}-1", "activity", mql + 0.001,
                                                               action="demo_request"))])  # fmt: skip
        # Both accept at 11 s, a second before the 12 s deadline; their tools deliver it at 13 s and 16 s.
        for lead, delivered in (("in-grace", 13), ("after-grace", 16)):
            await until(mql + delivered)
            await deployment.produce([(lead.encode(), envelope(lead, f"{lead}-2", "lead.accepted", mql + 11))])
        deadline = time.monotonic() + 60
        while True:
            sla = await read_models(deployment, deployment.sla, SLA_ADAPTER)
            met = {o.lead_id for o in sla if isinstance(o, SlaMet) and o.sla == "mql_acceptance"}
            if met == {"in-grace", "after-grace"}:
                break
            assert worker.exit_code() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"met so far: {met}\n{worker.log_tail()}"
            await asyncio.sleep(0.3)
        await deployment.wait_processed(worker)
    finally:
        worker.stop()
    acceptance = [o for o in sla if o.sla == "mql_acceptance"]
    breached = {o.lead_id for o in acceptance if isinstance(o, SlaBreached)}
    assert breached == {"after-grace"}, [(o.lead_id, o.type) for o in acceptance]
    (in_time,) = [o for o in acceptance if isinstance(o, SlaMet) and o.lead_id == "in-grace"]
    assert not in_time.late
    assert not [o for o in acceptance if isinstance(o, SlaEscalated) and o.lead_id == "in-grace"]
