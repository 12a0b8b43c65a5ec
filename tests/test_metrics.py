"""Metrics: the mapping from events, decisions and outputs to samples, on a fresh registry each test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from e2e import PARTITIONS, Deployment, end_offsets
from factories import POLICY, make_event
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from leadflow.core.decision import Decision, decide
from leadflow.core.partition_clock import PartitionClock
from leadflow.schemas.outputs import (
    DeadLetter,
    HandOff,
    ScoreSummary,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaStarted,
    SlaWarning,
    StageChanged,
)
from leadflow.schemas.state import Clock, LeadRecord, LeadState, PoolState, RoutingState
from leadflow.streams.dev.broker import BrokerProcess, free_port
from leadflow.streams.dev.worker_process import WorkerProcess
from leadflow.streams.runtime.lead_census import LeadCensus, census
from leadflow.streams.runtime.metrics import (
    CURRENCY_LIMIT,
    SOURCE_LIMIT,
    BoundedLabel,
    ClockDelayCollector,
    GroupLagCollector,
    LagCollector,
    LeadCollector,
    Metrics,
    Partitioner,
    RoutingCollector,
    clock_delays,
    deal_samples,
    known_groups,
    output_samples,
    response_buckets,
)

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(POLICY, CollectorRegistry())


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def sla_fields(sla: str = "first_contact", **extra: Any) -> dict[str, Any]:
    return {
        "id": "o1",
        "lead_id": "L1",
        "sla": sla,
        "owner_id": "rep-01",
        "team": None,
        "started_at": T,
        "deadline": T + timedelta(hours=2),
        "occurred_at": T,
        **extra,
    }


def stage_changed(from_stage: str | None, to_stage: str, reason: str) -> StageChanged:
    return StageChanged(
        id="s1",
        lead_id="L1",
        from_stage=from_stage,
        to_stage=to_stage,
        occurred_at=T,
        cause_event_id="e1",
        cause_type="lead.rejected",
        reason=reason,
        fit=0,
        engagement=0,
    )


def handoff(pool: str | None, reason: str) -> HandOff:
    return HandOff.model_validate(
        {
            "id": "h1",
            "lead_id": "L1",
            "owner_id": "rep-01",
            "team": "inside_sales",
            "pool": pool,
            "reason": reason,
            "stage": "mql",
            "occurred_at": T,
            "slas": (),
            "score": ScoreSummary(fit=40, engagement=30, hand_raiser=False, top_actions=(), mql_reason="score"),
            "profile": {},
        }
    )


def test_stage_changes_count_transitions_and_rejections_by_code() -> None:
    known = known_groups(POLICY)
    assert output_samples(stage_changed(None, "lead", "created"), known) == [
        ("leadflow_stage_transitions", ("none", "lead"))
    ]
    assert output_samples(stage_changed("mql", "nurturing", "rejected:no_budget"), known) == [
        ("leadflow_stage_transitions", ("mql", "nurturing")),
        ("leadflow_rejections", ("no_budget",)),
    ]


def test_a_fact_that_skips_stages_counts_a_skip_by_the_move() -> None:
    known = known_groups(POLICY)
    won = stage_changed("mql", "customer", "won").model_copy(update={"skipped": ("sal", "sql", "opportunity")})
    assert output_samples(won, known) == [
        ("leadflow_stage_transitions", ("mql", "customer")),
        ("leadflow_stage_skips", ("mql", "customer")),
    ]
    assert output_samples(stage_changed("opportunity", "customer", "won"), known) == [
        ("leadflow_stage_transitions", ("opportunity", "customer"))
    ]


def test_deals_count_from_applied_events_with_lost_reasons_bounded_to_the_policy() -> None:
    reasons = frozenset(POLICY.deals.lost_reasons)
    assert deal_samples(make_event("deal.won", T, amount=10.0), "applied", reasons) == [("leadflow_deals_won", ())]
    assert deal_samples(make_event("deal.won", T), "late", reasons) == [
        ("leadflow_deals_won", ()),
        ("leadflow_deals_won_unknown_amount", ()),
    ]
    assert deal_samples(make_event("deal.won", T), "refused", reasons) == []
    assert deal_samples(make_event("deal.won", T), "duplicate", reasons) == []
    assert deal_samples(make_event("deal.lost", T, reason="price"), "reordered", reasons) == [
        ("leadflow_deals_lost", ("price",))
    ]
    assert deal_samples(make_event("deal.lost", T, reason="bad_luck"), "applied", reasons) == [
        ("leadflow_deals_lost", ("other",))
    ]
    assert deal_samples(make_event("lead.created", T), "applied", reasons) == []


def test_won_revenue_counts_known_amounts_only_and_unknown_ones_apart(metrics: Metrics) -> None:
    assert value(metrics, "leadflow_deals_won_total") == 0
    assert value(metrics, "leadflow_deals_lost_total", reason="other") == 0, "the policy's series exist at zero"
    assert value(metrics, "leadflow_deals_lost_total", reason="price") == 0
    record = decide(None, make_event("lead.created", T, lead_id="W1"), POLICY, T).record
    deals = ({"amount": 1200.0}, {}, {"amount": 800.0}, {"amount": 50.0, "currency": "BRL"})
    for i, data in enumerate(deals, start=1):
        won = make_event("deal.won", T + timedelta(seconds=i), lead_id="W1", **data)
        decision = decide(record, won, POLICY, T + timedelta(seconds=i))
        metrics.observe(won, decision, T)
        record = decision.record
        metrics.observe(won, decide(record, won, POLICY, T + timedelta(seconds=i)), T)  # redelivered: no count
    assert value(metrics, "leadflow_deals_won_total") == 4
    assert value(metrics, "leadflow_deals_won_unknown_amount_total") == 1
    assert value(metrics, "leadflow_deals_won_amount_total", currency="USD") == 2000.0
    assert value(metrics, "leadflow_deals_won_amount_total", currency="BRL") == 50.0
    # The first win made a customer from lead, skipping mql..opportunity; the others changed no stage.
    assert value(metrics, "leadflow_stage_skips_total", from_stage="lead", to_stage="customer") == 1
    refused = make_event("deal.won", T, lead_id="nobody", amount=9.0)
    metrics.observe(refused, decide(None, refused, POLICY, T), T)
    assert value(metrics, "leadflow_deals_won_total") == 4, "unknown_lead: refused, not a win"


def test_currencies_are_bounded(metrics: Metrics) -> None:
    assert [metrics.currency(f"C{i:02d}") for i in range(CURRENCY_LIMIT)] == [
        f"C{i:02d}" for i in range(CURRENCY_LIMIT)
    ]
    assert metrics.currency("ZZZ") == "other"


def test_sla_outputs_map_to_their_counters_with_bounded_team_and_pool() -> None:
    known = frozenset({"inside_sales", "enterprise"})
    assert output_samples(SlaStarted(**sla_fields(), allowance_s=7200, business=True), known) == [
        ("leadflow_sla_started", ("first_contact",))
    ]
    assert output_samples(SlaMet(**sla_fields(), used_s=10, late=True), known) == [
        ("leadflow_sla_met", ("first_contact", "true"))
    ]
    assert output_samples(SlaWarning(**sla_fields(), fraction=0.5), known) == [
        ("leadflow_sla_warnings", ("first_contact", "0.5"))
    ]
    assert output_samples(SlaCancelled(**sla_fields(), reason="left:mql"), known) == [
        ("leadflow_sla_cancelled", ("first_contact",))
    ]
    breach = SlaBreached(**{**sla_fields(), "team": "inside_sales", "pool": "enterprise"})
    assert output_samples(breach, known) == [("leadflow_sla_breaches", ("first_contact", "inside_sales", "enterprise"))]
    stray = SlaBreached(**{**sla_fields(), "team": "a-team-from-a-producer", "pool": None})
    assert output_samples(stray, known) == [("leadflow_sla_breaches", ("first_contact", "other", "none"))]
    escalated = SlaEscalated(**sla_fields(), actions=("reassign", "notify"), manager_id="mgr")
    assert output_samples(escalated, known) == [
        ("leadflow_sla_escalations", ("first_contact", "reassign")),
        ("leadflow_sla_escalations", ("first_contact", "notify")),
    ]
    assert output_samples(handoff(None, "assigned"), known) == [("leadflow_handoffs", ("none", "assigned"))]
    assert output_samples(handoff("enterprise", "routed"), known) == [("leadflow_handoffs", ("enterprise", "routed"))]


def test_team_and_pool_names_come_from_calendars_and_routing_pools() -> None:
    assert "inside_sales" in known_groups(POLICY)
    without_routing = POLICY.model_copy(update={"routing": None})
    assert known_groups(without_routing) == frozenset(POLICY.calendars)
    routing = getattr(POLICY, "routing", None)
    for pool in getattr(routing, "pools", ()):
        assert {pool.name, pool.team} <= known_groups(POLICY)


def test_refusals_and_events_count_by_outcome(metrics: Metrics) -> None:
    created = make_event("lead.created", T, lead_id="M1")
    first = decide(None, created, POLICY, T)
    metrics.observe(created, first, T + timedelta(seconds=3))
    metrics.observe(created, decide(first.record, created, POLICY, T), T)  # redelivered
    accepted = make_event("lead.accepted", T, lead_id="M2")
    refused = decide(None, accepted, POLICY, T)
    assert refused.outcome == "refused"
    metrics.observe(accepted, refused, T)
    assert value(metrics, "leadflow_events_total", type="lead.created", source="test", outcome="applied") == 1
    assert value(metrics, "leadflow_events_total", type="lead.created", source="test", outcome="duplicate") == 1
    assert value(metrics, "leadflow_events_total", type="lead.accepted", source="test", outcome="refused") == 1
    assert value(metrics, "leadflow_refusals_total", reason="unknown_lead") == 1
    (created_as,) = [o.to_stage for o in first.outputs if isinstance(o, StageChanged)]
    assert value(metrics, "leadflow_stage_transitions_total", from_stage="none", to_stage=created_as) == 1
    assert value(metrics, "leadflow_event_lag_seconds_count") == 3
    assert value(metrics, "leadflow_event_lag_seconds_sum") == 3.0
    assert value(metrics, "leadflow_event_lag_seconds_bucket", le="2.5") == 2


def test_an_sla_met_counts_and_observes_the_allowance_used(metrics: Metrics) -> None:
    met = SlaMet(**sla_fields("mql_acceptance"), used_s=3600.0, late=False)
    decision = Decision(LeadRecord(lead_id="L1", state=None), (met,), "applied", changed=True)
    metrics.observe(make_event("lead.accepted", T), decision, T)
    assert value(metrics, "leadflow_sla_met_total", sla="mql_acceptance", late="false") == 1
    assert value(metrics, "leadflow_sla_response_seconds_count", sla="mql_acceptance") == 1
    assert value(metrics, "leadflow_sla_response_seconds_sum", sla="mql_acceptance") == 3600.0
    assert value(metrics, "leadflow_sla_response_seconds_bucket", sla="mql_acceptance", le="14400.0") == 1
    assert value(metrics, "leadflow_sla_response_seconds_bucket", sla="mql_acceptance", le="900.0") == 0


def test_response_buckets_hold_every_allowance_and_warning_share() -> None:
    buckets = response_buckets(POLICY)
    assert list(buckets) == sorted(set(buckets))
    for sla in POLICY.slas:
        for allowance in (sla.allowance, *(o.allowance for o in sla.overrides)):
            assert allowance.seconds in buckets
            for share in sla.warn_at:
                assert round(allowance.seconds * share, 6) in buckets
    assert {900.0, 7200.0, 28800.0, 14400.0, 25920.0, 604800.0} <= set(buckets)


def test_producer_sources_are_bounded() -> None:
    label = BoundedLabel(SOURCE_LIMIT)
    assert [label(f"s{i}") for i in range(SOURCE_LIMIT)] == [f"s{i}" for i in range(SOURCE_LIMIT)]
    assert label("one-too-many") == "other"
    assert label("s7") == "s7"


def test_the_policy_sla_series_exist_at_zero_before_any_clock(metrics: Metrics) -> None:
    """So that rate() sees the first breaches of an SLA (a counter's first sample has no earlier one)."""
    for sla in ("mql_acceptance", "first_contact", "sql_max_dwell", "contact_attempts"):
        assert value(metrics, "leadflow_sla_started_total", sla=sla) == 0
        assert value(metrics, "leadflow_sla_met_total", sla=sla, late="false") == 0
        assert value(metrics, "leadflow_sla_breaches_total", sla=sla, team="none", pool="none") == 0
    assert value(metrics, "leadflow_sla_breaches_total", sla="mql_acceptance", team="inside_sales", pool="latam") == 0
    assert value(metrics, "leadflow_sla_warnings_total", sla="first_contact", fraction="0.9") == 0


def test_unassignable_requests_count_by_bounded_pool(metrics: Metrics) -> None:
    metrics.observe_unassigned("latam")
    metrics.observe_unassigned("no-such-pool")
    assert value(metrics, "leadflow_routing_unassigned_total", pool="latam") == 1
    assert value(metrics, "leadflow_routing_unassigned_total", pool="other") == 1


def test_routing_load_and_capacity_per_owner_of_the_policy() -> None:
    state = RoutingState(pools={"latam": PoolState(cursor=1, open={"rep-04": ("L1", "L2"), "ghost": ("L3",)})})
    collector = RoutingCollector(POLICY, lambda: state)
    samples = {(s.name, s.labels["pool"], s.labels["owner"]): s.value for f in collector.collect() for s in f.samples}
    assert samples[("leadflow_routing_open_mqls", "latam", "rep-04")] == 2
    assert samples[("leadflow_routing_open_mqls", "latam", "rep-05")] == 0
    assert samples[("leadflow_routing_capacity", "latam", "rep-04")] == 60
    assert ("leadflow_routing_capacity", "general", "rep-07") not in samples, "rep-07 has no limit"
    assert not any(owner == "ghost" for _, _, owner in samples), "only the policy's owners are labels"


def test_a_worker_that_does_not_run_the_router_reports_no_routing_load() -> None:
    assert [list(f.samples) for f in RoutingCollector(POLICY, lambda: None).collect()] == [[], []]


def test_dead_letters_and_sweeps(metrics: Metrics) -> None:
    letter = DeadLetter(
        id="d1",
        reason="invalid_json",
        errors=("(record): not JSON",),
        topic="leads.events",
        partition=0,
        offset=3,
        key_b64=None,
        original_b64="",
        original_size=0,
        received_at=T,
    )
    metrics.observe_dead_letter(letter)
    metrics.observe_dead_letter(letter)
    metrics.observe_sweep(3, 0.0002, 1_800_000_000.0, 41)
    metrics.observe_sweep(0, 0.0001, 1_800_000_001.0, 40)
    assert value(metrics, "leadflow_dead_letters_total", reason="invalid_json") == 2
    assert value(metrics, "leadflow_timer_events_total") == 3
    assert value(metrics, "leadflow_timer_last_sweep_timestamp_seconds") == 1_800_000_001.0
    assert value(metrics, "leadflow_timer_deadlines") == 40
    assert value(metrics, "leadflow_timer_sweep_duration_seconds_count") == 2
    assert value(metrics, "leadflow_timer_sweep_duration_seconds_bucket", le="0.0001") == 1


def lead(lead_id: str, stage: str, clocks: dict[str, Clock] | None = None) -> LeadRecord:
    state = LeadState(
        lead_id=lead_id,
        stage=stage,
        created_at=T,
        updated_at=T,
        stage_entered_at=T,
        engagement_as_of=T,
        clocks=clocks or {},
    )
    return LeadRecord(lead_id=lead_id, state=state)


def clock(sla: str, deadline_h: float, *, paused: bool = False) -> Clock:
    return Clock(
        sla=sla,
        started_at=T,
        deadline=T + timedelta(hours=deadline_h),
        allowance_s=3600,
        calendar=None,
        paused_at=T if paused else None,
    )


def test_census_counts_stages_open_and_overdue_clocks() -> None:
    states = [
        lead("a", "mql", {"mql_acceptance": clock("mql_acceptance", 1), "first_contact": clock("first_contact", 3)}),
        lead("b", "mql", {"mql_acceptance": clock("mql_acceptance", 1, paused=True)}),
        lead("c", "lead"),
    ]
    counts = census([r.state for r in states if r.state], T + timedelta(hours=2))
    assert counts.stages == {"mql": 2, "lead": 1}
    assert counts.open == {"mql_acceptance": 2, "first_contact": 1}
    assert counts.overdue == {"mql_acceptance": 1}


async def test_lead_gauges_count_only_active_partitions_and_list_every_stage() -> None:
    partition_of = Partitioner(4)
    records = [
        lead(f"L{i}", "mql" if i % 2 else "sql", {"mql_acceptance": clock("mql_acceptance", -1)}) for i in range(40)
    ]
    records.append(LeadRecord(lead_id="gone", state=None))  # an erased lead's marker
    items = [(r.lead_id.encode(), r) for r in records]
    active = {0, 2}
    mine = [r for r in records if r.state and partition_of(r.lead_id.encode()) in active]
    assert 0 < len(mine) < 40
    registry = CollectorRegistry()
    counted = LeadCensus()
    counted.begin_walk()
    counted.end_walk()  # a walk of the table before the leads came
    collector = LeadCollector(POLICY, lambda: (counted, active), lambda: T)
    registry.register(collector)
    assert {registry.get_sample_value("leadflow_leads", {"stage": stage}) for stage in POLICY.all_stages} == {0}
    for key, record in items:  # the agent stores them
        counted.update(key, partition_of(key), None, record)
    for stage in POLICY.all_stages:
        expected = sum(1 for r in mine if r.state and r.state.stage == stage)
        assert registry.get_sample_value("leadflow_leads", {"stage": stage}) == expected
    assert registry.get_sample_value("leadflow_sla_open", {"sla": "mql_acceptance"}) == len(mine)
    assert registry.get_sample_value("leadflow_sla_overdue", {"sla": "mql_acceptance"}) == len(mine)
    assert registry.get_sample_value("leadflow_sla_open", {"sla": "first_contact"}) == 0


def test_partitions_match_the_kafka_default_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    partition_of = Partitioner(4)
    for key in (b"L1", b"sim-000123", "çà".encode()):
        assert partition_of(key) == DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])


def test_consumer_lag_per_partition() -> None:
    registry = CollectorRegistry()
    registry.register(LagCollector(lambda: {("leads.events", 1): 5, ("leads.events", 0): 0}))
    assert registry.get_sample_value("leadflow_consumer_lag", {"topic": "leads.events", "partition": "1"}) == 5
    assert registry.get_sample_value("leadflow_consumer_lag", {"topic": "leads.events", "partition": "0"}) == 0


async def test_group_lag_is_the_end_minus_the_committed_offset_and_absent_when_unreadable() -> None:
    offsets = {("leads.events", 0): (40, 40), ("leads.events", 2): (7, 19)}

    async def read() -> dict[tuple[str, int], tuple[int, int]]:
        return offsets

    async def unreachable() -> dict[tuple[str, int], tuple[int, int]]:
        raise ConnectionError("broker down")

    collector = GroupLagCollector(read)
    registry = CollectorRegistry()
    registry.register(collector)
    await collector.refresh()
    labels = {"topic": "leads.events", "partition": "2"}
    assert registry.get_sample_value("leadflow_consumer_group_lag", labels) == 12
    assert registry.get_sample_value("leadflow_consumer_committed_offset", labels) == 7
    assert registry.get_sample_value("leadflow_consumer_group_lag", {**labels, "partition": "0"}) == 0
    collector.read = unreachable
    await collector.refresh()  # a scrape still answers
    assert registry.get_sample_value("leadflow_consumer_group_lag", labels) is None


def test_clock_delays_leave_out_unknown_partitions_and_are_never_negative() -> None:
    assert clock_delays({0: 990.0, 1: None, 2: 1000.0, 3: 1002.5}, 1000.0) == {0: 10.0, 2: 0.0, 3: 0.0}
    assert clock_delays({}, 1000.0) == {}


def test_sla_clock_delay_per_partition_is_the_worker_clock_minus_partition_time() -> None:
    now = T.timestamp()
    clock = PartitionClock()
    clock.applied(0, now - 5)  # keeps up: its newest event is 5 s old
    clock.applied(1, now - 900)  # a backlog: the newest event applied is 15 min old...
    clock.caught_up(1, now - 700)  # ...and nothing waited on it 700 s ago (the later of the two counts)
    clock.applied(3, now + 30)  # an event dated ahead of the worker clock: partition time stops at now
    asked: list[float] = []

    def read(at: float) -> dict[int, float | None]:
        asked.append(at)
        return {partition: clock.time(partition, at) for partition in (0, 1, 2, 3)}  # 2: nothing known yet

    registry = CollectorRegistry()
    registry.register(ClockDelayCollector(read, lambda: now))
    delays = {
        partition: registry.get_sample_value("leadflow_sla_clock_delay_seconds", {"partition": str(partition)})
        for partition in range(4)
    }
    assert delays == {0: 5.0, 1: 700.0, 2: None, 3: 0.0}
    assert set(asked) == {now}  # the partition times are read at the scrape's own clock


def test_the_clock_delay_gauge_is_described_without_samples_before_any_partition() -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ClockDelayCollector(lambda now: {}, T.timestamp))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert families["leadflow_sla_clock_delay_seconds"].type == "gauge"
    assert families["leadflow_sla_clock_delay_seconds"].samples == []


def test_the_exposition_parses_and_holds_process_metrics(metrics: Metrics) -> None:
    metrics.observe_outputs([stage_changed("mql", "sal", "accepted")])
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert "process_cpu_seconds" in families or "process_virtual_memory_bytes" in families
    assert "python_info" in families
    (sample,) = [s for s in families["leadflow_stage_transitions"].samples if s.name.endswith("_total")]
    assert sample.labels == {"from_stage": "mql", "to_stage": "sal"}
    assert sample.value == 1


async def scrape(port: int) -> dict[str, list[Sample]]:
    """The worker's /metrics, parsed: samples by name (counters as name_total, histograms as _bucket...)."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def sample_value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples.get(name, []) if s.labels == labels]
    return found[0] if found else None


@pytest.mark.broker
async def test_a_worker_serves_its_metrics(broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    start = datetime.now(UTC) - timedelta(minutes=5)

    def event(event_id: str, lead_id: str, kind: str, seconds: float, **data: Any) -> tuple[bytes, bytes]:
        when = (start + timedelta(seconds=seconds)).isoformat()
        body = {"event_id": event_id, "lead_id": lead_id, "type": kind, "occurred_at": when, "source": "e2e"}
        return lead_id.encode(), orjson.dumps({**body, "data": data})

    good_fit = {"seniority": "vp", "company_size": 200, "industry": "saas"}
    sent = [
        event("a1", "lead-a", "lead.created", 0, **good_fit),
        event("a2", "lead-a", "activity", 1, action="pricing_view"),
        event("a3", "lead-a", "activity", 2, action="form_submit"),
        event("a4", "lead-a", "activity", 3, action="form_submit"),  # MQL: acceptance and first contact start
        event("a4", "lead-a", "activity", 3, action="form_submit"),  # redelivered
        event("b1", "lead-b", "lead.created", 0),
        event("c1", "lead-c", "lead.accepted", 0),  # unknown lead: refused
        (b"lead-d", b"{not json"),
    ]
    worker = deployment.worker().start()
    try:
        await deployment.produce(sent)
        await deployment.wait_processed(worker)
        deadline = time.monotonic() + 30
        while True:  # gauges and lag are read at scrape time; the lag needs a fetch after the last record
            samples = await scrape(deployment.web_port)
            lags = samples.get("leadflow_consumer_lag", [])
            delays = samples.get("leadflow_sla_clock_delay_seconds", [])
            if (
                len(lags) == PARTITIONS
                and all(s.value == 0 for s in lags)
                and [s.value for s in samples.get("leadflow_consumer_group_lag", [])] == [0] * PARTITIONS  # committed
                and samples.get("leadflow_timer_deadlines")
                and len(delays) == PARTITIONS
            ):
                break
            assert time.monotonic() < deadline, f"lags {lags}\n{worker.log_tail()}"
            await asyncio.sleep(0.2)
    finally:
        worker.stop()

    def events(kind: str, outcome: str) -> float | None:
        return sample_value(samples, "leadflow_events_total", type=kind, source="e2e", outcome=outcome)

    assert events("lead.created", "applied") == 2
    assert events("activity", "applied") == 3
    assert events("activity", "duplicate") == 1
    assert events("lead.accepted", "refused") == 1
    assert sample_value(samples, "leadflow_refusals_total", reason="unknown_lead") == 1
    assert sample_value(samples, "leadflow_dead_letters_total", reason="invalid_json") == 1
    assert sample_value(samples, "leadflow_stage_transitions_total", from_stage="lead", to_stage="mql") == 1
    assert sample_value(samples, "leadflow_sla_started_total", sla="mql_acceptance") == 1
    assert sample_value(samples, "leadflow_sla_started_total", sla="first_contact") == 1
    leads = {s.labels["stage"]: s.value for s in samples["leadflow_leads"]}
    assert set(POLICY.all_stages) <= set(leads)
    assert leads["mql"] == 1
    assert sum(leads.values()) == 2
    assert sample_value(samples, "leadflow_sla_open", sla="mql_acceptance") == 1
    assert sample_value(samples, "leadflow_sla_overdue", sla="mql_acceptance") == 0
    # lead-a's next SLA instant, and when unknown lead-c is forgotten (core.decision.forget_at)
    assert sample_value(samples, "leadflow_timer_deadlines") == 2
    assert (sample_value(samples, "leadflow_timer_last_sweep_timestamp_seconds") or 0) > start.timestamp()
    decoded = sum(s.value for s in samples["leadflow_events_total"])  # e2e's 7, and what the worker sent itself
    assert sample_value(samples, "leadflow_event_lag_seconds_count") == decoded >= 7
    assert {s.labels["partition"] for s in samples["leadflow_consumer_lag"]} == {str(p) for p in range(PARTITIONS)}
    assert {  # through the admin API: every record processed, and committed
        int(s.labels["partition"]): s.value for s in samples["leadflow_consumer_committed_offset"]
    } == await end_offsets(broker.bootstrap, deployment.events)
    # The events are dated 5 minutes ago, but every partition has been caught up since: its SLA clock is now.
    delays = {s.labels["partition"]: s.value for s in samples["leadflow_sla_clock_delay_seconds"]}
    assert set(delays) == {str(p) for p in range(PARTITIONS)}
    assert all(0 <= delay < 30 for delay in delays.values()), delays
    assert samples.get("process_cpu_seconds_total")


@pytest.mark.broker
async def test_two_workers_count_their_own_leads_not_their_standby_replicas(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    now = datetime.now(UTC).isoformat()
    lead_ids = [f"two-{i}" for i in range(40)]
    sent = [
        (lead_id.encode(), orjson.dumps({"event_id": "c", "lead_id": lead_id, "type": "lead.created",
                                         "occurred_at": now, "source": "e2e"}))
        for lead_id in lead_ids
    ]  # fmt: skip
    partition_of = Partitioner(PARTITIONS)
    ports = [deployment.web_port, free_port()]
    workers = [
        WorkerProcess(
            {
                **deployment.settings().as_env(),
                "LEADFLOW_WEB_PORT": str(port),
                "LEADFLOW_DATA_DIR": str(tmp_path / f"data-{n}"),
            },
            tmp_path / f"worker-{n}.log",
            loglevel="info",
        )
        for n, port in enumerate(ports)
    ]
    try:
        await deployment.produce(sent)
        await deployment.wait_processed(workers[0].start())  # the first worker writes every lead
        workers[1].start()  # then a rebalance gives half of the partitions to the second one
        deadline = time.monotonic() + 90
        while True:
            # Until both workers own partitions. The first still holds the leads of the partitions it gave away (the
            # memory store keeps them, as it keeps standby replicas; /leads/{id} no longer shows them: it redirects
            # to the owner): the gauges must not count those.
            leads: list[float] = []
            owned: list[set[int]] = []
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                for port in ports:
                    samples = await scrape(port)
                    owned.append({int(s.labels["partition"]) for s in samples.get("leadflow_consumer_lag", [])})
                    leads.append(sum(s.value for s in samples.get("leadflow_leads", [])))
            if (
                len(owned) == 2
                and all(owned)
                and owned[0] | owned[1] == set(range(PARTITIONS))
                and sum(leads) == len(lead_ids)
            ):
                break
            for worker in workers:
                assert worker.exit_code() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"leads per worker {leads}, partitions {owned}"
            await asyncio.sleep(0.5)
    finally:
        for worker in workers:
            worker.stop()
    assert not owned[0] & owned[1]
    for mine, counted in zip(owned, leads, strict=True):
        assert counted == sum(1 for lead in lead_ids if partition_of(lead.encode()) in mine)
