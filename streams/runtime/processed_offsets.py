"""Commits that follow what was processed, and fetches that lose nothing: four corrections to Faust's consumer
(faust-streaming 0.15).

Seen on Apache Kafka, a worker restarted into a backlog lost a record now and then (1 run in 8 of
tests/test_e2e_time.py's backlog test): fetched, handed to the stream's buffer, never processed, and committed
past. Traced record by record, the sequence is:

1. Faust's recovery resumes the stream partitions, then seeks them to their committed offsets, then resumes its
   flow control, which empties the stream buffers (records fetched before the seek are fetched again).
   Meanwhile its fetch loop went on handing out the batch it had fetched before the seek, so a record handed out
   between the seek and the emptying was dropped, and the read position had already moved past it: it was never
   fetched again. `stop_at_seek` makes a seek stop the flow first, so the batch is abandoned and nothing is
   handed out until the buffers are emptied and the flow resumes from the committed offsets. And aiokafka's
   seek to the committed offset does not move a partition that has none (or 0): a worker that joins a group
   on a new topic had its first records dropped that way (seen in the two-worker fault test, 2 runs in 3), so
   such a partition is sought back to the first offset handed out since its last seek.
2. Faust's committable offset tolerated one missing offset right at the committed one (`min(acked) - committed
   > 1`; faust-streaming issue 606), so the lost record was committed past instead of holding the commit.
3. Faust notes "gaps" (offsets skipped by the fetch) to commit past transaction markers, but it measures them
   from its read position, which a seek rewinds, so records already processed were counted twice and the commit
   crawled or stopped.

4. A fetch outlives a rebalance. Faust's fetch loop asks aiokafka's fetcher for the records of the partitions it
   fetches, passing its own set of them, and aiokafka waits up to a second for some. Meanwhile the rebalance
   stops the flow and empties that set (aiokafka then hands out every partition's records), and the new
   generation's recovery seeks the changelog partitions it restores. The fetch then returns, aiokafka having
   moved past what it handed out, and Faust's loop drops those records (its flow is stopped, or the partition is
   not in its set). A stream partition is sought to its committed offset afterwards; a changelog partition is
   not, so its recovery waited for records that never came and the worker hung in recovery (seen in the
   two-worker fault test: 2 runs in 12, "No event received for active tp"). `deliverable` keeps only what the
   loop will hand out; the rest is sought back on aiokafka's thread, before any other seek or fetch.

The fix for 2 and 3 is one rule: commit from the committed offset over every offset that was either acknowledged
or has no record (the fetcher never handed it out: transaction markers, compacted or deleted records), and stop
at the first offset that has a record not yet acknowledged. `FetchLedger` learns the offsets without a record
from the fetches themselves (on the consumer's thread, in step with aiokafka's seeks); `next_commit` is the rule.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

Partition = tuple[str, int]


def next_commit(start: int, acked: Sequence[int], holes: Sequence[tuple[int, int]]) -> int:
    """The offset to commit: `start` (the committed offset) moved past every offset that was acknowledged
    (`acked`, sorted) or has no record (`holes`, sorted [begin, end) ranges), up to the first one that has a
    record not yet acknowledged."""
    position, a, h = start, bisect.bisect_left(acked, start), 0
    while True:
        while a < len(acked) and acked[a] < position:
            a += 1
        if a < len(acked) and acked[a] == position:
            position += 1
            continue
        while h < len(holes) and holes[h][1] <= position:
            h += 1
        if h < len(holes) and holes[h][0] <= position:
            position = holes[h][1]
            continue
        return position


@dataclass
class PartitionFetches:
    expected: int | None = None  # the next offset the fetcher hands out, when known (after a seek or a fetch)
    first: int | None = None  # the first offset handed out since the partition was assigned or sought
    holes: list[tuple[int, int]] = field(default_factory=list)  # [begin, end): offsets with no record


class FetchLedger:
    """Which offsets of the watched topics have no record, learnt from what aiokafka's fetcher hands out.

    Written on the consumer's thread (seeks and fetches, in the order they happen there), read by the commit on
    the event loop's thread: hence the lock."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.partitions: dict[Partition, PartitionFetches] = {}
        self.lock = threading.Lock()

    def sought(self, partition: Partition, offset: int) -> None:
        with self.lock:
            fetches = self.partitions.setdefault(partition, PartitionFetches())
            fetches.expected, fetches.first = offset, None

    def fetched(self, partition: Partition, offsets: Iterable[int]) -> None:
        with self.lock:
            fetches = self.partitions.setdefault(partition, PartitionFetches())
            for offset in offsets:
                if fetches.first is None:
                    fetches.first = offset
                if fetches.expected is not None and offset > fetches.expected:
                    fetches.holes.append((fetches.expected, offset))
                fetches.expected = offset + 1

    def start(self, partition: Partition, committed: int | None, default: int) -> int:
        """Where the commit counts from: the committed offset, else the first offset fetched."""
        if committed is not None:
            return committed
        with self.lock:
            fetches = self.partitions.get(partition)
            first = fetches.first if fetches else None
        return default if first is None else min(first, default)

    def rewind(self, partition: Partition, committed: int | None) -> int | None:
        """Where a seek to the committed offset must go when aiokafka's does not move (no commit, or 0): back to
        the first offset handed out since the last seek, so records handed out before the seek and dropped with
        the stream buffers are fetched again (the ones already processed are duplicates, dropped by id)."""
        if committed:
            return None
        with self.lock:
            fetches = self.partitions.get(partition)
            return fetches.first if fetches else None

    def holes(self, partition: Partition) -> list[tuple[int, int]]:
        with self.lock:
            fetches = self.partitions.get(partition)
            return sorted(fetches.holes) if fetches else []

    def committed(self, partition: Partition, offset: int) -> None:
        """Holes below a committed offset are of no more use."""
        with self.lock:
            fetches = self.partitions.get(partition)
            if fetches:
                fetches.holes = [(begin, end) for begin, end in fetches.holes if end > offset]


LEDGER = FetchLedger()


def key(tp: Any) -> Partition:
    return (tp.topic, tp.partition)


def install(topics: Iterable[str]) -> None:
    """Patch Faust's consumer (once per process; the watched topics are the agents' input topics)."""
    LEDGER.topics.update(topics)
    if getattr(Consumer._new_offset, "leadflow_processed", False):
        return
    _watch_fetches()
    _stop_at_seek()
    _commit_processed()


def _watch_fetches() -> None:
    seek_to = Fetcher.seek_to

    def seek_and_note(self: Any, tp: Any, offset: int) -> None:
        seek_to(self, tp, offset)
        if tp.topic in LEDGER.topics:
            LEDGER.sought(key(tp), offset)

    fetch = AIOKafkaConsumerThread._fetch_records

    async def fetch_and_note(self: Any, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        records = await fetch(self, consumer, *args, **kwargs)
        faust_consumer = self.consumer
        kept = deliverable(
            records,
            flow_active=faust_consumer.flow_active,
            live=faust_consumer._active_partitions,
            buffered=faust_consumer._buffered_partitions,
        )
        for tp, batch in records.items():
            if tp not in kept and consumer._subscription.is_assigned(tp):
                # On this thread, so before any other seek or fetch; unnoted: the ledger never saw these records
                seek_to(consumer._fetcher, tp, batch[0].offset)
        for tp, batch in kept.items():
            if tp.topic in LEDGER.topics:
                LEDGER.fetched(key(tp), (record.offset for record in batch))
        return kept

    setattr(Fetcher, "seek_to", seek_and_note)  # noqa: B010 - a method
    setattr(AIOKafkaConsumerThread, "_fetch_records", fetch_and_note)  # noqa: B010 - a method


def deliverable(
    records: Mapping[Any, list[Any]], *, flow_active: bool, live: set[Any] | None, buffered: set[Any]
) -> dict[Any, list[Any]]:
    """The fetched batches Faust's fetch loop will hand to a stream or a table: none while its flow is stopped,
    and only those of partitions it fetches now (`live`: None means every assigned one) or whose stream buffer is
    full (`buffered`). It drops the others without a word, and aiokafka has already moved past them."""
    if not flow_active:
        return {}
    return {tp: batch for tp, batch in records.items() if live is None or tp in live or tp in buffered}


def _stop_at_seek() -> None:
    perform_seek = Consumer.perform_seek

    async def stop_then_seek(self: Any) -> None:
        # Faust resumes the flow once the stream buffers are emptied (recovery) or it is already stopped (the
        # fetch loop's own seek). A record being handed to a stream is cut short and fetched again.
        self.stop_flow()
        for _ in range(3):  # the fetch loop sees the stop within a few turns of the event loop
            await asyncio.sleep(0)
        try:
            await perform_seek(self)
            for tp in self.assignment():
                if tp.topic in LEDGER.topics:
                    offset = LEDGER.rewind(key(tp), self._committed_offset.get(tp))
                    if offset is not None:
                        await self.seek(tp, offset)
        except BaseException:
            self.resume_flow()  # as Faust would have left it
            raise

    setattr(Consumer, "perform_seek", stop_then_seek)  # noqa: B010 - a method

    async def no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        return None  # offsets without a record are learnt by the ledger, from the fetches

    setattr(Consumer, "_add_gap", no_gap)  # noqa: B010 - a method


def _commit_processed() -> None:
    def new_offset(self: Any, tp: Any) -> int | None:
        acked: list[int] = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        partition = key(tp)
        start = LEDGER.start(partition, self._committed_offset[tp], acked[0])
        offset = next_commit(start, acked, LEDGER.holes(partition))
        if offset <= start:
            return None
        done = bisect.bisect_left(acked, offset)
        self._acked_index[tp].difference_update(acked[:done])
        del acked[:done]
        LEDGER.committed(partition, offset)
        return offset

    new_offset.leadflow_processed = True  # type: ignore[attr-defined]
    setattr(Consumer, "_new_offset", new_offset)  # noqa: B010 - a method
