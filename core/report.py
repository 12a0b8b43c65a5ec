"""The funnel report, computed from the lead records: one function and one shape live and offline.

Two pure steps. `summarize` reduces one lead record (or state) to a `LeadSummary`: what the report counts about
that lead — its current stage, the first entry into each stage (from its history), the stages facts skipped,
its rejection and lost reasons, its revenue, the SLA outputs and hand-offs of its ledger, its open clocks and the
profile attributes it holds. `funnel_report` counts summaries (GUIDE.md section 3, "Funnel report JSON") under one
policy: a summary holds facts about the lead, never a judgement of the policy (which fields are missing is
decided when counting), so summaries from several workers always count alike.

A lead lives on one partition, so the report of several workers is the report of the concatenation of their
summaries: the live `/funnel` view counts the summaries of one worker's active partitions, `leadflow report
--worker URL ...` fetches every worker's `/funnel/leads` and counts them all, and `leadflow replay
--report-json` counts the summaries of the replayed records. Summaries of the same lead seen twice (two workers
during a rebalance) count once: the newest. The order of the summaries never changes the result.

Periods are ISO weeks (`2026-W48`) and months (`2026-11`) in UTC. `now` (aware) is the instant the report is as
of: it decides which open clocks are overdue.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from pydantic import Field, TypeAdapter

from leadflow.core.completeness import known_fields, missing_from, required_for
from leadflow.core.funnel import percentile
from leadflow.schemas.base import Frozen
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import HandOffEntry, LeadRecord, LeadState, SlaEntry

MQL = "mql"
NONE = "none"  # no owner, team or pool (and no stage before a skip: the lead was created past stages)
EXTERNAL = "external"  # an owner chosen outside leadflow's routing (an external lead.assigned): no pool
UNKNOWN = "unknown"  # a lead without source or origin


class Skip(Frozen):
    """A stage entry that jumped over main-funnel stages (a fact such as deal.won on an MQL): a process gap."""

    from_stage: str | None = Field(description="the stage the lead left (None: it was created there)")
    to_stage: str
    skipped: tuple[str, ...]
    at: datetime


class OpenClock(Frozen):
    """An SLA clock still running, with the owner it is waiting for."""

    sla: str
    started_at: datetime
    deadline: datetime
    breached: bool = Field(description="the breach was emitted (the deadline passed in the lead's partition)")
    paused: bool = False
    owner_id: str | None = None

    def is_overdue(self, now: datetime) -> bool:
        """Breached, or past its deadline at `now` and not paused (a paused clock's deadline moves on resume)."""
        return self.breached or (not self.paused and self.deadline <= now)


class LeadSummary(Frozen):
    """What the funnel report counts about one lead; compact and JSON-serialisable (`SUMMARY_ADAPTER`)."""

    lead_id: str
    stage: str = Field(description="current stage")
    merged_into: str | None = Field(default=None, description="set when merged: not a current lead any more")
    source: str | None = Field(default=None, description="envelope source of the lead.created")
    origin: str | None = Field(default=None, description="the lead's marketing origin (custom attribute)")
    owner_id: str | None = None
    team: str | None = None
    pool: str | None = None
    created_at: datetime
    updated_at: datetime = Field(description="occurred_at of the last event applied (the newest summary wins)")
    entered: dict[str, datetime] = Field(description="stage -> first entry into it")
    skips: tuple[Skip, ...] = ()
    rejections: tuple[str, ...] = Field(default=(), description="rejection reason codes, one per rejection")
    rejected_at: tuple[datetime, ...] = Field(default=(), description="when each of `rejections` happened")
    lost: tuple[str, ...] = Field(default=(), description="lost-deal reasons, one per lost deal")
    lost_at: tuple[datetime, ...] = Field(default=(), description="when each of `lost` happened")
    won: bool = False
    won_at: datetime | None = None
    contacts: tuple[datetime, ...] = Field(default=(), description="when each contact attempt happened")
    won_amount: float | None = Field(default=None, description="None for a won deal of unknown amount")
    sla: tuple[SlaEntry, ...] = Field(default=(), description="the ledger's SLA outputs")
    handoffs: tuple[HandOffEntry, ...] = Field(default=(), description="the ledger's hand-offs")
    clocks: tuple[OpenClock, ...] = Field(default=(), description="open SLA clocks, by SLA name")
    known_fields: tuple[str, ...] | None = Field(
        default=None,
        description="profile attributes the lead holds (built-in and custom, not blank), sorted: what profile "
        "completeness is counted from; None in a summary from a worker older than this field (not counted)",
    )

    @property
    def merged(self) -> bool:
        return self.merged_into is not None

    @property
    def source_key(self) -> str:
        """The lead's source for `by_source`: its marketing origin when known, else the producer's source."""
        return self.origin or self.source or UNKNOWN


SUMMARY_ADAPTER: TypeAdapter[LeadSummary] = TypeAdapter(LeadSummary)


def origin_of(profile: object) -> str | None:
    """The custom `origin` attribute of a profile, when it has one (profile.custom may not exist yet)."""
    attributes = getattr(profile, "__dict__", {})  # not getattr: a missing attribute of a model costs ~5 µs
    custom = attributes.get("custom")
    value = custom.get("origin") if isinstance(custom, Mapping) else None
    if value is None:
        value = attributes.get("origin")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    return text or None


def summarize(record: LeadRecord | LeadState) -> LeadSummary | None:
    """The summary of one lead; None for an erased marker or a record without state.

    Built without validation (`model_construct`): every value comes from an already validated state, and a
    worker summarizes every lead of its partitions for each /funnel request."""
    state = record.state if isinstance(record, LeadRecord) else record
    if state is None:
        return None
    entered: dict[str, datetime] = {}
    skips: list[Skip] = []
    rejections: list[str] = []
    rejected_at: list[datetime] = []
    lost: list[str] = []
    lost_at: list[datetime] = []
    won_at: datetime | None = None
    previous: str | None = None
    for entry in state.history:
        first = entered.get(entry.stage)
        if first is None or entry.entered_at < first:
            entered[entry.stage] = entry.entered_at
        if entry.skipped:
            skips.append(
                Skip.model_construct(
                    from_stage=previous, to_stage=entry.stage, skipped=entry.skipped, at=entry.entered_at
                )
            )
        kind, _, detail = entry.reason.partition(":")
        if kind == "rejected" and detail:
            rejections.append(detail)
            rejected_at.append(entry.entered_at)
        elif kind == "lost" and detail:
            lost.append(detail)
            lost_at.append(entry.entered_at)
        elif entry.reason == "won":
            won_at = entry.entered_at
        previous = entry.stage
    entered.setdefault(state.stage, state.stage_entered_at)  # a history that lost its oldest entries
    clocks = tuple(
        OpenClock.model_construct(
            sla=name,
            started_at=clock.started_at,
            deadline=clock.deadline,
            breached=clock.breached,
            paused=clock.paused_at is not None,
            owner_id=state.owner_id,
        )
        for name, clock in sorted(state.clocks.items())
    )
    return LeadSummary.model_construct(
        lead_id=state.lead_id,
        stage=state.stage,
        merged_into=state.merged_into,
        source=state.ledger.source,
        origin=origin_of(state.profile),
        owner_id=state.owner_id,
        team=state.team,
        pool=state.pool,
        created_at=state.created_at,
        updated_at=state.updated_at,
        entered=entered,
        skips=tuple(skips),
        rejections=tuple(rejections),
        rejected_at=tuple(rejected_at),
        lost=tuple(lost),
        lost_at=tuple(lost_at),
        won=won_at is not None,
        won_at=won_at,
        won_amount=state.won_amount if won_at is not None else None,
        contacts=state.ledger.contacts,
        sla=state.ledger.sla,
        handoffs=state.ledger.handoffs,
        clocks=clocks,
        known_fields=known_fields(state.profile),
    )


def summaries_of(records: Iterable[LeadRecord | LeadState]) -> Iterator[LeadSummary]:
    """The summaries of the records that have a lead (erased markers and empty records are left out)."""
    for record in records:
        summary = summarize(record)
        if summary is not None:
            yield summary


# ---- counting ----------------------------------------------------------------------------------------------


def week_of(instant: datetime) -> str:
    year, week, _ = instant.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def month_of(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    return f"{utc.year}-{utc.month:02d}"


def owner_key(owner_id: str | None) -> str:
    return owner_id or NONE


def team_key(team: str | None) -> str:
    return team or NONE


def pool_key(pool: str | None, owner_id: str | None) -> str:
    """The pool an outcome counts for: `external` for an owner from outside routing, `none` without owner."""
    if pool:
        return pool
    return EXTERNAL if owner_id else NONE


def ordered(counts: Mapping[str, int], first: Iterable[str], *, zeros: bool) -> dict[str, int]:
    """`first` in its order (with zeros when asked), then any other key, sorted."""
    head = list(dict.fromkeys(first))
    result = {key: counts.get(key, 0) for key in head if zeros or counts.get(key, 0)}
    result.update((key, counts[key]) for key in sorted(set(counts) - set(head)) if counts[key])
    return result


def share(part: int, whole: int) -> float:
    return round(part / whole, 4)


def compliance(counts: Mapping[str, int]) -> float:
    """Met in time / (met in time + breached); 1.0 while nothing was decided (as the live tally says)."""
    decided = counts.get("met", 0) + counts.get("breached", 0)
    return share(counts.get("met", 0), decided) if decided else 1.0


@dataclass
class Cohorts:
    """Per pair of consecutive main-funnel stages: leads that reached the first, those that later reached the
    second, and the seconds between the two first entries."""

    base: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)
    spans: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    entered: Counter[str] = field(default_factory=Counter)  # first entries into each stage (periods only)

    def add(self, pair: str, span: float | None) -> None:
        self.base[pair] += 1
        if span is not None:
            self.converted[pair] += 1
            self.spans[pair].append(span)

    def conversion(self, pairs: Iterable[str]) -> dict[str, float]:
        return {pair: share(self.converted[pair], self.base[pair]) for pair in pairs if self.base[pair]}

    def durations(self, pairs: Iterable[str]) -> dict[str, dict[str, float]]:
        return spreads(self.spans, pairs)


def spreads(spans: Mapping[str, list[float]], keys: Iterable[str]) -> dict[str, dict[str, float]]:
    """{key: {count, p50, p90, mean}} of the seconds measured per key (keys with none are left out)."""
    result: dict[str, dict[str, float]] = {}
    for key in keys:
        values = sorted(spans.get(key, ()))
        if values:
            result[key] = {
                "count": len(values),
                "p50": percentile(values, 0.5),
                "p90": percentile(values, 0.9),
                "mean": round(statistics.fmean(values), 3),
            }
    return result


@dataclass
class Group:
    """What one owner, team or pool is accountable for."""

    sla: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # met, late, ...
    handoffs: int = 0
    open_mqls: int = 0
    overdue_mqls: int = 0
    seen: tuple[datetime, str, str] | None = None  # latest (at, team, pool) seen for an owner

    def count(self, sla: str, kind: str) -> None:
        self.sla[sla][kind] += 1

    def saw(self, at: datetime, team: str | None, pool: str | None) -> None:
        observed = (at, team or "", pool or "")
        if self.seen is None or observed > self.seen:
            self.seen = observed

    def report(self, sla_names: Iterable[str]) -> dict[str, Any]:
        names = sorted(set(sla_names) | set(self.sla))
        return {
            "open_mqls": self.open_mqls,
            "overdue_mqls": self.overdue_mqls,
            "handoffs": self.handoffs,
            "sla": {name: sla_figures(self.sla.get(name, Counter()), full=False) for name in names},
        }


def sla_figures(counts: Mapping[str, int], *, full: bool) -> dict[str, float]:
    if full:
        figures: dict[str, float] = {
            "started": counts.get("started", 0),
            "met": counts.get("met", 0),
            "late": counts.get("late", 0),
            "breached": counts.get("breached", 0),
            "cancelled": counts.get("cancelled", 0),
            "warnings": counts.get("warning", 0),
            "escalated": counts.get("escalated", 0),
            "reassigned": counts.get("reassigned", 0),
        }
    else:
        figures = {key: counts.get(key, 0) for key in ("met", "late", "breached")}
    figures["open"] = counts.get("open", 0)
    figures["overdue"] = counts.get("overdue", 0)
    figures["compliance"] = compliance(counts)
    return figures


@dataclass
class Completeness:
    """Profile completeness of the current leads of one stage: how many hold every field the policy requires
    there, and how many lack each field."""

    required: tuple[str, ...]
    leads: int = 0
    complete: int = 0
    missing: Counter[str] = field(default_factory=Counter)

    def add(self, known: Collection[str]) -> None:
        lacking = missing_from(known, self.required)
        self.leads += 1
        self.complete += int(not lacking)
        self.missing.update(lacking)

    def report(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "leads": self.leads,
            "complete": self.complete,
            "share": share(self.complete, self.leads) if self.leads else None,
            "missing": {name: self.missing[name] for name in self.required},
        }


def newest(summaries: Iterable[LeadSummary]) -> list[LeadSummary]:
    """One summary per lead (the newest; ties broken by content, so the choice never depends on order), sorted
    by lead id so that every sum is taken in the same order."""
    kept: dict[str, LeadSummary] = {}
    for summary in summaries:
        other = kept.get(summary.lead_id)
        if other is None or _rank(summary) > _rank(other):
            kept[summary.lead_id] = summary
    return [kept[lead_id] for lead_id in sorted(kept)]


def _rank(summary: LeadSummary) -> tuple[datetime, bytes]:
    return summary.updated_at, SUMMARY_ADAPTER.dump_json(summary)


@dataclass
class Tally:
    """The figures of one report, added lead by lead (`add`), then laid out (`report`)."""

    policy: Policy
    now: datetime
    leads: int = 0
    merged: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    reached: Counter[str] = field(default_factory=Counter)
    overall: Cohorts = field(default_factory=Cohorts)
    periods: dict[str, defaultdict[str, Cohorts]] = field(
        default_factory=lambda: {"week": defaultdict(Cohorts), "month": defaultdict(Cohorts)}
    )
    sources: defaultdict[str, tuple[Counter[str], Cohorts]] = field(
        default_factory=lambda: defaultdict(lambda: (Counter(), Cohorts()))
    )
    source_leads: Counter[str] = field(default_factory=Counter)
    slas: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    time_to_met: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rejections: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    skips: Counter[str] = field(default_factory=Counter)
    handoffs: Counter[str] = field(default_factory=Counter)
    won_known: int = 0
    won_unknown: int = 0
    amount: float = 0.0
    owners: defaultdict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    teams: defaultdict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    pools: defaultdict[str, Group] = field(default_factory=lambda: defaultdict(Group))

    def __post_init__(self) -> None:
        stages = self.policy.lifecycle.stages
        self.stage_pairs = [(first, then, f"{first}->{then}") for first, then in pairwise(stages)]
        self.steps = [pair for _, _, pair in self.stage_pairs]
        self.sla_names = [spec.name for spec in self.policy.slas]
        self.slas.update((name, Counter()) for name in self.sla_names)
        required = ((stage, required_for(stage, self.policy)) for stage in self.policy.all_stages)
        self.completeness = {stage: Completeness(fields) for stage, fields in required if fields}

    def groups(self, owner_id: str | None, team: str | None, pool: str | None) -> Iterator[Group]:
        """The owner, team and pool an outcome counts for."""
        yield self.owners[owner_key(owner_id)]
        yield self.teams[team_key(team)]
        yield self.pools[pool_key(pool, owner_id)]

    def add(self, lead: LeadSummary) -> None:
        self.leads += 1
        if lead.merged:
            self.merged += 1
        else:
            self.stages[lead.stage] += 1
            completeness = self.completeness.get(lead.stage)
            if completeness is not None and lead.known_fields is not None:
                completeness.add(lead.known_fields)
        self.add_stages(lead)
        self.rejections.update(lead.rejections)
        self.lost.update(lead.lost)
        self.skips.update(f"{skip.from_stage or NONE}->{skip.to_stage}" for skip in lead.skips)
        if lead.won:
            if lead.won_amount is None:
                self.won_unknown += 1
            else:
                self.won_known += 1
                self.amount += lead.won_amount
        self.add_ledger(lead)
        self.add_clocks(lead)

    def add_stages(self, lead: LeadSummary) -> None:
        """Reached stages, and the cohorts of each pair of consecutive stages: overall, per period, per source."""
        self.reached.update(lead.entered.keys())
        source = lead.source_key
        self.source_leads[source] += 1
        source_reached, source_cohorts = self.sources[source]
        source_reached.update(lead.entered.keys())
        for stage, at in lead.entered.items():
            for cohorts in self.period_cohorts(at):
                cohorts.entered[stage] += 1
        for first, then, pair in self.stage_pairs:
            start = lead.entered.get(first)
            if start is None:
                continue
            end = lead.entered.get(then)
            span = (end - start).total_seconds() if end is not None and end >= start else None
            for cohorts in (self.overall, source_cohorts, *self.period_cohorts(start)):
                cohorts.add(pair, span)

    def period_cohorts(self, at: datetime) -> tuple[Cohorts, Cohorts]:
        weeks, months = self.periods["week"], self.periods["month"]
        return weeks[week_of(at)], months[month_of(at)]

    def add_ledger(self, lead: LeadSummary) -> None:
        """SLA outcomes and hand-offs, for the owner, team and pool named on each entry."""
        started: dict[str, datetime] = {}
        for entry in lead.sla:
            self.slas[entry.sla][entry.kind] += 1
            if entry.kind == "started":
                started[entry.sla] = entry.at
            elif entry.kind in ("met", "late") and entry.sla in started:
                # Wall seconds from the start to the met: for first_contact, the time to first contact.
                self.time_to_met[entry.sla].append((entry.at - started.pop(entry.sla)).total_seconds())
            elif entry.kind == "cancelled" and entry.reason == "reassigned":
                self.slas[entry.sla]["reassigned"] += 1
            if entry.kind in ("met", "late", "breached"):
                for group in self.groups(entry.owner_id, entry.team, entry.pool):
                    group.count(entry.sla, entry.kind)
            if entry.owner_id is not None:
                self.owners[entry.owner_id].saw(entry.at, entry.team, entry.pool)
        for handoff in lead.handoffs:
            self.handoffs[pool_key(handoff.pool, handoff.owner_id)] += 1
            for group in self.groups(handoff.owner_id, handoff.team, handoff.pool):
                group.handoffs += 1
            self.owners[owner_key(handoff.owner_id)].saw(handoff.at, handoff.team, handoff.pool)

    def add_clocks(self, lead: LeadSummary) -> None:
        """Open clocks (overdue at `now` or not) and open MQLs, for the lead's current owner, team and pool."""
        overdue_mql = False
        for clock in lead.clocks:
            overdue = clock.is_overdue(self.now)
            overdue_mql = overdue_mql or overdue
            counts = self.slas[clock.sla]
            counts["open"] += 1
            counts["overdue"] += int(overdue)
            for group in self.groups(clock.owner_id, lead.team, lead.pool):
                group.count(clock.sla, "open")
                group.sla[clock.sla]["overdue"] += int(overdue)
        if not lead.merged and lead.stage == MQL:
            for group in self.groups(lead.owner_id, lead.team, lead.pool):
                group.open_mqls += 1
                group.overdue_mqls += int(overdue_mql)
            if lead.owner_id is not None:
                self.owners[lead.owner_id].saw(lead.updated_at, lead.team, lead.pool)

    def report(self) -> dict[str, Any]:
        stages, steps = self.policy.all_stages, self.steps
        return {
            "as_of": self.now.isoformat(),
            "policy": {"name": self.policy.name, "version": self.policy.version},
            "leads": self.leads,
            "merged": self.merged,
            "stage_counts": ordered(self.stages, stages, zeros=True),
            "reached": ordered(self.reached, stages, zeros=True),
            "conversion": self.overall.conversion(steps),
            "durations_s": self.overall.durations(steps),
            "sla": {name: sla_figures(self.slas[name], full=True) for name in sorted(self.slas)},
            "sla_time_to_met_s": spreads(self.time_to_met, sorted(self.time_to_met)),
            "rejections": dict(sorted(self.rejections.items())),
            "lost": dict(sorted(self.lost.items())),
            "skips": dict(sorted(self.skips.items())),
            "revenue": {
                "won_known": self.won_known,
                "won_unknown_amount": self.won_unknown,
                "amount": round(self.amount, 2),
            },
            "handoffs": dict(sorted(self.handoffs.items())),
            "profile_completeness": {stage: counts.report() for stage, counts in self.completeness.items()},
            "by_period": {
                kind: {
                    period: {
                        "entered": ordered(cohorts.entered, stages, zeros=False),
                        "conversion": cohorts.conversion(steps),
                        "durations_s": cohorts.durations(steps),
                    }
                    for period, cohorts in sorted(by_kind.items())
                }
                for kind, by_kind in self.periods.items()
            },
            "by_source": {
                source: {
                    "leads": self.source_leads[source],
                    "reached": ordered(reached, stages, zeros=False),
                    "conversion": cohorts.conversion(steps),
                }
                for source, (reached, cohorts) in sorted(self.sources.items())
            },
            "by_owner": {name: self.owner_report(name) for name in sorted(self.owners)},
            "by_team": {name: self.teams[name].report(self.sla_names) for name in sorted(self.teams)},
            "by_pool": {name: self.pools[name].report(self.sla_names) for name in sorted(self.pools)},
        }

    def owner_report(self, name: str) -> dict[str, Any]:
        """An owner's figures, with the team and pool they were last seen in."""
        group = self.owners[name]
        team, pool = (group.seen[1] or None, group.seen[2] or None) if group.seen else (None, None)
        return {"team": team, "pool": pool, **group.report(self.sla_names)}


def funnel_report(summaries: Iterable[LeadSummary], policy: Policy, now: datetime) -> dict[str, Any]:
    """The funnel report over these leads as of `now` (aware): plain JSON-ready data (orjson), deterministic
    whatever the order of the summaries; a lead given twice counts once (its newest summary)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    tally = Tally(policy, now)
    for lead in newest(summaries):
        tally.add(lead)
    return tally.report()


# ---- comparing ---------------------------------------------------------------------------------------------


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: object) -> float:
    """A numeric leaf, or 0 for a missing (or non-numeric) one."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """b - a for every numeric leaf present in either report (a missing leaf counts 0), in the same nesting.

    Text leaves (as_of, an owner's team) are left out, and so are branches without numbers; zero differences
    are kept, so the result has a leaf for every figure of either report.
    """
    result: dict[str, Any] = {}
    for key in dict.fromkeys([*a, *b]):
        left, right = a.get(key), b.get(key)
        if isinstance(left, Mapping) or isinstance(right, Mapping):
            nested = compare_reports(
                left if isinstance(left, Mapping) else {}, right if isinstance(right, Mapping) else {}
            )
            if nested:
                result[key] = nested
        elif is_number(left) or is_number(right):
            difference = number(right) - number(left)
            result[key] = difference if isinstance(difference, int) else round(difference, 6)
    return result
