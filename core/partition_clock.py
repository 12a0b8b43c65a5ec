"""Partition time: the clock SLA instants fire on, per partition of the events topic (GUIDE section 2).

An SLA instant of a lead (a warning, a deadline) fires only once every event appended to the lead's partition
before that instant has been applied, plus a grace for producers that deliver a little late. Two things tell
the worker how far that holds:
- the newest event time applied on the partition: in a stream produced in real time, events appended before
  an instant are dated before it, so applying one dated after the instant means the earlier ones are in;
- the last moment the partition had nothing waiting (its position had reached the high watermark of a fetch
  answered then): everything appended before that moment is applied.
Partition time is the later of the two, never ahead of the worker clock. A restart with a backlog, a broker
outage or a slow consumer thus holds the clocks back until the backlog is applied, instead of breaching a
clock that an event in the backlog met in time; with nothing waiting, instants fire `grace` after they pass.
Times are epoch seconds (floats), as the deadline index keeps them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass
class PartitionClock:
    event_time: dict[int, float] = field(default_factory=dict)  # partition -> newest occurred_at applied
    caught_up_at: dict[int, float] = field(default_factory=dict)  # partition -> last time nothing waited

    def applied(self, partition: int, occurred_at: float) -> None:
        if occurred_at > self.event_time.get(partition, float("-inf")):
            self.event_time[partition] = occurred_at

    def caught_up(self, partition: int, at: float) -> None:
        if at > self.caught_up_at.get(partition, float("-inf")):
            self.caught_up_at[partition] = at

    def time(self, partition: int, now: float) -> float | None:
        """The partition's time (None: nothing known yet, e.g. just after a rebalance)."""
        known = [t for t in (self.event_time.get(partition), self.caught_up_at.get(partition)) if t is not None]
        return min(now, max(known)) if known else None

    def cutoff(self, partition: int, now: float, grace_s: float) -> float | None:
        """SLA instants at or before this may fire on the partition."""
        time = self.time(partition, now)
        return None if time is None else time - grace_s

    def keep(self, partitions: Collection[int]) -> None:
        """After a rebalance: what was known of the partitions not kept is stale (were one to come back, what was
        applied of it meanwhile, elsewhere, is not known); those kept were applied here only."""
        for times in (self.event_time, self.caught_up_at):
            for partition in [p for p in times if p not in partitions]:
                del times[partition]


def is_caught_up(applied_up_to: int, fetched_up_to: int | None, highwater: int | None) -> bool:
    """Nothing waits on a partition when the client has fetched up to the high watermark of its last fetch and
    every record fetched has been applied (offsets: the next one to apply, the next one to fetch)."""
    if fetched_up_to is None or highwater is None:
        return False
    return fetched_up_to >= highwater and applied_up_to >= fetched_up_to
