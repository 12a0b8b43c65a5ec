"""SIGKILL under a real-time stream: the worker killed N times at seeded random moments, and one of two workers in a
group killed under load. Each compared lead by lead with an uninterrupted reference run of the same events (the
default policy with SLAs of seconds and routing on: test_e2e_time.short_sla_policy), on Apache Kafka."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from e2e import Deployment
from test_e2e_time import (
    Pair,
    assert_same_outcomes,
    committed_total,
    read_models,
    real_time_stream,
    side_by_side,
    until,
    wait_progress,
)

from leadflow.schemas.outputs import SLA_ADAPTER, SlaBreached
from leadflow.streams.dev.broker import free_port
from leadflow.streams.dev.worker_process import WorkerProcess

from .conftest import Figures
from .sizes import SIZES

pytestmark = [pytest.mark.broker, pytest.mark.faults]
SEED = 20261206


async def test_worker_sigkilled_at_random_moments_gives_uninterrupted_outcomes(
    pair: Pair, tmp_path: Path, figures: Figures
) -> None:
    """SIGKILL (no commit, no flush) at seeded random moments of the stream; each kill waits until the restarted
    worker has processed something (a kill during recovery alone tests little), then a restart after a random
    supervisor delay."""
    rng = random.Random(SEED)
    kills: list[float] = []  # seconds into the stream
    moments = sorted(rng.uniform(4.0, SIZES.kill_spread_s) for _ in range(SIZES.kills))

    async def interrupt(trial: Deployment, workers: list[WorkerProcess], start: float, env: dict[str, str]) -> None:
        committed = await committed_total(trial)
        for n, at in enumerate(moments, start=2):
            await until(start + at)
            committed = await wait_progress(trial, workers[-1], committed, timeout_s=90)
            await asyncio.to_thread(workers[-1].kill)
            kills.append(round(time.time() - start, 1))
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            workers.append(trial.worker(f"worker-{n}", **env).start())

    stream_of = lambda start: real_time_stream(start, SIZES.kill_leads, SIZES.kill_spread_s, seed=SEED)  # noqa: E731
    figures(kills_planned=SIZES.kills, leads=SIZES.kill_leads, seed=SEED)
    reference, trial, stream, workers = await side_by_side(pair, tmp_path, stream_of, interrupt)
    last = max(at for at, _, _ in stream.records) - stream.start
    figures(kills=len(kills), events=len(stream.records), kill_moments_s=kills, stream_s=round(last, 1),
            sla_outputs=len(reference.sla), handoffs=len(reference.handoffs))  # fmt: skip
    assert_same_outcomes(reference, trial, stream)
    assert len(workers) == SIZES.kills + 1
    assert all(at < last for at in kills), f"a kill came after the whole stream ({last:.1f} s): {kills}"


async def group_members(bootstrap: str, group: str) -> int:
    """Members of a consumer group that hold an assignment, as the group coordinator says (Apache Kafka)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
        _error, _group, state, _protocol_type, _protocol, members = described.groups[0][:6]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


async def wait_members(deployment: Deployment, count: int, workers: list[WorkerProcess], timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    while await group_members(deployment.broker.bootstrap, deployment.app_id) != count:
        assert all(w.exit_code() is None for w in workers), [w.log_tail() for w in workers]
        assert time.monotonic() < deadline, f"the group never had {count} members\n{workers[-1].log_tail()}"
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def breaches_by_clock(sla: list[SlaBreached]) -> dict[tuple[str, str, str], set[str]]:
    """(lead, sla, deadline) -> the ids its breach was emitted under."""
    ids: dict[tuple[str, str, str], set[str]] = {}
    for o in sla:
        ids.setdefault((o.lead_id, o.sla, o.deadline.isoformat()), set()).add(o.id)
    return ids


async def test_one_of_two_workers_killed_under_load_loses_and_doubles_no_breach(
    pair: Pair, tmp_path: Path, figures: Figures
) -> None:
    """Two workers in one group (the trial): the second joins (a rebalance moves partitions and, with Faust's
    default of one standby replica, each keeps a standby copy of the other's table), then the first is SIGKILLed
    mid-stream: its partitions, the router and its timers move to the survivor, which recovers their tables."""
    moves: dict[str, float] = {}

    async def interrupt(trial: Deployment, workers: list[WorkerProcess], start: float, env: dict[str, str]) -> None:
        second = {**env, "LEADFLOW_WEB_PORT": str(free_port()), "LEADFLOW_DATA_DIR": str(trial.workdir / "data-b")}
        workers.append(trial.worker("worker-b", **second).start())
        moves["join_s"] = round(await wait_members(trial, 2, workers, timeout_s=90), 1)
        await until(start + SIZES.group_spread_s / 2 + 6)  # under load: leads still become MQL for a while
        moves["kill_at_s"] = round(time.time() - start, 1)
        await asyncio.to_thread(workers[0].kill)
        # side_by_side watches workers[-1]: the survivor, worker-b
        moves["takeover_s"] = round(await wait_members(trial, 1, workers[-1:], timeout_s=90), 1)

    stream_of = lambda start: real_time_stream(start, SIZES.group_leads, SIZES.group_spread_s, seed=SEED + 1)  # noqa: E731
    reference, trial, stream, _ = await side_by_side(pair, tmp_path, stream_of, interrupt)
    figures(workers=2, kills=1, events=len(stream.records), leads=SIZES.group_leads, **moves)

    sla = await read_models(pair.trial, pair.trial.sla, SLA_ADAPTER)
    trial_breaches = [o for o in sla if isinstance(o, SlaBreached)]
    reference_breaches = [o for o in reference.sla.values() if isinstance(o, SlaBreached)]
    repeats = sum(n - 1 for n in Counter(o.id for o in trial_breaches).values())
    figures(breaches=len(reference_breaches), breach_records_repeated=repeats)
    doubled = {clock: ids for clock, ids in breaches_by_clock(trial_breaches).items() if len(ids) > 1}
    assert doubled == {}, f"a clock breached under two ids: {doubled}"
    assert {o.id for o in trial_breaches} == {o.id for o in reference_breaches}, "a breach lost or made up"
    assert_same_outcomes(reference, trial, stream)
