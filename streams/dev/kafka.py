"""Apache Kafka on this machine: the reference broker for tests, benchmarks and `leadflow run` (GUIDE section 4).

A pinned Apache Kafka 4.x (`org.apache.kafka:kafka_2.13` and its runtime dependencies, with log4j2's SLF4J
binding) is fetched once with Maven into a cache folder (`$LEADFLOW_KAFKA_CACHE`, default
`~/.cache/leadflow/kafka-<version>`); each `ApacheKafka` formats a fresh storage directory and runs a single-node
KRaft broker (combined broker + controller) on free loopback ports, its log in a file through a log4j2
configuration, and stops it cleanly (SIGTERM: a controlled shutdown). Java 17+ and Maven must be installed: a
clear error names the fix when they are not.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

from aiokafka.admin import AIOKafkaAdminClient

from leadflow.streams.dev.broker import BrokerProcess, BrokerStartError, Started, _run_in_thread, free_port

__all__ = [
    "CLUSTER_NODES",
    "KAFKA_VERSION",
    "ApacheKafka",
    "KafkaCluster",
    "KafkaClusterNode",
    "MissingToolError",
    "can_run_kafka",
    "kafka_classpath",
]

KAFKA_VERSION: Final = "4.1.1"
LOG4J_VERSION: Final = "2.24.3"  # the log4j2 version Kafka 4.1 is built with; its SLF4J 1.x binding
_HOST: Final = "127.0.0.1"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.leadflow</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """Configuration:
  status: warn
  Appenders:
    Console:
      name: stdout
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: stdout
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.storage.internals.log
        level: WARN
      - name: kafka.log.LogCleaner
        level: WARN
"""

# A single node: internal topics cannot have more replicas than that. Auto-created topics get 4 partitions,
# like the embedded broker's, so a client that touches a topic first sees the same thing on both.
SINGLE_NODE: Final[Mapping[str, str]] = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "4",
    "auto.create.topics.enable": "true",
}


class MissingToolError(RuntimeError):
    """Java or Maven is not installed: Apache Kafka cannot be fetched or run here."""


def kafka_cache(version: str = KAFKA_VERSION) -> Path:
    configured = os.environ.get("LEADFLOW_KAFKA_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "leadflow" / f"kafka-{version}"


def _tool(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"{name} is not installed: {fix}; or use the embedded tansu broker (--embedded-broker tansu)"
        )
    return path


def java() -> str:
    return _tool("java", "Apache Kafka needs Java 17 or later (apt-get install -y openjdk-17-jre-headless)")


def can_run_kafka(version: str = KAFKA_VERSION) -> bool:
    """Java is installed, and the jars are cached or Maven can fetch them."""
    cached = (kafka_cache(version) / "libs" / ".complete").exists()
    return shutil.which("java") is not None and (cached or shutil.which("mvn") is not None)


def kafka_classpath(version: str = KAFKA_VERSION, cache: Path | None = None) -> str:
    """The broker's classpath (`<cache>/libs/*`), fetching the jars with Maven the first time (about 40 jars,
    ~10 s with a warm Maven repository). Safe when several processes ask at once (a lock file)."""
    folder = cache or kafka_cache(version)
    libs = folder / "libs"
    done = libs / ".complete"
    if done.exists():
        return f"{libs}/*"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _fetch(folder, libs, version)
    return f"{libs}/*"


def _fetch(folder: Path, libs: Path, version: str) -> None:
    java()
    mvn = _tool("mvn", "fetching Apache Kafka needs Maven (apt-get install -y maven)")
    (folder / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION), encoding="utf-8")
    partial = folder / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    fetched = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if fetched.returncode != 0:
        raise BrokerStartError(
            f"mvn could not fetch org.apache.kafka:kafka_2.13:{version} (exit {fetched.returncode}):\n"
            f"{(fetched.stdout + fetched.stderr)[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    (libs / ".complete").write_text(version, encoding="utf-8")


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, never starting with "-" (the storage tool
    would read it as an option; Kafka's own Uuid.randomUuid draws again for the same reason)."""
    while (drawn := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return drawn


class ApacheKafka(BrokerProcess):
    """One Apache Kafka broker (KRaft, broker and controller in one process) on loopback, fresh storage each start.

    `properties` adds to or overrides the server.properties written for it (e.g. `min.insync.replicas`). The log
    is `<log_dir>/kafka-<port>.log`; the data lives under `<log_dir>/kafka-<port>-data` until the next start.
    """

    name = "Apache Kafka"
    one_record_per_batch = False

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        version: str = KAFKA_VERSION,
        properties: Mapping[str, str] | None = None,
        heap: str = "768m",
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(log_dir, port=port, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.version = version
        self.properties = dict(properties or {})
        self.heap = heap

    def _resolve(self) -> str:
        return kafka_classpath(self.version)

    def server_properties(self, port: int, controller_port: int, data: Path) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{_HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            **SINGLE_NODE,
            **self.properties,
        }

    def _launch(self, binary: str, port: int) -> None:
        controller_port = free_port()
        data = self.log_dir / f"kafka-{port}-data"
        shutil.rmtree(data, ignore_errors=True)
        config = self.log_dir / f"kafka-{port}.properties"
        config.write_text(
            "".join(f"{k}={v}\n" for k, v in self.server_properties(port, controller_port, data).items()),
            encoding="utf-8",
        )
        log4j = self.log_dir / "kafka-log4j2.yaml"
        log4j.write_text(_LOG4J2, encoding="utf-8")
        command = [java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
        command += [f"-Dlog4j2.configurationFile={log4j}", "-cp", binary]
        formatted = subprocess.run(
            [*command, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if formatted.returncode != 0:
            raise BrokerStartError(f"kafka-storage format failed:\n{(formatted.stdout + formatted.stderr)[-3000:]}")
        self._spawn([*command, "kafka.Kafka", str(config)], port, f"kafka-{port}.log")


# -- a 3-node cluster on loopback -----------------------------------------------------------------------------------

CLUSTER_NODES: Final = 3

#: Every node of a KafkaCluster: internal topics (consumer offsets, transactions, share groups) with 3 replicas and
#: min ISR 2, so losing one node loses neither a committed offset nor the ability to commit; topics created without
#: explicit settings get the same. A stopped node is fenced (its replicas leave the ISRs, its leaderships move)
#: after `broker.session.timeout.ms`: 4 s instead of 9 s keeps a failover test short.
CLUSTER: Final[Mapping[str, str]] = {
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "4000",
}


class KafkaClusterNode(ApacheKafka):
    """One combined broker + controller of a :class:`KafkaCluster`: its own ports, data and log (under `log_dir`),
    the cluster's id and controller quorum. Started by the cluster (every node must be up for a quorum)."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        node_id: int,
        port: int,
        controller_port: int,
        voters: str,
        cluster: str,
        version: str = KAFKA_VERSION,
        properties: Mapping[str, str] | None = None,
        heap: str = "512m",
        start_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        super().__init__(
            log_dir,
            port=port,
            version=version,
            properties={**CLUSTER, **(properties or {})},
            heap=heap,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )
        self.node_id = node_id
        self.controller_port = controller_port
        self.voters = voters
        self.cluster = cluster
        self.name = f"Apache Kafka node {node_id}"

    def server_properties(self, port: int, controller_port: int, data: Path) -> dict[str, str]:
        return {
            **super().server_properties(port, controller_port, data),
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
        }

    def _java(self, classpath: str) -> list[str]:
        log4j = self.log_dir / "kafka-log4j2.yaml"
        log4j.write_text(_LOG4J2, encoding="utf-8")
        command = [java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
        return [*command, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]

    def _config(self) -> Path:
        return self.log_dir / f"kafka-{self.port_wanted}.properties"

    @property
    def port_wanted(self) -> int:
        assert self._requested_port is not None
        return self._requested_port

    def format_storage(self, classpath: str) -> subprocess.Popen[str]:
        """Write server.properties and start formatting a fresh storage directory with the cluster's id."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        data = self.log_dir / f"kafka-{self.port_wanted}-data"
        shutil.rmtree(data, ignore_errors=True)
        properties = self.server_properties(self.port_wanted, self.controller_port, data)
        self._config().write_text("".join(f"{k}={v}\n" for k, v in properties.items()), encoding="utf-8")
        command = [*self._java(classpath), "kafka.tools.StorageTool", "format", "-t", self.cluster]
        return subprocess.Popen(
            [*command, "-c", str(self._config())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def launch(self, classpath: str) -> None:
        """Start the node's process (storage formatted); `wait_ready` waits until it serves metadata."""
        self._spawn([*self._java(classpath), "kafka.Kafka", str(self._config())], self.port_wanted, "kafka.log")

    def wait_ready(self) -> None:
        self._wait_ready()

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would: no controlled shutdown, nothing flushed."""
        pid = self.pid
        if pid is not None and self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.stop()

    def signal_stop(self) -> None:
        """SIGTERM without waiting (a controlled shutdown starts); `stop()` then waits for it."""
        pid = self.pid
        if pid is not None and self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


class KafkaCluster(Started):
    """Three Apache Kafka nodes (KRaft, each broker + controller, `controller.quorum.voters` listing all three) on
    loopback, fresh storage each start: the production shape (replication 3, min ISR 2) for failover tests.

    Quacks like a :class:`~streams.dev.broker.BrokerProcess` where a deployment needs one (``bootstrap``, ``url``,
    ``one_record_per_batch``). Each node has its own ports, data and log under ``<log_dir>/node-<id>``.
    ``start()`` returns once metadata shows every broker; ``nodes[i].stop()`` / ``.kill()`` stops one node;
    ``stop()`` stops all.
    """

    name = "Apache Kafka cluster"
    one_record_per_batch = False

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        size: int = CLUSTER_NODES,
        version: str = KAFKA_VERSION,
        properties: Mapping[str, str] | None = None,
        heap: str = "512m",
        start_timeout: float = 150.0,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.size = size
        self.version = version
        self.properties = dict(properties or {})
        self.heap = heap
        self.start_timeout = start_timeout
        self.nodes: list[KafkaClusterNode] = []

    @property
    def bootstrap(self) -> str:
        """``host:port,host:port,...`` of every node, for aiokafka's ``bootstrap_servers``."""
        if not self.nodes:
            raise RuntimeError("KafkaCluster is not started")
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def url(self) -> str:
        """``kafka://host:port,kafka://host:port,...`` for Faust's ``broker`` setting (and LEADFLOW_BROKER)."""
        return ",".join(f"kafka://{address}" for address in self.bootstrap.split(","))

    def node_by_id(self, node_id: int) -> KafkaClusterNode:
        (node,) = [n for n in self.nodes if n.node_id == node_id]
        return node

    def start(self) -> Self:
        if self.nodes:
            raise RuntimeError("KafkaCluster already started")
        classpath = kafka_classpath(self.version)
        ports = _distinct_free_ports(2 * self.size)
        brokers, controllers = ports[: self.size], ports[self.size :]
        voters = ",".join(f"{i + 1}@{_HOST}:{port}" for i, port in enumerate(controllers))
        cluster = cluster_id()
        self.nodes = [
            KafkaClusterNode(
                self.log_dir / f"node-{i + 1}",
                node_id=i + 1,
                port=brokers[i],
                controller_port=controllers[i],
                voters=voters,
                cluster=cluster,
                version=self.version,
                properties=self.properties,
                heap=self.heap,
                start_timeout=self.start_timeout,
            )
            for i in range(self.size)
        ]
        atexit.register(self.stop)
        try:
            formats = [node.format_storage(classpath) for node in self.nodes]  # the JVMs start side by side
            for node, formatting in zip(self.nodes, formats, strict=True):
                output, _ = formatting.communicate(timeout=120)
                if formatting.returncode != 0:
                    raise BrokerStartError(f"kafka-storage format failed for node {node.node_id}:\n{output[-3000:]}")
            for node in self.nodes:
                node.launch(classpath)
            for node in self.nodes:  # a node serves metadata only once a quorum of controllers is up
                node.wait_ready()
            self.wait_brokers(self.size, timeout_s=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_brokers(self, count: int, *, timeout_s: float = 60.0) -> None:
        """Until the cluster's metadata lists `count` registered, unfenced brokers."""
        deadline = time.monotonic() + timeout_s
        seen = -1
        while time.monotonic() < deadline:
            try:
                seen = _run_in_thread_result(_broker_count(self.running_bootstrap()))
            except Exception:
                seen = -1
            if seen == count:
                return
            time.sleep(0.2)
        raise BrokerStartError(f"{self.name}: metadata shows {seen} brokers, {count} wanted within {timeout_s:.0f}s")

    def running_bootstrap(self) -> str:
        """The bootstrap list of the nodes still running."""
        return ",".join(node.bootstrap for node in self.nodes if node.is_running())

    def stop(self) -> None:
        """Stop every node: SIGTERM all at once (a node waits for the others' controllers otherwise), SIGKILL a
        node still running after its stop timeout. Safe to call twice."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for node in self.nodes:
            node.signal_stop()
        for node in self.nodes:
            node.stop()

    def __repr__(self) -> str:
        running = [node.node_id for node in self.nodes if node.is_running()]
        return f"<KafkaCluster nodes={len(self.nodes)} running={running}>"


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


async def _broker_count(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        described = await admin.describe_cluster()
        return len(described["brokers"])
    finally:
        await admin.close()


def _run_in_thread_result(coro: Any) -> int:
    result: list[int] = []

    async def keep() -> None:
        result.append(await coro)

    _run_in_thread(keep())
    return result[0]
