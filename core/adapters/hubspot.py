"""HubSpot Webhooks API (v3 signature) -> canonical drafts.

HubSpot POSTs a JSON array of events, each `{eventId, subscriptionId, portalId, appId, occurredAt (ms),
subscriptionType, attemptNumber, objectId, changeFlag?, changeSource, sourceId, propertyName?, propertyValue?}`;
contact.merge adds `primaryObjectId`, `mergedObjectIds`, `newObjectId`, `numberOfPropertiesMoved`.

- contact.creation -> lead.created
- contact.propertyChange -> by property: lifecyclestage (marketingqualifiedlead -> lead.qualified,
  salesqualifiedlead -> lead.accepted, customer -> deal.won without amount; every value is also kept as the custom
  attribute hubspot_lifecyclestage), hs_lead_status (ATTEMPTED_TO_CONTACT / CONNECTED -> contact.attempted,
  UNQUALIFIED -> lead.disqualified; also kept as hs_lead_status), hubspot_owner_id -> lead.assigned, email ->
  lead.updated with the e-mail, recent_conversion_event_name -> the form's activity (policy forms, source hubspot,
  by name), jobtitle/company/industry/country/numemployees/hs_persona -> built-in attributes, names and phones ->
  nothing, any other property (scores as numbers) -> a custom attribute
- contact.merge -> lead.merged for each merged contact, into the primary one
- contact.deletion, contact.privacyDeletion -> lead.erased
- contact.restore, contact.associationChange -> nothing (no canonical meaning)
- any other type (company.*, deal.*, ...) -> a Rejection naming `[i].subscriptionType`

Event ids come from portalId + eventId, so a retry (attemptNumber > 0) repeats the ids and the worker drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from leadflow.core.adapters import Adapted, Delivery, Draft, Person
from leadflow.core.adapters.form_mapping import (
    activity_data,
    find_form,
    form_attributes,
    is_personal,
    profile_data,
    scalar,
    slug,
)
from leadflow.core.adapters.payload import (
    Invalid,
    email_of,
    event_id,
    first_time,
    json_body,
    mapping,
    parse_millis,
    shown,
    text_id,
)

SOURCE = "hubspot"
# HubSpot's default contact properties that are built-in profile attributes.
NATIVE = {
    "jobtitle": "job_title",
    "company": "company",
    "industry": "industry",
    "country": "country",
    "numemployees": "company_size",
    "hs_persona": "persona",
}
LIFECYCLE_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "marketingqualifiedlead": ("lead.qualified", {"reason": "HubSpot lifecycle stage marketingqualifiedlead"}),
    "salesqualifiedlead": ("lead.accepted", {}),
    "customer": ("deal.won", {}),
}
LEAD_STATUS_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ATTEMPTED_TO_CONTACT": ("contact.attempted", {"channel": "other", "outcome": "no_answer"}),
    "CONNECTED": ("contact.attempted", {"channel": "other", "outcome": "connected"}),
    "UNQUALIFIED": ("lead.disqualified", {"reason": "HubSpot lead status UNQUALIFIED"}),
}
IGNORED_TYPES = frozenset({"contact.restore", "contact.associationChange"})
SUPPORTED = (
    "contact.creation, contact.propertyChange, contact.merge, contact.deletion, contact.privacyDeletion "
    "(contact.restore and contact.associationChange are accepted and ignored)"
)


@dataclass(frozen=True, slots=True)
class Event:
    """One item of the array, with what every draft of it needs."""

    index: int
    body: Mapping[str, Any]
    portal: str
    event_key: str
    at: datetime

    def path(self, name: str) -> str:
        return f"[{self.index}].{name}"

    def person(self, object_id: str, email: str | None = None) -> Person:
        return Person(email=email, tool_ids=(f"{SOURCE}:{self.portal}:{object_id}",))

    def draft(self, person: Person, type_: str, data: Mapping[str, Any], kind: str) -> Draft:
        return Draft(
            person=person,
            event_id=event_id(SOURCE, self.portal, self.event_key, kind),
            type=type_,
            occurred_at=self.at,
            source=SOURCE,
            data=dict(data),
        )


def adapt(delivery: Delivery) -> Adapted:
    try:
        body = json_body(delivery)
        if not isinstance(body, list):
            raise Invalid("(body)", "must be a JSON array of HubSpot webhook events")
        return tuple(draft for index, item in enumerate(body) for draft in _drafts(index, item, delivery))
    except Invalid as invalid:
        return invalid.rejection


def _drafts(index: int, item: object, delivery: Delivery) -> tuple[Draft, ...]:
    body = mapping(item, f"[{index}]", "an event object")
    kind = body.get("subscriptionType")
    if not isinstance(kind, str) or not kind:
        raise Invalid(f"[{index}].subscriptionType", f"is required; subscribe to {SUPPORTED}")
    event = Event(
        index=index,
        body=body,
        portal=text_id(body.get("portalId"), f"[{index}].portalId"),
        event_key=text_id(body.get("eventId"), f"[{index}].eventId"),
        at=first_time(parse_millis(body.get("occurredAt")), fallback=delivery.received_at),
    )
    match kind:
        case "contact.creation":
            return (event.draft(event.person(_object_id(event)), "lead.created", {}, "created"),)
        case "contact.propertyChange":
            return _property_change(event, delivery)
        case "contact.merge":
            return _merge(event)
        case "contact.deletion" | "contact.privacyDeletion":
            return (event.draft(event.person(_object_id(event)), "lead.erased", {}, "erased"),)
        case _ if kind in IGNORED_TYPES:
            return ()
        case _:
            raise Invalid(
                event.path("subscriptionType"),
                f"{shown(kind)} is not supported: leadflow follows contacts only; subscribe to {SUPPORTED}",
            )


def _object_id(event: Event, name: str = "objectId") -> str:
    return text_id(event.body.get(name), event.path(name))


def _property_change(event: Event, delivery: Delivery) -> tuple[Draft, ...]:
    name = event.body.get("propertyName")
    if not isinstance(name, str) or not name.strip():
        raise Invalid(event.path("propertyName"), "is required for contact.propertyChange (the property that changed)")
    raw = event.body.get("propertyValue")
    if raw is not None and not isinstance(raw, str | int | float | bool):
        raise Invalid(event.path("propertyValue"), "must be a string (HubSpot sends property values as text)")
    value = raw.strip() if isinstance(raw, str) else raw
    person = event.person(_object_id(event))
    match name.strip().lower():
        case "lifecyclestage":
            return _mapped(event, person, "hubspot_lifecyclestage", value, LIFECYCLE_EVENTS.get(str(value).lower()))
        case "hs_lead_status":
            return _mapped(event, person, "hs_lead_status", value, LEAD_STATUS_EVENTS.get(str(value).upper()))
        case "hubspot_owner_id":
            if value in (None, ""):
                return (event.draft(person, "lead.updated", {"hubspot_owner_id": None}, "profile"),)
            owner = text_id(value, event.path("propertyValue"))
            return (event.draft(person, "lead.assigned", {"owner_id": owner}, "assigned"),)
        case "email":
            return _email(event, person, value)
        case "recent_conversion_event_name":
            return _conversion(event, person, value, delivery)
        case property_name:
            return _profile(event, person, property_name, value)


def _merge(event: Event) -> tuple[Draft, ...]:
    """Each merged (secondary) contact becomes part of the primary one; a new object made by the merge names the
    same person, so identity finds the surviving lead under either id."""
    primary = _object_id(event, "primaryObjectId")
    merged = event.body.get("mergedObjectIds")
    if not isinstance(merged, list) or not merged:
        raise Invalid(event.path("mergedObjectIds"), "is required for contact.merge: the ids merged into the primary")
    new = event.body.get("newObjectId")
    survivor = (primary,) if new in (None, "") else tuple(dict.fromkeys((primary, _object_id(event, "newObjectId"))))
    into = Person(tool_ids=tuple(f"{SOURCE}:{event.portal}:{object_id}" for object_id in survivor))
    drafts = []
    for position, raw in enumerate(merged):
        object_id = text_id(raw, event.path(f"mergedObjectIds[{position}]"))
        if object_id in survivor:
            continue
        draft = event.draft(event.person(object_id), "lead.merged", {}, f"merged:{object_id}")
        drafts.append(replace(draft, merged_into=into))
    return tuple(drafts)


def _mapped(
    event: Event, person: Person, attribute: str, value: object, canonical: tuple[str, dict[str, Any]] | None
) -> tuple[Draft, ...]:
    """The value kept as a custom attribute, and the canonical event it means, if any."""
    # As any custom attribute: bounded text or number (a huge number is kept as text), "" clears it.
    kept = (event.draft(person, "lead.updated", {attribute: scalar(value)}, "profile"),)
    if canonical is None:
        return kept
    type_, data = canonical
    return (*kept, event.draft(person, type_, data, "stage"))


def _email(event: Event, person: Person, value: object) -> tuple[Draft, ...]:
    email = email_of(value)
    if email is None:
        return ()  # cleared or not an address: nothing to key the person by
    return (event.draft(Person(email=email, tool_ids=person.tool_ids), "lead.updated", {"email": email}, "profile"),)


def _conversion(event: Event, person: Person, value: object, delivery: Delivery) -> tuple[Draft, ...]:
    if not isinstance(value, str) or not value:
        return ()
    spec = find_form(delivery.policy, SOURCE, names=(value,))
    profile = profile_data(form_attributes({}, spec))
    activity = event.draft(person, "activity", activity_data(spec), "activity")
    if not profile:
        return (activity,)
    return (event.draft(person, "lead.updated", profile, "profile"), activity)


def _profile(event: Event, person: Person, name: str, value: object) -> tuple[Draft, ...]:
    if is_personal(name):
        return ()
    attribute = NATIVE.get(name) or slug(name)
    if attribute is None:
        return ()
    if value in (None, ""):
        data: dict[str, Any] = {attribute: None}
    else:
        data = profile_data([(attribute, _number(value) if "score" in name else value)])
    return (event.draft(person, "lead.updated", data, "profile"),) if data else ()


def _number(value: object) -> object:
    """Scores arrive as text ("42", "12.5"): numbers, so fit rules can compare them with min/max."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if abs(number) < float("inf") else value
