"""The whole worker in one process, without Kafka: every lead, the router and the SLA timers, in event time.

This is what `leadflow replay` runs (GUIDE section 2, "one notion of time"). The clock is the newest event time
fed so far; an SLA instant fires once the clock is `processing.sla_grace_seconds` past it, exactly as the live
worker fires it once the lead's partition time is (streams.runtime.worker). Route requests go to the same pure
router the router agent runs, and its answer is applied to the lead at once (live, it comes back through the
lead's partition a moment later). Timer events carry the ids the live timer gives them, so outputs match by id.
An event for a merged lead is forwarded to the lead it was merged into, and a merge's notice reaches that lead
(core.merges), at once too: live they come back through the events topic, with the same ids.

A defect in the core (an exception) costs what it costs the live worker: the one event it was deciding (an input,
a timer tick, a router answer, a forward) or the one route request it was answering, which is then answered
`route.unassigned` as the live router does (the lead waits for an answer). Every other lead's outputs of the same
feed stand. The defects are kept in `defects` for the caller to dead-letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from leadflow.core.deadlines import DeadlineIndex, timer_due
from leadflow.core.decision import (
    Decision,
    decide,
    erased_marker,
    holds_events_after_erasure,
    is_stateless,
    wake_at,
)
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.routing import answer_request, release, unassigned_event
from leadflow.schemas.events import EVENT_ADAPTER, LeadAbsorbed, LeadEvent, TimerDue
from leadflow.schemas.outputs import Forward, Output, RouteRelease, RouteRequest
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadRecord, RoutingState


class Defect(NamedTuple):
    """An exception the core raised on one event, or on one routing message (`where` is "router")."""

    subject: LeadEvent | RouteRequest | RouteRelease
    where: str
    error: Exception

    @property
    def subject_id(self) -> str:
        return self.subject.id if isinstance(self.subject, RouteRequest | RouteRelease) else self.subject.event_id


class Engine:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.records: dict[str, LeadRecord] = {}
        self.routing = RoutingState()
        self.index = DeadlineIndex()
        self.clock: datetime | None = None
        self.outcomes: Counter[str] = Counter()  # every event: applied, reordered, late, refused, duplicate, ...
        # The same, for the events fed only (not timers, router answers nor merge notices), once each: an event
        # forwarded to the lead its lead was merged into counts with what became of it there.
        self.inputs: Counter[str] = Counter()
        self.unassigned = 0  # route requests nobody could take
        self.grace = timedelta(seconds=policy.processing.sla_grace_seconds)
        self.defects: list[Defect] = []  # since the caller last took them (`take_defects`)

    def feed(self, event: LeadEvent) -> list[Output]:
        """Apply one input event: first the SLA instants its time lets fire, then the event, then the router."""
        at = event.occurred_at.astimezone(UTC)
        self.clock = at if self.clock is None else max(self.clock, at)
        outputs = self.fire(self.clock - self.grace)
        outputs += self.apply(event)
        return outputs

    def finish(self, until: datetime | None = None) -> list[Output]:
        """Fire every SLA instant up to `until` (default: the clock, the newest event time), grace included."""
        if until is not None:
            self.clock = until if self.clock is None else max(self.clock, until)
        outputs = self.fire(self.clock) if self.clock is not None else []
        # The input is over: no lead.created can come for the leads that do not exist (core.decision.is_stateless).
        for lead_id in [lead_id for lead_id, record in self.records.items() if is_stateless(record)]:
            del self.records[lead_id]
            self.index.set(lead_id, None)
        # Nor for the person who may come back after an erasure: the events kept for them go.
        for lead_id, record in list(self.records.items()):
            if holds_events_after_erasure(record) and record.erased_at is not None:
                self.records[lead_id] = erased_marker(record, record.pending, record.erased_at, self.policy)
                self.index.set(lead_id, None)
        return outputs

    def fire(self, cutoff: datetime) -> list[Output]:
        outputs: list[Output] = []
        while due := self.index.pop_due(cutoff):
            for lead_id, stamp in due:
                outputs += self.apply(timer_due(lead_id, datetime.fromtimestamp(stamp, UTC)))
                record = self.records.get(lead_id)
                self.index.set(lead_id, wake_at(record, self.policy, after=stamp))
        return outputs

    def apply(self, event: LeadEvent) -> list[Output]:
        assert self.clock is not None
        try:
            decision = self.decide(event)
        except Exception as error:  # a defect costs this event (see the module docstring)
            self.defects.append(Defect(event, "engine", error))
            return []
        outputs = list(decision.outputs)
        for output in decision.outputs:
            if isinstance(output, RouteRequest):
                outputs += self.route(output)
            elif isinstance(output, RouteRelease):
                try:
                    self.routing = release(self.routing, output)
                except Exception as error:
                    self.defects.append(Defect(output, "router", error))
            elif isinstance(output, Forward):
                outputs += self.apply(output.event)
        return outputs

    def decide(self, event: LeadEvent) -> Decision:
        assert self.clock is not None
        decision = decide(self.records.get(event.lead_id), event, self.policy, max(self.clock, event.occurred_at))
        self.count(((event, decision.outcome), *decision.released))
        if decision.forget:  # a lead that does not exist, its window closed (core.decision.forget_at)
            self.records.pop(event.lead_id, None)
            self.index.set(event.lead_id, None)
        elif decision.changed:
            self.records[event.lead_id] = decision.record
            self.index.set(event.lead_id, wake_at(decision.record, self.policy))
        return decision

    def count(self, decided: Iterable[tuple[LeadEvent, str]]) -> None:
        """What became of each event, once: a held event counts when it is applied, with the answer."""
        for event, outcome in decided:
            if outcome == "held":
                continue
            self.outcomes[outcome] += 1
            if is_input(event) and outcome != "forwarded":
                self.inputs[outcome] += 1

    def route(self, request: RouteRequest) -> list[Output]:
        try:
            answered = answer_request(self.routing, request, self.policy, ROUTER_SOURCE)
        except Exception as error:  # still answered: the lead holds its later events until it is
            self.defects.append(Defect(request, "router", error))
            return self.apply(EVENT_ADAPTER.validate_python(unassigned_event(request, ROUTER_SOURCE)))
        self.routing = answered.state
        self.unassigned += answered.unassigned and self.policy.routing is not None  # a replayed request: not news
        return self.apply(EVENT_ADAPTER.validate_python(answered.envelope))

    def take_defects(self) -> list[Defect]:
        taken, self.defects = self.defects, []
        return taken

    def leads(self) -> Iterator[LeadRecord]:
        return iter(self.records.values())


def is_input(event: LeadEvent) -> bool:
    """An event of the input, or one forwarded from it (not a timer tick, a router answer or a merge notice)."""
    return not isinstance(event, TimerDue | LeadAbsorbed) and event.source != ROUTER_SOURCE
