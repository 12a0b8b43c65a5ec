"""The worker: a Faust app built from settings (`Worker`), run by `leadflow worker` (or `faust -A
leadflow.streams.runtime.app worker`, which builds one from the environment).

The shell stays thin: decode bytes (core.intake), decide (core.decision), store, send. Events are handled in
batches (`take_events`) so that a lead touched several times in a batch is written to the table, and so to its
changelog, once: one changelog record per update is the dominant cost of a Faust table (benchmarks/).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast

import faust
import orjson
from faust.sensors import Monitor
from faust.serializers import codecs
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from leadflow.core.deadlines import DeadlineIndex, timer_due
from leadflow.core.decision import decide, wake_at
from leadflow.core.handoff import ROUTER_SOURCE
from leadflow.core.intake import (
    INTERNAL_HEADER,
    Origin,
    dead_letter,
    decode,
    decode_routing,
    decode_visits,
    header,
    internal_proof,
)
from leadflow.core.partition_clock import PartitionClock, is_caught_up
from leadflow.core.privacy import is_authorized, public_view
from leadflow.core.report import SUMMARY_ADAPTER, LeadSummary, funnel_report, summarize
from leadflow.core.routing import answer_request, is_released, release, unassigned_event, why_unassigned
from leadflow.core.visits import newer
from leadflow.schemas.events import LeadEvent, TimerDue
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, DeadLetter, Output, RouteRequest
from leadflow.schemas.policy import Policy, load_policy
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import (
    RECORD_VIEW_ADAPTER,
    STATE_VIEW_ADAPTER,
    LeadRecord,
    LeadRecordView,
    LeadStateOnly,
    RoutingState,
)
from leadflow.schemas.visits import VISITS_ADAPTER, SiteVisits
from leadflow.streams.runtime import processed_offsets
from leadflow.streams.runtime.goal_metrics import GoalCollector
from leadflow.streams.runtime.group_offsets import GroupOffsets
from leadflow.streams.runtime.health import (
    RETRY_AFTER_S,
    Health,
    applied_offsets,
    flush_limiters,
    owner_url,
    readiness_body,
)
from leadflow.streams.runtime.lead_census import LeadCensus
from leadflow.streams.runtime.metrics import (
    CONTENT_TYPE,
    AppliedOffsetCollector,
    ClockDelayCollector,
    GroupLagCollector,
    HealthCollector,
    LagCollector,
    LeadCollector,
    Metrics,
    Partitioner,
    RoutingCollector,
    faust_consumer_lag,
    fetch_state,
)
from leadflow.streams.runtime.outbox import Outbox, guard_commits
from leadflow.streams.runtime.routes import ROUTES, TopicName, record_key, record_value, topic_of
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.stores import DecodedCache, faust_store_url
from leadflow.streams.runtime.table_codec import LEAD_RECORD_CODEC, ROUTING_STATE_CODEC, SITE_VISITS_CODEC
from leadflow.streams.runtime.topics import (
    EMBEDDED_FAUST_SETTINGS,
    EMBEDDED_FETCH_WAIT_MS,
    FAST_GROUP_FAUST_SETTINGS,
    POLICY_HEADER,
    client_options,
    create_leadflow_topics,
    faust_credentials,
    idempotent_faust_producer,
)

log = logging.getLogger(__name__)
Value = TypeVar("Value")


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-event bookkeeping (timings per message, event, table get/set, send).

    Nothing here reads those statistics, and they cost about a tenth of Faust's per-event floor (GUIDE
    section 7); commit, rebalance and end-offset tracking stay as they are.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass


def short_fetch_wait(max_wait_ms: int) -> None:
    """Faust builds its consumer with fetch_max_wait_ms=1500 (not a setting). A broker that holds a fetch for
    that long when no data is waiting, instead of answering as soon as a record arrives, adds up to 1.5 s to
    every hop (measured on the embedded broker: SLA breaches 2.4 s late). Used for the embedded broker only.
    """
    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "leadflow_wait", None) == max_wait_ms:
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    create_worker_consumer.leadflow_wait = max_wait_ms  # type: ignore[attr-defined]
    setattr(AIOKafkaConsumerThread, "_create_worker_consumer", create_worker_consumer)  # noqa: B010 - a method


def create_app(settings: Settings) -> faust.App:
    extra: dict[str, Any] = {}
    if settings.embedded:
        extra = dict(EMBEDDED_FAUST_SETTINGS)
    elif settings.fast_group:
        extra = dict(FAST_GROUP_FAUST_SETTINGS)
    if settings.embedded or settings.fast_group:
        short_fetch_wait(EMBEDDED_FETCH_WAIT_MS)
    if settings.web_url:  # the address /leads/{id} of another worker redirects to (streams.runtime.health.owner_url)
        extra["canonical_url"] = settings.web_url
    processed_offsets.install([settings.topic_events, settings.topic_routing, settings.topic_visits])
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store=faust_store_url(settings.store, settings.store_cache),
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        producer_max_request_size=settings.produce_max_bytes,
        producer_acks=-1,  # acks=all (Faust's default, said here): a write is acknowledged by min.insync.replicas
        broker_credentials=faust_credentials(settings),  # TLS / SASL from settings, as leadflow's own clients
        topic_replication_factor=settings.replication_factor,  # topics Faust creates itself (its leader topic)
        broker_commit_interval=settings.commit_interval_s,
        consumer_max_fetch_size=settings.max_request_bytes,
        key_serializer="raw",
        value_serializer="raw",
        Monitor=QuietMonitor,
        # A bounded stop and rate-limited error logs (issue 13).
        Worker="leadflow.streams.runtime.shutdown:BoundedWorker",
        **extra,
    )
    app.shutdown_timeout_s = settings.shutdown_timeout_s  # type: ignore[attr-defined]  # read by shutdown.stop_bound
    if not settings.embedded:
        idempotent_faust_producer(app)  # a real Kafka: a retried batch is written once (tansu: not asked)
    return app


class ModelTable(faust.Table[bytes, Value]):
    """Keys are raw bytes; values are pydantic models in the codec `value_codec` names.

    Faust derives a table's codecs from Faust Record types; ours are pydantic models, so name the codec here,
    where the store, the changelog topic and recovery all read it.
    """

    value_codec: ClassVar[str]

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is bytes else self.value_codec

    def _new_changelog_topic(self, **kwargs: Any) -> faust.TopicT:
        """The changelog topic, read as bytes: a restore (or a standby replica) hands the store the records as
        they are, and the store decodes a value when it is read (streams.runtime.memory_store), not each record
        of the changelog before the worker can start. Faust builds the topic from `value_serializer`."""
        codec, self.value_serializer = self.value_serializer, "raw"
        try:
            return super()._new_changelog_topic(**kwargs)
        finally:
            self.value_serializer = codec


class LeadTable(ModelTable[LeadRecord]):
    """lead_id -> LeadRecord."""

    value_codec = LEAD_RECORD_CODEC


class RoutingTable(ModelTable[RoutingState]):
    """One key (ROUTING_KEY): every pool's turn and load."""

    value_codec = ROUTING_STATE_CODEC


class VisitsTable(ModelTable[SiteVisits]):
    """<date>|<traffic_source> -> the newest site-visits report of that day (schemas.visits)."""

    value_codec = SITE_VISITS_CODEC


Table = TypeVar("Table", bound=ModelTable[Any])
ROUTING_KEY = b"pools"
# Leads read between two yields to the event loop while a partition's deadline index is rebuilt (Timers.walk).
REBUILD_CHUNK = 1000
SUMMARY_CHUNK = 1000  # leads summarized between two yields to the event loop
REDIRECTED = "redirected"  # query parameter a redirect adds: a worker that does not own the lead either says 503
# lead key -> (its last event in the batch, its record as read from the table, its new record: None to delete it)
Touched = dict[bytes, tuple[faust.types.EventT[bytes], LeadRecord | None, LeadRecord | None]]


def persisted(table: ModelTable[Any]) -> Any:
    """What Faust's table does when its changelog record is acknowledged: a rocksdb store remembers the offset,
    so a restart recovers only what came after it (Table._on_changelog_sent)."""
    return lambda tp, offset: table.data.set_persisted_offset(tp, offset)  # noqa: PLW0108 - the store is made late


def as_current(event: faust.types.EventT[bytes]) -> None:
    """Make `event` Faust's current event, so a table write goes to that event's partition.

    Inside a batch the current event is the last one taken; each lead's read and write must go to the store
    partition (with rocksdb, a database per partition: read from another one, the lead is not there) and the
    changelog partition of the lead's own event.
    """
    _current_event.set(weakref.ref(event))


def origin_of(message: faust.types.Message, received_at: datetime) -> Origin:
    """Where a record came from, for its dead letter (its original bytes, topic, partition and offset)."""
    return Origin(message.key, message.value, message.topic, message.partition, message.offset, received_at)


def read_view(value: bytes) -> LeadRecordView:
    """What a walk reads of a stored lead: its deadlines and census share, ~4x faster than the whole record."""
    return LEAD_RECORD_ENCODING.decode_as(RECORD_VIEW_ADAPTER, value)


def read_state(value: bytes) -> LeadStateOnly:
    """What the summaries read of a stored lead: its state, without the lateness window (about half the time)."""
    return LEAD_RECORD_ENCODING.decode_as(STATE_VIEW_ADAPTER, value)


def timer_event(lead_id: str, stamp: float) -> bytes:
    return timer_due(lead_id, datetime.fromtimestamp(stamp, UTC)).model_dump_json(exclude_defaults=True).encode()


def summary_lines(summaries: list[LeadSummary]) -> bytes:
    return b"".join(SUMMARY_ADAPTER.dump_json(summary) + b"\n" for summary in summaries)


def page(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A worker's page handler as Faust's `app.page` wants it: a function it makes the `get` of a View class (a
    bound method there would not receive the view)."""

    @functools.wraps(handler)
    async def view(web: Any, request: Any, **match: Any) -> Any:
        return await handler(web, request, **match)

    return view


async def flush_everything(buffer: Any) -> None:
    """Faust's ProducerBuffer.flush, without giving up: every record queued when it is called is sent (unless
    the producer stops); records queued meanwhile are the next commit's, so a steady stream cannot hold it.

    The commit trusts producer.flush() to have sent every record of the offsets it commits; Faust's buffer
    flush returns after 0.1 s without a send (a slow broker), so a commit could pass a batch whose changelog
    record was still queued, and a stop then lost it (seen: a restarted worker one version behind)."""
    remaining = buffer.size
    while remaining > 0 and buffer.size and buffer.state == "running":
        remaining -= await buffer.flush_atmost(remaining)
    # Stopping: the buffer's sender task has ended (its own on_stop flush gives up when not running), so what is
    # still queued is published here; else the last commit could cover changelog records never sent. If the
    # producer is gone too, publishing raises and the commit fails: the records are processed again, not lost.
    while buffer.state != "running" and not buffer.pending.empty():
        await buffer._send_pending(buffer.pending.get_nowait())


class Worker:
    """One leadflow worker, built from its settings and policy: the Faust app with its topics, tables, agents,
    timers, metrics and web pages. Nothing is built at import: the CLI builds one from its flags, each test its own.

    The agents: `process` (lead events: decide, store, send), `route_leads` (the router) and `count_visits`
    (site-visits reports). Everything they send goes through the outbox (streams.runtime.outbox): in bulk, at the
    end of each batch.
    """

    def __init__(self, settings: Settings, policy: Policy | None = None) -> None:
        self.settings = settings
        self.policy = policy if policy is not None else load_policy(settings.policy)
        self.app = create_app(settings)
        self.metrics = Metrics(self.policy)
        # The worker's own records of the events topic (timer ticks, router answers) carry a proof producers
        # cannot make.
        self.internal_key = settings.internal_key.get_secret_value().encode()
        # Every output names the agreement that produced it (the review and the leadflow_policy_info metric too).
        policy_stamp = f"{self.policy.name}@{self.policy.version}#{self.policy.fingerprint}"
        self.policy_headers = [(POLICY_HEADER, policy_stamp.encode())]
        self.partition_of = Partitioner(settings.partitions)

        self.leads = self.new_table(LeadTable, "leads", "leads_changelog")
        self.routing = self.new_table(RoutingTable, "routing", "routing_changelog")
        self.visits = self.new_table(VisitsTable, "visits", "visits_changelog")
        # Faust's own aiokafka producer (its flush, its idempotence), looked up when sending: it exists once the
        # app runs.
        self.outbox = Outbox(lambda: cast(Any, self.app.producer)._ensure_producer())
        for table in (self.leads, self.routing, self.visits):
            self.outbox.on_acknowledged[table.changelog_topic.get_topic_name()] = persisted(table)

        self.process = self.app.agent(self.input_topic("events"), name="leadflow.process")(self.process_events)
        self.route_leads = self.app.agent(self.input_topic("routing"), name="leadflow.route_leads")(self.route)
        self.count_visits = self.app.agent(self.input_topic("visits"), name="leadflow.count_visits")(self.keep_visits)

        self.timers = Timers(self)
        self.app.on_partitions_assigned.connect(self.on_assigned)
        self.app.on_partitions_revoked.connect(self.on_revoked)
        self.app.timer(interval=settings.sweep_interval_s)(self.sweep_timers)
        self.app.task(self.prepare_sending)

        # The group's own offsets through the Kafka admin API (Apache Kafka: tansu cannot answer its group calls).
        self.group_offsets = (
            None
            if settings.embedded
            else GroupOffsets(settings.bootstrap, settings.app_id, settings.topic_events, client_options(settings))
        )
        self.app.on_before_shutdown.connect(self.close_group_offsets)

        # Health (streams.runtime.health, issue 13): liveness, readiness, the broker probe, the log limiter.
        self.health = Health(self.app, settings)
        self.app.on_partitions_assigned.connect(self.health.on_assigned)  # also starts the broker probe
        self.app.timer(interval=1.0)(self.flush_log_summaries)

        now = functools.partial(datetime.now, UTC)
        self.metrics.watch(
            LeadCollector(self.policy, lambda: (self.timers.census, self.active_events_partitions()), now),
            GoalCollector(self.policy, self.active_summaries, self.active_visits, now),
            LagCollector(lambda: faust_consumer_lag(self.app, settings.topic_events)),
            GroupLagCollector(self.owned_group_offsets),
            RoutingCollector(self.policy, lambda: self.routing.get(ROUTING_KEY) if self.runs_router() else None),
            ClockDelayCollector(self.partition_times, time.time),
        )
        self.metrics.registry.register(HealthCollector(self.health_now))
        self.metrics.registry.register(AppliedOffsetCollector(self.applied_now))

        self.pages = {
            path: self.app.page(path)(page(handler))
            for path, handler in (
                ("/readyz", self.readyz),
                ("/metrics", self.metrics_view),
                ("/healthz", self.healthz),
                ("/leads/{lead_id}", self.lead_view),
                ("/funnel", self.funnel_view),
                ("/visits", self.visits_view),
                ("/funnel/leads", self.funnel_leads_view),
            )
        }

    # ---- Topics and tables.

    def input_topic(self, name: TopicName) -> faust.TopicT:
        """A topic an agent reads, as the route table says (raw bytes: the agents decode)."""
        route = ROUTES[name]
        return self.app.topic(
            route.topic(self.settings),
            partitions=route.partitions(self.settings),
            key_serializer="raw",
            value_serializer="raw",
        )

    def new_table(self, kind: type[Table], name: str, changelog: TopicName) -> Table:
        """A table of the app, with as many partitions as the route table gives its changelog."""
        partitions = ROUTES[changelog].partitions(self.settings)
        table = kind(self.app, name=name, partitions=partitions, key_type=bytes, beacon=self.app.tables.beacon)
        self.app.tables.add(table)
        return table

    def store(self, table: ModelTable[Value], key: bytes, value: Value, event: faust.types.EventT[bytes]) -> None:
        """`table[key] = value` without Faust's per-write send: the value goes to the table's store, its changelog
        record to the outbox, on the partition of `event` (the one the key belongs to), as Faust would."""
        as_current(event)  # a rocksdb store picks its partition's database from the current event
        encoded = codecs.dumps(table.value_codec, value)
        cast(DecodedCache, table.data).put(key, encoded, value)  # encoded once, for the changelog and the store
        changelog = table.changelog_topic.get_topic_name()
        self.outbox.add(changelog, key, encoded, partition=event.message.partition)

    def forget(self, table: ModelTable[Any], key: bytes, event: faust.types.EventT[bytes]) -> None:
        """`table.pop(key)` the same way: gone from the store, a tombstone (no value) in the outbox."""
        as_current(event)
        with contextlib.suppress(KeyError):
            del table.data[key]
        self.outbox.add(table.changelog_topic.get_topic_name(), key, None, partition=event.message.partition)

    # ---- Sending.

    def send_dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        self.metrics.observe_dead_letter(letter)
        self.outbox.add(self.settings.topic_deadletter, key, DEAD_LETTER_ADAPTER.dump_json(letter), self.policy_headers)

    def send_defect(self, where: str, error: Exception, origin: Origin, key: bytes | None) -> None:
        """A defect in the core must cost one record (dead-lettered with its bytes and the error), not the worker."""
        log.exception("%s failed on %s/%s@%s", where, origin.topic, origin.partition, origin.offset)
        self.send_dead_letter(
            dead_letter("internal_error", [f"({where}): {type(error).__name__}: {error}"], origin), key
        )

    def send_internal(self, key: bytes, value: bytes) -> None:
        proof = [(INTERNAL_HEADER, internal_proof(value, self.internal_key))]
        self.outbox.add(self.settings.topic_events, key, value, proof)

    def send_output(self, output: Output, key: bytes) -> None:
        """Each kind of output to its topic, keyed by its topic's key rule (streams.runtime.routes), with the policy
        header; `key` is the lead's. A merged lead's forwards go back to the events topic, signed as internal."""
        route = ROUTES[topic_of(output)]
        value, record = record_value(output), record_key(output, key)
        if route.signed:
            self.send_internal(record, value)
        else:
            self.outbox.add(route.topic(self.settings), record, value, self.policy_headers)

    def send_unassigned(self, request: RouteRequest) -> None:
        """Still an answer: the lead holds its later events until its request is answered (core.decision)."""
        self.send_internal(request.lead_id.encode(), orjson.dumps(unassigned_event(request, ROUTER_SOURCE)))

    # ---- The agents.

    async def process_events(self, stream: faust.StreamT[bytes]) -> None:
        """Lead events, a batch at a time: each lead touched in the batch is stored once, at the batch end, and
        the deadline index and the lead census (streams.runtime.lead_census) learn its new record there."""
        settings = self.settings
        # take_events is on Stream, not (yet) on the StreamT protocol.
        batches = cast(faust.Stream[bytes], stream).take_events(settings.batch_max, within=settings.batch_within_s)
        async for batch in batches:
            now = datetime.now(UTC)
            touched: Touched = {}
            for event in batch:
                self.handle(event, now, touched)
            for key, (event, old, record) in touched.items():
                try:
                    self.keep_lead(key, event, old, record)
                except Exception as error:  # a defect: this lead's last event is dead-lettered, the batch goes on
                    self.send_defect("worker", error, origin_of(event.message, now), key)
            await self.outbox.send()

    def keep_lead(
        self, key: bytes, event: faust.types.EventT[bytes], old: LeadRecord | None, record: LeadRecord | None
    ) -> None:
        """Store the lead's new record (None: delete it) and tell the deadline index and the lead census."""
        partition = event.message.partition
        self.timers.census.update(key, partition, old, record)
        if record is None:  # a lead that does not exist, its window closed (core.decision.forget_at)
            self.forget(self.leads, key, event)
            self.timers.stored(partition, key.decode(), None)
            return
        self.store(self.leads, key, record, event)
        self.timers.stored(partition, record.lead_id, record)

    def handle(self, event: faust.types.EventT[bytes], now: datetime, touched: Touched) -> None:
        """One record: decode, decide, send the outputs; the new lead record (None: delete it) waits in `touched`
        for the batch end, with the record the table held (read when the lead is first touched in the batch)."""
        message = event.message
        decoded = decode(
            message.key,
            message.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            received_at=now,
            max_bytes=self.settings.max_event_bytes,
            proof=header(message.headers, INTERNAL_HEADER),
            internal_key=self.internal_key,
        )
        self.timers.saw(message.partition, message.offset, None if isinstance(decoded, DeadLetter) else decoded, now)
        if isinstance(decoded, DeadLetter):
            self.send_dead_letter(decoded, message.key)
            return
        key = decoded.lead_id.encode()
        # A defect (in the core, or a stored record that cannot be read) costs this record, dead-lettered with its
        # bytes (send_defect), never the batch: Faust acknowledges a batch its agent fails on.
        try:
            if key in touched:
                _, old, record = touched[key]
            else:
                as_current(event)  # the read too: a rocksdb store reads the lead from its own event's partition
                old = record = self.leads.get(key)
            decision = decide(record, decoded, self.policy, now)
        except Exception as error:
            self.send_defect("worker", error, origin_of(message, now), key)
            return
        if decision.changed:
            touched[key] = (event, old, None if decision.forget else decision.record)
        try:
            for output in decision.outputs:
                self.send_output(output, key)
        except Exception as error:  # applied, but not all it said went out: the dead letter says so
            self.send_defect("worker", error, origin_of(message, now), key)
        try:
            self.metrics.observe(decoded, decision, now)
        except Exception:  # a defect in the metrics costs a sample, not the record
            log.exception("metrics failed on %s/%s@%s", message.topic, message.partition, message.offset)

    async def route(self, stream: faust.StreamT[bytes]) -> None:
        """The router: picks each MQL's owner (core.routing) and answers on the lead's partition of leads.events."""
        settings = self.settings
        batches = cast(faust.Stream[bytes], stream).take_events(settings.batch_max, within=settings.batch_within_s)
        async for batch in batches:
            state = self.routing.get(ROUTING_KEY) or RoutingState()
            for event in batch:
                state = self.handle_routing(event, state)
            self.store(self.routing, ROUTING_KEY, state, batch[-1])
            await self.outbox.send()

    def handle_routing(self, event: faust.types.EventT[bytes], state: RoutingState) -> RoutingState:
        message = event.message
        origin = origin_of(message, datetime.now(UTC))
        routed = decode_routing(origin)
        if isinstance(routed, DeadLetter):
            self.send_dead_letter(routed, message.key)
            return state
        try:
            if not isinstance(routed, RouteRequest):
                if is_released(state, routed):  # read again (a restart): it freed its owner already (core.routing)
                    log.debug("route release %s of lead %s read again: applied before, nothing freed", routed.id,
                              routed.lead_id)  # fmt: skip
                return release(state, routed)
            answered = answer_request(state, routed, self.policy, ROUTER_SOURCE)
        except Exception as error:  # a defect in the core: see send_defect
            self.send_defect("router", error, origin, message.key)
            if isinstance(routed, RouteRequest):
                self.send_unassigned(routed)
            return state
        if answered.replayed:  # read again (a restart): the same answer, nothing taken, nothing counted
            log.debug("route request %s for lead %s read again: answered again as before (%s), nothing changed",
                      routed.id, routed.lead_id, answered.envelope["type"])  # fmt: skip
        elif answered.unassigned:
            self.metrics.observe_unassigned(routed.pool)
            log.warning("no owner for lead %s (route request %s): %s; answered route.unassigned", routed.lead_id,
                        routed.id, why_unassigned(routed, self.policy))  # fmt: skip
        self.send_internal(routed.lead_id.encode(), orjson.dumps(answered.envelope))
        return answered.state

    async def keep_visits(self, stream: faust.StreamT[bytes]) -> None:
        """Site-visits reports: the newest of each day and traffic source is kept (core.visits.newer)."""
        async for event in cast(faust.Stream[bytes], stream).events():
            message = event.message
            origin = origin_of(message, datetime.now(UTC))
            report = decode_visits(origin, self.settings.max_event_bytes)
            if isinstance(report, DeadLetter):
                self.send_dead_letter(report, message.key)
            else:
                try:
                    if newer(self.visits.get(report.key), report):
                        self.store(self.visits, report.key, report, event)
                except Exception as error:  # a defect (or a stored report that cannot be read): see send_defect
                    self.send_defect("visits", error, origin, message.key)
            await self.outbox.send()

    # ---- Timers, tasks and signals.

    async def on_revoked(self, *args: Any, **kwargs: Any) -> None:
        self.timers.mark_stale()

    async def on_assigned(self, *args: Any, **kwargs: Any) -> None:
        """The group's new assignment (the assignor has it already: Faust's recovery reads it before this signal)."""
        self.timers.assigned(self.active_events_partitions())

    async def sweep_timers(self) -> None:
        """On every worker (each owns its partitions' deadlines), not only on the leader."""
        app, timers = self.app, self.timers
        if timers.stale and not (app.rebalancing or app.in_recovery):
            await timers.rebuild()
        started = time.perf_counter()
        sent = timers.sweep(datetime.now(UTC))
        await self.outbox.send()
        if not (app.rebalancing or app.in_recovery):
            self.metrics.observe_sweep(sent, time.perf_counter() - started, time.time(), len(timers))

    async def prepare_sending(self) -> None:
        """Faust's producer buffer (Faust's own records: its leader topic) flushes without giving up; a commit waits
        for the outbox too. The outbox opens once the topics exist with their settings (streams.runtime.topics), so
        a first send cannot auto-create one with the broker's defaults."""
        buffer = self.app.producer.buffer
        buffer.max_messages = self.settings.producer_buffer_messages
        buffer.flush = functools.partial(flush_everything, buffer)  # type: ignore[method-assign]  # this one only
        guard_commits(self.app.producer, self.outbox)
        try:
            await create_leadflow_topics(self.settings)
        except Exception as error:  # no right to create topics, say: an operator made them (README: topics)
            log.error("could not check or create the leadflow topics, going on with them as they are: %s", error)
        self.outbox.open()

    async def close_group_offsets(self, *args: Any, **kwargs: Any) -> None:
        if self.group_offsets is not None:
            await self.group_offsets.close()

    async def flush_log_summaries(self) -> None:
        """Summaries of the kinds of warnings and errors that went quiet (streams.runtime.health.LogLimiter)."""
        flush_limiters()

    # ---- What this worker owns, for the metrics and the pages.

    def active_events_partitions(self) -> list[int]:
        """This worker's active partitions of the events topic (not standby replicas)."""
        topic = self.settings.topic_events
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic)

    def runs_router(self) -> bool:
        """Whether this worker owns the routing topic's one partition (so its routing table is the live one)."""
        return any(tp.topic == self.settings.topic_routing for tp in self.app.assignor.assigned_actives())

    def partition_times(self, now: float) -> dict[int, float | None]:
        """The SLA clock (partition time) of each active partition of the events topic, for the delay gauge."""
        return {partition: self.timers.clock.time(partition, now) for partition in self.active_events_partitions()}

    def active_visits(self) -> list[SiteVisits]:
        """The site-visits reports of this worker's active partitions of the visits topic."""
        topic = self.settings.topic_visits
        actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        return [report for key, report in self.visits.items() if self.partition_of(key) in actives]

    async def active_summaries(self) -> list[LeadSummary]:
        """Summaries of the leads of this worker's active partitions (not standby replicas), each read as its state
        only (`read_state`), in chunks that let the stream go on between them."""
        store = cast(DecodedCache, self.leads.data)
        summaries: list[LeadSummary] = []
        for partition in self.active_events_partitions():
            keys = store.partition_keys(partition)
            for start in range(0, len(keys), SUMMARY_CHUNK):
                for key in keys[start : start + SUMMARY_CHUNK]:
                    lead = store.partition_get(partition, key, read_state)
                    summary = summarize(lead.state) if lead is not None and lead.state is not None else None
                    if summary is not None:
                        summaries.append(summary)
                await asyncio.sleep(0)
        return summaries

    async def owned_group_offsets(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) -> (committed, end) for this worker's partitions of the events topic."""
        if self.group_offsets is None:
            return {}
        partitions = self.active_events_partitions()
        committed = await self.group_offsets.committed(partitions)
        ends = await self.group_offsets.ends(partitions)
        return {(self.settings.topic_events, p): (committed[p], ends[p]) for p in partitions}

    def applied_now(self) -> dict[tuple[str, int], int]:
        """Per active partition of the events topic: the offset after the last record applied (or the committed
        one)."""
        topic = self.settings.topic_events
        consumer = getattr(self.app, "_consumer", None)
        committed = {
            tp.partition: offset
            for tp, offset in dict(getattr(consumer, "_committed_offset", None) or {}).items()
            if tp.topic == topic and offset is not None
        }
        offsets = applied_offsets(self.timers.applied, committed, self.active_events_partitions())
        return {(topic, partition): offset for partition, offset in offsets.items()}

    def health_now(self) -> tuple[bool | None, float | None, bool]:
        self.health.start()
        return self.health.probe.reachable, self.health.probe.last_answer_wall, self.health.is_ready()

    # ---- Web pages (`self.pages`).

    async def readyz(self, web: Any, request: Any) -> Any:
        """Readiness: 200 once the tables are recovered, the consumer fetches, the producer sends and the broker
        answers; else 503 with the reasons (streams.runtime.health.reasons)."""
        self.health.start()
        found = self.health.reasons()
        headers = {"Cache-Control": "no-store"} | ({"Retry-After": str(RETRY_AFTER_S)} if found else {})
        body = readiness_body(found, self.settings.app_id)
        return web.json(body, status=503 if found else 200, headers=headers)

    async def metrics_view(self, web: Any, request: Any) -> Any:
        return web.bytes(await self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(self, web: Any, request: Any) -> Any:
        """Liveness: the event loop answers (a broker outage is not a reason to restart the worker: see /readyz)."""
        body = {"status": "alive", "app": self.settings.app_id}
        return web.json(body, headers={"Cache-Control": "no-store"})

    async def lead_view(self, web: Any, request: Any, lead_id: str) -> Any:
        """The lead's state; its personal fields (core.privacy) only to a caller with LEADFLOW_WEB_TOKEN.

        While the tables are being recovered: 503 with Retry-After (not "no lead"). A lead of a partition another
        worker owns: 307 to that worker's advertised URL (LEADFLOW_WEB_URL), or 503 naming the partition when the
        owner is not known (a rebalance)."""
        self.health.start()
        retry = {"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"}
        if self.health.recovering():
            why = "the worker is recovering its tables from their changelogs (or joining its group): retry shortly"
            return web.json({"error": why, "lead_id": lead_id}, status=503, headers=retry)
        key = lead_id.encode()
        partition = self.partition_of(key)
        if partition not in self.active_events_partitions():
            owner = owner_url(self.app, self.leads.changelog_topic.get_topic_name(), partition)
            elsewhere = owner is not None and owner.rstrip("/") != str(self.app.conf.canonical_url).rstrip("/")
            if owner is not None and elsewhere and REDIRECTED not in request.query:
                location = str(request.rel_url.update_query({REDIRECTED: "1"}))
                return web.json(
                    {"lead_id": lead_id, "partition": partition, "owner": owner},
                    status=307,
                    headers={"Location": owner.rstrip("/") + location, "Cache-Control": "no-store"},
                )
            why = f"partition {partition} of {self.settings.topic_events} (lead {lead_id!r}) is owned by " + (
                f"{owner}, which does not hold it either: a rebalance is moving it; retry shortly"
                if owner is not None
                else "a worker not known yet (a rebalance is in progress): retry shortly"
            )
            return web.json({"error": why, "lead_id": lead_id, "partition": partition}, status=503, headers=retry)
        record = self.leads.get(key)
        if record is None or record.state is None:
            return web.json({"error": f"no lead {lead_id!r} on this worker's partitions"}, status=404)
        web_token = self.settings.web_token
        token = web_token.get_secret_value() if web_token is not None else None
        authorized = is_authorized(request.headers.get("Authorization"), token)
        return web.bytes(
            orjson.dumps(public_view(record, authorized)),
            content_type="application/json",
            headers={"Cache-Control": "no-store", "Vary": "Authorization"},
        )

    async def funnel_view(self, web: Any, request: Any) -> Any:
        """The funnel report (README: Funnel report) over this worker's leads, as of now."""
        summaries = await self.active_summaries()
        report = await asyncio.to_thread(funnel_report, summaries, self.policy, datetime.now(UTC))
        return web.bytes(orjson.dumps(report), content_type="application/json")

    async def visits_view(self, web: Any, request: Any) -> Any:
        """This worker's site-visits reports as JSON lines: what `leadflow report --period ... --worker URL` reads."""
        body = b"".join(VISITS_ADAPTER.dump_json(report) + b"\n" for report in self.active_visits())
        return web.bytes(body, content_type="application/x-ndjson")

    async def funnel_leads_view(self, web: Any, request: Any) -> Any:
        """The lead summaries of this worker's leads as JSON lines: what `leadflow report --worker URL` merges."""
        body = await asyncio.to_thread(summary_lines, await self.active_summaries())
        return web.bytes(body, content_type="application/x-ndjson")


class Timers:
    """Durable SLA timers: the leads table holds the clocks; in-memory indexes find what is due.

    One deadline index per partition of the events topic this worker holds as an active member, kept up to date by
    the agent as it stores leads. After a rebalance (`assigned`, `rebuild`) a partition the worker kept keeps its
    index, its lead census and its partition time: nothing of it was applied elsewhere meanwhile, and the table's
    store kept its leads. Those of a partition no longer assigned are dropped; a partition newly assigned is walked:
    its leads read from the table (recovered from its changelog), its index and census built from them. An instant
    fires at its partition's time (core.partition_clock): once the events appended before it have been applied, plus
    the policy's grace; a backlog after a restart or an outage holds the clocks back until it is applied, and
    deadlines that passed while no worker ran fire as soon as it is. Due instants go back through `leads.events` as
    `timer.due` events keyed by lead, so the lead's own partition applies them inside stream processing; their ids
    are deterministic, so a tick sent twice is a duplicate; it is sent once all the same (`in_flight`): a tick goes
    behind whatever waits in the partition, and the lead's events applied before it must not queue its instant
    again. The walk of a partition that builds its index counts its lead census too (streams.runtime.lead_census):
    one walk of each partition newly assigned.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.indexes: dict[int, DeadlineIndex] = {}
        self.clock = PartitionClock()
        self.applied: dict[int, int] = {}  # partition -> last offset the agent handled
        self.stale = True
        # Active partitions whose index and census were walked whole since they were assigned (and kept since).
        self.walked: set[int] = set()
        # Leads per stage, open and overdue clocks per partition, for the lead gauges: the agent updates it as it
        # stores leads, `rebuild` counts a partition newly assigned from the table in the same walk as its index.
        self.census = LeadCensus()
        # partition -> lead -> the latest instant whose tick the sweep sent and the lead's stored record has not
        # applied yet (the tick is on its way through the partition).
        self.in_flight: dict[int, dict[str, float]] = {}

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes.values())

    def mark_stale(self) -> None:
        self.stale = True

    def assigned(self, partitions: Collection[int]) -> None:
        """A rebalance gave this worker `partitions` of the events topic (as an active member): what it held of
        the others is dropped now, so a partition that goes and comes back before the next `rebuild` is walked
        again."""
        self.keep(partitions)
        self.stale = True

    def keep(self, partitions: Collection[int]) -> None:
        """Only `partitions` stay this worker's: the indexes, census counts and partition times of the others are
        dropped (`applied` stays: offsets only grow)."""
        kept = set(partitions)
        for partition in [p for p in self.indexes if p not in kept]:
            del self.indexes[partition]
        for partition in [p for p in self.in_flight if p not in kept]:
            del self.in_flight[partition]
        self.clock.keep(kept)
        self.census.keep(kept)
        self.walked &= kept

    def set(self, partition: int, lead_id: str, instant: datetime | None) -> None:
        self.indexes.setdefault(partition, DeadlineIndex()).set(lead_id, instant)

    def stored(self, partition: int, lead_id: str, record: LeadRecord | None) -> None:
        """The agent stored the lead's new record (None: it forgot the lead): the index gets the lead's next instant.

        While a tick the sweep sent is on its way (behind a backlog, say), the lead's events applied before it store
        a record that still holds the tick's instant: queued again, the next sweep would send the tick again, to be
        written, read back and dropped by the lead as a duplicate. The index gets the instant after it instead (as
        the sweep queued), until a record has applied the tick (its next instant is later). An earlier instant such
        an event may have added is not lost: a tick fires every instant at or before its own (core.sla.due)."""
        instant = wake_at(record, self.worker.policy)
        leads = self.in_flight.get(partition)
        sent = leads.get(lead_id) if leads is not None else None
        if leads is not None and sent is not None:
            if instant is not None and instant.timestamp() <= sent:
                instant = wake_at(record, self.worker.policy, after=sent)
            else:
                del leads[lead_id]
        self.set(partition, lead_id, instant)

    def saw(self, partition: int, offset: int, event: LeadEvent | None, received_at: datetime) -> None:
        """The agent handled this record (an event, or a dead letter when `event` is None)."""
        self.applied[partition] = max(offset, self.applied.get(partition, -1))
        if event is not None and not isinstance(event, TimerDue) and event.occurred_at <= received_at:
            # An event dated ahead of the worker clock says nothing of what was appended before it.
            self.clock.applied(partition, event.occurred_at.timestamp())

    async def rebuild(self) -> None:
        """After a rebalance: what the worker holds of partitions no longer assigned is dropped (`keep`), those it
        kept stay as they are, and each partition assigned that was not walked whole since it was assigned (all of
        them at the first rebuild after a start) is walked: its keys in the table's store, and only those, read
        REBUILD_CHUNK leads at a time with a yield to the event loop between chunks (a large table, a million leads
        or a rocksdb store that decodes each one, must not stall the stream or the group's heartbeats); its index
        and census are built from them in the one walk. Leads the agent writes meanwhile set their own instant
        (`set`), before or after the walk reads them: either way the index ends with the newest; the census counts
        each as it was when the agent first stored it during its partition's walk, plus what the agent stored since
        (streams.runtime.lead_census). A rebalance during the walk (`mark_stale`) abandons it: the partitions walked
        whole before it stay walked (if kept), the one under way and those not begun are walked by the next
        sweep's rebuild. Until a partition's walk ends, the lead gauges show what the agent stored of it since it
        was assigned (none before the first rebuild ends: no sample)."""
        actives = self.worker.active_events_partitions()
        self.keep(actives)
        self.stale = False
        store = cast(DecodedCache, self.worker.leads.data)
        for partition in actives:
            if partition not in self.walked and not await self.walk(store, partition):
                return
        self.census.all_walked()

    async def walk(self, store: DecodedCache, partition: int) -> bool:
        """Build the index and the census of `partition` from its leads in `store` (False: a rebalance abandoned
        the walk, and the partition is not walked)."""
        census, policy = self.census, self.worker.policy
        self.indexes[partition] = index = DeadlineIndex()
        census.begin_walk(partition)
        keys = store.partition_keys(partition)
        for start in range(0, len(keys), REBUILD_CHUNK):
            for key in keys[start : start + REBUILD_CHUNK]:
                record = store.partition_get(partition, key, read_view)
                census.walked(key, partition, record)
                if record is not None:
                    index.set(record.lead_id, wake_at(record, policy))
            await asyncio.sleep(0)
            if self.stale:
                return False
        census.end_walk()
        self.walked.add(partition)
        return True

    def observe_fetches(self) -> None:
        """Partitions whose every fetched record has been applied are caught up as of that fetch."""
        for partition, fetched in fetch_state(self.worker.app, self.worker.settings.topic_events).items():
            done = max(self.applied.get(partition, -1) + 1, fetched.committed)
            if is_caught_up(done, fetched.position, fetched.highwater) and fetched.polled_at is not None:
                self.clock.caught_up(partition, fetched.polled_at)

    def sweep(self, now: datetime) -> int:
        app, settings, policy = self.worker.app, self.worker.settings, self.worker.policy
        if app.rebalancing or app.in_recovery or self.stale:
            return 0  # the indexes are rebuilt first (`sweep_timers`)
        self.observe_fetches()
        sent = 0
        for partition, index in self.indexes.items():
            cutoff = self.clock.cutoff(partition, now.timestamp(), policy.processing.sla_grace_seconds)
            if cutoff is None:
                continue
            due = index.pop_due(datetime.fromtimestamp(cutoff, UTC), limit=settings.sweep_max - sent)
            in_flight = self.in_flight.setdefault(partition, {})
            for lead_id, stamp in due:
                key = lead_id.encode()
                self.worker.send_internal(key, timer_event(lead_id, stamp))
                in_flight[lead_id] = stamp
                # Queue the lead's next instant now, not when the tick comes back: a deadline 0.5 s after a
                # warning must not wait for the warning's round trip.
                index.set(lead_id, wake_at(self.worker.leads.get(key), policy, after=stamp))
            sent += len(due)
            if sent >= settings.sweep_max:
                break
        return sent
