"""Where records go: one table of leadflow's topics, and of the topic each kind of output goes to.

Per topic: the Settings attribute that names it (its default is the name), how many partitions it has, its topic
configs, what its record key is, the schema of its values and the JSON Schema file `leadflow schema` writes for
it. The sender (streams.runtime.worker.Worker.send_output), topic creation
(streams.runtime.topics.create_leadflow_topics), the schema files (streams.cli.schema_files) and the readers (live
view, notifier, replay files) all read it here, so a topic is described once. Importable without Faust or
aiokafka: producers and the CLI read it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import TypeAdapter

from leadflow.schemas.events import EVENT_ADAPTER
from leadflow.schemas.outputs import (
    DEAD_LETTER_ADAPTER,
    HANDOFF_ADAPTER,
    ROUTING_ADAPTER,
    ROUTING_TYPES,
    SLA_ADAPTER,
    SLA_TYPES,
    TRANSITION_ADAPTER,
    EventRefused,
    Forward,
    HandOff,
    LeadErasedNotice,
    LeadMergedNotice,
    Output,
    RouteRelease,
    RouteRequest,
    StageChanged,
)
from leadflow.schemas.record_encoding import (
    LEAD_RECORD_ENCODING,
    ROUTING_STATE_ENCODING,
    VISITS_ENCODING,
    RecordEncoding,
)
from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER
from leadflow.schemas.visits import VISITS_ADAPTER
from leadflow.streams.runtime.settings import Settings

TopicName = Literal[
    "events",
    "transitions",
    "sla",
    "handoffs",
    "routing",
    "deadletter",
    "visits",
    "identities",
    "leads_changelog",
    "routing_changelog",
    "visits_changelog",
]
# The topics outputs go to (OUTPUT_TOPICS); the order is the order of replay's output files.
OutputTopic = Literal["transitions", "sla", "handoffs", "routing", "events"]

KeyRule = Literal["lead_id", "pool", "original", "alias", "day_source", "pools"]
# What a record's key is, per rule. An output's lead is the one whose event caused it; a forward's, the one it goes to.
KEY_RULES: Final[Mapping[KeyRule, str]] = {
    "lead_id": "lead_id",
    "pool": "the routing pool",
    "original": "the key of the record that could not be processed",
    "alias": "a tool's contact id, or email:<keyed hash>",
    "day_source": "<date>|<traffic_source>",
    "pools": "pools (the one key)",
}

#: Topic configs of a topic whose records stay until someone deletes them (no time or size limit): the dead
#: letters, where "nothing is lost" must hold longer than the broker's 7-day default retention.
KEEP_FOREVER: Final[Mapping[str, str]] = {"retention.ms": "-1", "retention.bytes": "-1"}


def _no_configs(_settings: Settings) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class Route:
    name: TopicName
    setting: str  # the Settings attribute holding the topic's name (LEADFLOW_TOPIC_<NAME> for a field)
    key: KeyRule
    description: str
    value: TypeAdapter[Any] | None = None  # None: not JSON of ours (a lead_id string)
    # A table's changelog: its values are `value`'s JSON in this compact encoding (schemas.record_encoding), not
    # plain JSON; read them with `encoding.decode`.
    encoding: RecordEncoding[Any] | None = None
    schema_file: str | None = None  # `leadflow schema` writes <schema_file>.schema.json from `value`
    one_partition: bool = False  # else settings.partitions
    compacted: bool = False  # cleanup.policy=compact: the latest value per key stays
    configs: Callable[[Settings], Mapping[str, str]] = field(default=_no_configs)
    signed: bool = False  # outputs to it carry the internal proof, not the policy header (the worker's own events)

    def topic(self, settings: Settings) -> str:
        name: str = getattr(settings, self.setting)
        return name

    @property
    def default(self) -> str:
        """The topic's name with default settings, e.g. leads.sla."""
        return self.topic(_DEFAULTS)

    def partitions(self, settings: Settings) -> int:
        return 1 if self.one_partition else settings.partitions


_DEFAULTS: Final = Settings.model_construct()  # the fields' defaults, without reading the environment

ROUTES: Final[Mapping[TopicName, Route]] = {
    route.name: route
    for route in (
        Route(
            "events",
            "topic_events",
            key="lead_id",
            description="the input: a lead event, `type` selects `data`; the worker's own (SLA timer ticks, router "
            "answers, forwards of merged leads) are signed",
            value=EVENT_ADAPTER,
            schema_file="lead-event",
            # A record up to the fetch size reaches the worker, which dead-letters what is over max_event_bytes
            # (a real Kafka would refuse it at the producer otherwise).
            configs=lambda s: {"max.message.bytes": str(s.max_request_bytes)},
            signed=True,
        ),
        Route(
            "transitions",
            "topic_transitions",
            key="lead_id",
            description="stage.changed, event.refused, lead.erased, lead.merged",
            value=TRANSITION_ADAPTER,
            schema_file="transition",
        ),
        Route(
            "sla",
            "topic_sla",
            key="lead_id",
            description="SLA clocks: sla.started, sla.warning, sla.met, sla.breached, sla.cancelled, sla.escalated",
            value=SLA_ADAPTER,
            schema_file="sla-output",
        ),
        Route(
            "handoffs",
            "topic_handoffs",
            key="lead_id",
            description="lead.handoff: the lead has a new owner, with its SLA clocks, score and profile",
            value=HANDOFF_ADAPTER,
            schema_file="handoff",
        ),
        Route(
            "routing",
            "topic_routing",
            key="pool",
            description="internal, read by the router agent: route.request and route.release",
            value=ROUTING_ADAPTER,
            schema_file="routing-message",
            # Routing is one decision per MQL, and every pool (the fallback pool too) must be at hand.
            one_partition=True,
        ),
        Route(
            "deadletter",
            "topic_deadletter",
            key="original",
            description="a record that could not be processed: reason, errors, original bytes (base64)",
            value=DEAD_LETTER_ADAPTER,
            schema_file="dead-letter",
            # Its records carry the original one in base64, as large as the producer may send; kept until deleted.
            configs=lambda s: {"max.message.bytes": str(s.produce_max_bytes), **KEEP_FOREVER},
        ),
        Route(
            "visits",
            "topic_visits",
            key="day_source",
            description="a site-visits report of one day and traffic source",
            value=VISITS_ADAPTER,
            schema_file="site-visits",
        ),
        Route(
            "identities",
            "topic_identities",
            key="alias",
            description="the gateway's identity table: alias -> lead_id, tombstones after an erasure",
            one_partition=True,  # every gateway reads the whole table before it answers
            compacted=True,
        ),
        Route(
            "leads_changelog",
            "changelog_topic",
            key="lead_id",
            description="the leads table: a lead's record",
            value=RECORD_ADAPTER,
            encoding=LEAD_RECORD_ENCODING,
            schema_file="lead-record",
            compacted=True,
        ),
        Route(
            "routing_changelog",
            "routing_changelog_topic",
            key="pools",
            description="the routing table: every pool's turn and load",
            value=ROUTING_STATE_ADAPTER,
            encoding=ROUTING_STATE_ENCODING,
            one_partition=True,  # the table of the routing topic's one partition
            compacted=True,
        ),
        Route(
            "visits_changelog",
            "visits_changelog_topic",
            key="day_source",
            description="the visits table: the newest site-visits report of each day and traffic source",
            value=VISITS_ADAPTER,  # its schema file is the visits topic's (there as plain JSON)
            encoding=VISITS_ENCODING,
            compacted=True,
        ),
    )
}

# The one table of where each kind of output goes; a kind missing here is a defect, never a default topic.
OUTPUT_TOPICS: Final[Mapping[type, OutputTopic]] = {
    StageChanged: "transitions",
    EventRefused: "transitions",
    LeadErasedNotice: "transitions",
    LeadMergedNotice: "transitions",
    **dict.fromkeys(SLA_TYPES, "sla"),
    HandOff: "handoffs",
    RouteRequest: "routing",
    RouteRelease: "routing",
    Forward: "events",  # a merged lead's forward or merge notice (core.merges): its event, for the lead it goes to
}


def topic_of(output: Output) -> OutputTopic:
    """Where an output goes; a kind missing from OUTPUT_TOPICS is a defect, never a default topic."""
    try:
        return OUTPUT_TOPICS[type(output)]
    except KeyError:
        raise TypeError(f"no topic for output kind {type(output).__name__}; add it to OUTPUT_TOPICS") from None


def record_key(output: Output, lead_key: bytes) -> bytes:
    """An output's record key, by its topic's key rule; `lead_key` is the key of the lead whose event caused it."""
    rule = ROUTES[topic_of(output)].key
    if rule == "lead_id":
        return output.into_lead_id.encode() if isinstance(output, Forward) else lead_key
    if rule == "pool":
        assert isinstance(output, ROUTING_TYPES)
        return output.pool.encode()
    raise TypeError(f"{type(output).__name__} goes to a topic keyed by {rule}, which no output has")


def record_value(output: Output) -> bytes:
    """An output's record value: its JSON; a forward's is the event it forwards."""
    return output.value() if isinstance(output, Forward) else output.model_dump_json().encode()


def value_adapters(settings: Settings, names: Iterable[TopicName]) -> dict[str, TypeAdapter[Any]]:
    """Topic name -> the schema of its values, for a reader of these topics (of plain JSON values: a table's
    changelog is read with its route's `encoding`)."""
    adapters = {}
    for name in names:
        route = ROUTES[name]
        if route.value is None:
            raise ValueError(f"topic {name} has no value schema")
        if route.encoding is not None:
            raise ValueError(f"topic {name} holds compactly encoded values: read them with ROUTES[{name!r}].encoding")
        adapters[route.topic(settings)] = route.value
    return adapters
