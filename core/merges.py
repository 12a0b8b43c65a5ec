"""Merges across leads: chains are followed, cycles refused, and a merged lead's later events forwarded.

`decide` sees one lead at a time, and a merged lead and the lead it was merged into may live on different
partitions (and workers). So the merged lead tells the other one, and passes on what it is sent, through the
events topic, signed like the timer's ticks (core.intake):

- **The notice.** When A is merged into B, A emits a `lead.absorbed` for B (id `merge:<A>:<merge event id>`,
  plus a hash of the leads it names when A had absorbed some) carrying A and the leads A had absorbed itself;
  B keeps them in `merged_from` (sorted, at most MAX_MERGED_FROM: the smallest ids, so the set does not depend on
  the order notices arrive in). A later `lead.merged` of B into any of them would close a cycle and is refused
  (`merge_cycle`).
- **Forwarding.** An event sent to A after the merge is produced again for B, under the id
  `fwd:<hops>:<A>:<event id>` (so a redelivery is a duplicate at B), with everything else as it was: its time,
  source, actor and data. A merged B passes it on to C in turn (`hops` + 1), at most MAX_FORWARD_HOPS times; then
  it is refused (`merge_chain_too_long`). Facts are never lost on the way: a forwarded fact is applied at the
  lead that survived, whatever its stage. A lead.absorbed that reaches a merged lead is kept there too and
  passed on, so every lead down the chain knows what it is made of.
- **What is not forwarded:** leadflow's own events for A (timer ticks, router answers: a late answer gives its
  owner's capacity back, core.handoff.unclaimed), a second `lead.created` (refused, `lead_exists`) and an erasure
  request (it erases A itself). A `lead.merged` of A into the lead it was merged into already changes nothing.

A notice takes effect when it reaches the lead (core.decision.in_arrival_order), like a router answer: what a
lead knows about the leads merged into it grows then, and never changes a merge applied before it.

Known limit: two merges in opposite directions made at about the same moment on different partitions can both
be applied before either notice arrives. The notice that then reaches a merged lead names the lead it was merged
into: the cycle is reported there (`merge_cycle`, on the notice), and an event sent to any lead of the cycle goes
round it until the hop limit and is refused (`merge_chain_too_long`). It is reported, not prevented. An event is
always passed on while hops remain, even to a lead its lead's `merged_from` names: that list only grows, and a
cycle it suggests may have been broken where it was made.

Pure: no clock, no I/O; the shell sends `Forward` outputs (streams.runtime.worker), the replay applies them at once
(core.engine).
"""

from __future__ import annotations

from leadflow.core.handoff import is_router_answer
from leadflow.core.ids import output_id
from leadflow.schemas.events import (
    EVENT_ADAPTER,
    MAX_MERGED_FROM,
    AbsorbedData,
    LeadAbsorbed,
    LeadCreated,
    LeadErased,
    LeadEvent,
    LeadMerged,
    RouteUnassigned,
    TimerDue,
)
from leadflow.schemas.outputs import Forward
from leadflow.schemas.state import LeadState

MERGE_SOURCE = "leadflow.merge"
FORWARD_PREFIX = "fwd:"
ABSORBED_PREFIX = "merge:"
# How many times one event may be passed on along merged leads. A chain of merges grows one link per duplicate
# found (a tool id merged into an e-mail's lead, that lead into a CRM's one...): a handful at most. Past this the
# chain is too long or a cycle of merges made at the same time (see the module docstring): the event is refused.
MAX_FORWARD_HOPS = 8
MAX_ID_LENGTH = 200  # schemas.base.Identifier: a derived id over it keeps its prefix and hashes the rest


def hops_of(event_id: str) -> int:
    """How many times the event was forwarded (its `fwd:<hops>:` prefix), 0 for an event sent to this lead."""
    if not event_id.startswith(FORWARD_PREFIX):
        return 0
    count = event_id[len(FORWARD_PREFIX) :].partition(":")[0]
    return int(count) if count.isascii() and count.isdigit() else 0


def derived_id(prefix: str, lead_id: str, event_id: str) -> str:
    """`<prefix><lead>:<event id>`, or, when that is longer than an id may be, `<prefix>` and a hash of both:
    deterministic either way, so a redelivered event is passed on under the same id."""
    full = f"{prefix}{lead_id}:{event_id}"
    return full if len(full) <= MAX_ID_LENGTH else prefix + output_id(lead_id, event_id)


def forwarded_id(lead_id: str, event_id: str) -> str:
    return derived_id(f"{FORWARD_PREFIX}{hops_of(event_id) + 1}:", lead_id, event_id)


def absorbed_id(lead_id: str, event_id: str, merged_from: tuple[str, ...] = ()) -> str:
    """The notice's id names what it says: when a notice of a lead merged into this one arrives just before this
    lead's own merge (in event time, within the lateness window), the merge is applied again after it and sends
    a second notice that carries that lead too; the same id would make it a duplicate where it goes."""
    said = f"{event_id}:{output_id(*merged_from)[:16]}" if merged_from else event_id
    return derived_id(ABSORBED_PREFIX, lead_id, said)


def is_reserved_id(event_id: str) -> bool:
    """Ids only leadflow gives (a forwarded event's): a producer's event with one is not accepted unsigned."""
    return event_id.startswith(FORWARD_PREFIX)


def is_forwardable(event: LeadEvent) -> bool:
    """What a merged lead passes on: everything producers say about the person, and merge notices. Not the
    lead's own timer ticks and router answers, a second lead.created, nor an erasure of this lead."""
    if isinstance(event, TimerDue | RouteUnassigned | LeadCreated | LeadErased):
        return False
    return not is_router_answer(event)


def is_repeated_merge(state: LeadState, event: LeadEvent) -> bool:
    """A lead.merged of a merged lead into the lead it was merged into already: done, nothing changes."""
    return isinstance(event, LeadMerged) and event.data.into_lead_id == state.merged_into


def is_cycle(state: LeadState, into: str) -> bool:
    """Merging this lead into `into` would close a cycle: `into` was merged into it (directly or by a chain)."""
    return into in state.merged_from


def absorb(state: LeadState, notice: LeadAbsorbed) -> LeadState:
    """The lead with the leads of a merge notice in `merged_from`: once each, sorted, the MAX_MERGED_FROM smallest
    (the smallest of a union are the smallest of the smallest: any order of notices gives the same set)."""
    merged_from = bounded({*state.merged_from, notice.data.from_lead_id, *notice.data.merged_from} - {state.lead_id})
    if merged_from == state.merged_from:
        return state
    return state.model_copy(update={"merged_from": merged_from})


def bounded(leads: set[str]) -> tuple[str, ...]:
    return tuple(sorted(leads)[:MAX_MERGED_FROM])


def absorbed(state: LeadState, merge: LeadMerged) -> Forward:
    """The notice a lead merged into another sends it: this lead and the leads it had absorbed."""
    into = merge.data.into_lead_id
    notice = LeadAbsorbed(
        event_id=absorbed_id(state.lead_id, merge.event_id, state.merged_from),
        lead_id=into,
        type="lead.absorbed",
        occurred_at=merge.occurred_at,
        source=MERGE_SOURCE,
        data=AbsorbedData(from_lead_id=state.lead_id, merged_from=state.merged_from),
    )
    return Forward(
        id=output_id(state.lead_id, merge.event_id, "absorbed", into, *state.merged_from),
        lead_id=state.lead_id,
        into_lead_id=into,
        event=notice,
        occurred_at=merge.occurred_at,
    )


def forward(state: LeadState, event: LeadEvent) -> Forward:
    """The event again, for the lead this one was merged into: a new id and lead, everything else as given."""
    into = state.merged_into
    assert into is not None
    fields = event.model_dump(exclude_unset=True)
    copy = EVENT_ADAPTER.validate_python(
        {**fields, "event_id": forwarded_id(state.lead_id, event.event_id), "lead_id": into}
    )
    return Forward(
        # Not the target: when a late event changes where this lead was merged, what went out is not sent again.
        id=output_id(state.lead_id, event.event_id, "forward"),
        lead_id=state.lead_id,
        into_lead_id=into,
        event=copy,
        occurred_at=event.occurred_at,
    )


def cycle_detail(state: LeadState) -> str:
    return (
        f"this lead was merged into {state.merged_into}, and {state.merged_into} into this lead (directly or "
        "through a chain): merges in opposite directions, made before either was known where the other was "
        "applied. Events sent to these leads go round the cycle and are refused (merge_chain_too_long); send them "
        "under a new lead_id (lead.created first)"
    )


def merge_cycle_detail(into: str) -> str:
    return (
        f"{into} was merged into this lead (directly or through a chain of merges), so this would merge the lead "
        f"into one already merged into it; nothing to do: events sent to {into} reach this lead"
    )


def chain_detail(state: LeadState, hops: int) -> str:
    return (
        f"forwarded {hops} times along merged leads (at most {MAX_FORWARD_HOPS}) and this lead was merged into "
        f"{state.merged_into} in turn: the merges form a chain longer than {MAX_FORWARD_HOPS} leads or a cycle "
        "(merges in opposite directions made at the same moment); send the event to the lead that survived"
    )


def unknown_target_detail(notice: LeadAbsorbed) -> str:
    return (
        f"{notice.data.from_lead_id} was merged into this lead_id, which names no lead (no lead.created yet); "
        "events forwarded here are refused too until it is created: merge into an existing lead"
    )
