"""Scenario steps the fault tests share, built on the side-by-side helpers of tests/test_e2e_time.py."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from e2e import Deployment, produce_in_real_time
from test_e2e_time import Outcome, Pair, Stream, outcome, short_sla_policy, wait_settled, warm_up

from streams.worker_process import WorkerProcess

Timed = list[tuple[float, bytes, bytes]]


async def run_apart(
    pair: Pair,
    tmp_path: Path,
    stream_of: Callable[[float], tuple[Stream, Timed]],
    interrupt: Callable[[Deployment, list[WorkerProcess], float, dict[str, str]], Awaitable[None]],
) -> tuple[Outcome, Outcome, Stream, list[WorkerProcess]]:
    """Like test_e2e_time.side_by_side, but each deployment gets its own producer (so the two may be on different
    brokers) and the trial its own records: `stream_of(start)` gives the stream (the reference gets its records)
    and the trial's records (the same events, or the same events delivered otherwise)."""
    env = {"LEADFLOW_POLICY": str(short_sla_policy(tmp_path))}
    reference = pair.reference.worker("worker", **env).start()
    workers = [pair.trial.worker("worker-1", **env).start()]
    try:
        await asyncio.gather(warm_up(pair.reference, reference), warm_up(pair.trial, workers[0]))
        start = time.time() + 1.0
        stream, trial_records = stream_of(start)
        producing = asyncio.gather(
            produce_in_real_time([pair.reference], stream.records), produce_in_real_time([pair.trial], trial_records)
        )
        await interrupt(pair.trial, workers, start, env)
        lags = await producing
        assert max(lags) < 1.0, f"the producers fell {lags} s behind the real-time schedule: the scenario did not hold"
        await asyncio.gather(
            wait_settled(pair.reference, stream, lambda: reference),
            wait_settled(pair.trial, stream, lambda: workers[-1]),
        )
        await asyncio.gather(
            pair.reference.wait_all_committed(reference, timeout_s=30),
            pair.trial.wait_all_committed(workers[-1], timeout_s=30),
        )
        return await outcome(pair.reference), await outcome(pair.trial), stream, workers
    finally:
        await asyncio.gather(asyncio.to_thread(reference.stop), *(asyncio.to_thread(w.stop) for w in workers))


def delivered_twice_and_shuffled(records: Timed, bound_s: float, seed: int) -> Timed:
    """Every record twice, each copy delivered at its own time up to `bound_s` after the original (so in an order
    shuffled within that bound): sorted by the new delivery time, the value (with its occurred_at) unchanged."""
    rng = random.Random(seed)
    copies = [(at + rng.uniform(0.0, bound_s), key, value) for at, key, value in records for _ in range(2)]
    return sorted(copies, key=lambda copy: copy[0])
