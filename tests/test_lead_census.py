"""The lead census (streams.runtime.lead_census): kept up to date lead by lead, and counted again by a walk of the
table that may run while leads are stored, it always says what `census` says when it counts every lead from scratch.

Leads are real records, built by the core from events (tests/factories.py): stages, clocks open, paused, resumed,
breached, met and cancelled, a deal lost, and records that hold no lead (an unknown lead's events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from factories import POLICY, T0, Router, at, make_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from test_agent import capture_outbox, router_answer

from leadflow.core.deadlines import next_instant, timer_due
from leadflow.core.intake import INTERNAL_HEADER, internal_proof
from leadflow.schemas.state import LeadRecord
from leadflow.streams.runtime import worker as worker_module
from leadflow.streams.runtime.lead_census import Census, LeadCensus, Share, Tally, census, micros, share
from leadflow.streams.runtime.metrics import LeadCollector
from leadflow.streams.runtime.worker import Worker

Steps = list[tuple[str, float, dict[str, object]]]
STORIES: dict[str, Steps] = {
    "hand-raiser": [
        ("lead.created", 0, {}),
        ("activity", 60, {"action": "demo_request"}),  # mql: acceptance and a 15-minute first contact
        ("lead.paused", 120, {}),
        ("lead.resumed", 4000, {}),  # the deadlines moved
        ("lead.accepted", 5000, {}),  # sal: acceptance met, contact attempts start
        ("contact.attempted", 6000, {"channel": "phone", "outcome": "no_answer"}),
        ("deal.won", 9000, {"amount": 10}),  # customer: every clock closed
    ],
    "qualified": [
        ("lead.created", 0, {"seniority": "vp"}),
        ("lead.qualified", 10, {}),  # the same acceptance deadline as the hand-raiser's
        ("lead.rejected", 20, {"reason": "not_icp"}),  # nurturing
        ("lead.disqualified", 30, {}),
    ],
    "deal": [
        ("lead.created", 0, {}),
        ("activity", 90, {"action": "demo_request"}),
        ("lead.accepted", 500, {}),
        ("deal.stage_changed", 700, {"stage": "qualified_call", "bant": {"need": True}}),  # sql: max dwell
        ("deal.stage_changed", 800, {"stage": "framing_meeting", "bant": {"need": True, "authority": True}}),
        ("lead.paused", 900, {}),  # a paused clock: open, never overdue
        ("deal.lost", 1000, {"reason": "price"}),
    ],
    "created": [("lead.created", 30, {})],
    "unknown": [("activity", 0, {"action": "page_view"})],  # refused: a record with no lead
}


def built() -> list[LeadRecord]:
    """Every record each story goes through, and a hand-raiser's after each of its SLA instants (breaches)."""
    router = Router()
    records: list[LeadRecord] = []
    for lead, steps in STORIES.items():
        record = None
        for kind, t, data in steps:
            record = router.decide(record, make_event(kind, t, lead_id=lead, **data), at(t + 1)).record
            assert record is not None
            records.append(record)
    record = records[1]  # the hand-raiser, an mql
    for _ in range(4):
        assert record.state is not None
        instant = next_instant(record.state)
        assert instant is not None
        record = router.decide(record, timer_due(record.lead_id, instant), instant).record
        assert record is not None
        records.append(record)
    return records


RECORDS = built()


def in_stage(stage: str) -> LeadRecord:
    """The first record of the stories in `stage` (in mql: a hand-raiser, both of its clocks running)."""
    return next(r for r in RECORDS if r.state is not None and r.state.stage == stage)


DEADLINES = sorted({c.deadline for r in RECORDS if r.state for c in r.state.clocks.values()})
TICK = timedelta(microseconds=1)
PARTITIONS = range(4)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

records = st.none() | st.sampled_from(RECORDS)
# The edges of every deadline (at it, a microsecond before and after), and any time around.
nows = st.sampled_from([d + shift for d in DEADLINES for shift in (-TICK, timedelta(0), TICK)]) | st.datetimes(
    min_value=(T0 - timedelta(days=1)).replace(tzinfo=None),
    max_value=(T0 + timedelta(days=40)).replace(tzinfo=None),
    timezones=st.just(UTC),
)
actives = st.frozensets(st.sampled_from(PARTITIONS))
keys = st.sampled_from([f"k{n}".encode() for n in range(8)])
Table = Mapping[bytes, tuple[int, LeadRecord]]


def partition(key: bytes) -> int:
    return int(key[1:]) % len(PARTITIONS)


def from_scratch(table: Table, active: Iterable[int], now: datetime) -> Census:
    wanted = set(active)
    return census((r.state for p, r in table.values() if p in wanted and r.state is not None), now)


def same(got: Census, expected: Census) -> bool:
    """Equal counts (a Counter with a zero entry equals one without it)."""
    return (+got.stages, +got.open, +got.overdue) == (+expected.stages, +expected.open, +expected.overdue)


def test_the_story_records_cover_what_the_census_counts() -> None:
    states = [r.state for r in RECORDS if r.state is not None]
    clocks = [c for s in states for c in s.clocks.values()]
    assert any(r.state is None for r in RECORDS), "a record with no lead"
    assert {"lead", "mql", "sal", "sql", "opportunity", "customer", "nurturing", "disqualified"} <= {
        s.stage for s in states
    }
    assert any(c.paused_at is not None for c in clocks), "a paused clock"
    assert any(c.breached for c in clocks), "a breached clock, still open"
    assert len({c.deadline for c in clocks}) < len(clocks), "leads sharing a deadline"
    for deadline in DEADLINES:
        assert micros(deadline - TICK) < micros(deadline) < micros(deadline + TICK)


def test_every_move_from_one_record_to_another_is_counted() -> None:
    """Each record to each record (None: no record), the same objects too: what an event may do to a stored lead."""
    now = T0 + timedelta(hours=3)
    for old in (None, *RECORDS):
        for new in (None, *RECORDS):
            counted = LeadCensus()
            counted.update(b"k", 0, None, old)
            counted.update(b"k", 0, old, new)
            expected = census([new.state] if new is not None and new.state is not None else [], now)
            assert same(counted.counts([0], now), expected), (old, new)


@SETTINGS
@given(steps=st.lists(st.tuples(keys, records, nows, actives), max_size=40))
def test_stored_lead_by_lead_the_census_is_the_census_from_scratch(
    steps: list[tuple[bytes, LeadRecord | None, datetime, frozenset[int]]],
) -> None:
    counted, table = LeadCensus(), dict[bytes, tuple[int, LeadRecord]]()
    for key, new, now, active in steps:
        old = table[key][1] if key in table else None
        counted.update(key, partition(key), old, new)
        if new is None:
            table.pop(key, None)
        else:
            table[key] = (partition(key), new)
        assert same(counted.counts(active, now), from_scratch(table, active, now))
    assert_kept_lean(counted, table)


def assert_kept_lean(counted: LeadCensus, table: Table) -> None:
    """Memory goes with open clocks, not leads: one deadline per unpaused open clock, nothing per lead."""
    tallies = counted.tallies.values()
    unpaused = sum(1 for _, r in table.values() if r.state for c in r.state.clocks.values() if c.paused_at is None)
    assert sum(len(pending) for t in tallies for pending in t.deadlines.values()) == unpaused
    assert all(n > 0 for t in tallies for n in (*t.stages.values(), *t.open.values()))
    assert not any(t.owed for t in tallies)
    assert counted.walk is None


@SETTINGS
@given(data=st.data(), start=st.dictionaries(keys, records.filter(bool)), maintained=st.booleans())
def test_a_walk_while_leads_are_stored_ends_with_the_census_from_scratch(
    data: st.DataObject, start: dict[bytes, LeadRecord], maintained: bool
) -> None:
    """The walk reads the table's keys as they were when it began, in any order, a few at a time; between two
    reads the agent stores leads, new ones too, and deletes some; a walk may be abandoned and begun again. When the
    census was complete and kept up to date before the walk (`maintained`), it stays right meanwhile; when it was
    not (a table recovered from its changelog, behind the census' back), the walk puts it right."""
    table = {key: (partition(key), record) for key, record in start.items()}
    counted = LeadCensus()
    if maintained:
        counted.begin_walk()
        counted.end_walk()  # the table was empty then: every lead was stored since
        for key, (p, record) in table.items():
            counted.update(key, p, None, record)
    else:
        for key, record in data.draw(st.dictionaries(keys, records)).items():
            counted.update(key, partition(key), None, record)  # what it was told does not match the table
    assert counted.complete is maintained
    counted.begin_walk()
    unread = data.draw(st.permutations(sorted(table)))
    for _ in range(data.draw(st.integers(0, 30))):
        action = data.draw(st.sampled_from(["read", "store", "store", "abandon"]))
        if action == "read":
            n = data.draw(st.integers(1, 3))
            for key in unread[:n]:
                counted.walked(key, partition(key), table[key][1] if key in table else None)
            unread = unread[n:]
        elif action == "store":
            key, new = data.draw(keys), data.draw(records)
            counted.update(key, partition(key), table[key][1] if key in table else None, new)
            if new is None:
                table.pop(key, None)
            else:
                table[key] = (partition(key), new)
        else:  # a rebalance: the walk begins again, over the table as it is now
            counted.begin_walk()
            unread = data.draw(st.permutations(sorted(table)))
        if maintained:
            now, active = data.draw(nows), data.draw(actives)
            assert same(counted.counts(active, now), from_scratch(table, active, now)), "meanwhile"
    for key in unread:
        counted.walked(key, partition(key), table[key][1] if key in table else None)
    counted.end_walk()
    assert counted.complete
    assert_kept_lean(counted, table)
    for now in (data.draw(nows), data.draw(nows)):
        assert same(counted.counts(PARTITIONS, now), from_scratch(table, PARTITIONS, now))
        active = data.draw(actives)
        assert same(counted.counts(active, now), from_scratch(table, active, now))


SHARES = list(dict.fromkeys(lead for r in RECORDS if (lead := share(r)) is not None))


@SETTINGS
@given(moves=st.lists(st.tuples(st.sampled_from(SHARES), st.booleans()), max_size=30), now=nows)
def test_a_tally_counts_leads_taken_off_before_they_were_added(moves: list[tuple[Share, bool]], now: datetime) -> None:
    """A tally is a signed sum of leads (during a walk a lead stored before the walk reaches it is taken off
    first): it shows the counts above zero; once every lead taken off is added back, no deadline is owed."""
    tally, signed = Tally(), Counter[Share]()
    for lead, adding in moves:
        (tally.add if adding else tally.remove)(lead)
        signed[lead] += 1 if adding else -1
        got, expected = Census(), Census()
        tally.count_into(got, micros(now))
        for each, n in signed.items():
            expected.stages[each.stage] += n
            for name in each.open:
                expected.open[name] += n
            for name, deadline in each.deadlines:
                expected.overdue[name] += n if deadline <= micros(now) else 0
        assert same(got, expected)
    for lead, n in signed.items():
        for _ in range(-n):
            tally.add(lead)
    assert not tally.owed
    assert all(n > 0 for n in (*tally.stages.values(), *tally.open.values()))


def walked_census(table: Table) -> LeadCensus:
    counted = LeadCensus()
    counted.begin_walk()
    for key, (p, record) in table.items():
        counted.walked(key, p, record)
    counted.end_walk()
    return counted


def test_only_active_partitions_count_and_a_partition_gone_from_the_table_is_gone_after_the_next_walk() -> None:
    table = {f"k{n}".encode(): (n % 4, RECORDS[n % len(RECORDS)]) for n in range(24)}
    counted = walked_census(table)
    now = T0 + timedelta(days=1)
    assert same(counted.counts({0, 1}, now), from_scratch(table, {0, 1}, now))
    assert counted.counts({0, 1}, now) != counted.counts(PARTITIONS, now)
    assert same(counted.counts(set(), now), Census())
    # partition 3 is revoked: its leads leave the worker (the store drops them); the walk after the rebalance
    table = {key: (p, record) for key, (p, record) in table.items() if p != 3}
    counted.begin_walk()
    for key, (p, record) in table.items():
        counted.walked(key, p, record)
    counted.end_walk()
    assert set(counted.tallies) == {0, 1, 2}, "nothing kept of a partition the worker no longer holds"
    assert same(counted.counts(PARTITIONS, now), from_scratch(table, PARTITIONS, now))
    assert_kept_lean(counted, table)


def test_during_a_walk_the_counts_go_on_from_the_last_complete_census() -> None:
    """After a rebalance the worker keeps partition 0 (active before and after: the agent kept its census up to
    date), is given partition 1 (a standby replica at the last walk: counted as it was then) and partition 2 (not
    held then: counted once the walk ends)."""
    hand_raiser, sal, created = in_stage("mql"), in_stage("sal"), in_stage("lead")
    before = {b"k0": (0, created), b"k1": (1, created)}
    counted = walked_census(before)
    table = {b"k0": (0, created), b"k1": (1, sal), b"k2": (2, hand_raiser)}  # k1 and k2: from the changelogs
    counted.update(b"k0", 0, created, hand_raiser)  # the agent stores k0
    table[b"k0"] = (0, hand_raiser)
    counted.begin_walk()
    counted.walked(b"k0", 0, hand_raiser)
    counted.update(b"k1", 1, sal, hand_raiser)  # the agent stores k1 before the walk reaches it
    table[b"k1"] = (1, hand_raiser)
    now = T0 + timedelta(days=30)
    # k0 as it is; k1 as it was at the last walk (a lead) with the agent's store applied (sal -> mql: the sal it
    # did not count is not shown below zero); k2 not yet
    assert counted.counts(PARTITIONS, now).stages == {"mql": 2, "lead": 1}
    for key in (b"k1", b"k2"):
        counted.walked(key, table[key][0], table[key][1])
    counted.end_walk()
    assert same(counted.counts(PARTITIONS, now), from_scratch(table, PARTITIONS, now))
    assert counted.counts(PARTITIONS, now).stages == {"mql": 3}


class Registry:
    """The lead gauges as Prometheus reads them, from a census and active partitions, at a clock the test moves."""

    def __init__(self, counted: LeadCensus, active: set[int]) -> None:
        self.now = T0
        self.registry = CollectorRegistry()
        self.registry.register(LeadCollector(POLICY, lambda: (counted, active), lambda: self.now))

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def test_the_gauges_say_nothing_before_the_first_walk_then_read_the_census_at_the_scrape_time() -> None:
    counted = LeadCensus()
    gauges = Registry(counted, {0, 1})
    hand_raiser = in_stage("mql")
    counted.update(b"k0", 0, None, hand_raiser)  # stored before any walk: the table may hold more
    assert gauges.value("leadflow_leads", stage="mql") is None
    assert gauges.value("leadflow_sla_overdue", sla="first_contact") is None
    counted.begin_walk()
    counted.walked(b"k0", 0, hand_raiser)
    counted.end_walk()
    assert {gauges.value("leadflow_leads", stage=stage) for stage in POLICY.all_stages} == {0, 1}
    assert gauges.value("leadflow_leads", stage="mql") == 1
    assert gauges.value("leadflow_sla_open", sla="first_contact") == 1
    assert hand_raiser.state is not None
    deadline = hand_raiser.state.clocks["first_contact"].deadline
    gauges.now = deadline - TICK
    assert gauges.value("leadflow_sla_overdue", sla="first_contact") == 0
    gauges.now = deadline  # nothing stored since: the scrape's time alone makes it overdue
    assert gauges.value("leadflow_sla_overdue", sla="first_contact") == 1
    counted.update(b"k9", 2, None, hand_raiser)  # a partition this worker does not own
    assert gauges.value("leadflow_sla_overdue", sla="first_contact") == 1


# ---- the agent (Faust's test_context, memory:// store) ------------------------------------------------------------


def envelope(event_id: str, lead: str, kind: str, seconds: int, **data: object) -> bytes:
    at = datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=seconds)
    body = {"event_id": event_id, "lead_id": lead, "type": kind, "occurred_at": at.isoformat(), "source": "t",
            "data": data}  # fmt: skip
    return orjson.dumps(body)


async def stored(worker: Worker, lead: str, stage: str | None, *, paused: bool = False) -> None:
    """Until the agent has stored the lead in `stage` (None: a record with no lead), paused or not."""
    async with asyncio.timeout(10):
        while True:
            record = worker.leads.get(lead.encode())
            state = record.state if record is not None else None
            if record is not None and (state is None if stage is None else state is not None and
                                       (state.stage, state.paused) == (stage, paused)):  # fmt: skip
                return
            await asyncio.sleep(0.01)


def table_census(worker: Worker, now: datetime) -> Census:
    return census((record.state for record in worker.leads.values() if record.state is not None), now)


def assert_counts_the_table(worker: Worker) -> None:
    everywhere = range(worker.settings.partitions)
    for later in (timedelta(0), timedelta(hours=1), timedelta(days=30)):
        now = datetime.now(UTC) + later
        assert same(worker.timers.census.counts(everywhere, now), table_census(worker, now))


def finish(walk: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that only ever yields to the event loop (asyncio.sleep(0)) to its end."""
    with contextlib.suppress(StopIteration):
        while True:
            walk.send(None)


async def test_the_agent_keeps_the_census_of_its_table_and_a_walk_meanwhile_counts_the_same(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[bytes] = []  # route requests: the router's answers come back through the agent
    capture_outbox(
        monkeypatch, worker, {worker.settings.topic_routing: lambda key, value, headers: requests.append(value or b"")}
    )
    monkeypatch.setattr(worker_module, "REBUILD_CHUNK", 1)
    monkeypatch.setattr(worker, "active_events_partitions", lambda: list(range(worker.settings.partitions)))
    registry = worker.metrics.registry
    worker.app.finalize()
    worker.app.flow_control.resume()
    async with worker.process.test_context() as agent:

        async def put(event_id: str, lead: str, kind: str, seconds: int, **data: object) -> None:
            key = lead.encode()
            value = envelope(event_id, lead, kind, seconds, **data)
            await agent.put(value, key=key, partition=worker.partition_of(key))

        for n in range(6):
            await put(f"c{n}", f"census-{n}", "lead.created", 0)
        for n in (1, 2, 3):
            await put(f"d{n}", f"census-{n}", "activity", 5, action="demo_request")  # mql: two clocks each
            await stored(worker, f"census-{n}", "mql")
        for request in requests:  # each lead waits for its owner before its next events
            answer = router_answer(worker, request)
            proof = [(INTERNAL_HEADER, internal_proof(answer, worker.internal_key))]
            key = orjson.loads(request)["lead_id"].encode()
            await agent.put(answer, key=key, partition=worker.partition_of(key), headers=proof)
        await put("p2", "census-2", "lead.paused", 9)
        await put("u1", "census-unknown", "activity", 0, action="page_view")  # a record with no lead
        await stored(worker, "census-unknown", None)
        for n, stage in enumerate(["lead", "mql", "mql", "mql", "lead", "lead"]):
            await stored(worker, f"census-{n}", stage, paused=n == 2)
        assert_counts_the_table(worker)
        assert table_census(worker, datetime.now(UTC)).stages["mql"] == 3
        assert registry.get_sample_value("leadflow_leads", {"stage": "mql"}) is None, "no walk yet: no sample"

        # A rebalance: the walk counts the table again, a lead at a time, while the agent stores leads.
        walk = worker.timers.rebuild()
        walk.send(None)  # the walk has read one lead
        await put("d0", "census-0", "activity", 5, action="demo_request")
        await put("r2", "census-2", "lead.resumed", 12)
        await put("c6", "census-6", "lead.created", 0)  # a lead the walk does not read
        await put("d6", "census-6", "activity", 15, action="demo_request")
        for lead in ("census-0", "census-2", "census-6"):
            await stored(worker, lead, "mql")
        finish(walk)
        assert worker.timers.census.complete
        assert_counts_the_table(worker)
        await put("d4", "census-4", "activity", 20, action="demo_request")  # after the walk
        await stored(worker, "census-4", "mql")
    assert_counts_the_table(worker)
    counts = table_census(worker, datetime.now(UTC))
    assert counts.stages["mql"] == 6
    for stage in POLICY.all_stages:
        assert registry.get_sample_value("leadflow_leads", {"stage": stage}) == counts.stages[stage]
    for sla in ("mql_acceptance", "first_contact"):
        assert registry.get_sample_value("leadflow_sla_open", {"sla": sla}) == counts.open[sla] == 6
        assert registry.get_sample_value("leadflow_sla_overdue", {"sla": sla}) == counts.overdue[sla]
