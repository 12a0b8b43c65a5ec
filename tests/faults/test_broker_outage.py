"""The broker stopped (a minute in the long variant, 15 s in CI) while a worker runs and SLA instants pass, then
restarted on its data: the worker resumes, and the outcome equals an uninterrupted reference run of the same
events (on the session's broker) lead by lead.

The trial runs on an Apache Kafka of its own (a one-node KafkaCluster: a node restarts on the data it had, at the
same ports). The stream leaves a gap around the outage: a producer cannot append while its broker is down, and an
event appended late (after its lead's instants) is a producer delay, not what this test is about. Leads whose
clocks run through the gap stay: their warnings and breaches fall due while the broker is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import Deployment
from test_e2e_time import Pair, Stream, assert_same_outcomes, real_time_stream, side_by_side, until

from leadflow.streams.dev.broker import BrokerProcess
from leadflow.streams.dev.kafka import KafkaCluster, kafka_classpath
from leadflow.streams.dev.worker_process import WorkerProcess

from .conftest import Figures
from .sizes import SIZES

pytestmark = [pytest.mark.broker, pytest.mark.faults]

# A one-node "cluster": a node keeps its storage across a stop and a start (ApacheKafka formats a fresh one).
ONE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "4",
}
OUTAGE_AT_S = 30.0  # seconds into the stream
RESTART_BUDGET_S = 25.0  # the stream stays quiet this long after the outage, for the broker's own start


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaCluster]:
    with KafkaCluster(tmp_path / "own-kafka", size=1, properties=ONE_NODE) as running:
        yield running


def with_a_gap(stream: Stream, start: float, gap: tuple[float, float]) -> Stream:
    """The stream without the leads that have an event in the gap (times in seconds from `start`)."""
    inside = {key.decode() for at, key, _ in stream.records if gap[0] <= at - start <= gap[1]}
    kept = Stream(
        records=[r for r in stream.records if r[1].decode() not in inside],
        kind={lead: kind for lead, kind in stream.kind.items() if lead not in inside},
        last_event={lead: e for lead, e in stream.last_event.items() if lead not in inside},
        mql_at={lead: at for lead, at in stream.mql_at.items() if lead not in inside},
    )
    kept.count.update({lead: n for lead, n in stream.count.items() if lead not in inside})
    return kept


async def test_broker_stopped_and_restarted_gives_uninterrupted_outcomes(
    broker: BrokerProcess, own_broker: KafkaCluster, unique_topic_prefix: str, tmp_path: Path, figures: Figures
) -> None:
    pair = Pair(
        Deployment(broker, f"{unique_topic_prefix}ref.", tmp_path / "reference"),
        Deployment(own_broker, f"{unique_topic_prefix}trial.", tmp_path / "trial"),  # type: ignore[arg-type]
    )
    await pair.reference.create_topics()
    await pair.trial.create_topics()
    gap = (OUTAGE_AT_S - 3.0, OUTAGE_AT_S + SIZES.outage_s + RESTART_BUDGET_S)
    spread = gap[1] + 20.0
    n_leads = round(spread * 3)
    (node,) = own_broker.nodes
    down: dict[str, float] = {}

    def stream_of(start: float) -> Stream:
        return with_a_gap(real_time_stream(start, n_leads, spread, seed=31), start, gap)

    async def interrupt(trial: Deployment, workers: list[WorkerProcess], start: float, env: dict[str, str]) -> None:
        await until(start + OUTAGE_AT_S)
        await asyncio.to_thread(node.stop)  # SIGTERM: a controlled shutdown, as an operator's restart does
        stopped = time.time()
        down["stopped_at_s"] = round(stopped - start, 1)
        await asyncio.sleep(SIZES.outage_s)
        assert workers[-1].exit_code() is None, f"the worker died in the outage\n{workers[-1].log_tail()}"
        node.launch(kafka_classpath())
        await asyncio.to_thread(node.wait_ready)
        down["down_s"] = round(time.time() - stopped, 1)
        assert time.time() - start < gap[1], f"the broker came back after the stream's gap: {down}"

    # Each deployment its own producer: the trial's broker goes down, the reference's does not.
    reference, trial, stream, workers = await side_by_side(
        pair, tmp_path, stream_of, interrupt, trial_records=lambda stream: stream.records
    )
    assert len(workers) == 1, "the worker was not restarted: it resumed by itself"
    in_gap = [lead for lead, at in stream.mql_at.items() if at - stream.start < gap[0] < at - stream.start + 36]
    figures(outage_s=SIZES.outage_s, events=len(stream.records), leads=len(stream.kind),
            leads_with_clocks_in_outage=len(in_gap), sla_outputs=len(reference.sla), **down)  # fmt: skip
    assert len(in_gap) >= 10, "no clock ran through the outage: the scenario did not hold"
    figures(worker_log_lines=len(workers[0].log_path.read_text(errors="replace").splitlines()))
    assert_same_outcomes(reference, trial, stream)
