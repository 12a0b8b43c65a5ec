"""What a walk of the leads table reads of a stored record (schemas.state.LeadRecordView): the same answers as the
record decoded whole, for every record the simulated journeys store, and fields that match the record's own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from factories import POLICY, make_event
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from leadflow.core.deadlines import next_instant
from leadflow.core.decision import Decision, decide, is_stateless, wake_at
from leadflow.core.engine import Engine
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import (
    RECORD_VIEW_ADAPTER,
    STATE_VIEW_ADAPTER,
    Clock,
    ClockView,
    LeadRecord,
    LeadRecordView,
    LeadState,
    LeadStateOnly,
    LeadStateView,
)
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.runtime.lead_census import share

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


class Keeping(Engine):
    """An engine that keeps every record it stores, in order."""

    def __init__(self) -> None:
        super().__init__(POLICY)
        self.stored: list[LeadRecord] = []

    def decide(self, event: LeadEvent) -> Decision:
        decision = super().decide(event)
        if decision.changed:
            self.stored.append(decision.record)
        return decision


def stored_records() -> list[LeadRecord]:
    """Every record 150 simulated journeys store along the way (every stage, clocks running, paused, breached and
    met), plus the record of a lead that does not exist and an erased marker."""
    engine = Keeping()
    for envelope in journeys(seed=11, n_leads=150, start=START):
        engine.feed(make_event(envelope["type"], dt.datetime.fromisoformat(envelope["occurred_at"]),
                               lead_id=envelope["lead_id"], event_id=envelope["event_id"],
                               **envelope.get("data", {})))  # fmt: skip
    engine.finish()
    stray = make_event("activity", 10.0, lead_id="nobody", action="page_view")
    unknown = decide(None, stray, POLICY, stray.occurred_at)
    last = engine.stored[-1]
    assert last.state is not None
    assert last.watermark is not None
    later = last.watermark + dt.timedelta(days=1)
    erased = decide(last, make_event("lead.erased", later, lead_id=last.lead_id), POLICY, later)
    return [*engine.stored, unknown.record, erased.record]


RECORDS = stored_records()


def test_the_journeys_store_every_kind_of_record_the_view_must_read() -> None:
    states = [r.state for r in RECORDS if r.state is not None]
    clocks = [c for s in states for c in s.clocks.values()]
    assert len(RECORDS) > 500
    assert any(c.paused_at is not None for c in clocks)
    assert any(c.breached for c in clocks)
    assert any(c.warnings for c in clocks)
    assert any(r.erased_at is not None for r in RECORDS)
    assert any(r.awaiting for r in RECORDS)
    assert any(r.base is not None for r in RECORDS)
    assert any(is_stateless(r) for r in RECORDS)


def test_a_view_of_every_stored_record_gives_the_record_s_deadline_and_census_share() -> None:
    for record in RECORDS:
        view = LEAD_RECORD_ENCODING.decode_as(RECORD_VIEW_ADAPTER, LEAD_RECORD_ENCODING.encode(record))
        assert view.lead_id == record.lead_id
        assert wake_at(view, POLICY) == wake_at(record, POLICY)
        assert next_instant(view.state) == next_instant(record.state)
        assert is_stateless(view) == is_stateless(record)
        assert share(view) == share(record)
        if record.state is not None:
            assert next_instant(view.state, after=START.timestamp()) == next_instant(record.state, START.timestamp())


def test_a_view_reads_plain_json_records_too() -> None:
    """Records a table wrote before the compact encoding (defaults written out as well)."""
    for record in RECORDS[::25]:
        for json in (record.model_dump_json(), record.model_dump_json(exclude_defaults=True)):
            view = LEAD_RECORD_ENCODING.decode_as(RECORD_VIEW_ADAPTER, json.encode())
            assert wake_at(view, POLICY) == wake_at(record, POLICY)
            assert share(view) == share(record)


def test_the_state_view_of_every_stored_record_is_the_record_s_state() -> None:
    """What the funnel summaries read (streams.runtime.worker.read_state), from the compact value and from JSON."""
    for record in RECORDS:
        for value in (LEAD_RECORD_ENCODING.encode(record), record.model_dump_json().encode()):
            view = LEAD_RECORD_ENCODING.decode_as(STATE_VIEW_ADAPTER, value)
            assert (view.lead_id, view.state) == (record.lead_id, record.state)


@pytest.mark.parametrize(
    ("view", "model"),
    [(ClockView, Clock), (LeadStateView, LeadState), (LeadRecordView, LeadRecord), (LeadStateOnly, LeadRecord)],
)
def test_a_view_s_fields_are_the_model_s_with_its_defaults(view: type[BaseModel], model: type[BaseModel]) -> None:
    """A field missing from the stored JSON is at its default (the tables write no defaults): the view must
    read it as the model would."""
    for name, field in view.model_fields.items():
        assert name in model.model_fields, f"{view.__name__}.{name} is not a field of {model.__name__}"
        original = model.model_fields[name]
        assert original.is_required() == field.is_required(), name
        if not field.is_required():
            assert default_of(field) == default_of(original), name


def default_of(field: FieldInfo) -> Any:
    value = field.get_default(call_default_factory=True)
    return tuple(value) if isinstance(value, list | tuple) else value
