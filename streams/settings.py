"""Worker configuration from the environment (prefix LEADFLOW_), with defaults for a dev machine."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    store: str = Field(default="memory://", description="table store: memory:// (dev) or rocksdb:// (production)")
    data_dir: Path = Path("data")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
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
    max_request_bytes: int = Field(
        default=16_777_216, description="producer max request size: dead letters carry the original bytes"
    )

    def as_env(self) -> dict[str, str]:
        """The settings given explicitly, as the LEADFLOW_* environment of a worker process."""
        return {
            f"LEADFLOW_{name.upper()}": str(value)
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
