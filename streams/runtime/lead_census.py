"""The lead census: leads per stage, open SLA clocks and overdue ones, over some leads (pure; no Faust, no metrics).

`census` counts a set of lead states from scratch: it is the definition. `LeadCensus` keeps the same counts up to
date as the worker stores leads, per partition, so the lead gauges cost a bisect per SLA and partition at scrape
time instead of a walk of every lead:

- `update(key, partition, old, new)`: a lead's record is stored (`new`; None when it is deleted) over the record
  the table held (`old`); the old record's share (its stage, its open clocks, the deadlines of those not paused) is
  taken off, the new one's added (nothing to do when the event touched neither the stage nor a clock). No entry
  per lead is kept: the census costs memory in proportion to open clocks (one int per unpaused deadline, in a
  sorted list per partition and SLA), not to leads.
- `counts(partitions, now)`: the counts over the given partitions. Overdue, "an open clock whose deadline has
  passed and that is not paused", depends on `now`: it is the number of unpaused deadlines at or before `now`, a
  bisect of each sorted list.
- `begin_walk(partition)`, `walked(key, partition, record)`, `end_walk`: a count from the table itself, of one
  partition (the worker walks those newly assigned to it, one at a time: a table recovered from its changelog) or
  of every one, for what the worker did not store itself. The walk reads the keys the table held when it began, in
  chunks, while leads are stored (`update`): a lead stored before the walk reaches it counts as the record it had
  when first stored during the walk, since every store since then is counted already; so the walk keeps an entry
  for each lead of its partitions stored while it runs, until it reaches it or ends. Until it ends, the counts of its
  partitions are those of the last walk that did, kept up to date by `update` (of a partition no walk counted, only
  what was stored since); when it ends they are its own. `complete` is False until the worker has walked every
  partition it holds once (`end_walk` of the whole table, or `all_walked`). A new walk abandons one under way (a
  rebalance meanwhile).
- `keep(partitions)`: a rebalance took the others away: their counts are dropped (a partition kept keeps its own:
  nothing of it was stored elsewhere meanwhile).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

from sortedcontainers import SortedList

from leadflow.schemas.state import LeadRecord, LeadRecordView, LeadState

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
Key = TypeVar("Key")


@dataclass
class Census:
    """Leads per stage and SLA clocks open/overdue by SLA, over some leads."""

    stages: Counter[str] = field(default_factory=Counter)
    open: Counter[str] = field(default_factory=Counter)
    overdue: Counter[str] = field(default_factory=Counter)


def census(states: Iterable[LeadState], now: datetime, into: Census | None = None) -> Census:
    """Count leads per stage and open clocks; a clock is overdue when its deadline has passed and it is not paused
    (a paused clock's deadline moves on resume). Adds to `into` when given."""
    result = into if into is not None else Census()
    stages, opened, overdue = result.stages, result.open, result.overdue
    for state in states:
        stages[state.stage] += 1
        for name, clock in state.clocks.items():
            opened[name] += 1
            if clock.paused_at is None and clock.deadline <= now:
                overdue[name] += 1
    return result


def micros(instant: datetime) -> int:
    """Microseconds since the epoch, exactly: comparing two of them is comparing the instants (a float timestamp
    may round two instants a microsecond apart to one value)."""
    return (instant - EPOCH) // MICROSECOND


class Share(NamedTuple):
    """What one lead adds to the census: its stage, the SLA names of its open clocks, and (SLA name, deadline in
    microseconds) for those not paused."""

    stage: str
    open: tuple[str, ...]
    deadlines: tuple[tuple[str, int], ...]


def share(record: LeadRecord | LeadRecordView | None) -> Share | None:
    """The share of a lead as stored in the table (None: the record is absent or holds no lead); the record may be
    a view of the stored one (schemas.state.LeadRecordView)."""
    state = record.state if record is not None else None
    if state is None:
        return None
    clocks = state.clocks
    if not clocks:
        return Share(state.stage, (), ())
    deadlines = tuple([(name, micros(clock.deadline)) for name, clock in clocks.items() if clock.paused_at is None])
    return Share(state.stage, tuple(clocks), deadlines)


def give(counter: Counter[Key], key: Key, n: int = 1) -> None:
    """`n` more of `key` (n < 0: fewer, below zero too), with no entry kept at zero."""
    left = counter[key] + n
    if left:
        counter[key] = left
    else:
        del counter[key]


def take(counter: Counter[Key], key: Key) -> None:
    give(counter, key, -1)


def is_unchanged(old: LeadRecord | None, new: LeadRecord | None) -> bool:
    """Whether `new` surely adds what `old` did, without working out either: the same stage and the very same
    clocks (an event that touches no clock leaves the lead's clocks as they were, the same object)."""
    before = old.state if old is not None else None
    after = new.state if new is not None else None
    if before is None or after is None:
        return before is after  # neither holds a lead
    return before.clocks is after.clocks and before.stage == after.stage


@dataclass
class Tally:
    """The census of one partition: counts that may go below zero for a while, as a lead may be taken off before
    it is added (stored during a walk before the walk reaches it); so may deadlines (`owed`)."""

    stages: Counter[str] = field(default_factory=Counter)
    open: Counter[str] = field(default_factory=Counter)
    deadlines: dict[str, SortedList[int]] = field(default_factory=dict)  # SLA -> unpaused deadlines, in micros
    owed: dict[str, Counter[int]] = field(default_factory=dict)  # SLA -> deadlines taken off before they were added

    def add(self, lead: Share) -> None:
        give(self.stages, lead.stage)
        for name in lead.open:
            give(self.open, name)
        for name, deadline in lead.deadlines:
            self.add_deadline(name, deadline)

    def remove(self, lead: Share) -> None:
        take(self.stages, lead.stage)
        for name in lead.open:
            take(self.open, name)
        for name, deadline in lead.deadlines:
            self.remove_deadline(name, deadline)

    def move(self, before: Share | None, after: Share | None) -> None:
        """A lead goes from `before` to `after`: only what differs is touched (most events change no clock)."""
        if before is None or after is None:
            if before is not None:
                self.remove(before)
            if after is not None:
                self.add(after)
            return
        if before.stage != after.stage:
            take(self.stages, before.stage)
            give(self.stages, after.stage)
        if before.open != after.open:
            for name in before.open:
                take(self.open, name)
            for name in after.open:
                give(self.open, name)
        if before.deadlines != after.deadlines:  # one entry per SLA in each: no duplicates
            for entry in before.deadlines:
                if entry not in after.deadlines:
                    self.remove_deadline(*entry)
            for entry in after.deadlines:
                if entry not in before.deadlines:
                    self.add_deadline(*entry)

    def add_deadline(self, name: str, deadline: int) -> None:
        owed = self.owed.get(name)
        if owed is not None and deadline in owed:
            take(owed, deadline)
            if not owed:
                del self.owed[name]
            return
        pending = self.deadlines.get(name)
        if pending is None:
            pending = self.deadlines[name] = SortedList()
        pending.add(deadline)

    def remove_deadline(self, name: str, deadline: int) -> None:
        pending = self.deadlines.get(name)
        if pending is not None and deadline in pending:
            pending.remove(deadline)
            if not pending:
                del self.deadlines[name]
            return
        owed = self.owed.get(name)
        if owed is None:
            owed = self.owed[name] = Counter()
        give(owed, deadline)

    def count_into(self, counts: Census, now: int) -> None:
        """Add this partition's counts at `now` (micros). Only counts above zero are added: a partition counted
        as it was at the last walk (a standby replica then, active now) may be told of a lead leaving a stage it
        did not count there, until the walk under way ends."""
        for stage, n in self.stages.items():
            if n > 0:
                counts.stages[stage] += n
        for name, n in self.open.items():
            if n > 0:
                counts.open[name] += n
        for name, pending in self.deadlines.items():
            overdue = pending.bisect_right(now)
            owed = self.owed.get(name)
            if owed:
                overdue -= sum(n for deadline, n in owed.items() if deadline <= now)
            if overdue > 0:
                counts.overdue[name] += overdue


def tally_of(tallies: dict[int, Tally], partition: int) -> Tally:
    tally = tallies.get(partition)
    if tally is None:
        tally = tallies[partition] = Tally()
    return tally


@dataclass
class Walk:
    """A count from the table under way, of one partition (`partition`) or of every one (None): the tallies it
    builds, and the share each lead had when the worker first stored it during the walk (what the walk must count
    for it, if it has not yet reached it)."""

    partition: int | None = None
    tallies: dict[int, Tally] = field(default_factory=dict)
    first: dict[bytes, Share | None] = field(default_factory=dict)

    def covers(self, partition: int) -> bool:
        return self.partition is None or self.partition == partition

    def stored(self, key: bytes, partition: int, before: Share | None, after: Share | None) -> None:
        self.first.setdefault(key, before)
        tally_of(self.tallies, partition).move(before, after)

    def walked(self, key: bytes, partition: int, record: LeadRecord | LeadRecordView | None) -> None:
        lead = self.first.pop(key) if key in self.first else share(record)
        if lead is not None:
            tally_of(self.tallies, partition).add(lead)


class LeadCensus:
    """Leads per stage, open and overdue SLA clocks, per partition, kept up to date as leads are stored (see the
    module's docstring)."""

    def __init__(self) -> None:
        self.tallies: dict[int, Tally] = {}
        self.complete = False  # a walk has ended: the tallies cover the table as of then, and every store since
        self.walk: Walk | None = None

    def update(self, key: bytes, partition: int, old: LeadRecord | None, new: LeadRecord | None) -> None:
        """The lead `key` of `partition` is stored as `new` (None: deleted) over `old`, what the table held."""
        if is_unchanged(old, new):
            return
        before, after = share(old), share(new)
        if before == after:
            return
        if self.walk is not None and self.walk.covers(partition):
            self.walk.stored(key, partition, before, after)
        tally_of(self.tallies, partition).move(before, after)

    def counts(self, partitions: Iterable[int], now: datetime) -> Census:
        """The census of the leads of `partitions` (those it has a tally of), overdue as of `now`."""
        result, at = Census(), micros(now)
        for partition in partitions:
            tally = self.tallies.get(partition)
            if tally is not None:
                tally.count_into(result, at)
        return result

    def begin_walk(self, partition: int | None = None) -> None:
        """A count from the table of `partition` (None: of every partition) begins (one under way, abandoned, is
        dropped)."""
        self.walk = Walk(partition)

    def walked(self, key: bytes, partition: int, record: LeadRecord | LeadRecordView | None) -> None:
        """The walk read `record` (None: gone) for the lead `key` of `partition`; each key of its partitions in the
        table as of `begin_walk` once, leads stored since then need not be."""
        if self.walk is not None and self.walk.covers(partition):
            self.walk.walked(key, partition, record)

    def end_walk(self) -> None:
        """The walk read every key of its partitions: its tallies are their census (of every partition the table
        holds, after a walk of the whole table, which makes the census complete)."""
        walk, self.walk = self.walk, None
        if walk is None:
            return
        if walk.partition is None:
            self.tallies, self.complete = walk.tallies, True
            return
        tally = walk.tallies.get(walk.partition)
        if tally is None:
            self.tallies.pop(walk.partition, None)
        else:
            self.tallies[walk.partition] = tally

    def all_walked(self) -> None:
        """Every partition the worker holds has been walked (one at a time) since it was assigned: the census is
        complete."""
        self.complete = True

    def keep(self, partitions: Collection[int]) -> None:
        """Only `partitions` stay this worker's: the counts of the others are dropped, and a walk that counts any
        of them is abandoned."""
        for partition in [p for p in self.tallies if p not in partitions]:
            del self.tallies[partition]
        walk = self.walk
        if walk is not None and (walk.partition is None or walk.partition not in partitions):
            self.walk = None
