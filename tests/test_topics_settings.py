"""Production settings: durability of the topics leadflow creates, and how every client reaches the brokers
(TLS, SASL) from the LEADFLOW_* settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import faust
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker
from leadflow.streams.runtime.producer import producer_options
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import client_options, create_leadflow_topics, faust_credentials

SASL = {"security_protocol": "SASL_SSL", "sasl_username": "leadflow", "sasl_password": "s3cret"}


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (1, 1)
    assert client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_over_tls_for_aiokafka_and_for_faust_alike() -> None:
    settings = Settings(**SASL, sasl_mechanism="SCRAM-SHA-512", ssl_cafile=Path(certifi.where()))
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "leadflow")
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    faust_options = dict(credentials_to_aiokafka_auth(credentials))  # what Faust gives its own clients
    assert {k: v for k, v in faust_options.items() if k != "ssl_context"} == {
        k: v for k, v in options.items() if k != "ssl_context"
    }
    assert faust_options["ssl_context"] is not None
    assert "s3cret" not in repr(settings), "the password stays out of logs"


def test_sasl_without_tls_and_tls_without_sasl() -> None:
    plain = Settings(**{**SASL, "security_protocol": "SASL_PLAINTEXT"})
    assert "ssl_context" not in client_options(plain)
    assert credentials_to_aiokafka_auth(faust_credentials(plain))["security_protocol"] == "SASL_PLAINTEXT"
    tls = Settings(security_protocol="SSL", ssl_check_hostname=False)
    options = client_options(tls)
    assert options["security_protocol"] == "SSL"
    assert not options["ssl_context"].check_hostname
    assert "sasl_mechanism" not in options
    assert isinstance(faust_credentials(tls), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({"replication_factor": 1, "min_insync_replicas": 2}, "exceeds replication_factor"),
        ({"security_protocol": "SASL_SSL"}, "LEADFLOW_SASL_USERNAME"),
        ({"sasl_username": "x", "sasl_password": "y"}, "LEADFLOW_SECURITY_PROTOCOL=SASL_SSL"),
        ({"ssl_cafile": "/etc/ca.pem"}, "LEADFLOW_SECURITY_PROTOCOL=SSL"),
        ({"security_protocol": "SSL", "ssl_certfile": "/etc/client.pem"}, "LEADFLOW_SSL_KEYFILE"),
        ({"replication_factor": 0}, "greater than or equal to 1"),
    ],
)
def test_inconsistent_settings_are_refused_with_a_reason(given: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**given)  # type: ignore[arg-type]


def test_settings_come_from_the_environment_and_go_back_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "LEADFLOW_REPLICATION_FACTOR": "3",
        "LEADFLOW_MIN_INSYNC_REPLICAS": "2",
        "LEADFLOW_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LEADFLOW_SASL_USERNAME": "leadflow",
        "LEADFLOW_SASL_PASSWORD": "s3cret",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    env = settings.as_env()  # a worker process started with it gets the real password, not its mask
    assert env["LEADFLOW_SASL_PASSWORD"] == "s3cret"
    assert env["LEADFLOW_REPLICATION_FACTOR"] == "3"


def test_producers_are_idempotent_with_acks_all_on_a_real_kafka_only() -> None:
    real = producer_options(embedded=False)
    assert (real["acks"], real["enable_idempotence"]) == ("all", True)
    tansu = producer_options(embedded=True)
    assert tansu["acks"] == "all"
    assert "enable_idempotence" not in tansu
    assert producer_options(embedded=False, settings=Settings(**SASL))["sasl_plain_username"] == "leadflow"


async def test_faust_producer_is_idempotent_on_a_real_kafka_only() -> None:
    from leadflow.streams.runtime.worker import create_app

    real = create_app(Settings(broker="kafka://127.0.0.1:1"))
    tansu = create_app(Settings(broker="kafka://127.0.0.1:1", embedded=True, app_id="tansu"))
    built = []
    for app in (real, tansu):
        producer = app.producer
        kwargs = {**producer._settings_default(), **producer._settings_auth(), **producer._settings_extra()}
        built.append(kwargs)
    assert (built[0]["acks"], built[0]["enable_idempotence"]) == ("all", True)
    assert built[1]["acks"] == -1
    assert "enable_idempotence" not in built[1]


async def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in topics])
        return {
            name: {entry[0]: entry[1] for entry in entries}
            for answer in answers
            for _code, _message, _type, name, entries in answer.resources
        }
    finally:
        await admin.close()


def prefixed(prefix: str) -> Settings:
    return Settings(
        app_id=f"{prefix}app",
        topic_events=f"{prefix}events",
        topic_transitions=f"{prefix}transitions",
        topic_deadletter=f"{prefix}deadletter",
        topic_sla=f"{prefix}sla",
        topic_handoffs=f"{prefix}handoffs",
        topic_routing=f"{prefix}routing",
        topic_visits=f"{prefix}visits",
        topic_identities=f"{prefix}identities",
    )


@pytest.mark.broker
async def test_dead_letters_are_kept_until_deleted_and_changelogs_compacted(
    broker: BrokerProcess, unique_topic_prefix: str
) -> None:
    settings = prefixed(unique_topic_prefix).model_copy(update={"broker": broker.url})
    await create_leadflow_topics(settings)
    configs = await topic_configs(broker.bootstrap, [settings.topic_deadletter, settings.changelog_topic])
    dead = configs[settings.topic_deadletter]
    assert (dead["retention.ms"], dead["retention.bytes"]) == ("-1", "-1")
    assert configs[settings.changelog_topic]["cleanup.policy"] == "compact"
    assert dead["min.insync.replicas"] == "1"  # one node: the broker's default, not set on the topic


@pytest.mark.broker
async def test_topics_still_create_on_the_embedded_broker(tansu: EmbeddedBroker, unique_topic_prefix: str) -> None:
    await create_leadflow_topics(prefixed(unique_topic_prefix).model_copy(update={"broker": tansu.url}))
