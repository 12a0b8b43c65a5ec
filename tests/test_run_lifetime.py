"""`leadflow run` takes its broker and worker with it when it ends, however it ends (issue 13, item 4).

The broker and the worker run in their own sessions (a terminal's Ctrl-C reaches only the parent, which stops them
in order), so without care closing the terminal (SIGHUP) or a SIGKILL of the parent leaves them running, holding
their ports: the next run then fails with "address already in use".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from leadflow.streams.dev.broker import free_port

STARTED_S = 120.0  # the broker and the worker up (Apache Kafka takes the longest)
GONE_S = 40.0  # a graceful stop: the worker gets 20 s to commit, then SIGKILL; the broker 5 s (tansu) after it


def _is_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (an orphan's reaper may be slow in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _is_gone(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if not _is_gone(pid)]


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _start_run(workdir: Path, web_port: int, local: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """`leadflow run` until its worker answers /healthz; returns the process, the broker's pid and the worker's
    (its children in /proc: the broker runs tansu or kafka.Kafka, the worker `streams.cli worker`)."""
    log = (workdir.parent / f"{workdir.name}.out").open("wb")
    command = ["run", "--no-live", "--embedded-broker", local, "--web-port", str(web_port), "--workdir", str(workdir)]
    run = subprocess.Popen(
        [sys.executable, "-m", "leadflow.streams.cli", *command, "--leads-per-s", "5"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + STARTED_S
    broker = worker = None
    while broker is None or worker is None or not _healthz(web_port):
        output = (workdir.parent / f"{workdir.name}.out").read_text(errors="replace")
        assert run.poll() is None, f"leadflow run ended before its worker was up:\n{output}"
        assert time.monotonic() < deadline, f"the broker and the worker were not up in time:\n{output}"
        for child in _children(run.pid):
            cmdline = _cmdline(child)
            if "streams.cli worker" in cmdline:
                worker = child
            elif "tansu" in cmdline or "kafka.Kafka" in cmdline:
                broker = child
        time.sleep(0.3)
    return run, broker, worker


@pytest.mark.broker
@pytest.mark.parametrize(
    ("local", "sig"),
    [
        ("tansu", signal.SIGHUP),
        ("tansu", signal.SIGKILL),
        ("tansu", signal.SIGTERM),
        ("tansu", signal.SIGINT),
        ("kafka", signal.SIGKILL),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_the_broker_and_the_worker_end_with_leadflow_run(tmp_path: Path, local: str, sig: signal.Signals) -> None:
    web_port = free_port()
    run, broker_pid, worker_pid = _start_run(tmp_path / "run", web_port, local)
    try:
        os.kill(run.pid, sig)
        run.wait(GONE_S)
        alive = _wait_gone([broker_pid, worker_pid], GONE_S)
        assert not alive, f"still running after {sig.name} to leadflow run: {alive} (broker {broker_pid})"
    finally:
        for pid in (run.pid, broker_pid, worker_pid):
            if not _is_gone(pid):
                os.kill(pid, signal.SIGKILL)
        run.wait()
    if sig == signal.SIGKILL:  # the harshest end: the next run on the same web port works
        command = ["run", "--for", "3", "--no-live", "--embedded-broker", local, "--web-port", str(web_port)]
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "leadflow.streams.cli",
                *command,
                "--workdir",
                str(tmp_path / "again"),
                "--leads-per-s",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "address already in use" not in (again.stdout + again.stderr).lower()
