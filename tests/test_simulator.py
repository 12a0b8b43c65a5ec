"""The funnel simulator: determinism, schema validity, funnel shape, bad records, live mode, JSONL input."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from factories import Router
from pydantic import ValidationError

from leadflow.schemas.events import EVENT_ADAPTER, EVENT_TYPES, INTERNAL_EVENT_TYPES
from leadflow.schemas.outputs import StageChanged
from leadflow.schemas.policy import load_policy
from leadflow.schemas.state import LeadRecord
from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.simulator import (
    ADVOCACY_ACTIONS,
    BAD_KINDS,
    ENGAGEMENT_POINTS,
    LOST_REASONS,
    PIPELINE,
    REJECTION_REASONS,
    LeadJourney,
    LiveSimulator,
    journeys,
    records,
)
from leadflow.streams.runtime.producer import produce_records, read_jsonl, write_jsonl
from leadflow.streams.runtime.topics import ensure_topics

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
N_LEADS = 2000
SENIOR = {"c_level", "vp", "director", "manager"}

Event = dict[str, Any]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return journeys(42, N_LEADS, START)


@pytest.fixture(scope="module")
def by_lead(events: list[Event]) -> dict[str, list[Event]]:
    leads: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        leads[event["lead_id"]].append(event)
    return leads


POLICY = load_policy()


def _ts(event: Event) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def _leads_with(by_lead: dict[str, list[Event]], type_: str, **data: Any) -> set[str]:
    return {
        lead
        for lead, evs in by_lead.items()
        if any(e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items()) for e in evs)
    }


def _points(evs: list[Event]) -> int:
    return sum(ENGAGEMENT_POINTS.get(e["data"]["action"], 0) for e in evs if e["type"] == "activity")


# -- pure generator ------------------------------------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = journeys(7, 300, START)
    assert first == journeys(7, 300, START)
    assert first != journeys(8, 300, START)
    assert orjson.dumps(first) == orjson.dumps(journeys(7, 300, START))


def test_start_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        journeys(1, 3, datetime(2026, 1, 1))


def test_every_event_validates_and_has_an_offset(events: list[Event]) -> None:
    for event in events:
        parsed = EVENT_ADAPTER.validate_python(event)
        assert parsed.occurred_at.utcoffset() is not None
        assert event["occurred_at"].endswith("Z")
    producer_types = set(EVENT_TYPES) - set(INTERNAL_EVENT_TYPES)  # the timer and the router are leadflow's own
    assert {e["type"] for e in events} == producer_types, "2,000 leads exercise every producer type"


def test_ids_are_deterministic_and_unique(events: list[Event], by_lead: dict[str, list[Event]]) -> None:
    assert len({e["event_id"] for e in events}) == len(events)
    assert len(by_lead) == N_LEADS
    assert "sim-lead-000000" in by_lead
    assert by_lead["sim-lead-000001"][0]["event_id"] == "sim-000001-0"
    custom = journeys(1, 2, START, id_prefix="demo7")
    assert {e["lead_id"] for e in custom} == {"demo7-lead-000000", "demo7-lead-000001"}


def test_sorted_by_time_and_each_lead_in_a_plausible_order(
    events: list[Event], by_lead: dict[str, list[Event]]
) -> None:
    times = [_ts(e) for e in events]
    assert times == sorted(times)
    assert times[0] == START
    for evs in by_lead.values():
        lead_times = [_ts(e) for e in evs]
        assert all(a < b for a, b in itertools.pairwise(lead_times)), evs[0]["lead_id"]
        types = [e["type"] for e in evs]
        assert types[0] == "lead.created"
        assert types.count("lead.created") == 1
        for terminal in ("lead.merged", "lead.erased"):
            if terminal in types:
                assert types[-1] == terminal, (evs[0]["lead_id"], types)
        if "deal.won" in types:  # after the sale, only advocacy (customer -> evangelist)
            after = evs[types.index("deal.won") + 1 :]
            assert all(e["type"] == "activity" and e["data"]["action"] in ADVOCACY_ACTIONS for e in after), types
        if "lead.accepted" in types or "lead.rejected" in types:
            assert ("lead.accepted" in types) != ("lead.rejected" in types)
        if "contact.attempted" in types:
            assert "lead.accepted" in types, "only accepted leads are called (the first call may come before)"
        stages = [e["data"]["stage"] for e in evs if e["type"] == "deal.stage_changed"]
        assert stages == [name for name, _ in PIPELINE[: len(stages)]], "stages advance one at a time"
        if stages:
            assert "lead.accepted" in types
        if "lead.paused" in types:
            assert types.count("lead.paused") == types.count("lead.resumed")
            assert types.index("lead.paused") < types.index("lead.resumed")


def test_funnel_shape(by_lead: dict[str, list[Event]]) -> None:
    accepted = _leads_with(by_lead, "lead.accepted")
    rejected = _leads_with(by_lead, "lead.rejected")
    mql = accepted | rejected
    assert 0.14 * N_LEADS <= len(mql) <= 0.28 * N_LEADS
    assert 0.60 <= len(accepted) / len(mql) <= 0.80
    subscribers = _leads_with(by_lead, "lead.created", initial_stage="subscriber")
    assert 0.10 * N_LEADS <= len(subscribers) <= 0.20 * N_LEADS
    hand_raisers = _leads_with(by_lead, "activity", action="demo_request") | _leads_with(
        by_lead, "activity", action="contact_sales"
    )
    assert 0.02 * N_LEADS <= len(hand_raisers) <= 0.07 * N_LEADS
    assert 0.01 * N_LEADS <= len(_leads_with(by_lead, "lead.qualified")) <= 0.04 * N_LEADS

    reached = [len(_leads_with(by_lead, "deal.stage_changed", stage=stage)) for stage, _ in PIPELINE]
    assert 0.35 <= reached[0] / len(accepted) <= 0.65, "about half of SAL get a qualified call"
    assert all(a > b > 0 for a, b in itertools.pairwise(reached)), reached
    won = _leads_with(by_lead, "deal.won")
    signed = _leads_with(by_lead, "deal.stage_changed", stage="contract_signed")
    assert 1 <= len(won & signed) <= 0.4 * reached[3], "about 20 % of proposals are won"
    early = won - signed  # the CRM reports some wins right after the qualification call (a fact that skips)
    assert early, "some wins skip the pipeline stages"
    assert all(
        [e["data"]["stage"] for e in by_lead[lead] if e["type"] == "deal.stage_changed"] == [PIPELINE[0][0]]
        for lead in early
    )

    connected = {
        lead
        for lead, evs in by_lead.items()
        if any(e["type"] == "contact.attempted" and e["data"]["outcome"] in ("connected", "replied") for e in evs)
    }
    assert 0.70 <= len(connected) / len(accepted) <= 0.95, "most accepted leads connect, some never"
    for lead in connected:
        attempts = [e for e in by_lead[lead] if e["type"] == "contact.attempted"]
        first_ok = next(n for n, e in enumerate(attempts, 1) if e["data"]["outcome"] in ("connected", "replied"))
        assert first_ok <= 4

    for side in ("lead.updated", "lead.paused", "lead.disqualified", "lead.merged", "lead.erased"):
        assert 1 <= len(_leads_with(by_lead, side)) <= 0.15 * N_LEADS, side


def test_reasons_amounts_and_bant(events: list[Event], by_lead: dict[str, list[Event]]) -> None:
    rejections = Counter(e["data"]["reason"] for e in events if e["type"] == "lead.rejected")
    assert set(rejections) <= set(REJECTION_REASONS)
    assert len(rejections) >= 6
    assert {e["data"]["reason"] for e in events if e["type"] == "deal.lost"} <= set(LOST_REASONS)
    won = [e for e in events if e["type"] == "deal.won"]
    assert 0 < sum("amount" not in e["data"] for e in won) < len(won) / 2, "some exports lack the amount"
    origins = Counter(e["data"]["origin"] for e in events if e["type"] == "lead.created")
    assert sum(origins.values()) == len(by_lead), "every lead says where it came from"
    assert len(origins) >= 5
    for event in events:
        if event["type"] == "deal.won":
            assert "amount" not in event["data"] or 5000 * 0.85 <= event["data"]["amount"] <= 50_000
            assert event["data"]["currency"] == "USD"
        if event["type"] == "deal.stage_changed":
            confirmed = {k for k, v in event["data"]["bant"].items() if v}
            assert confirmed == set(dict(PIPELINE)[event["data"]["stage"]])
        if event["type"] == "lead.merged":
            target = event["data"]["into_lead_id"]
            assert target != event["lead_id"]
            assert _ts(by_lead[target][0]) < _ts(event), "merged into an existing lead"
        if event["type"] == "lead.assigned":
            assert event["data"]["team"] == "inside_sales"
        if event["actor"]["team"] == "sales":
            assert event["actor"]["user_id"] in {f"rep-{n:02d}" for n in range(1, 9)}


def test_mql_goes_to_good_fit_engaged_leads(by_lead: dict[str, list[Event]]) -> None:
    mql = _leads_with(by_lead, "lead.accepted") | _leads_with(by_lead, "lead.rejected")
    asserted = (
        _leads_with(by_lead, "activity", action="demo_request")
        | _leads_with(by_lead, "activity", action="contact_sales")
        | _leads_with(by_lead, "lead.qualified")
    )
    unreviewed = []
    for lead, evs in by_lead.items():
        profile: dict[str, Any] = {}
        for e in evs:  # the profile as created, or as completed by a subscriber's first form
            if e["type"] == "lead.created" or (e["type"] == "lead.updated" and "seniority" in e["data"]):
                profile.update(e["data"])
        good_size = 50 <= profile.get("company_size", 0) <= 5000
        if lead in mql and lead not in asserted:
            assert profile["seniority"] in SENIOR, lead
            assert good_size, lead
            assert _points(evs) >= 30, lead
        elif lead not in mql and good_size and _points(evs) >= 30:
            unreviewed.append(lead)  # an MQL nobody in sales reviews (FunnelShape.ignored)
    assert len(unreviewed) <= 0.15 * len(mql), "MQLs that sales never reviews should be a small share"


# -- Kafka records with bad ones -------------------------------------------------------------------------------------


def _undecodable(value: bytes) -> bool:
    try:
        EVENT_ADAPTER.validate_json(value)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize("ratio", [0.0, 0.02, 0.1, 0.5])
def test_records_inject_the_requested_share_of_bad_records(events: list[Event], ratio: float) -> None:
    sample = events[:3000]
    out = records(sample, seed=3, bad_ratio=ratio)
    bad = [value for _, value in out if _undecodable(value)]
    assert abs(len(bad) / len(out) - ratio) <= 1 / len(out)
    good = [orjson.loads(value) for _, value in out if not _undecodable(value)]
    assert good == sample, "every good event is kept, in order"
    for (key, value), previous in zip(out, [(b"", b"{}"), *out], strict=False):
        if _undecodable(value):  # a bad record follows the event it was made from, with that event's key
            assert key == previous[0] != b""
        else:
            assert key == orjson.loads(value)["lead_id"].encode()
    if ratio >= 0.02:
        kinds = Counter(_bad_kind(value) for value in bad)
        assert set(kinds) == set(BAD_KINDS)
    assert out == records(sample, seed=3, bad_ratio=ratio)


def _bad_kind(value: bytes) -> str:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if obj.get("type") == "lead.teleported":
        return "unknown_type"
    if "occurred_at" in obj and not obj["occurred_at"].endswith("Z"):
        return "naive_timestamp"
    return "missing_field"


def test_records_rejects_impossible_ratio() -> None:
    with pytest.raises(ValueError, match="bad_ratio"):
        records([], bad_ratio=1.0)


# -- live driver -----------------------------------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when the simulator sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _run_live(sim_kwargs: dict[str, Any], **run_kwargs: Any) -> tuple[list[tuple[bytes, bytes]], FakeTime]:
    fake = FakeTime(START)
    sent: list[tuple[bytes, bytes]] = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    sim = LiveSimulator(clock=fake.clock, sleep=fake.sleep, **sim_kwargs)
    count = await sim.run(send, **run_kwargs)
    assert count == len(sent)
    return sent, fake


async def test_live_minute_is_valid_and_reaches_every_stage() -> None:
    sent, fake = await _run_live({"seed": 1, "id_prefix": "live"}, duration_s=60.0)
    assert fake.now >= START + timedelta(seconds=60)
    events = [orjson.loads(value) for _, value in sent]
    by_lead: dict[str, list[Event]] = defaultdict(list)
    for (key, _), event in zip(sent, events, strict=True):
        EVENT_ADAPTER.validate_python(event)
        assert key == event["lead_id"].encode()
        assert START <= _ts(event) <= fake.now
        by_lead[event["lead_id"]].append(event)
    assert 900 <= len(by_lead) <= 1500, "about 20 leads per second"
    for evs in by_lead.values():
        times = [_ts(e) for e in evs]
        assert all(a < b for a, b in itertools.pairwise(times))
    assert len(_leads_with(by_lead, "deal.won")) >= 1, "a 60 s demo shows customers"
    for stage, _ in PIPELINE:
        assert _leads_with(by_lead, "deal.stage_changed", stage=stage), stage

    # The live driver walks the same journeys as the pure one: each lead's types are a prefix of its journey.
    pure = journeys(1, len(by_lead), START, id_prefix="live")
    pure_types: dict[str, list[str]] = defaultdict(list)
    for event in pure:
        pure_types[event["lead_id"]].append(event["type"])
    for lead, evs in by_lead.items():
        live_types = [e["type"] for e in evs]
        assert pure_types[lead][: len(live_types)] == live_types


async def test_live_meeting_start_is_scaled_by_speed() -> None:
    sent, _ = await _run_live({"seed": 2, "speed": 3600.0, "max_leads": 60}, duration_s=None)
    meetings = [orjson.loads(v) for _, v in sent if b'"meeting.scheduled"' in v]
    assert meetings
    for meeting in meetings:
        ahead = datetime.fromisoformat(meeting["data"]["starts_at"]) - _ts(meeting)
        assert timedelta(0) < ahead <= timedelta(seconds=7 * 86400 / 3600 + 1)


async def test_live_stops_on_event_and_ends_when_journeys_end() -> None:
    stop = asyncio.Event()
    fake = FakeTime(START)
    sent: list[bytes] = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append(value)
        if len(sent) == 25:
            stop.set()

    await LiveSimulator(clock=fake.clock, sleep=fake.sleep).run(send, duration_s=None, stop=stop)
    assert len(sent) == 25

    finished, _ = await _run_live({"seed": 9, "max_leads": 10}, duration_s=None)
    assert len({key for key, _ in finished}) == 10
    expected = journeys(9, 10, START, id_prefix="live")
    assert sorted(orjson.loads(v)["event_id"] for _, v in finished) == sorted(e["event_id"] for e in expected)


async def test_live_bad_ratio() -> None:
    sent, _ = await _run_live({"seed": 4, "bad_ratio": 0.1}, duration_s=20.0)
    bad = sum(_undecodable(value) for _, value in sent)
    assert 0.07 <= bad / len(sent) <= 0.13


def test_live_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        LiveSimulator(leads_per_s=0)
    with pytest.raises(ValueError, match="bad_ratio"):
        LiveSimulator(bad_ratio=-0.1)


def test_one_state_machine_per_lead_is_deterministic() -> None:
    def steps(journey: LeadJourney) -> list[tuple[float, Event]]:
        out = []
        while (step := journey.next_step()) is not None:
            out.append((step.delay_s, step.event))
        return out

    assert steps(LeadJourney(1, 17)) == steps(LeadJourney(1, 17))
    assert steps(LeadJourney(1, 17))[0][1]["type"] == "lead.created"


# -- JSONL input -----------------------------------------------------------------------------------------------------


def test_read_jsonl_keys_by_lead_id_and_never_drops_a_record(tmp_path: Path) -> None:
    good = {"event_id": "e1", "lead_id": "L-1", "type": "lead.created", "occurred_at": "2026-01-01T00:00:00Z"}
    lines = [
        orjson.dumps(good),
        b'{"event_id": "e2", "lead_id": "L-2", "type": "lead.teleported"}\r',
        b"{not json",
        b'{"event_id": "e3", "type": "activity"}',
        b'["lead_id", "L-3"]',
        b'{"lead_id": 7}',
        b"   ",
        b"",
        b'{"lead_id": "L-4"}',
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))  # no trailing newline on the last line
    got = list(read_jsonl(path))
    assert [key for key, _ in got] == [b"L-1", b"L-2", b"", b"", b"", b"", b"L-4"]
    assert [value for _, value in got] == [line.rstrip(b"\r") for line in lines if line.strip()]


def test_read_jsonl_reads_a_gzipped_file_as_replay_does(tmp_path: Path, events: list[Event]) -> None:
    """`leadflow produce history.jsonl.gz` sends the lines, not the compressed bytes, whatever the file's name."""
    plain = tmp_path / "sim.jsonl"
    write_jsonl(plain, events[:50])
    for name in ("sim.jsonl.gz", "sim-compressed.jsonl"):
        (tmp_path / name).write_bytes(gzip.compress(plain.read_bytes()))
        assert list(read_jsonl(tmp_path / name)) == list(read_jsonl(plain))


def test_write_then_read_jsonl_round_trip(tmp_path: Path, events: list[Event]) -> None:
    path = tmp_path / "sim.jsonl"
    assert write_jsonl(path, events[:500]) == 500
    got = list(read_jsonl(path))
    assert got == records(events[:500])


def test_occurred_at_keeps_the_instant_for_other_offsets() -> None:
    local = START.astimezone(timezone(timedelta(hours=-3)))
    assert journeys(3, 20, local) == journeys(3, 20, START)


# -- against the embedded broker -------------------------------------------------------------------------------------


@pytest.mark.broker
async def test_produce_records_keyed_by_lead(broker: BrokerProcess, unique_topic_prefix: str) -> None:
    topic = f"{unique_topic_prefix}events"
    await ensure_topics(broker.bootstrap, {topic: 3})
    sample = records(journeys(11, 40, START), seed=1, bad_ratio=0.05)
    sample.append((b"", b"{not json"))
    assert await produce_records(broker.bootstrap, topic, sample, embedded=broker.one_record_per_batch) == len(sample)

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[Any] = []
        async with asyncio.timeout(20):
            while len(got) < len(sample):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(batch)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert sum(ends.values()) == len(sample), "one record per batch keeps the high watermark exact"
    partition_of: dict[bytes, int] = {}
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in got:
        assert partition_of.setdefault(record.key, record.partition) == record.partition
        per_key[record.key].append(record.value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in sample:
        expected[key].append(value)
    assert per_key == expected, "every record arrives, each lead's records in order"


async def test_live_minute_through_the_core_reaches_every_lifecycle_stage() -> None:
    """What `leadflow run --for 60` shows: the simulated minute, decided by the core, fills every stage."""
    sent, fake = await _run_live({"seed": 1, "id_prefix": "live"}, duration_s=60.0)
    records: dict[str, LeadRecord | None] = {}
    reached: set[str] = set()
    router = Router(POLICY)  # the router agent of this world: answers every MQL's route request at once
    for _, value in sent:
        event = EVENT_ADAPTER.validate_json(value)
        decision = router.decide(records.get(event.lead_id), event, fake.now)
        records[event.lead_id] = decision.record
        reached.update(o.to_stage for o in decision.outputs if isinstance(o, StageChanged))
    assert reached == set(POLICY.all_stages)
