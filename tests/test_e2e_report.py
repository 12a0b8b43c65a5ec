"""The live funnel report equals the offline one over the same events (issue 9, item 5).

One seeded stream of a few hundred leads (MQLs by score, by raising a hand and by an external tool; acceptances,
rejections with reasons, deals won with and without an amount, facts that skip stages, lost deals, pauses, CRM
assignments, merges, erasures; SLA clocks met, met late, warned, breached, escalated with a reassignment and
recycled) goes to two deployments on the embedded broker: one with one worker, one with two workers in one
consumer group. Once every event is applied and every SLA instant up to the end has been decided, what the
workers report (`GET /funnel`, `GET /funnel/leads`, `streams.cli.report_client.merged_report`, `leadflow report`)
must equal what the offline engine (`core.engine.Engine`, `leadflow replay`) computes from the same events:
lead summary by lead summary, and report figure by figure, owners included.

The stream is produced in real time (each event when the wall clock reaches its occurred_at), not as a backlog
of past-dated history: offline, the router's answer is applied the moment it is asked for, as in a live worker
that keeps up; live, it takes effect when it reaches the lead (`core.decision.in_arrival_order`), and in a
backlog it reaches the lead after every later event of that lead already waiting in the partition (an
acceptance would then overtake the hand-off, a breach would find no owner to escalate from; measured with this
stream dated 45 minutes back and produced at once: 35 of the 36 MQLs differ, no routed hand-off at all, 2
escalations fewer). The journeys keep each lead's events 3 s away from its router round trips and from about the
grace after its own SLA instants (where the live timer races with the lead's next event), and the route requests
of one pool 1 s apart (so round robin sees them in the same order live and offline): the outcome does not depend
on how fast a worker answers. `check_design` verifies that on the offline run before any worker sees the stream.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from pprint import pformat
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from e2e import PARTITIONS, Deployment, produce_in_real_time, topic_size

from leadflow.core.engine import Engine
from leadflow.core.report import LeadSummary, funnel_report, summaries_of
from leadflow.core.review import review
from leadflow.schemas.events import EVENT_ADAPTER
from leadflow.schemas.outputs import RouteRequest, SlaBreached, SlaWarning
from leadflow.schemas.policy import Policy, load_policy
from leadflow.streams.cli.report_client import fetch_summaries, merged_report
from leadflow.streams.dev.broker import BrokerProcess, free_port
from leadflow.streams.dev.worker_process import WorkerProcess, committed_offsets
from leadflow.streams.runtime.metrics import Partitioner

pytestmark = pytest.mark.broker

SEED = 20261201
GRACE_S = 2.0  # processing.sla_grace_seconds
ACCEPT_S = 9.0  # mql_acceptance (warning at half); a breach is decided at +11 s, then reassigned
CONTACT_S = 15.0  # first_contact (warning at half)
HAND_RAISER_CONTACT_S = 6.0  # first_contact for hand-raisers
ATTEMPTS_S = 15.0  # contact_attempts: 2 attempts within 15 s of the acceptance, else recycle
LEAD_IN_S = 7.0  # from the start of the stream to the first MQL moment (the score path starts 6 s before it)
SLOT_S = 2.0  # MQL moments are SLOT_S apart, one per pool; escalations are decided 1 s off that grid
SLOTS = 12
COLD_LEADS = 260

POOLS: dict[str, dict[str, Any]] = {
    # pool -> the profile that routes there (fit 50-65: MQL once engagement reaches 30)
    "enterprise": {"job_title": "VP of Sales", "seniority": "vp", "company_size": 2000, "industry": "saas",
                   "country": "US", "persona": "decision_maker"},
    "latam": {"job_title": "Sales Director", "seniority": "director", "company_size": 200, "industry": "finance",
              "country": "BR", "persona": "champion"},
    "general": {"job_title": "Head of Growth", "seniority": "director", "company_size": 300, "industry": "saas",
                "country": "DE", "persona": "decision_maker"},
}  # fmt: skip
POOR_FIT: dict[str, Any] = {"job_title": "Analyst", "seniority": "individual", "company_size": 8,
                            "industry": "retail", "country": "BR", "persona": "end_user"}  # fmt: skip
SOURCES = ("hubspot", "rdstation", "mautic")
ORIGINS = ("partner_referral", "paid_search", "webinar")
REJECTION_REASONS = ("not_icp", "no_budget", "wrong_contact", "bad_data", "no_interest")
LOST_REASONS = ("price", "competitor", "no_decision", "timing")
PHONE = {"channel": "phone", "outcome": "no_answer"}
EMAIL = {"channel": "email", "outcome": "replied"}
CALL = {"stage": "qualified_call", "bant": {"need": True}}
FRAMING = {"stage": "framing_meeting", "bant": {"need": True, "authority": True}}

Step = tuple[float, str, dict[str, Any]]  # seconds after the lead's MQL moment, event type, data


def after_mql(kind: str, rng: random.Random) -> list[Step]:
    """What a lead does once it is an MQL. Offsets avoid (MQL, MQL + 3 s) — the router's round trip — and, for
    leads whose acceptance clock breaches (9 s; escalation decided at 11 s), (9 s, 14 s); and no event of a lead
    comes at about the grace after one of its SLA instants, where the live timer races with it (`check_design`
    verifies both on the offline run)."""
    amount = float(rng.randrange(50, 500) * 100)
    pipeline: list[Step] = [
        (3, "lead.accepted", {}),
        (4, "contact.attempted", PHONE),
        (6, "contact.attempted", EMAIL),
        (8, "deal.stage_changed", CALL),
        (10, "deal.stage_changed", FRAMING),
    ]
    journeys: dict[str, list[Step]] = {
        "customer": [*pipeline, (12, "deal.won", {"amount": amount, "currency": "USD"})],
        "evangelist": [*pipeline, (12, "deal.won", {"amount": amount}), (14, "activity", {"action": "referral_given"})],
        "won_unknown_amount": [*pipeline, (12, "deal.won", {})],
        # facts from the CRM that skip stages
        "won_from_mql": [(4, "deal.won", {"amount": amount})],
        "won_from_sal": [(3, "lead.accepted", {}), (5, "contact.attempted", PHONE), (7, "deal.won", {})],
        "sql": pipeline[:4],  # still an SQL at the end: its dwell clock open
        "lost": [*pipeline[:4], (11, "deal.lost", {"reason": rng.choice(LOST_REASONS)})],
        "lost_other": [*pipeline[:4], (11, "deal.lost", {"reason": "budget_freeze"})],
        "rejected": [(3, "lead.rejected", {"reason": rng.choice(REJECTION_REASONS)})],
        "rejected_late": [(6, "lead.rejected", {"reason": rng.choice(REJECTION_REASONS)})],  # after the warning
        "disqualified": [(3, "lead.accepted", {}), (5, "lead.disqualified", {"reason": "no_need"})],
        # accepted after the warning, never contacted: first contact breached, too few attempts (recycle)
        "warned": [(5.8, "lead.accepted", {})],
        # first contact after its deadline: met late
        "late_contact": [
            (3, "lead.accepted", {}),
            (16.5, "contact.attempted", PHONE),
            (17.5, "contact.attempted", EMAIL),
        ],
        # not accepted in time: breach, reassigned to the pool's next owner, who accepts in time
        "escalated": [
            (4, "contact.attempted", PHONE),
            (15, "lead.accepted", {}),
            (17, "contact.attempted", PHONE),
            (20, "contact.attempted", EMAIL),
        ],
        # never accepted: breach, reassignment, a second breach (notify only); open and overdue at the end
        "never": [],
        # the CRM assigns its own owner after the hand-off
        "assigned": [
            (3, "lead.assigned", {"owner_id": "rep-crm", "team": "inside_sales"}),
            (5, "lead.accepted", {}),
            (6, "contact.attempted", PHONE),
            (8, "contact.attempted", EMAIL),
        ],
        # on hold for 4 s: every clock's deadline moves by as much
        "paused": [
            (3, "lead.accepted", {}),
            (4, "lead.paused", {"reason": "lead_on_leave"}),
            (8, "lead.resumed", {}),
            (15, "contact.attempted", PHONE),
            (15.5, "contact.attempted", EMAIL),
        ],
    }  # fmt: skip
    return journeys[kind]


MQL_KINDS = (
    "customer", "evangelist", "won_unknown_amount", "won_from_mql", "won_from_sal", "sql", "lost", "lost_other",
    "rejected", "rejected_late", "disqualified", "warned", "late_contact", "escalated", "never", "assigned",
    "paused",
)  # fmt: skip
PATHS = ("score", "hand_raiser", "external")


def report_policy(directory: Path) -> Path:
    """The default policy with wall-clock SLAs of seconds (business calendars would make the outcome depend on
    the day the test runs), a 2 s grace, and routing over three pools of two owners without capacity limits
    or away days (so which owner a lead gets depends only on the order of its pool's requests)."""
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["name"] = "report-e2e"
    document["version"] = 3
    document["processing"]["sla_grace_seconds"] = GRACE_S
    document["slas"] = [
        {"name": "mql_acceptance", "starts_on_stage": "mql", "met_by": ["lead.accepted", "lead.rejected"],
         "allowance": {"minutes": ACCEPT_S / 60}, "warn_at": [0.5], "escalate": ["reassign", "notify"]},
        {"name": "first_contact", "starts_on_stage": "mql", "met_by": ["contact.attempted"],
         "runs_in": ["mql", "sal", "sql", "opportunity"], "allowance": {"minutes": CONTACT_S / 60},
         "overrides": [{"when": "hand_raiser", "allowance": {"minutes": HAND_RAISER_CONTACT_S / 60}}],
         "warn_at": [0.5]},
        {"name": "sql_max_dwell", "starts_on_stage": "sql", "met_on_leaving": True,
         "allowance": {"minutes": 10080}, "warn_at": [0.75]},
        {"name": "contact_attempts", "starts_on_stage": "sal", "count_event": "contact.attempted", "at_least": 2,
         "allowance": {"minutes": ATTEMPTS_S / 60}, "warn_at": [0.5], "on_breach": "recycle",
         "escalate": ["notify"]},
    ]  # fmt: skip
    document["routing"] = {
        "fallback_pool": "general",
        "pools": [
            {"name": "enterprise", "team": "inside_sales", "manager": "mgr-enterprise",
             "when": [{"attribute": "company_size", "min": 1000}], "owners": [{"id": "rep-01"}, {"id": "rep-02"}]},
            {"name": "latam", "team": "inside_sales", "manager": "mgr-latam",
             "when": [{"attribute": "country", "in": ["BR", "MX", "PT"]}],
             "owners": [{"id": "rep-04"}, {"id": "rep-05"}]},
            {"name": "general", "team": "inside_sales", "manager": "mgr-general",
             "owners": [{"id": "rep-07"}, {"id": "rep-08"}]},
        ],
    }  # fmt: skip
    path = directory / "policy-report-e2e.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass
class Stream:
    """Envelopes to produce, each at its occurred_at (unix time `at`), in the order they are added per lead."""

    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    count: dict[str, int] = field(default_factory=dict)

    def add(self, lead: str, at: float, kind: str, data: dict[str, Any], *, source: str = "salesforce") -> None:
        n = self.count.get(lead, 0)
        self.count[lead] = n + 1
        envelope: dict[str, Any] = {
            "event_id": f"{lead}-{n}",
            "lead_id": lead,
            "type": kind,
            "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
            "source": source,
        }
        if kind.startswith(("lead.accepted", "lead.rejected", "contact.", "deal.", "lead.paused", "lead.resumed")):
            envelope["actor"] = {"team": "sales", "user_id": "rep-crm"}
        if data:
            envelope["data"] = data
        self.records.append((at, envelope))

    def timed(self) -> list[tuple[float, bytes, bytes]]:
        return [(at, e["lead_id"].encode(), orjson.dumps(e)) for at, e in self.records]

    def envelopes(self) -> list[dict[str, Any]]:
        """In event-time order (ties in the order they were added): what the offline engine is fed."""
        return [e for _, e in sorted(self.records, key=lambda item: item[0])]

    def __add__(self, other: Stream) -> Stream:
        return Stream([*self.records, *other.records], {**self.count, **other.count})


def profile_data(rng: random.Random, base: dict[str, Any], n: int) -> dict[str, Any]:
    data = {**base, "email": f"contact{n}@example.com", "company": f"Company {n}"}
    if rng.random() < 0.4:
        data["origin"] = rng.choice(ORIGINS)  # a custom attribute: the lead's marketing origin (by_source)
    return data


def add_mql_lead(stream: Stream, rng: random.Random, n: int, *, m: float, pool: str, path: str, kind: str) -> None:
    """A lead that becomes an MQL at `m` (routed to `pool`) by `path`, then follows the `kind` journey."""
    lead = f"mql-{n:03d}-{kind}"
    source = rng.choice(SOURCES)
    profile = profile_data(rng, POOLS[pool], n)
    if path == "score":  # fit >= 40; engagement 15 + 10 + 10 = 35 >= 30 at the second form
        stream.add(lead, m - 6, "lead.created", profile, source=source)
        stream.add(lead, m - 4, "activity", {"action": "pricing_view"}, source=source)
        stream.add(lead, m - 2, "activity", {"action": "form_submit"}, source=source)
        stream.add(lead, m, "activity", {"action": "form_submit"}, source=source)
    elif path == "hand_raiser":
        stream.add(lead, m - 3, "lead.created", profile, source=source)
        stream.add(lead, m, "activity", {"action": rng.choice(("demo_request", "contact_sales"))}, source=source)
    else:  # an MQL asserted by an external tool, on a subscriber: skips `lead`
        stream.add(lead, m - 4, "lead.created", {**profile, "initial_stage": "subscriber"}, source=source)
        stream.add(lead, m, "lead.qualified", {"reason": "sdr_referral"})
    for offset, event_type, data in after_mql(kind, rng):
        stream.add(lead, m + offset, event_type, data)


def add_cold_lead(stream: Stream, rng: random.Random, n: int, *, at: float, others: list[str]) -> str:
    """A lead that never becomes an MQL (poor fit): a little activity, sometimes a conversion, an update, a
    disqualification, a merge, an erasure, or a deal won straight from `lead` (a fact that skips the funnel)."""
    lead = f"cold-{n:03d}"
    source = rng.choice(SOURCES)
    subscriber = rng.random() < 0.25
    data = profile_data(rng, POOR_FIT, n)
    if subscriber:
        data["initial_stage"] = "subscriber"
    stream.add(lead, at, "lead.created", data, source=source)
    for _ in range(rng.randint(0, 3)):
        at += rng.uniform(0.5, 4.0)
        action = rng.choice(("page_view", "email_open", "email_click", "content_download", "form_submit"))
        stream.add(lead, at, "activity", {"action": action}, source=source)
    roll = rng.random()
    at += rng.uniform(0.5, 4.0)
    if roll < 0.08:
        stream.add(lead, at, "lead.updated", {"job_title": "Designer", "origin": rng.choice(ORIGINS)}, source=source)
    elif roll < 0.14:
        stream.add(lead, at, "lead.disqualified", {"reason": "student"})
    elif roll < 0.18 and others:
        stream.add(lead, at, "lead.merged", {"into_lead_id": rng.choice(others)})
    elif roll < 0.21:
        stream.add(lead, at, "lead.erased", {})
    elif roll < 0.24:
        stream.add(lead, at, "deal.won", {"amount": 1200.0} if rng.random() < 0.5 else {})
    return lead


def journeys(start: float) -> tuple[Stream, float]:
    """The seeded stream from `start` (unix time): 36 MQLs on a grid of moments (one per pool and slot) among
    260 cold leads; and the time of its last event."""
    rng = random.Random(SEED)
    stream = Stream()
    kinds = [*MQL_KINDS, *MQL_KINDS, *rng.sample(MQL_KINDS, SLOTS * len(POOLS) - 2 * len(MQL_KINDS))]
    rng.shuffle(kinds)
    n = 0
    for slot in range(SLOTS):
        m = start + LEAD_IN_S + slot * SLOT_S
        for p, pool in enumerate(POOLS):
            kind = kinds.pop()
            add_mql_lead(stream, rng, n, m=m, pool=pool, path=PATHS[(slot + p) % len(PATHS)], kind=kind)
            n += 1
    span = LEAD_IN_S + SLOTS * SLOT_S + 4
    cold: list[str] = []
    for _ in range(COLD_LEADS):
        cold.append(add_cold_lead(stream, rng, n, at=start + rng.uniform(0, span), others=cold[-50:]))
        n += 1
    return stream, start + span


# ---- the offline side ------------------------------------------------------------------------------------------


def offline_engine(envelopes: list[dict[str, Any]], policy: Policy, until: datetime) -> tuple[Engine, list[Any]]:
    """The whole worker in one process, fed in event-time order, its clocks run up to `until`."""
    engine = Engine(policy)
    outputs: list[Any] = []
    for envelope in envelopes:
        outputs += engine.feed(EVENT_ADAPTER.validate_python(envelope))
    outputs += engine.finish(until=until)
    return engine, outputs


def offline_summaries(envelopes: list[dict[str, Any]], policy: Policy, until: datetime) -> list[LeadSummary]:
    engine, _ = offline_engine(envelopes, policy, until)
    return list(summaries_of(engine.leads()))


def times_of(envelopes: list[dict[str, Any]], lead: str) -> list[float]:
    return [datetime.fromisoformat(e["occurred_at"]).timestamp() for e in envelopes if e["lead_id"] == lead]


def check_design(envelopes: list[dict[str, Any]], policy: Policy, end: float) -> float:
    """The stream is what the module docstring says (checked offline, before any worker sees it): route
    requests of a pool at least 1 s apart, no lead event within 3 s after a route request of that lead
    (decided at its time, or for an escalation at its deadline + grace), and none about the grace after an SLA
    instant of that lead. Returns the last SLA instant (the 7-day dwell's are days away)."""
    _, outputs = offline_engine(envelopes, policy, datetime.fromtimestamp(end + 600, UTC))
    requests = [o for o in outputs if isinstance(o, RouteRequest)]
    by_pool: dict[str, list[float]] = {}
    for request in requests:
        decided = request.occurred_at.timestamp() + (GRACE_S if request.escalated_sla else 0.0)
        by_pool.setdefault(request.pool, []).append(decided)
        asked = request.occurred_at.timestamp()
        later = [at for at in times_of(envelopes, request.lead_id) if at > asked]
        assert all(at >= decided + 3.0 - 0.001 for at in later), (request, min(later, default=None))
    for pool, times in by_pool.items():
        times.sort()
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), (pool, times)
    fired = [o for o in outputs if isinstance(o, SlaWarning | SlaBreached)]
    for output in fired:
        # The lead's first event at or after the instant: the timer fires before it live and offline, or it
        # notices the instant itself in both; but not when it comes about the grace after the instant (live,
        # the timer then races with the event).
        instant = output.occurred_at.timestamp()
        after = min((at for at in times_of(envelopes, output.lead_id) if at >= instant), default=None)
        assert after is None or not instant + GRACE_S - 0.05 <= after <= instant + GRACE_S + 1.0, (output, after)
    instants = [o.occurred_at.timestamp() for o in fired]
    assert max(instants) < end + 60, "an SLA instant falls after the stream's end: the wait below would miss it"
    return max(instants)


# ---- the live side ---------------------------------------------------------------------------------------------


@dataclass
class Live:
    policy_path: Path
    policy: Policy
    events_file: Path  # every envelope produced, one per line (in reverse order: the replay sorts)
    envelopes: list[dict[str, Any]]  # the same, in event-time order
    one: str  # web address of the deployment with one worker
    two: list[str]  # web addresses of the two workers of the other deployment
    two_partitions: list[set[int]]  # the events partitions each of those two workers holds


def second_worker(deployment: Deployment, env: dict[str, str]) -> tuple[WorkerProcess, int]:
    """Another worker in the deployment's consumer group, with its own web port and data directory."""
    port = free_port()
    own = {"LEADFLOW_WEB_PORT": str(port), "LEADFLOW_DATA_DIR": str(deployment.workdir / "data-2")}
    worker_env = {**env, **deployment.settings().as_env(), **own}
    return WorkerProcess(worker_env, deployment.workdir / "worker-2.log", loglevel="info"), port


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.get(url) as answer:
        return answer.status, await answer.read()


async def assigned_partitions(url: str, topic: str) -> set[int] | None:
    """The events partitions a worker holds as active, from its consumer lag gauges (None: not answering)."""
    try:
        status, body = await get(f"{url}/metrics")
    except aiohttp.ClientError:
        return None
    if status != 200:
        return None
    partitions = set()
    for line in body.decode().splitlines():
        if line.startswith("leadflow_consumer_lag{") and f'topic="{topic}"' in line:
            partitions.add(int(line.split('partition="', 1)[1].split('"', 1)[0]))
    return partitions


def check_running(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        assert worker.exit_code() is None, f"{worker.log_path} exited:\n{worker.log_tail()}"


async def wait_split(urls: list[str], topic: str, workers: list[WorkerProcess]) -> list[set[int]]:
    """Until the workers hold disjoint, non-empty sets of the events partitions that cover them all."""
    deadline = time.monotonic() + 90
    while True:
        held = [await assigned_partitions(url, topic) for url in urls]
        sets = [h for h in held if h]
        covered = set().union(*sets) == set(range(PARTITIONS))
        if len(sets) == len(urls) and sum(map(len, sets)) == PARTITIONS and covered:
            return sets
        check_running(workers)
        assert time.monotonic() < deadline, f"partitions never split between the workers: {held}"
        await asyncio.sleep(0.5)


def warm_up_leads() -> list[str]:
    """One lead per partition, so that a processed warm-up shows every partition is being consumed."""
    partition_of = Partitioner(PARTITIONS)
    chosen: dict[int, str] = {}
    for n in range(1000):
        chosen.setdefault(partition_of(f"warm-up-{n}".encode()), f"warm-up-{n}")
        if len(chosen) == PARTITIONS:
            break
    return [chosen[p] for p in range(PARTITIONS)]


async def wait_settled(deployment: Deployment, workers: list[WorkerProcess], timeout_s: float = 60) -> None:
    """Until the group has committed every record of the events topic (the stream, the router's answers, the
    timers' ticks) and the events, SLA, hand-off, transition and routing topics have been quiet for 3 s."""
    bootstrap = deployment.broker.bootstrap
    topics = [deployment.events, deployment.sla, deployment.handoffs, deployment.transitions]
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, ...] | None = None
    since = time.monotonic()
    while True:
        sizes = (*[await topic_size(bootstrap, t) for t in topics], await topic_size(bootstrap, deployment.routing, 1))
        committed = sum((await committed_offsets(bootstrap, deployment.app_id, deployment.events, PARTITIONS)).values())
        if sizes != seen:
            seen, since = sizes, time.monotonic()
        elif committed == sizes[0] and time.monotonic() - since >= 3.0:
            return
        check_running(workers)
        assert time.monotonic() < deadline, f"{deployment.prefix}: not settled, committed {committed} of {sizes}"
        await asyncio.sleep(0.5)


async def run_live(broker: BrokerProcess, workdir: Path, workers: list[WorkerProcess]) -> Live:
    prefix = f"report-{uuid.uuid4().hex[:8]}."
    one = Deployment(broker, f"{prefix}one.", workdir / "one")
    two = Deployment(broker, f"{prefix}two.", workdir / "two")
    await asyncio.gather(one.create_topics(), two.create_topics())
    policy_path = report_policy(workdir)
    policy = load_policy(policy_path)
    env = {"LEADFLOW_POLICY": str(policy_path), "LEADFLOW_COMMIT_INTERVAL_S": "0.5"}
    other, other_port = second_worker(two, env)
    workers += [one.worker("worker", **env), two.worker("worker-1", **env), other]
    for worker in workers:
        worker.start()
    urls_two = [f"http://127.0.0.1:{two.web_port}", f"http://127.0.0.1:{other_port}"]

    # Warm up: every partition consumed by each deployment, the two workers' split settled (no rebalance later).
    warm = Stream()
    now = time.time()
    for lead in warm_up_leads():
        warm.add(lead, now, "lead.created", {"country": "PT"}, source="warm-up")
    await produce_in_real_time([one, two], warm.timed())
    await asyncio.gather(one.wait_processed(workers[0]), two.wait_processed(workers[1]))
    split = await wait_split(urls_two, two.events, workers)

    stream, end = journeys(time.time() + 1.0)
    envelopes = (warm + stream).envelopes()
    last_instant = check_design(stream.envelopes(), policy, end)
    events_file = workdir / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in reversed(envelopes)))

    lag = await produce_in_real_time([one, two], stream.timed())
    assert lag < 0.5, f"the producer fell {lag:.2f} s behind the real-time schedule: the scenario did not hold"
    # Scenario scheduling, not synchronisation: the last SLA instant must have come (plus the grace) before the
    # workers can have decided it; then wait for them to settle.
    await asyncio.sleep(max(0.0, last_instant + GRACE_S + 1.0 - time.time()))
    await asyncio.gather(wait_settled(one, workers[:1]), wait_settled(two, workers[1:]))
    assert await wait_split(urls_two, two.events, workers) == split, "the two workers rebalanced mid-stream"
    return Live(policy_path, policy, events_file, envelopes, f"http://127.0.0.1:{one.web_port}", urls_two, split)


@pytest.fixture(scope="module")
def live(broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Both deployments, settled after the stream; the workers keep running for the tests of this module."""
    workers: list[WorkerProcess] = []
    try:
        yield asyncio.run(run_live(broker, tmp_path_factory.mktemp("report"), workers))
    finally:
        for worker in workers:
            worker.stop()


# ---- comparing -------------------------------------------------------------------------------------------------


def normal(report: dict[str, Any]) -> Any:
    """The report as JSON reads it back (what /funnel serves): tuples as lists, the same floats."""
    return orjson.loads(orjson.dumps(report))


def summary_diff(a: LeadSummary, b: LeadSummary) -> dict[str, Any]:
    mine, theirs = a.model_dump(mode="json"), b.model_dump(mode="json")
    return {key: {"live": mine[key], "offline": theirs[key]} for key in mine if mine[key] != theirs.get(key)}


def assert_same_leads(live: list[LeadSummary], offline: list[LeadSummary]) -> None:
    """Lead by lead: the same leads, and the same summary for each (the first differences in full)."""
    mine, theirs = {s.lead_id: s for s in live}, {s.lead_id: s for s in offline}
    assert len(mine) == len(live), "a worker served a lead twice"
    missing, extra = sorted(theirs.keys() - mine.keys()), sorted(mine.keys() - theirs.keys())
    differ = sorted(lead for lead in mine.keys() & theirs.keys() if mine[lead] != theirs[lead])
    details = {lead: summary_diff(mine[lead], theirs[lead]) for lead in differ[:3]}
    assert (missing, extra, differ) == ([], [], []), pformat(
        {"missing live": missing[:10], "extra live": extra[:10], "differ": differ[:20], "first": details}, width=116
    )


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            if key not in a or key not in b:
                return f"{path}.{key}: {a.get(key, '(missing)')!r} != {b.get(key, '(missing)')!r}"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def assert_same_reports(got: dict[str, Any], want: dict[str, Any]) -> None:
    got, want = normal(got), normal(want)
    assert got == want, first_difference(got, want)


def assert_rich(report: dict[str, Any]) -> None:
    """The stream is the scenario it was designed to be (so equal reports are not equal because empty)."""
    figures = {
        "leads": report["leads"] > 250,
        "merged": report["merged"] > 0,
        "customers": report["stage_counts"]["customer"] > 0,
        "evangelists": report["stage_counts"]["evangelist"] > 0,
        "rejection reasons": len(report["rejections"]) >= 3,
        "skips": {"mql->customer", "sal->customer", "lead->customer", "subscriber->mql"} <= set(report["skips"]),
        "won with amount": report["revenue"]["won_known"] > 0,
        "won without amount": report["revenue"]["won_unknown_amount"] > 0,
        "lost, other reason": report["lost"].get("budget_freeze", 0) > 0,
        "handoffs": {"enterprise", "latam", "general", "external"} <= set(report["handoffs"]),
        "sources": len(report["by_source"]) >= 5,
        "external owner": report["by_owner"].get("rep-crm", {}).get("handoffs", 0) > 0,
    }
    for sla, kinds in {
        "mql_acceptance": ("met", "warnings", "breached", "escalated", "open", "overdue"),
        "first_contact": ("met", "late", "breached", "cancelled"),
        "contact_attempts": ("met", "breached", "escalated"),
        "sql_max_dwell": ("met", "open"),
    }.items():
        figures.update((f"{sla} {kind}", report["sla"][sla][kind] > 0) for kind in kinds)
    assert all(figures.values()), ([name for name, ok in figures.items() if not ok], report["sla"])


# ---- the tests -------------------------------------------------------------------------------------------------


async def test_live_funnel_equals_the_offline_replay_of_the_same_events(live: Live) -> None:
    summaries = await fetch_summaries(live.one)
    now = datetime.now(UTC)
    offline = offline_summaries(live.envelopes, live.policy, now)
    assert_same_leads(summaries, offline)
    expected = funnel_report(offline, live.policy, now)
    assert_rich(expected)
    assert_same_reports(funnel_report(summaries, live.policy, now), expected)

    # GET /funnel: the same report, as of the worker's clock.
    status, body = await get(f"{live.one}/funnel")
    assert status == 200, body[:500]
    view = orjson.loads(body)
    as_of = datetime.fromisoformat(view["as_of"])
    assert_same_reports(view, funnel_report(offline_summaries(live.envelopes, live.policy, as_of), live.policy, as_of))


async def test_report_merges_two_workers(live: Live) -> None:
    now = datetime.now(UTC)
    offline = offline_summaries(live.envelopes, live.policy, now)
    merged = await merged_report(live.two, live.policy, now)
    assert_same_reports(merged, funnel_report(offline, live.policy, now))
    # ... and equals the report of the deployment whose one worker holds every lead.
    assert_same_reports(merged, funnel_report(await fetch_summaries(live.one), live.policy, now))

    # Each worker's /funnel covers its own partitions only (standby replicas are left out): together, every lead
    # once.
    partition_of = Partitioner(PARTITIONS)
    held = [{s.lead_id for s in await fetch_summaries(url)} for url in live.two]
    for leads, partitions in zip(held, live.two_partitions, strict=True):
        assert leads
        assert {partition_of(lead.encode()) for lead in leads} <= partitions
    assert not held[0] & held[1]
    assert held[0] | held[1] == {s.lead_id for s in offline}
    views = [orjson.loads((await get(f"{url}/funnel"))[1]) for url in live.two]
    assert [view["leads"] for view in views] == [len(leads) for leads in held]
    assert sum(view["leads"] for view in views) == len(offline)


async def test_leadflow_report_writes_the_merged_report_of_running_workers(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "leadflow.streams.cli",
        "report",
        "--policy",
        str(live.policy_path),
        "--json",
        str(out),
    ]
    for url in live.two:
        command += ["--worker", url]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    assert f"report written to {out}" in done.stdout, done.stdout
    assert "SLA mql_acceptance: compliance" in done.stdout, done.stdout
    report = orjson.loads(out.read_bytes())
    as_of = datetime.fromisoformat(report["as_of"])
    offline = offline_summaries(live.envelopes, live.policy, as_of)
    assert_same_reports(report, funnel_report(offline, live.policy, as_of))


async def test_leadflow_replay_of_the_same_events_equals_the_live_report(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    now = datetime.now(UTC)
    command = [sys.executable, "-m", "leadflow.streams.cli", "replay", str(live.events_file), "--policy",
               str(live.policy_path), "--report-json", str(out), "--until", now.isoformat()]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(out.read_bytes())
    block = report.pop("replay")
    assert block["events"] == len(live.envelopes), block
    assert block["malformed"]["count"] == 0, block
    assert_same_reports(report, funnel_report(await fetch_summaries(live.one), live.policy, now))


async def test_leadflow_report_period_reviews_the_week_of_running_workers(live: Live, tmp_path: Path) -> None:
    """The review from two running workers (their /funnel/leads and /visits) is the review of the same events
    replayed offline, as of the same instant; the page is written in the language asked for."""
    out, page = tmp_path / "review.json", tmp_path / "review.html"
    command = [sys.executable, "-m", "leadflow.streams.cli", "report", "--period", "week",
               "--policy", str(live.policy_path), "--json", str(out), "--html", str(page), "--lang", "es"]  # fmt: skip
    for url in live.two:
        command += ["--worker", url]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    got = orjson.loads(out.read_bytes())
    as_of = datetime.fromisoformat(got["period"]["as_of"])
    offline = offline_summaries(live.envelopes, live.policy, as_of)
    want = orjson.loads(review(offline, [], live.policy, "week", as_of).model_dump_json())
    assert got == want, first_difference(got, want)
    assert any(line["started"] > 0 for line in got["sla"]), "the week saw SLA clocks: not an empty review"
    assert 'lang="es"' in page.read_text(encoding="utf-8")
