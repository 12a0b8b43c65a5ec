"""Worker configuration from the environment (prefix LEADFLOW_), with defaults for a dev machine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", frozen=True)

    broker: str = Field(default="kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), kafka://host:port")
    embedded: bool = Field(
        default=False,
        description="the broker is the embedded tansu broker: one record per producer batch (GUIDE section 4)",
    )
    fast_group: bool = Field(
        default=False,
        description="a local broker (Apache Kafka started by leadflow, tests): short group session and fetch wait, "
        "so joins and failover take seconds; never in production",
    )
    app_id: str = "leadflow"
    policy: Path | None = Field(default=None, description="policy YAML file; the shipped default when unset")
    partitions: int = Field(default=4, ge=1, description="partitions of leads.events (and the table changelog)")
    store: str = Field(
        default="memory://",
        description="table store: memory:// (values held in memory as their compact changelog bytes; dev, or as "
        "many leads as memory holds at ~0.5 KB each) or rocksdb:// (on disk; production)",
    )
    store_cache: int = Field(
        default=10_000,
        ge=0,
        description="lead records the memory:// store keeps decoded (the most recently used; ~20 KB each): a read "
        "of any other decodes it (~50 µs)",
    )
    data_dir: Path = Path("data")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    web_url: str | None = Field(
        default=None,
        description="the address other workers and clients reach this worker's web server at (Faust's "
        "canonical_url), e.g. http://worker-1:6066; /leads/{id} redirects there for the leads of its partitions. "
        "Default http://<web_host>:<web_port>",
    )
    shutdown_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="a stop signal ends the worker within this many seconds, broker up or down; what it could not "
        "flush by then is logged (a supervisor's grace period must be longer)",
    )
    topic_events: str = "leads.events"
    topic_transitions: str = "leads.transitions"
    topic_deadletter: str = "leads.deadletter"
    topic_sla: str = "leads.sla"
    topic_handoffs: str = "leads.handoffs"
    topic_routing: str = Field(default="leads.routing", description="internal: route requests and releases")
    topic_visits: str = Field(default="leads.visits", description="site visits per day and traffic source in")
    topic_identities: str = Field(
        default="leads.identities", description="the gateway's identity table: alias -> lead_id (compacted)"
    )
    batch_max: int = Field(default=5000, ge=1, description="events handled per batch (state written once per lead)")
    batch_within_s: float = Field(default=0.05, gt=0, description="longest wait to fill a batch")
    producer_buffer_messages: int = Field(
        default=20_000, ge=100, description="records Faust may buffer before the consumer waits for them to be sent"
    )
    sweep_interval_s: float = Field(default=0.25, gt=0, description="how often the timer looks for due SLA instants")
    sweep_max: int = Field(default=10_000, ge=1, description="most timer events one sweep sends")
    commit_interval_s: float = Field(default=2.8, gt=0, description="how often processed offsets are committed")
    max_event_bytes: int = Field(default=1_048_576, ge=1024, description="larger records are dead-lettered")
    internal_key: SecretStr = Field(
        default=SecretStr("leadflow-dev-internal-key"),
        min_length=16,
        description="HMAC key with which workers sign their own records of the events topic (SLA timer ticks, "
        "router answers); an unsigned one is dead-lettered. The default is for dev and tests only: in production "
        "give every worker the same secret of at least 32 random bytes, and never to producers",
    )
    web_token: SecretStr | None = Field(
        default=None,
        description="bearer token a caller of the web API must send (Authorization: Bearer TOKEN) to see a lead's "
        "personal fields in /leads/{id} (core.privacy); without it they are withheld, and with no token set they "
        "are never shown. At least 16 characters (openssl rand -hex 32); blank means unset",
    )
    max_request_bytes: int = Field(
        default=16_777_216, description="producer max request size: dead letters carry the original bytes"
    )
    # -- production: durability and security (README "Kafka settings") ------------------------------------------
    replication_factor: int = Field(
        default=1, ge=1, description="replicas of every topic leadflow creates (3 in production, 1 on one broker)"
    )
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of every topic leadflow creates (2 with replication 3): with acks=all a "
        "write is acknowledged only once that many replicas hold it",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how clients talk to the brokers: TLS (SSL), SASL, both, or neither"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)"
    )
    sasl_username: str | None = Field(default=None, description="SASL user (with SASL_PLAINTEXT or SASL_SSL)")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password; never logged")
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) that signed the brokers' certificates; the system's when unset"
    )
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    ssl_keyfile: Path | None = Field(default=None, description="client private key (PEM), for mutual TLS")
    ssl_check_hostname: bool = Field(default=True, description="verify that a broker's certificate names its host")

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("memory://", "rocksdb://")):
            raise ValueError(
                f"LEADFLOW_STORE {value!r} is not a store leadflow has: set memory:// (development) or rocksdb:// "
                "(production, on disk under LEADFLOW_DATA_DIR)"
            )
        return value

    @field_validator("policy", "ssl_cafile", "ssl_certfile", "ssl_keyfile", mode="before")
    @classmethod
    def _path_unset_when_blank(cls, value: object) -> object:
        # `LEADFLOW_POLICY=` (a compose file's `${LEADFLOW_POLICY:-}`) means unset, not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("web_token", mode="before")
    @classmethod
    def _web_token_unset_when_blank(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str):
            if not text.strip():
                return None
            if len(text.strip()) < 16:
                raise ValueError("LEADFLOW_WEB_TOKEN needs at least 16 characters: openssl rand -hex 32")
        return value

    @model_validator(mode="after")
    def _consistent_kafka_settings(self) -> Self:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_username is None or self.sasl_password is None):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs LEADFLOW_SASL_USERNAME and LEADFLOW_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_username is not None or self.sasl_password is not None):
            raise ValueError(
                f"a SASL user or password is set but security_protocol is {self.security_protocol}: "
                "set LEADFLOW_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = [self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile]
        if not self.uses_tls and any(f is not None for f in tls_files):
            raise ValueError(
                f"TLS files are set but security_protocol is {self.security_protocol}: "
                "set LEADFLOW_SECURITY_PROTOCOL=SSL (or SASL_SSL)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("mutual TLS needs both LEADFLOW_SSL_CERTFILE and LEADFLOW_SSL_KEYFILE")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def as_env(self) -> dict[str, str]:
        """The settings given explicitly, as the LEADFLOW_* environment of a worker process."""
        return {
            f"LEADFLOW_{name.upper()}": str(value.get_secret_value() if isinstance(value, SecretStr) else value)
            for name, value in self.model_dump(include=self.model_fields_set).items()
            if value is not None
        }

    @property
    def bootstrap(self) -> str:
        """host:port list for aiokafka clients."""
        return ",".join(url.split("://", 1)[-1] for url in self.broker.split(","))

    @property
    def produce_max_bytes(self) -> int:
        """Largest record we produce: a dead letter holds its original (up to max_request_bytes) in base64."""
        return self.max_request_bytes * 4 // 3 + 65_536

    @property
    def changelog_topic(self) -> str:
        return f"{self.app_id}-leads-changelog"

    @property
    def routing_changelog_topic(self) -> str:
        return f"{self.app_id}-routing-changelog"

    @property
    def visits_changelog_topic(self) -> str:
        return f"{self.app_id}-visits-changelog"
