"""A site's own web form -> canonical drafts (lead.updated + activity).

The form POSTs `application/x-www-form-urlencoded` (a plain HTML form) or a JSON object. Field names leadflow reads
itself, besides the form's own fields:

- `form_id`: the form's id, matched to the policy's forms with source `forms` by `id`; `form` or `form_name`: its
  name, matched by `name`. Optional: an unknown or unnamed form counts as a plain form_submit.
- `email` (or the field the policy's form maps to `email`): required, it is how leadflow knows the person.
- `submission_id` (a hidden field, e.g. a UUID the page makes): the delivery id, so a resent submission repeats
  its event ids. Without it the ids are derived from the form, every field value and the day the submission was
  received: a double click or a retry the same day is one submission, and two identical submissions of the same
  form by the same person on the same day count once (the engagement points of a repeat are lost, a duplicate
  never is counted).
- `submitted_at` (RFC 3339, optional): when the person submitted; else the time the gateway received it.
- `page_url` and `utm_campaign` (optional): the activity's url and campaign.

Other fields go through the form spec's `fields` (hidden fields included); without a spec, only fields named like
a built-in profile attribute (job_title, company, country, ...) are mapped. The spec's persona is set on the lead,
its buying stage kept as the custom attribute buying_stage, and the activity is the spec's `action`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from leadflow.core.adapters import Adapted, Delivery, Draft, Person
from leadflow.core.adapters.form_mapping import activity_data, find_form, form_attributes, profile_data
from leadflow.core.adapters.payload import (
    Invalid,
    event_id,
    first_time,
    json_body,
    mapping,
    optional_text,
    parse_time,
    text_id,
)
from leadflow.schemas.policy import FormSpec

SOURCE = "forms"
FORM_ID = "form_id"
FORM_NAMES = ("form", "form_name")
SUBMISSION_ID = "submission_id"
SUBMITTED_AT = "submitted_at"
PAGE_URL = "page_url"
CAMPAIGN = "utm_campaign"
RESERVED = frozenset({FORM_ID, *FORM_NAMES, SUBMISSION_ID, SUBMITTED_AT, PAGE_URL, CAMPAIGN})
MAX_FIELDS = 200
FORM_ENCODED = "application/x-www-form-urlencoded"


def adapt(delivery: Delivery) -> Adapted:
    try:
        return _drafts(_fields(delivery), delivery)
    except Invalid as invalid:
        return invalid.rejection


def _fields(delivery: Delivery) -> Mapping[str, Any]:
    if delivery.content_type == FORM_ENCODED:
        try:
            pairs = parse_qsl(
                delivery.body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
            )
        except UnicodeDecodeError:
            raise Invalid("(body)", "must be UTF-8 form data") from None
        except ValueError:
            raise Invalid("(body)", f"has more than {MAX_FIELDS} fields") from None
        fields: dict[str, Any] = {}
        for name, value in pairs:  # a repeated name (checkboxes) gives a list
            if name not in fields:
                fields[name] = value
            elif isinstance(fields[name], list):
                fields[name].append(value)
            else:
                fields[name] = [fields[name], value]
        return fields
    if delivery.content_type == "application/json":
        return mapping(json_body(delivery), "(body)", "a JSON object of form fields")
    raise Invalid("(content-type)", f"send the form as {FORM_ENCODED} or application/json")


def _drafts(fields: Mapping[str, Any], delivery: Delivery) -> tuple[Draft, ...]:
    form_id = optional_text(fields.get(FORM_ID))
    names = [text for name in FORM_NAMES if (text := optional_text(fields.get(name)))]
    spec = find_form(delivery.policy, SOURCE, form_id=form_id, names=names)
    own = {name: value for name, value in fields.items() if name not in RESERVED}
    profile = profile_data(form_attributes(own, spec))
    email = profile.get("email")
    if not isinstance(email, str):
        raise Invalid(_email_field(spec), "is required: an e-mail address identifies the person who submitted")
    at = first_time(parse_time(fields.get(SUBMITTED_AT)), fallback=delivery.received_at)
    form_key = form_id or (names[0] if names else "")
    if fields.get(SUBMISSION_ID) not in (None, ""):
        key: tuple[object, ...] = (form_key, text_id(fields.get(SUBMISSION_ID), SUBMISSION_ID))
    else:
        key = (form_key, _fingerprint(fields), delivery.received_at.date().isoformat())
    person = Person(email=email)
    activity = activity_data(spec, url=fields.get(PAGE_URL), campaign=fields.get(CAMPAIGN))
    return (
        Draft(person, event_id(SOURCE, *key, "profile"), "lead.updated", at, SOURCE, profile),
        Draft(person, event_id(SOURCE, *key, "activity"), "activity", at, SOURCE, activity),
    )


def _email_field(spec: FormSpec | None) -> str:
    mapped = [name for name, attribute in (spec.fields if spec else {}).items() if attribute == "email"]
    return mapped[0] if mapped else "email"


def _fingerprint(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, default=str, ensure_ascii=True)
