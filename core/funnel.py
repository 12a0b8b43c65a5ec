"""Funnel tally: leads per stage, who reached what, conversion, time between stages, rejections, SLAs, hand-offs.

Built from the output stream (stage changes, erasures, SLA outputs, hand-offs, dead letters), so anything that reads
`leads.transitions` (the live view of `leadflow run`, a report) computes the same figures the same way.
Plain data in, plain data out; the report shape follows GUIDE.md section 3. Memory: a few entries per lead (the
lead set), the transitions of the last minute, and the newest MAX_SEEN_IDS output ids (to drop redeliveries).
"""

from __future__ import annotations

import statistics
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from leadflow.schemas.outputs import (
    DeadLetter,
    EventRefused,
    HandOff,
    LeadErasedNotice,
    LeadMergedNotice,
    Output,
    SlaBreached,
    SlaCancelled,
    SlaEscalated,
    SlaMet,
    SlaOutput,
    SlaStarted,
    SlaWarning,
    StageChanged,
)

# Output ids the tally remembers to drop redeliveries: the newest this many, the oldest forgotten first. A redelivery
# comes when the worker, after a crash or a rebalance, applies again what it had not committed (Faust commits every
# few seconds: at the worker's ~1.6k events/s, a few thousand events and their outputs), so its copies come within
# a few thousand outputs of the originals. One older than the newest MAX_SEEN_IDS distinct outputs is counted again.
# ~170 bytes an id (a 32-character id and its OrderedDict entry): ~9 MB at the bound, whatever the length of the run.
MAX_SEEN_IDS = 50_000


def sla_counter(output: SlaOutput) -> str:
    if isinstance(output, SlaMet):
        return "late" if output.late else "met"
    return output.type.removeprefix("sla.")


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(share * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class FunnelTally:
    stages: tuple[str, ...]  # every stage, for counts
    funnel: tuple[str, ...] = ()  # the main funnel in order, for conversion and durations (default: stages)
    current: dict[str, str] = field(default_factory=dict)  # lead -> stage
    first_entry: dict[str, dict[str, datetime]] = field(default_factory=dict)  # lead -> stage -> first entry
    rejections: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    transitions: int = 0
    recent: deque[float] = field(default_factory=deque)  # processing times (epoch s) of recent transitions
    seen_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)  # the newest output ids, oldest first
    max_seen_ids: int = MAX_SEEN_IDS
    slas: dict[str, Counter[str]] = field(default_factory=dict)  # sla -> started, met, late, breached, ...
    handoffs: Counter[str] = field(default_factory=Counter)  # pool ("external": an external lead.assigned)

    def add(self, output: Output | DeadLetter, *, seen_at: float = 0.0) -> None:
        if output.id in self.seen_ids:
            return  # a redelivered output: the ids are deterministic
        self.remember(output.id)
        match output:
            case StageChanged():
                self.transitions += 1
                self.recent.append(seen_at)
                self.per_minute(seen_at)  # the last minute only, even when nobody asks
                self.current[output.lead_id] = output.to_stage
                entries = self.first_entry.setdefault(output.lead_id, {})
                entries.setdefault(output.to_stage, output.occurred_at)
                if output.reason.startswith("rejected:"):
                    self.rejections[output.reason.split(":", 1)[1]] += 1
            case EventRefused():
                self.refusals[output.reason] += 1
            case LeadErasedNotice():
                self.current.pop(output.lead_id, None)
                self.first_entry.pop(output.lead_id, None)
            case LeadMergedNotice():
                self.current.pop(output.lead_id, None)
            case DeadLetter():
                self.dead_letters[output.reason] += 1
            case SlaStarted() | SlaWarning() | SlaMet() | SlaBreached() | SlaCancelled() | SlaEscalated():
                self.slas.setdefault(output.sla, Counter())[sla_counter(output)] += 1
            case HandOff():
                self.handoffs[output.pool or "external"] += 1

    def remember(self, output_id: str) -> None:
        """Keep the id among the newest `max_seen_ids`; the oldest goes first (O(1): OrderedDict.popitem)."""
        self.seen_ids[output_id] = None
        while len(self.seen_ids) > self.max_seen_ids:
            self.seen_ids.popitem(last=False)

    def per_minute(self, now: float) -> int:
        while self.recent and self.recent[0] < now - 60:
            self.recent.popleft()
        return len(self.recent)

    def stage_counts(self) -> dict[str, int]:
        counts = Counter(self.current.values())
        return {stage: counts.get(stage, 0) for stage in self.stages}

    def reached(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for entries in self.first_entry.values():
            counts.update(entries.keys())
        return {stage: counts.get(stage, 0) for stage in self.stages}

    def steps(self) -> list[tuple[str, str]]:
        funnel = self.funnel or self.stages
        return list(pairwise(funnel))

    def conversion(self) -> dict[str, float]:
        """Share of the leads that reached a stage and later reached the next stage of the funnel."""
        result = {}
        for source, target in self.steps():
            base = [e for e in self.first_entry.values() if source in e]
            if base:
                later = sum(1 for e in base if target in e and e[target] >= e[source])
                result[f"{source}->{target}"] = round(later / len(base), 4)
        return result

    def durations_s(self) -> dict[str, dict[str, float]]:
        result = {}
        for source, target in self.steps():
            spans = sorted(
                (e[target] - e[source]).total_seconds()
                for e in self.first_entry.values()
                if source in e and target in e and e[target] >= e[source]
            )
            if spans:
                result[f"{source}->{target}"] = {
                    "count": len(spans),
                    "p50": percentile(spans, 0.5),
                    "p90": percentile(spans, 0.9),
                    "mean": round(statistics.fmean(spans), 3),
                }
        return result

    def sla_report(self) -> dict[str, dict[str, float]]:
        """Per SLA: clocks started, met (in time), breached, open, and compliance = met in time / decided."""
        result = {}
        for name, n in sorted(self.slas.items()):
            decided = n["met"] + n["breached"]
            result[name] = {
                "started": n["started"],
                "met": n["met"],
                "breached": n["breached"],
                "warnings": n["warning"],
                "cancelled": n["cancelled"],
                "escalated": n["escalated"],
                "open": n["started"] - n["met"] - n["late"] - n["cancelled"],
                "compliance": round(n["met"] / decided, 4) if decided else 1.0,
            }
        return result

    def report(self) -> dict[str, Any]:
        return {
            "stage_counts": self.stage_counts(),
            "reached": self.reached(),
            "conversion": self.conversion(),
            "durations_s": self.durations_s(),
            "sla": self.sla_report(),
            "rejections": dict(self.rejections),
            "handoffs": dict(self.handoffs),
            "refusals": dict(self.refusals),
            "dead_letters": dict(self.dead_letters),
            "transitions": self.transitions,
        }
