"""A leadflow worker as a child process, and how to tell when it has caught up.

Used by `leadflow run`, the end-to-end tests and the benchmarks: each worker gets its own environment
(LEADFLOW_*), so several can share one broker with their own topics, group, web port and data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadflow.streams.dev.broker import die_with_parent
from leadflow.streams.runtime.group_offsets import GroupOffsets


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, loglevel: str = "warn") -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.loglevel = loglevel
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "leadflow.streams.cli", "worker", "-l", self.loglevel],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent only; it stops us in order
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - dies with its parent, even a SIGKILLed one
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (Faust commits and leaves the group), SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop abruptly, as a crash would: no commit, no flush."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def dump_stacks(self) -> None:
        """Ask the worker to write its threads' stacks to its log (SIGUSR1, see `leadflow worker`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def committed_offsets(
    bootstrap: str, group_id: str, topic: str, partitions: int, *, admin: bool = False
) -> dict[int, int]:
    """The group's committed offsets (0 where none: nothing of that partition is done yet).

    With `admin` (Apache Kafka) through the admin API's OffsetFetch; otherwise a consumer with the group's id
    reads them: the admin client's group calls cannot decode the embedded tansu broker's answers (GUIDE
    section 7)."""
    if admin:
        offsets = GroupOffsets(bootstrap, group_id, topic)
        try:
            return await offsets.committed(range(partitions))
        finally:
            await offsets.close()
    tps = [TopicPartition(topic, partition) for partition in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        result = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            result[tp.partition] = 0 if offset is None else offset
        return result
    finally:
        await consumer.stop()


async def wait_until_committed(
    bootstrap: str,
    group_id: str,
    topic: str,
    targets: dict[int, int],
    *,
    timeout_s: float,
    worker: WorkerProcess | None = None,
    admin: bool = False,
) -> float:
    """Wait until the group has committed at least `targets` (partition -> offset); returns when it saw that."""
    deadline = time.monotonic() + timeout_s
    while True:
        committed = await committed_offsets(bootstrap, group_id, topic, max(targets, default=-1) + 1, admin=admin)
        if all(committed.get(p, 0) >= offset for p, offset in targets.items()):
            return time.monotonic()
        if worker is not None and worker.exit_code() is not None:
            raise RuntimeError(f"worker exited with {worker.exit_code()}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            if worker is not None:
                worker.dump_stacks()
                await asyncio.sleep(0.5)  # let the worker write its stacks before the log is read
            tail = worker.log_tail(120) if worker else ""
            raise TimeoutError(f"group {group_id} committed {committed}, expected {targets}\n{tail}")
        await asyncio.sleep(0.2)
