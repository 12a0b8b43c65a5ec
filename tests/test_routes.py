"""The route table (streams.runtime.routes): every output kind has a topic, every topic is created as before, and every
routed topic has a schema file its records validate against."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import jsonschema
import orjson
import pytest

from leadflow.core.engine import Engine
from leadflow.schemas.events import EVENT_ADAPTER
from leadflow.schemas.outputs import Output, RouteRequest
from leadflow.schemas.policy import load_policy
from leadflow.streams.cli.schema_files import write_schemas
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.runtime import topics
from leadflow.streams.runtime.routes import (
    KEEP_FOREVER,
    OUTPUT_TOPICS,
    ROUTES,
    OutputTopic,
    record_key,
    record_value,
    topic_of,
)
from leadflow.streams.runtime.settings import Settings


def kinds(union: Any) -> set[type]:
    """The classes of a union, through Annotated[...] and nested unions."""
    if get_origin(union) is Annotated:
        return kinds(get_args(union)[0])
    if get_origin(union) in (Union, types.UnionType):
        return set().union(*(kinds(arg) for arg in get_args(union)))
    return {union}


@pytest.fixture(scope="module")
def outputs() -> list[Output]:
    """What the whole core emits over simulated journeys (they route, breach, hand off and merge leads)."""
    events = [
        EVENT_ADAPTER.validate_python(e) for e in journeys(seed=5, n_leads=150, start=datetime(2026, 9, 7, tzinfo=UTC))
    ]
    engine = Engine(load_policy(None))
    emitted = [output for event in sorted(events, key=lambda e: e.occurred_at) for output in engine.feed(event)]
    return emitted + engine.finish()


def test_every_output_kind_goes_to_a_topic_of_the_table() -> None:
    assert kinds(Output) == set(OUTPUT_TOPICS)
    assert set(OUTPUT_TOPICS.values()) == set(get_args(OutputTopic))
    assert set(get_args(OutputTopic)) <= set(ROUTES)


def test_an_output_kind_without_a_route_is_refused_not_sent_to_a_default_topic() -> None:
    class Stray(RouteRequest):
        pass

    stray = Stray(id="x", lead_id="L1", pool="inbound", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(TypeError, match="no topic for output kind Stray"):
        topic_of(stray)


def test_outputs_are_keyed_by_lead_except_routing_by_pool_and_forwards_by_the_lead_they_go_to(
    outputs: list[Output],
) -> None:
    seen = {topic_of(output) for output in outputs}
    assert seen == set(get_args(OutputTopic)), "the journeys emit every kind of topic"
    for output in outputs:
        key = record_key(output, b"the-lead")
        match topic_of(output):
            case "routing":
                assert key == output.pool.encode()  # type: ignore[union-attr]
            case "events":
                assert key == output.into_lead_id.encode()  # type: ignore[union-attr]
            case _:
                assert key == b"the-lead"


async def test_topic_creation_makes_every_topic_of_the_table_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    async def ensure(bootstrap: str, partitions: dict[str, int], **options: Any) -> None:
        asked.update(partitions=partitions, **options)

    monkeypatch.setattr(topics, "ensure_topics", ensure)
    settings = Settings(partitions=6, app_id="lf", max_request_bytes=3_000_000)
    await topics.create_leadflow_topics(settings)
    assert asked["partitions"] == {
        "leads.events": 6,
        "leads.transitions": 6,
        "leads.deadletter": 6,
        "leads.sla": 6,
        "leads.handoffs": 6,
        "leads.routing": 1,
        "leads.visits": 6,
        "lf-leads-changelog": 6,
        "lf-routing-changelog": 1,
        "lf-visits-changelog": 6,
        "leads.identities": 1,
    }
    assert {route.topic(settings) for route in ROUTES.values()} == set(asked["partitions"])
    assert asked["compacted"] == {
        "lf-leads-changelog",
        "lf-routing-changelog",
        "lf-visits-changelog",
        "leads.identities",
    }
    assert {name: dict(c) for name, c in asked["configs"].items() if c} == {
        "leads.events": {"max.message.bytes": "3000000"},
        "leads.deadletter": {"max.message.bytes": str(settings.produce_max_bytes), **KEEP_FOREVER},
    }


def test_every_routed_topic_has_a_schema_file_its_records_validate_against(
    tmp_path: Path, outputs: list[Output]
) -> None:
    written = {path.name for path in write_schemas(tmp_path)}
    for name in get_args(OutputTopic):
        assert ROUTES[name].schema_file is not None, f"{name} has no schema file"
    for route in ROUTES.values():
        if route.schema_file is not None:
            assert f"{route.schema_file}.schema.json" in written
    validators = {
        name: jsonschema.Draft202012Validator(
            orjson.loads((tmp_path / f"{ROUTES[name].schema_file}.schema.json").read_bytes()),
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        for name in get_args(OutputTopic)
    }
    for validator in validators.values():
        jsonschema.Draft202012Validator.check_schema(validator.schema)
    for output in outputs:
        validators[topic_of(output)].validate(orjson.loads(record_value(output)))
    with pytest.raises(jsonschema.ValidationError):
        validators["routing"].validate({"type": "route.request", "id": "x", "lead_id": "L1"})


def test_default_names_are_the_settings_defaults() -> None:
    assert ROUTES["events"].default == "leads.events"
    assert ROUTES["sla"].default == Settings.model_fields["topic_sla"].default
    assert ROUTES["leads_changelog"].default == "leadflow-leads-changelog"
