"""Builders for the pure-core tests: events, policies and leads in a few words.

Events go through the same TypeAdapter the intake uses, so a test can only build an event a producer could send.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import yaml

from leadflow.core.decision import Decision, decide
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.routing import answer_to, release
from leadflow.core.step import Step
from leadflow.schemas.events import EVENT_ADAPTER, LeadEvent
from leadflow.schemas.outputs import EventRefused, Output, RouteRelease, RouteRequest, StageChanged, Transition
from leadflow.schemas.policy import Policy, load_policy, parse_policy
from leadflow.schemas.state import LeadRecord, LeadState, RoutingState

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DAY = 86_400.0
LEAD = "L1"

POLICY = load_policy()
_DEFAULT_DOC: dict[str, Any] = yaml.safe_load(
    resources.files("leadflow.schemas").joinpath("default_policy.yaml").read_text(encoding="utf-8")
)
_ids = itertools.count(1)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def make_event(
    type_: str,
    t: float | datetime = 0.0,
    *,
    lead_id: str = LEAD,
    event_id: str | None = None,
    **data: Any,
) -> LeadEvent:
    """An event of `type_` at `t` (seconds after T0, or a datetime) with `data` as its data object."""
    occurred_at = t if isinstance(t, datetime) else at(t)
    envelope: dict[str, Any] = {
        "event_id": event_id or f"ev-{next(_ids)}",
        "lead_id": lead_id,
        "type": type_,
        "occurred_at": occurred_at.isoformat(),
        "source": "test",
    }
    if data:
        envelope["data"] = data
    return EVENT_ADAPTER.validate_python(envelope)


def default_document() -> dict[str, Any]:
    """A fresh deep copy of the default policy document, to break or tweak."""
    return copy.deepcopy(_DEFAULT_DOC)


def make_policy(change: Callable[[dict[str, Any]], None]) -> Policy:
    """The default policy with `change` applied to its document."""
    document = default_document()
    change(document)
    return parse_policy(document, "test")


class Router:
    """The router agent in process, for tests of the lead side: `decide` decides an event for its lead and
    answers at once every route request it makes (an owner, or route.unassigned), as the router agent would,
    so a lead never waits for an answer; releases give capacity back."""

    def __init__(self, policy: Policy = POLICY) -> None:
        self.policy = policy
        self.state = RoutingState()

    def decide(self, record: LeadRecord | None, event: LeadEvent, now: datetime) -> Decision:
        decision = decide(record, event, self.policy, now)
        record, outputs = decision.record, list(decision.outputs)
        waiting = list(decision.outputs)
        while waiting:
            output = waiting.pop(0)
            answer = self.answer(output)
            if answer is not None:
                answered = decide(record, answer, self.policy, now)
                record, outputs = answered.record, [*outputs, *answered.outputs]
                waiting += answered.outputs
        return Decision(record, tuple(outputs), decision.outcome, decision.changed or record is not decision.record)

    def answer(self, output: Output) -> LeadEvent | None:
        if isinstance(output, RouteRelease):
            self.state = release(self.state, output)
        elif isinstance(output, RouteRequest):
            self.state, answer, _ = answer_to(self.state, output, self.policy, ROUTER_SOURCE)
            return EVENT_ADAPTER.validate_python(answer)
        return None


def _unrouted(document: dict[str, Any]) -> None:
    document.pop("routing")
    for sla in document["slas"]:
        sla["escalate"] = [action for action in sla.get("escalate", []) if action != "reassign"]


# The default policy without routing: for tests of the ordering machinery, where no router answers.
UNROUTED = make_policy(_unrouted)


def run(
    events: Iterable[LeadEvent], policy: Policy = POLICY, state: LeadState | None = None, now: datetime | None = None
) -> LeadState | None:
    """Deliver events in the given order to one lead (starting from `state`), its route requests answered at
    once (`Router`); the final state. The worker clock is each event's own time unless `now` is given."""
    router = Router(policy)
    record = None if state is None else LeadRecord(lead_id=state.lead_id, state=state, watermark=state.updated_at)
    for event in events:
        record = router.decide(record, event, now or event.occurred_at).record
    return None if record is None else record.state


def lead_in(stage: str, policy: Policy = POLICY) -> LeadState:
    """A lead walked to `stage` by ordinary events (one minute apart), so its history is realistic."""
    paths: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "subscriber": [("lead.created", {"initial_stage": "subscriber"})],
        "lead": [("lead.created", {})],
        "mql": [("lead.created", {}), ("lead.qualified", {})],
        "sal": [("lead.created", {}), ("lead.qualified", {}), ("lead.accepted", {})],
        "nurturing": [("lead.created", {}), ("lead.qualified", {}), ("lead.rejected", {"reason": "no_budget"})],
        "disqualified": [("lead.created", {}), ("lead.disqualified", {})],
    }
    deal = [("lead.created", {}), ("lead.qualified", {}), ("lead.accepted", {})]
    paths["sql"] = [*deal, ("deal.stage_changed", {"stage": "qualified_call", "bant": {"need": True}})]
    full_bant = {"budget": True, "authority": True, "need": True, "timeline": True}
    paths["opportunity"] = [*deal, ("deal.stage_changed", {"stage": "proposal_sent", "bant": full_bant})]
    paths["customer"] = [*paths["opportunity"], ("deal.won", {"amount": 1000.0})]
    paths["evangelist"] = paths["customer"]  # no event reaches evangelist; callers must not ask for it
    state = run((make_event(kind, 60.0 * i, **data) for i, (kind, data) in enumerate(paths[stage])), policy)
    assert state is not None
    assert state.stage == stage, f"could not walk a lead to {stage}"
    return state


def stage_changes(outputs: Iterable[Transition]) -> list[StageChanged]:
    return [o for o in outputs if isinstance(o, StageChanged)]


def refusal(step: Step) -> EventRefused:
    """The single EventRefused of a refused step (fails the test otherwise)."""
    assert step.refused, f"expected a refusal, got outputs {step.outputs}"
    (only,) = step.outputs
    assert isinstance(only, EventRefused)
    return only
