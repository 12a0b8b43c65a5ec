"""The lead's ledger: what its outputs said, kept with the lead (schemas.state.Ledger).

The funnel report (core.report) is computed from lead records, so that the live worker (its table) and an
offline replay (the engine's records) give the same report by the same function. Stages and their times are
in the lead's history already; the ledger adds what only the outputs tell: SLA outcomes with the owner, team
and pool they count for, hand-offs, and when each contact attempt happened (the review counts them per
period). Bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections.abc import Sequence

from leadflow.schemas.events import ContactAttempted, LeadCreated, LeadEvent
from leadflow.schemas.outputs import SLA_TYPES, HandOff, Output, SlaBreached, SlaCancelled, SlaMet, SlaOutput
from leadflow.schemas.state import HandOffEntry, LeadState, SlaEntry, SlaEntryKind

MAX_SLA_ENTRIES = 64
MAX_HANDOFFS = 16
MAX_CONTACTS = 32  # well past any contact-attempts SLA; the review counts attempts per period


def kind_of(output: SlaOutput) -> SlaEntryKind:
    if isinstance(output, SlaMet):
        return "late" if output.late else "met"
    kinds: dict[str, SlaEntryKind] = {
        "sla.started": "started",
        "sla.warning": "warning",
        "sla.breached": "breached",
        "sla.cancelled": "cancelled",
        "sla.escalated": "escalated",
    }
    return kinds[output.type]


def reason_of(output: SlaOutput) -> str | None:
    if isinstance(output, SlaCancelled):
        return output.reason
    if isinstance(output, SlaBreached):
        return output.not_escalated
    return None


def entry(output: SlaOutput) -> SlaEntry:
    return SlaEntry(
        sla=output.sla,
        kind=kind_of(output),
        at=output.occurred_at,
        owner_id=output.owner_id,
        team=output.team,
        pool=output.pool,
        reason=reason_of(output),
        used_s=output.used_s if isinstance(output, SlaMet) else None,
    )


def record(state: LeadState | None, event: LeadEvent, outputs: Sequence[Output]) -> LeadState | None:
    """The state with this step's outputs in its ledger (and the lead's source, on its creation)."""
    if state is None:
        return None
    if not outputs and not isinstance(event, LeadCreated | ContactAttempted):
        return state  # most events: nothing for the ledger
    slas = tuple(entry(o) for o in outputs if isinstance(o, SLA_TYPES))
    handoffs = tuple(
        HandOffEntry(at=o.occurred_at, owner_id=o.owner_id, team=o.team, pool=o.pool, reason=o.reason)
        for o in outputs
        if isinstance(o, HandOff)
    )
    created = isinstance(event, LeadCreated) and state.ledger.source is None
    contacted = isinstance(event, ContactAttempted)
    if not slas and not handoffs and not created and not contacted:
        return state
    ledger = state.ledger
    updates: dict[str, object] = {}
    if slas:
        updates["sla"] = (*ledger.sla, *slas)[-MAX_SLA_ENTRIES:]
    if handoffs:
        updates["handoffs"] = (*ledger.handoffs, *handoffs)[-MAX_HANDOFFS:]
    if created:
        updates["source"] = event.source
    if contacted:
        updates["contacts"] = (*ledger.contacts, event.occurred_at)[-MAX_CONTACTS:]
    return state.model_copy(update={"ledger": ledger.model_copy(update=updates)})
