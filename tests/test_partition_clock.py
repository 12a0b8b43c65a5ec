"""Partition time: SLA instants wait for what was appended before them (core.partition_clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from leadflow.core.partition_clock import PartitionClock, is_caught_up

NOW = 1_800_000_000.0
GRACE = 30.0


def test_nothing_known_holds_every_instant_back() -> None:
    clock = PartitionClock()
    assert clock.time(0, NOW) is None
    assert clock.cutoff(0, NOW, GRACE) is None, "just after a rebalance nothing may fire on a guess"


def test_a_backlog_holds_the_clock_at_the_newest_event_applied() -> None:
    clock = PartitionClock()
    clock.caught_up(0, NOW - 3600)  # the worker was stopped an hour ago, caught up then
    clock.applied(0, NOW - 3000)  # the backlog is being applied: it has reached 50 minutes ago
    assert clock.cutoff(0, NOW, GRACE) == NOW - 3000 - GRACE
    clock.applied(0, NOW - 3500)  # an older event of another lead changes nothing
    assert clock.time(0, NOW) == NOW - 3000


def test_with_nothing_waiting_instants_fire_a_grace_after_they_pass() -> None:
    clock = PartitionClock()
    clock.applied(0, NOW - 600)
    clock.caught_up(0, NOW - 0.2)
    assert clock.cutoff(0, NOW, GRACE) == NOW - 0.2 - GRACE


def test_partition_time_is_never_ahead_of_the_worker_clock() -> None:
    clock = PartitionClock()
    clock.applied(1, NOW + 200)  # a producer clock a little ahead (within the skew the core accepts)
    assert clock.time(1, NOW) == NOW
    assert clock.time(0, NOW) is None, "partitions are apart"


def test_a_rebalance_forgets_what_was_known_of_the_partitions_not_kept() -> None:
    clock = PartitionClock()
    for partition in (0, 1, 2):
        clock.applied(partition, NOW - partition)
    clock.caught_up(1, NOW)
    clock.caught_up(3, NOW)
    clock.keep({2, 5})
    assert clock.time(0, NOW) is None
    assert clock.time(1, NOW) is None
    assert clock.time(3, NOW) is None
    assert clock.time(2, NOW) == NOW - 2
    clock.keep(())
    assert clock.time(2, NOW) is None


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=NOW)), max_size=30))
def test_partition_time_never_goes_back(observations: list[tuple[bool, float]]) -> None:
    clock = PartitionClock()
    last: float | None = None
    for is_fetch, at in observations:
        if is_fetch:
            clock.caught_up(0, at)
        else:
            clock.applied(0, at)
        time = clock.time(0, NOW)
        assert time is not None
        assert last is None or time >= last
        last = time


def test_caught_up_means_fetched_to_the_high_watermark_and_applied_all_of_it() -> None:
    assert is_caught_up(applied_up_to=10, fetched_up_to=10, highwater=10)
    assert is_caught_up(applied_up_to=0, fetched_up_to=0, highwater=0), "an empty partition waits for nothing"
    assert not is_caught_up(applied_up_to=9, fetched_up_to=10, highwater=10), "a fetched record is not applied"
    assert not is_caught_up(applied_up_to=8, fetched_up_to=8, highwater=10), "records wait at the broker"
    assert not is_caught_up(applied_up_to=10, fetched_up_to=None, highwater=10), "fetched records wait in the client"
    assert not is_caught_up(applied_up_to=10, fetched_up_to=10, highwater=None), "no fetch answered yet"
