"""Prometheus metrics of a worker, served on its web server as `/metrics`.

The only user of prometheus_client (the core never imports it). Counters and histograms are fed from what the
shell already has in hand: the decoded event and its `Decision` (`observe`), dead letters (`observe_dead_letter`)
and timer sweeps (`observe_sweep`). Gauges about the leads (per stage, open and overdue SLA clocks) are read at
scrape time by `LeadCollector` from the lead census the worker keeps up to date as it stores leads
(streams.runtime.lead_census), the consumer lag by `LagCollector` from the consumer: for this worker's active
partitions only, so they add up across workers; so is the delay of each partition's SLA clock
(`ClockDelayCollector`, from the timers).

The mapping from outputs to samples (`output_samples`), from applied deal events to samples (`deal_samples`) and
the clock delays (`clock_delays`) are pure functions, as is the lead census (its own module).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka.partitioner import murmur2
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from leadflow.core.decision import Decision
from leadflow.core.routing import load
from leadflow.schemas.events import DealLost, DealWon, LeadEvent
from leadflow.schemas.outputs import (
    DeadLetter,
    EventRefused,
    HandOff,
    Output,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaStarted,
    SlaWarning,
    StageChanged,
)
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import RoutingState
from leadflow.streams.runtime.lead_census import Census, LeadCensus

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST  # of the /metrics page (aiohttp wants it as a header: it has a charset)
SOURCE_LIMIT = 50  # distinct `source` label values kept; later ones are counted as "other"
CURRENCY_LIMIT = 20  # distinct `currency` label values kept for won revenue; later ones are counted as "other"
OTHER = "other"
NONE = "none"

EVENT_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
SWEEP_BUCKETS = (50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

# (counter name without _total, label values) -> one increment
Sample = tuple[str, tuple[str, ...]]

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "leadflow_events": (
        "Decoded events by type, producer source and outcome of the decision",
        ("type", "source", "outcome"),
    ),
    "leadflow_dead_letters": ("Input records dead-lettered, by reason", ("reason",)),
    "leadflow_stage_transitions": ("Lifecycle stage changes (from_stage none on creation)", ("from_stage", "to_stage")),
    "leadflow_refusals": ("Valid events the policy refused, by reason", ("reason",)),
    "leadflow_rejections": ("MQLs sales rejected, by reason code", ("reason",)),
    "leadflow_sla_started": ("SLA clocks started", ("sla",)),
    "leadflow_sla_met": ("SLA clocks met (late: met after the deadline)", ("sla", "late")),
    "leadflow_sla_breaches": ("SLA deadlines passed", ("sla", "team", "pool")),
    "leadflow_sla_warnings": ("SLA warnings (share of the allowance used)", ("sla", "fraction")),
    "leadflow_sla_cancelled": ("SLA clocks cancelled (the lead left the clock's stages)", ("sla",)),
    "leadflow_sla_escalations": ("SLA breach escalations, one per action", ("sla", "action")),
    "leadflow_handoffs": ("Hand-offs to an owner, by pool and reason", ("pool", "reason")),
    "leadflow_routing_unassigned": (
        "Route requests no owner could take (everyone in the pool and the fallback pool away)",
        ("pool",),
    ),
    "leadflow_stage_skips": (
        "Stage changes by a fact that skipped main-funnel stages (a process gap), by the move",
        ("from_stage", "to_stage"),
    ),
    "leadflow_deals_won": ("deal.won events applied (with or without an amount)", ()),
    "leadflow_deals_won_unknown_amount": ("deal.won events applied without an amount (unknown revenue)", ()),
    "leadflow_deals_lost": ("deal.lost events applied, by reason (other: not a reason in the policy)", ("reason",)),
}
# Outcomes of a decision that applied the event itself (in order, in its place, or late).
APPLIED = frozenset({"applied", "reordered", "late"})


def known_groups(policy: Policy) -> frozenset[str]:
    """Team and pool names a label may carry: calendar names and routing pools and their teams."""
    names = set(policy.calendars)
    routing = getattr(policy, "routing", None)
    for pool in getattr(routing, "pools", ()) or ():
        for attribute in ("name", "team"):
            value = getattr(pool, attribute, None)
            if isinstance(value, str):
                names.add(value)
    return frozenset(names)


def group_label(value: str | None, known: frozenset[str]) -> str:
    if value is None:
        return NONE
    return value if value in known else OTHER


def fraction_label(fraction: float) -> str:
    return f"{fraction:g}"


def output_samples(output: Output, known: frozenset[str]) -> list[Sample]:
    """The counter increments one output stands for (pure)."""
    match output:
        case StageChanged():
            move = (output.from_stage or NONE, output.to_stage)
            samples: list[Sample] = [("leadflow_stage_transitions", move)]
            if output.reason.startswith("rejected:"):
                samples.append(("leadflow_rejections", (output.reason.split(":", 1)[1],)))
            if output.skipped:
                samples.append(("leadflow_stage_skips", move))
            return samples
        case EventRefused():
            return [("leadflow_refusals", (output.reason,))]
        case SlaStarted():
            return [("leadflow_sla_started", (output.sla,))]
        case SlaMet():
            return [("leadflow_sla_met", (output.sla, "true" if output.late else "false"))]
        case SlaBreached():
            team, pool = group_label(output.team, known), group_label(output.pool, known)
            return [("leadflow_sla_breaches", (output.sla, team, pool))]
        case SlaWarning():
            return [("leadflow_sla_warnings", (output.sla, fraction_label(output.fraction)))]
        case SlaCancelled():
            return [("leadflow_sla_cancelled", (output.sla,))]
        case SlaEscalated():
            return [("leadflow_sla_escalations", (output.sla, action)) for action in output.actions]
        case HandOff():
            return [("leadflow_handoffs", (group_label(output.pool, known), output.reason))]
    return []


def deal_samples(event: LeadEvent, outcome: str, lost_reasons: frozenset[str]) -> list[Sample]:
    """Won and lost deals, from the applied event rather than its stage change: a deal won by a customer changes
    no stage and is still a win. A lost reason outside the policy is counted as other (bounded labels)."""
    if outcome not in APPLIED:
        return []
    match event:
        case DealWon():
            won: list[Sample] = [("leadflow_deals_won", ())]
            if event.data.amount is None:
                won.append(("leadflow_deals_won_unknown_amount", ()))
            return won
        case DealLost():
            reason = event.data.reason if event.data.reason in lost_reasons else OTHER
            return [("leadflow_deals_lost", (reason,))]
    return []


def response_buckets(policy: Policy) -> tuple[float, ...]:
    """A bucket at every SLA allowance (overrides included) and its warning shares, a few around them."""
    bounds: set[float] = set()
    for sla in policy.slas:
        for allowance in (sla.allowance, *(o.allowance for o in sla.overrides)):
            seconds = allowance.seconds
            bounds.update(seconds * share for share in (*sla.warn_at, 0.1, 0.25, 1.0, 1.5, 2.0))
    if not bounds:
        bounds = {60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0}
    return tuple(sorted(round(b, 6) for b in bounds if b > 0))


class BoundedLabel:
    """Keeps the first `limit` distinct values of a label; any later one becomes "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


class Partitioner:
    """Partition of a key as the producers chose it (Kafka's default partitioner: murmur2 of the key bytes)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def __call__(self, key: bytes) -> int:
        return int((murmur2(key) & 0x7FFFFFFF) % self.partitions)


class LeadCollector(Collector):
    """`leadflow_leads{stage}`, `leadflow_sla_open{sla}`, `leadflow_sla_overdue{sla}`, read at scrape time from the
    lead census (streams.runtime.lead_census), not from the table: a bisect per SLA and partition, whatever the
    number of leads.

    `read` returns the census and this worker's active partitions; only leads of those partitions count (the
    table also holds standby replicas' leads). The census is the one the last walk of the table counted (after
    every rebalance, streams.runtime.worker.Timers.rebuild), kept up to date by the agent as it stores leads. While
    a walk is under way the gauges go on from it over the partitions active now: a partition this worker held at
    that walk is counted (one it held as a standby replica, as it was then), one it did not hold is counted from
    the end of the walk. Before the first walk ends there are no samples: nothing is known yet.
    """

    def __init__(
        self,
        policy: Policy,
        read: Callable[[], tuple[LeadCensus, Iterable[int]]],
        clock: Callable[[], datetime],
    ) -> None:
        self.stage_names = policy.all_stages
        self.sla_names = tuple(sla.name for sla in policy.slas)
        self.read = read
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return self._families(Census())

    def collect(self) -> Iterable[Metric]:
        lead_census, active = self.read()
        if not lead_census.complete:
            return self._families(None)
        return self._families(lead_census.counts(active, self.clock()))

    def _families(self, counts: Census | None) -> list[Metric]:
        leads = GaugeMetricFamily(
            "leadflow_leads", "Leads per lifecycle stage (this worker's partitions)", labels=["stage"]
        )
        open_ = GaugeMetricFamily("leadflow_sla_open", "Open SLA clocks (this worker's partitions)", labels=["sla"])
        overdue = GaugeMetricFamily(
            "leadflow_sla_overdue", "Open SLA clocks past their deadline (this worker's partitions)", labels=["sla"]
        )
        if counts is not None:
            for stage in dict.fromkeys((*self.stage_names, *counts.stages)):
                leads.add_metric([stage], counts.stages[stage])
            for sla in dict.fromkeys((*self.sla_names, *counts.open)):
                open_.add_metric([sla], counts.open[sla])
                overdue.add_metric([sla], counts.overdue[sla])
        return [leads, open_, overdue]


class PartitionGauge(Collector):
    """A gauge per partition, `{topic, partition}`, read at scrape time from `read()`."""

    name: str
    documentation: str

    def __init__(self, read: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return [self._family({})]

    def collect(self) -> Iterable[Metric]:
        return [self._family(self.read())]

    def _family(self, values: Mapping[tuple[str, int], int]) -> Metric:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["topic", "partition"])
        for (topic, partition), value in sorted(values.items()):
            family.add_metric([topic, str(partition)], self.shown(value))
        return family

    @staticmethod
    def shown(value: int) -> int:
        return value


class LagCollector(PartitionGauge):
    """`leadflow_consumer_lag{topic, partition}`: end offset minus position, per assigned partition."""

    name = "leadflow_consumer_lag"
    documentation = "Records of the events topic not yet processed: end offset minus the consumer's position"

    @staticmethod
    def shown(value: int) -> int:
        return max(value, 0)


class GroupLagCollector(Collector):
    """`leadflow_consumer_committed_offset` and `leadflow_consumer_group_lag{topic, partition}`: the group's committed
    offset of each partition this worker owns, and the end offset minus it, read at scrape time through the Kafka
    admin API (streams.runtime.group_offsets): what a restart would read again, what `kafka-consumer-groups.sh`
    shows.
    A scrape that cannot reach the broker leaves both out (the broker alerts tell why)."""

    def __init__(self, read: Callable[[], Awaitable[Mapping[tuple[str, int], tuple[int, int]]]]) -> None:
        self.read = read
        self.offsets: Mapping[tuple[str, int], tuple[int, int]] = {}

    async def refresh(self) -> None:
        try:
            self.offsets = await self.read()
        except Exception as error:  # a scrape must still answer; the series are absent meanwhile
            log.debug("group offsets unavailable: %r", error)
            self.offsets = {}

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(self.offsets)

    @staticmethod
    def _families(offsets: Mapping[tuple[str, int], tuple[int, int]]) -> list[Metric]:
        committed = GaugeMetricFamily(
            "leadflow_consumer_committed_offset",
            "The group's committed offset (Kafka admin API): records below it are processed and their outputs sent",
            labels=["topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "leadflow_consumer_group_lag",
            "End offset minus the group's committed offset (Kafka admin API): what a restart would read again",
            labels=["topic", "partition"],
        )
        for (topic, partition), (done, end) in sorted(offsets.items()):
            committed.add_metric([topic, str(partition)], done)
            lag.add_metric([topic, str(partition)], max(end - done, 0))
        return [committed, lag]


def clock_delays(times: Mapping[int, float | None], now: float) -> dict[int, float]:
    """Seconds each partition's SLA clock (its partition time, core.partition_clock) is behind `now`; partitions
    whose time is unknown are left out (pure)."""
    return {partition: max(now - at, 0.0) for partition, at in times.items() if at is not None}


class ClockDelayCollector(Collector):
    """`leadflow_sla_clock_delay_seconds{partition}`: the worker clock minus the partition time SLA instants fire
    on, per active partition of the events topic, read from the timers at scrape time.

    `read(now)` gives each active partition's time at `now` (None while unknown: after a rebalance, until the
    partition's first event is applied or a fetch finds nothing waiting on it); a partition whose time is
    unknown has no sample rather than a made-up one. Small (a fetch wait and a sweep interval) when the worker
    keeps up; it grows by one second per second while a backlog, a broker outage or a stuck consumer holds the
    partition's clocks back."""

    def __init__(self, read: Callable[[float], Mapping[int, float | None]], clock: Callable[[], float]) -> None:
        self.read = read
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return [self._family({})]

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        return [self._family(clock_delays(self.read(now), now))]

    @staticmethod
    def _family(delays: Mapping[int, float]) -> Metric:
        family = GaugeMetricFamily(
            "leadflow_sla_clock_delay_seconds",
            "Worker clock minus the partition time SLA instants fire on, per active partition of the events topic",
            labels=["partition"],
        )
        for partition, delay in sorted(delays.items()):
            family.add_metric([str(partition)], delay)
        return family


class HealthCollector(Collector):
    """`leadflow_broker_reachable`, `leadflow_broker_last_contact_timestamp_seconds` and `leadflow_ready`, read at
    scrape time (streams.runtime.health): whether the worker's last metadata probe got an answer from the broker (no
    sample before the first probe), when the broker last answered, and whether the worker is ready (/readyz).
    The timer sweep keeps running while the broker is down, so its age cannot tell an outage: these do."""

    def __init__(self, read: Callable[[], tuple[bool | None, float | None, bool]]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return self._families(None, None, False)

    def collect(self) -> Iterable[Metric]:
        return self._families(*self.read())

    @staticmethod
    def _families(reachable: bool | None, last_contact: float | None, ready: bool) -> list[Metric]:
        broker = GaugeMetricFamily(
            "leadflow_broker_reachable", "1 when the broker answered the worker's last metadata probe, else 0"
        )
        if reachable is not None:
            broker.add_metric([], 1.0 if reachable else 0.0)
        contact = GaugeMetricFamily(
            "leadflow_broker_last_contact_timestamp_seconds", "Unix time the broker last answered a metadata probe"
        )
        if last_contact is not None:
            contact.add_metric([], last_contact)
        ready_ = GaugeMetricFamily("leadflow_ready", "1 when the worker is ready (GET /readyz answers 200), else 0")
        ready_.add_metric([], 1.0 if ready else 0.0)
        return [broker, contact, ready_]


class AppliedOffsetCollector(PartitionGauge):
    """`leadflow_consumer_applied_offset{topic, partition}`: per active partition of the events topic, the offset
    after the last record the agent applied (the committed offset before it applied one). With the consumer lag it
    tells a consumer that stopped while records wait (LeadConsumerStalled); on either broker."""

    name = "leadflow_consumer_applied_offset"
    documentation = "Offset after the last record of the events topic the worker applied, per active partition"


class RoutingCollector(Collector):
    """`leadflow_routing_open_mqls{pool, owner}` and `leadflow_routing_capacity{pool, owner}`: each owner's load
    of open MQLs and its limit, from the router's state. Only the worker running the router (the one partition
    of the routing topic) reports them, so a sum over workers is right; owners are the policy's, so bounded."""

    def __init__(self, policy: Policy, read: Callable[[], RoutingState | None]) -> None:
        self.policy = policy
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.read())

    def _families(self, state: RoutingState | None) -> list[Metric]:
        open_mqls = GaugeMetricFamily(
            "leadflow_routing_open_mqls", "Open MQLs each owner holds (what capacity counts)", labels=["pool", "owner"]
        )
        capacity = GaugeMetricFamily(
            "leadflow_routing_capacity", "Most open MQLs an owner takes (owners with a limit)", labels=["pool", "owner"]
        )
        if state is not None and self.policy.routing is not None:
            for pool in self.policy.routing.pools:
                held = load(state, pool.name)
                for owner in pool.owners:
                    open_mqls.add_metric([pool.name, owner.id], held.get(owner.id, 0))
                    if owner.capacity is not None:
                        capacity.add_metric([pool.name, owner.id], owner.capacity)
        return [open_mqls, capacity]


def faust_consumer_lag(app: Any, topic: str) -> dict[tuple[str, int], int]:
    """Lag per assigned partition of `topic`, from Faust's consumer: the high watermark of the last fetch minus
    the position (the offset after the last record handed to the stream; the committed offset before that)."""
    consumer = getattr(app, "_consumer", None)  # not created before the worker starts
    if consumer is None:
        return {}
    try:
        assigned = consumer.assignment()
    except Exception:  # the consumer thread is not started yet, or is restarting during a rebalance
        return {}
    lags: dict[tuple[str, int], int] = {}
    for tp in assigned:
        if tp.topic != topic:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:
            continue
        if end is None:
            continue
        read = consumer._read_offset.get(tp)
        position = read + 1 if read is not None else consumer._committed_offset.get(tp) or 0
        lags[(tp.topic, tp.partition)] = end - position
    return lags


@dataclass(frozen=True, slots=True)
class Fetched:
    """How far the consumer client has read a partition, as of its last fetch answer."""

    position: int | None  # next offset the client will fetch; None while fetched records wait in its buffer
    highwater: int | None  # high watermark of the last fetch answer (None before the first)
    polled_at: float | None  # when that answer came (epoch seconds)
    committed: int  # offsets below this were applied and committed (by this worker or an earlier owner)


def fetch_state(app: Any, topic: str) -> dict[int, Fetched]:
    """Per assigned partition of `topic`, from the consumer client under Faust (aiokafka's fetch position, high
    watermark and poll time; Faust's committed offset)."""
    consumer = getattr(app, "_consumer", None)  # not created before the worker starts
    if consumer is None:
        return {}
    try:
        assigned = consumer.assignment()
        client = consumer._thread._ensure_consumer()
    except Exception:  # the consumer thread is not started yet, or is restarting during a rebalance
        return {}
    states: dict[int, Fetched] = {}
    for tp in assigned:
        if tp.topic != topic:
            continue
        try:
            polled = client.last_poll_timestamp(tp)
            state = client._subscription.subscription.assignment.state_value(tp)
            waiting = tp in client._fetcher._records
        except Exception:
            continue
        position = state.position if state is not None and state.has_valid_position and not waiting else None
        highwater = state.highwater if state is not None else None
        committed = consumer._committed_offset.get(tp) or 0
        states[tp.partition] = Fetched(position, highwater, polled / 1000 if polled else None, committed)
    return states


class Metrics:
    """Every metric of one worker, in its own registry (with the process and platform collectors)."""

    def __init__(self, policy: Policy, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.known = known_groups(policy)
        self.lost_reasons = frozenset(policy.deals.lost_reasons)
        self.source = BoundedLabel(SOURCE_LIMIT)
        self.currency = BoundedLabel(CURRENCY_LIMIT)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.counters = {
            name: PromCounter(name, doc, labels, registry=self.registry) for name, (doc, labels) in COUNTERS.items()
        }
        self.timer_events = PromCounter(
            "leadflow_timer_events", "timer.due events the sweep sent", registry=self.registry
        )
        self.won_amount = PromCounter(
            "leadflow_deals_won_amount",
            "Revenue of applied deal.won events with a known amount, in their currency",
            ["currency"],
            registry=self.registry,
        )
        self.last_sweep = PromGauge(
            "leadflow_timer_last_sweep_timestamp_seconds",
            "Unix time of the last completed timer sweep",
            registry=self.registry,
        )
        self.deadlines = PromGauge(
            "leadflow_timer_deadlines",
            "Entries in the deadline index (leads with a next SLA instant)",
            registry=self.registry,
        )
        self.response = Histogram(
            "leadflow_sla_response_seconds",
            "Allowance used when an SLA was met (business seconds for business-time SLAs)",
            ["sla"],
            buckets=response_buckets(policy),
            registry=self.registry,
        )
        self.event_lag = Histogram(
            "leadflow_event_lag_seconds",
            "Processing time minus the event's occurred_at",
            buckets=EVENT_LAG_BUCKETS,
            registry=self.registry,
        )
        self.sweep_duration = Histogram(
            "leadflow_timer_sweep_duration_seconds",
            "Duration of one timer sweep",
            buckets=SWEEP_BUCKETS,
            registry=self.registry,
        )
        policy_info = Info("leadflow_policy", "The policy in force: its name, version and content fingerprint",
                           registry=self.registry)  # fmt: skip
        policy_info.info({"name": policy.name, "version": str(policy.version), "fingerprint": policy.fingerprint})
        self.leads: LeadCollector | None = None
        self.refreshed: list[Any] = []  # scrape-time collectors with an async refresh()
        self.preset(policy)

    def preset(self, policy: Policy) -> None:
        """Create the SLA series the policy implies at zero: rate() cannot see a counter's first increment, so
        an SLA whose first clocks all breach in a burst would otherwise stay invisible to the breach alert."""
        routing = policy.routing
        owners = [(pool.team, pool.name) for pool in routing.pools] if routing else []
        for spec in policy.slas:
            self.counters["leadflow_sla_started"].labels(spec.name)
            self.counters["leadflow_sla_cancelled"].labels(spec.name)
            for late in ("false", "true"):
                self.counters["leadflow_sla_met"].labels(spec.name, late)
            for fraction in spec.warn_at:
                self.counters["leadflow_sla_warnings"].labels(spec.name, fraction_label(fraction))
            for team, pool in [(NONE, NONE), *owners]:
                self.counters["leadflow_sla_breaches"].labels(spec.name, team, pool)
        for reason in (*policy.deals.lost_reasons, OTHER):
            self.counters["leadflow_deals_lost"].labels(reason)

    def observe(self, event: LeadEvent, decision: Decision, now: datetime) -> None:
        """One decoded event and what deciding it gave (with the events held before and applied with it)."""
        for decided, outcome in ((event, decision.outcome), *decision.released):
            self.observe_event(decided, outcome, now)
        self.observe_outputs(decision.outputs)

    def observe_event(self, event: LeadEvent, outcome: str, now: datetime) -> None:
        if outcome == "held":
            return  # counted once, when the router's answer comes and the event is applied (core.decision)
        self.counters["leadflow_events"].labels(event.type, self.source(event.source), outcome).inc()
        self.event_lag.observe(max((now - event.occurred_at).total_seconds(), 0.0))
        self.count(deal_samples(event, outcome, self.lost_reasons))
        if outcome in APPLIED and isinstance(event, DealWon) and event.data.amount is not None:
            # Revenue only from known amounts: an unknown one is counted apart, never as 0.
            self.won_amount.labels(self.currency(event.data.currency)).inc(event.data.amount)

    def count(self, samples: Iterable[Sample]) -> None:
        for name, labels in samples:
            counter = self.counters[name]
            (counter.labels(*labels) if labels else counter).inc()

    def observe_outputs(self, outputs: Iterable[Output]) -> None:
        for output in outputs:
            self.count(output_samples(output, self.known))
            if isinstance(output, SlaMet):
                self.response.labels(output.sla).observe(output.used_s)

    def observe_unassigned(self, pool: str) -> None:
        self.counters["leadflow_routing_unassigned"].labels(group_label(pool, self.known)).inc()

    def observe_dead_letter(self, letter: DeadLetter) -> None:
        self.counters["leadflow_dead_letters"].labels(letter.reason).inc()

    def observe_sweep(self, sent: int, duration_s: float, finished_at: float, deadlines: int) -> None:
        self.timer_events.inc(sent)
        self.sweep_duration.observe(duration_s)
        self.last_sweep.set(finished_at)
        self.deadlines.set(deadlines)

    def watch(self, leads: LeadCollector, *others: Collector) -> None:
        """Add the scrape-time collectors of a running worker."""
        self.leads = leads
        self.registry.register(leads)
        for collector in others:
            self.registry.register(collector)
        self.refreshed = [c for c in (leads, *others) if hasattr(c, "refresh")]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def render(self) -> bytes:
        """The /metrics page: the scrape-time gauges recounted (leads, goals), then every metric in text."""
        for collector in self.refreshed:
            await collector.refresh()
        return self.exposition()
