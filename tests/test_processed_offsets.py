"""The committable offset: from the committed one, over what was acknowledged or has no record, never past a
record not yet acknowledged (streams.runtime.processed_offsets). The restart into a backlog that used to lose a record
is tests/test_e2e_time.py's backlog test, on Apache Kafka."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from leadflow.streams.runtime.processed_offsets import LEDGER, FetchLedger, deliverable, install, next_commit


def holes_of(offsets: set[int]) -> list[tuple[int, int]]:
    """Sorted [begin, end) runs of `offsets`."""
    runs: list[tuple[int, int]] = []
    for offset in sorted(offsets):
        if runs and runs[-1][1] == offset:
            runs[-1] = (runs[-1][0], offset + 1)
        else:
            runs.append((offset, offset + 1))
    return runs


@given(
    start=st.integers(0, 40),
    acked=st.sets(st.integers(0, 60)),
    missing=st.sets(st.integers(0, 60)),
)
def test_the_commit_stops_at_the_first_record_not_acknowledged(start: int, acked: set[int], missing: set[int]) -> None:
    expected = next(p for p in range(start, 200) if p not in acked and p not in missing)
    assert next_commit(start, sorted(acked), holes_of(missing)) == expected


def test_a_record_lost_right_at_the_committed_offset_holds_the_commit() -> None:
    # faust-streaming issue 606: acknowledged 47.. with 46 committed used to commit past 46.
    assert next_commit(46, [47, 48, 49], []) == 46
    assert next_commit(46, [46, 47, 48, 49], []) == 50


def test_transaction_markers_and_deleted_records_are_passed_over() -> None:
    assert next_commit(10, [10, 11, 13, 14], [(12, 13)]) == 15
    assert next_commit(0, [500, 501], [(0, 500)]) == 502  # retention deleted 0..499 while no worker ran


def test_the_ledger_learns_holes_from_fetches_and_forgets_them_once_committed() -> None:
    ledger = FetchLedger()
    partition = ("leads.events", 3)
    ledger.sought(partition, 42)
    ledger.fetched(partition, [45, 46, 48])
    assert ledger.holes(partition) == [(42, 45), (47, 48)]
    ledger.fetched(partition, [49])
    assert ledger.holes(partition) == [(42, 45), (47, 48)]
    ledger.committed(partition, 46)
    assert ledger.holes(partition) == [(47, 48)]


def test_a_seek_back_is_not_a_hole() -> None:
    ledger = FetchLedger()
    partition = ("leads.events", 0)
    ledger.fetched(partition, range(100, 150))
    ledger.sought(partition, 62)  # recovery rewinds to the committed offset
    ledger.fetched(partition, range(62, 70))
    assert ledger.holes(partition) == []
    assert ledger.start(partition, None, 65) == 62  # no commit yet: from the first record fetched since the seek
    assert ledger.start(partition, 60, 65) == 60


def test_a_partition_without_a_commit_is_sought_back_to_the_first_record_handed_out() -> None:
    ledger = FetchLedger()
    partition = ("leads.events", 1)
    assert ledger.rewind(partition, None) is None  # nothing handed out: nothing to fetch again
    ledger.fetched(partition, range(0, 10))  # the first batch after the assignment, before recovery's seek
    assert ledger.rewind(partition, None) == 0
    assert ledger.rewind(partition, 0) == 0  # a commit of 0 does not move aiokafka's seek either
    assert ledger.rewind(partition, 7) is None  # aiokafka seeks to a commit
    ledger.sought(partition, 4)
    ledger.fetched(partition, range(4, 6))
    assert ledger.rewind(partition, None) == 4


def fake_consumer(committed: int | None, acked: list[int]) -> Any:
    tp = TP("ledger-test.events", 0)
    return tp, SimpleNamespace(
        _acked={tp: list(acked)},
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
    )


def test_faust_consumer_commits_what_was_processed() -> None:
    install(["ledger-test.events"])
    tp, consumer = fake_consumer(46, [49, 47, 48])
    assert Consumer._new_offset(consumer, tp) is None
    assert consumer._acked[tp] == [47, 48, 49]  # kept for when 46 is acknowledged
    consumer._acked[tp].append(46)
    consumer._acked_index[tp].add(46)
    assert Consumer._new_offset(consumer, tp) == 50
    assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()  # noqa: PT018 - one state


def test_faust_consumer_commits_past_offsets_the_fetcher_never_handed_out() -> None:
    install(["ledger-test.events"])
    tp, consumer = fake_consumer(10, [10, 11, 13])
    LEDGER.sought(("ledger-test.events", 0), 10)
    LEDGER.fetched(("ledger-test.events", 0), [10, 11, 13])  # 12: a transaction marker
    assert Consumer._new_offset(consumer, tp) == 14
    assert LEDGER.holes(("ledger-test.events", 0)) == []


def test_only_what_faust_hands_out_is_deliverable() -> None:
    """Faust's fetch loop hands out nothing while its flow is stopped, and otherwise only the partitions it fetches
    now (None: every assigned one) or whose stream buffer is full."""
    a, b, c = TP("t", 0), TP("t", 1), TP("t", 2)
    records: dict[Any, list[Any]] = {a: [1], b: [2], c: [3]}
    assert deliverable(records, flow_active=False, live={a, b, c}, buffered=set()) == {}
    assert deliverable(records, flow_active=True, live=None, buffered=set()) == records
    assert deliverable(records, flow_active=True, live={a}, buffered={c}) == {a: [1], c: [3]}
    assert deliverable(records, flow_active=True, live=set(), buffered=set()) == {}  # every partition paused
