"""The deadline index: which leads have an SLA instant (a warning or a deadline) due, without scanning them all.

A heap of (instant, lead) with lazy deletion: `set` replaces a lead's next instant, `pop_due(now)` returns the
leads whose instant has come, in order. Cost: O(log n) per update, O(k log n) to take k due leads, so a sweep
costs what is due, not what is open. The index is rebuilt from the leads table after a rebalance; the table,
not the index, is what is durable.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime

from leadflow.schemas.events import TimerDue
from leadflow.schemas.state import LeadState, LeadStateView

TIMER_SOURCE = "leadflow.timer"


def timer_due(lead_id: str, instant: datetime) -> TimerDue:
    """The timer event for one SLA instant of a lead: what the live sweep sends, the replay fires and a lead's
    own later event applies first. The instant goes through its epoch timestamp (as the index keeps it), so
    all three give the event the same id."""
    at = datetime.fromtimestamp(instant.timestamp(), UTC)
    return TimerDue(
        event_id=f"timer:{at.isoformat()}", lead_id=lead_id, type="timer.due", occurred_at=at, source=TIMER_SOURCE
    )


def next_instant(state: LeadState | LeadStateView | None, after: float | None = None) -> datetime | None:
    """The earliest warning or deadline still to come on the lead's running clocks (later than `after`, a
    timestamp, when given). The state may be a view of a stored record (schemas.state.LeadStateView)."""
    if state is None or not state.clocks:
        return None
    earliest: datetime | None = None
    # A plain loop: this runs two or three times per event (the lead's timer, the ticks due before an event).
    for clock in state.clocks.values():
        if clock.paused_at is not None:
            continue
        instants = clock.warnings if clock.breached else (*clock.warnings, (1.0, clock.deadline))
        for _, instant in instants:
            if (earliest is None or instant < earliest) and (after is None or instant.timestamp() > after):
                earliest = instant
    return earliest


@dataclass
class DeadlineIndex:
    heap: list[tuple[float, str]] = field(default_factory=list)
    due_at: dict[str, float] = field(default_factory=dict)  # lead -> its live entry (others in the heap are stale)

    def __len__(self) -> int:
        return len(self.due_at)

    def set(self, lead_id: str, instant: datetime | None) -> None:
        if instant is None:
            self.due_at.pop(lead_id, None)
            return
        stamp = instant.timestamp()
        if self.due_at.get(lead_id) == stamp:
            return
        self.due_at[lead_id] = stamp
        heapq.heappush(self.heap, (stamp, lead_id))
        if len(self.heap) > 2 * len(self.due_at) + 1024:
            self._compact()

    def pop_due(self, now: datetime, limit: int | None = None) -> list[tuple[str, float]]:
        """Leads whose instant is at or before `now`, earliest first; they leave the index."""
        cutoff = now.timestamp()
        due: list[tuple[str, float]] = []
        while self.heap and self.heap[0][0] <= cutoff and (limit is None or len(due) < limit):
            stamp, lead_id = heapq.heappop(self.heap)
            if self.due_at.get(lead_id) == stamp:
                del self.due_at[lead_id]
                due.append((lead_id, stamp))
        return due

    def _compact(self) -> None:
        self.heap = [(stamp, lead) for lead, stamp in self.due_at.items()]
        heapq.heapify(self.heap)
