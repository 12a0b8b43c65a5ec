"""schemas.base.Frozen's equality answers as pydantic's BaseModel does, on every model a stored lead record holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
from factories import make_event
from pydantic import BaseModel
from test_record_view import RECORDS

from leadflow.schemas.base import Frozen
from leadflow.schemas.events import LeadCreated
from leadflow.schemas.state import Ledger, PendingEvent


def models_in(value: object) -> Iterator[Frozen]:
    """Every Frozen model inside a value, the value included, depth first."""
    if isinstance(value, Frozen):
        yield value
        for name in type(value).model_fields:
            yield from models_in(getattr(value, name))
        for extra in (value.__pydantic_extra__ or {}).values():
            yield from models_in(extra)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from models_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from models_in(item)


def by_type() -> dict[type, list[Frozen]]:
    found: dict[type, list[Frozen]] = defaultdict(list)
    for record in RECORDS[::7]:
        for model in models_in(record):
            found[type(model)].append(model)
    return found


MODELS = by_type()


def test_the_records_hold_nested_models_of_many_types() -> None:
    assert len(MODELS) >= 15, sorted(t.__name__ for t in MODELS)


@pytest.mark.parametrize("kind", sorted(MODELS, key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_equality_agrees_with_pydantic(kind: type) -> None:
    models = MODELS[kind][:40]
    for a in models:
        copy = a.model_copy()
        assert (a == copy) is BaseModel.__eq__(a, copy) is True
        for b in models:
            assert (a == b) is BaseModel.__eq__(a, b), (a, b)
        assert (a == 3) is False  # another type: pydantic's answer (NotImplemented, then identity)


def test_defaults_and_extras_count() -> None:
    assert Ledger() == Ledger()
    assert Ledger(source="hubspot") != Ledger()
    created = make_event("lead.created", 1.0, lead_id="L1", email="a@example.com", crm_tier="gold")
    assert isinstance(created, LeadCreated)
    data = created.data
    other = data.model_copy()
    object.__setattr__(other, "__pydantic_extra__", {"crm_tier": "silver"})
    assert data.__pydantic_extra__ == {"crm_tier": "gold"}
    assert (data == other) is BaseModel.__eq__(data, other) is False
    assert data == data.model_copy()


def test_models_of_hashable_fields_still_hash_by_value() -> None:
    """Overriding __eq__ must not take pydantic's hash of frozen models away from the models of hashable fields."""
    hashed = 0
    for kind, models in MODELS.items():
        for model in models[:5]:
            try:
                digest = hash(model)
            except TypeError:
                continue  # a dict field (a profile's custom attributes, the clocks): never hashable
            assert digest == hash(model.model_copy()), kind
            hashed += 1
    assert hashed >= 10


def test_a_copy_knows_which_fields_were_given_and_leaves_the_original_alone() -> None:
    ledger = Ledger(source="hubspot")
    assert ledger.model_fields_set == {"source"}
    same_fields = ledger.model_copy(update={"source": "mautic"})
    assert same_fields.model_fields_set == {"source"}
    more = ledger.model_copy(update={"contacts": ()})
    assert more.model_fields_set == {"source", "contacts"}
    assert ledger.model_fields_set == {"source"}  # the original's set is not the copy's
    assert more.model_dump(exclude_unset=True) == {"source": "hubspot", "contacts": ()}


def test_a_model_of_valid_values_is_the_validated_model() -> None:
    """Frozen.of_valid (the pending event the core builds once per event) equals, dumps and knows its given fields
    as the model built with validation does, for every pending event of the stored records."""
    pending = [p for record in RECORDS for p in record.pending]
    assert pending
    for held in pending:
        given = {"event": held.event, "output_ids": held.output_ids}
        built, validated = PendingEvent.of_valid(**given), PendingEvent(**given)
        assert built == validated
        assert built.model_dump_json() == validated.model_dump_json()
        assert built.model_fields_set == validated.model_fields_set == {"event", "output_ids"}
        assert built.model_copy(update={"output_ids": ()}) == validated.model_copy(update={"output_ids": ()})
