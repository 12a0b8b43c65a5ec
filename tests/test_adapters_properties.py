"""Property tests: whatever a tool (or an attacker) sends, an adapter answers drafts that validate, or a Rejection
that names a field and quotes no e-mail; it never raises."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_adapters_support import delivery, envelope, fixture

from leadflow.core.adapters import Adapted, Rejection
from leadflow.core.adapters.registry import ADAPTERS

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
TOOLS = st.sampled_from(sorted(ADAPTERS))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(adapted: Adapted) -> None:
    if isinstance(adapted, Rejection):
        assert adapted.field
        assert adapted.reason
        assert EMAIL.search(str(adapted)) is None
        return
    for draft in adapted:
        envelope(draft)


@SETTINGS
@given(tool=TOOLS, body=json_values)
def test_arbitrary_json_never_raises(tool: str, body: Any) -> None:
    check(ADAPTERS[tool](delivery(json.dumps(body))))


@SETTINGS
@given(tool=TOOLS, body=st.binary(max_size=200), form=st.booleans())
def test_arbitrary_bytes_never_raise(tool: str, body: bytes, form: bool) -> None:
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    check(ADAPTERS[tool](delivery(body, content_type)))


@SETTINGS
@given(
    index=st.integers(min_value=0, max_value=12),
    key=st.sampled_from(
        ["propertyName", "propertyValue", "objectId", "occurredAt", "portalId", "eventId", "mergedObjectIds"]
    ),
    value=json_values,
)
def test_hubspot_event_with_any_field_value(index: int, key: str, value: Any) -> None:
    body = fixture("hubspot_contacts.json")
    body[index][key] = value
    check(ADAPTERS["hubspot"](delivery(body)))


@pytest.mark.parametrize("value", [1.0000000000000001e18, -1e19, 10**30])
def test_hubspot_huge_numbers_stay_valid_custom_attributes(value: Any) -> None:
    """Found by the property above: a number past the custom-attribute bound is kept as text, not invalid."""
    body = fixture("hubspot_contacts.json")
    body[2]["propertyValue"] = value
    check(ADAPTERS["hubspot"](delivery(body)))


@SETTINGS
@given(name=st.text(min_size=1, max_size=80), value=json_values)
def test_rdstation_contact_with_any_custom_field(name: str, value: Any) -> None:
    body = fixture("rdstation_converted.json")
    body["contact"][name] = value
    check(ADAPTERS["rdstation"](delivery(body)))


@SETTINGS
@given(fields=st.dictionaries(st.text(min_size=1, max_size=20), json_values, max_size=8))
def test_form_with_any_fields(fields: dict[str, Any]) -> None:
    check(ADAPTERS["forms"](delivery({**fields, "email": "someone@example.org"})))


@SETTINGS
@given(results=st.dictionaries(st.text(min_size=1, max_size=20), json_values, max_size=8))
def test_mautic_submission_with_any_results(results: dict[str, Any]) -> None:
    body = fixture("mautic_form_on_submit.json")
    body["mautic.form_on_submit"][0]["submission"]["results"] = results
    check(ADAPTERS["mautic"](delivery(body)))
