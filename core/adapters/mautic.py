"""Mautic webhooks -> canonical drafts.

Mautic POSTs `{"mautic.<event>": [payload, ...], ...}` (queued webhooks batch several event types in one body);
a payload carries the contact as `contact` (`lead` in older versions) with `id`, `points`, `dateAdded`,
`dateModified` and `fields.{core,social,personal,professional}.<alias>.value`, and a `timestamp`.

- mautic.lead_post_save_new -> lead.created with the profile (position -> job_title, company, country as ISO code,
  other non-personal fields as custom attributes, points as mautic_points)
- mautic.lead_post_save_update -> lead.updated with the profile
- mautic.lead_points_change (`points.old_points` / `points.new_points`) -> lead.updated {mautic_points}
- mautic.form_on_submit (`submission{id, form{id, name, alias}, lead, results, dateSubmitted, referer}`) ->
  lead.updated (the results through the policy's form with source mautic, by id, then alias or name) + activity
- mautic.lead_post_delete (`{id, contact, timestamp}`) -> lead.erased
- any other mautic.* event -> a Rejection naming it

Mautic sends no delivery id: event ids come from what identifies the change (the contact id and its modification
time, the submission id), so a redelivered payload repeats them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from leadflow.core.adapters import Adapted, Delivery, Draft, Person
from leadflow.core.adapters.form_mapping import activity_data, find_form, form_attributes, is_personal, profile_data
from leadflow.core.adapters.payload import (
    Invalid,
    email_of,
    event_id,
    first_time,
    json_body,
    mapping,
    optional_text,
    parse_time,
    shown,
    text_id,
)

SOURCE = "mautic"
PREFIX = "mautic."
FIELD_GROUPS = ("core", "personal", "professional")  # social profiles are personal data: not mapped
NATIVE = {"position": "job_title", "company": "company", "country": "country", "email": "email"}
SUPPORTED = (
    "mautic.lead_post_save_new, mautic.lead_post_save_update, mautic.lead_points_change, mautic.form_on_submit, "
    "mautic.lead_post_delete"
)


def adapt(delivery: Delivery) -> Adapted:
    try:
        body = mapping(json_body(delivery), "(body)", 'a JSON object {"mautic.<event>": [...]}')
        events = [(name, items) for name, items in body.items() if isinstance(name, str) and name.startswith(PREFIX)]
        if not events:
            raise Invalid("(body)", f"holds no mautic.<event> list; configure the webhook with {SUPPORTED}")
        fallback = first_time(parse_time(body.get("timestamp")), fallback=delivery.received_at)
        return tuple(
            draft
            for name, items in events
            for index, item in _items(name, items)
            for draft in _drafts(name, f"{name}[{index}]", item, fallback, delivery)
        )
    except Invalid as invalid:
        return invalid.rejection


def _items(name: str, items: object) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if not isinstance(items, list):
        raise Invalid(name, "must be a list of event payloads")
    for index, item in enumerate(items):
        yield index, mapping(item, f"{name}[{index}]", "an event payload object")


def _drafts(name: str, path: str, item: Mapping[str, Any], fallback: datetime, delivery: Delivery) -> tuple[Draft, ...]:
    at = first_time(parse_time(item.get("timestamp")), fallback=fallback)
    match name.removeprefix(PREFIX):
        case "lead_post_save_new":
            contact, person = _contact(item, path)
            at = first_time(parse_time(item.get("timestamp")), parse_time(contact.get("dateAdded")), fallback=at)
            return (_draft(person, "lead.created", _profile(contact), at, name, person.tool_ids),)
        case "lead_post_save_update":
            contact, person = _contact(item, path)
            modified = contact.get("dateModified") or item.get("timestamp")
            at = first_time(parse_time(item.get("timestamp")), parse_time(contact.get("dateModified")), fallback=at)
            return (_draft(person, "lead.updated", _profile(contact), at, name, person.tool_ids, modified),)
        case "lead_points_change":
            return _points(name, path, item, at)
        case "form_on_submit":
            return _submission(path, item, at, delivery)
        case "lead_post_delete":
            deleted = item.get("contact") or item.get("lead")
            fields = deleted if isinstance(deleted, Mapping) else {}
            person = Person(email=_email(fields), tool_ids=(f"{SOURCE}:{text_id(item.get('id'), f'{path}.id')}",))
            return (_draft(person, "lead.erased", {}, at, name, person.tool_ids),)
        case _:
            raise Invalid(name, f"{shown(name)} is not supported; configure the webhook with {SUPPORTED}")


def _draft(person: Person, type_: str, data: Mapping[str, Any], at: datetime, *key: object) -> Draft:
    return Draft(person, event_id(SOURCE, *key), type_, at, SOURCE, dict(data))


def _contact(item: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], Person]:
    key = "contact" if "contact" in item else "lead"
    contact = mapping(item.get(key), f"{path}.contact", "an object (the Mautic contact)")
    contact_id = text_id(contact.get("id"), f"{path}.{key}.id")
    return contact, Person(email=_email(contact), tool_ids=(f"{SOURCE}:{contact_id}",))


def _fields(contact: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """(alias, value) of every field in the mapped groups (an empty group is a JSON list, not an object)."""
    groups = contact.get("fields")
    if not isinstance(groups, Mapping):
        return
    for group in FIELD_GROUPS:
        fields = groups.get(group)
        if not isinstance(fields, Mapping):
            continue
        for alias, field in fields.items():
            if isinstance(field, Mapping):
                yield str(alias), field.get("value")


def _email(contact: Mapping[str, Any]) -> str | None:
    return next((email_of(value) for alias, value in _fields(contact) if alias == "email"), None)


def _profile(contact: Mapping[str, Any]) -> dict[str, Any]:
    pairs = [(NATIVE.get(alias, alias), value) for alias, value in _fields(contact) if not is_personal(alias)]
    points = contact.get("points")
    if isinstance(points, int) and not isinstance(points, bool):
        pairs.append(("mautic_points", points))
    return profile_data(pairs)


def _points(name: str, path: str, item: Mapping[str, Any], at: datetime) -> tuple[Draft, ...]:
    _, person = _contact(item, path)
    points = mapping(item.get("points"), f"{path}.points", "an object {old_points, new_points}")
    new = points.get("new_points")
    if isinstance(new, bool) or not isinstance(new, int):
        raise Invalid(f"{path}.points.new_points", "must be an integer (the contact's points after the change)")
    key = (name, person.tool_ids, points.get("old_points"), new, item.get("timestamp"))
    return (_draft(person, "lead.updated", {"mautic_points": new}, at, *key),)


def _submission(path: str, item: Mapping[str, Any], at: datetime, delivery: Delivery) -> tuple[Draft, ...]:
    submission = mapping(item.get("submission"), f"{path}.submission", "an object (the form submission)")
    where = f"{path}.submission"
    submission_id = text_id(submission.get("id"), f"{where}.id")
    form = mapping(submission.get("form"), f"{where}.form", "an object {id, name, alias}")
    results = submission.get("results")
    results = results if isinstance(results, Mapping) else {}
    lead = submission.get("lead")
    lead = lead if isinstance(lead, Mapping) else {}
    lead_id = optional_text(lead.get("id"))
    email = _email(lead) or email_of(results.get("email"))
    if lead_id is None and email is None:
        raise Invalid(f"{where}.lead.id", "is required (or an email result): nothing else identifies the contact")
    person = Person(email=email, tool_ids=(f"{SOURCE}:{lead_id}",) if lead_id else ())
    names = (optional_text(form.get("alias")) or "", optional_text(form.get("name")) or "")
    spec = find_form(delivery.policy, SOURCE, form_id=optional_text(form.get("id")), names=names)
    at = first_time(parse_time(submission.get("dateSubmitted")), fallback=at)
    profile = profile_data(form_attributes(results, spec))
    activity = activity_data(spec, url=submission.get("referer"))
    return (
        _draft(person, "lead.updated", profile, at, "form", submission_id, "profile"),
        _draft(person, "activity", activity, at, "form", submission_id, "activity"),
    )
