"""RD Station Marketing webhooks -> canonical drafts.

Two formats arrive at the same endpoint:

- the current one (API 2.0): `{event_type: WEBHOOK.CONVERTED | WEBHOOK.MARKED_OPPORTUNITY, entity_type: CONTACT,
  event_identifier, timestamp, event_timestamp, contact: {uuid, email, name, job_title, city, tags, cf_*,
  company: {name}, funnel: {lifecycle_stage, opportunity, contact_owner_email, interest, fit, origin}, ...}}`;
- the legacy one (API 1.x): `{leads: [{id, uuid, email, company, job_title, created_at, opportunity: "true" |
  "false", first_conversion, last_conversion: {content: {identificador, ...}, created_at, source}, custom_fields,
  lead_stage, fit_score, interest, tags, ...}]}`.

A conversion -> lead.updated (job title, company, cf_* / custom fields as custom attributes, origin, RD's
lifecycle stage, fit and interest) + an activity (the policy's form with source rdstation and id = the conversion
identifier: its action, persona and field mapping; form_submit when the policy does not list it).
WEBHOOK.MARKED_OPPORTUNITY, and a legacy lead whose `opportunity` is "true", -> lead.qualified.

RD Station CRM deal webhooks (`{event_name: crm_deal_*, document: {...}}`) are rejected: the published example
shows the deal (status, amount_total, closed_at, deal_lost_reason) but not, in the part that could be read, how it
names the deal's contact, so a won or lost deal cannot be tied to a lead yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from leadflow.core.adapters import Adapted, Delivery, Draft, Person
from leadflow.core.adapters.form_mapping import activity_data, find_form, form_attributes, profile_data
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
)
from leadflow.schemas.policy import FormSpec

SOURCE = "rdstation"
CONVERTED = "WEBHOOK.CONVERTED"
MARKED_OPPORTUNITY = "WEBHOOK.MARKED_OPPORTUNITY"
QUALIFIED_REASON = "RD Station: marked as opportunity"
# Contact fields of the current format that are profile attributes (cf_* fields are custom attributes).
FUNNEL = {"lifecycle_stage": "rd_lifecycle_stage", "interest": "rd_interest", "fit": "rd_fit", "origin": "origin"}
LEGACY = {
    "company": "company",
    "job_title": "job_title",
    "city": "city",
    "state": "state",
    "tags": "tags",
    "lead_stage": "rd_lifecycle_stage",
    "fit_score": "rd_fit",
    "interest": "rd_interest",
}


def adapt(delivery: Delivery) -> Adapted:
    try:
        body = mapping(json_body(delivery), "(body)", "a JSON object (an RD Station webhook)")
        if "leads" in body:
            return _legacy(body, delivery)
        if "event_name" in body:
            raise Invalid(
                "event_name",
                "RD Station CRM deal webhooks are not supported yet; send won and lost deals as deal.won / "
                "deal.lost canonical events",
            )
        return _current(body, delivery)
    except Invalid as invalid:
        return invalid.rejection


def _person(uuid: object, email: object, path: str) -> Person:
    key = optional_text(uuid)
    address = email_of(email)
    if key is None and address is None:
        raise Invalid(f"{path}.uuid", "is required (or an e-mail): nothing else identifies the contact")
    return Person(email=address, tool_ids=(f"{SOURCE}:{key}",) if key else ())


def _current(body: Mapping[str, Any], delivery: Delivery) -> tuple[Draft, ...]:
    kind = body.get("event_type")
    if kind not in (CONVERTED, MARKED_OPPORTUNITY):
        raise Invalid("event_type", f"{shown(kind)} is not supported; configure {CONVERTED} or {MARKED_OPPORTUNITY}")
    if body.get("entity_type", "CONTACT") != "CONTACT":
        raise Invalid("entity_type", f"{shown(body.get('entity_type'))} is not supported; only CONTACT")
    contact = mapping(body.get("contact"), "contact", "an object (the converted contact)")
    person = _person(contact.get("uuid"), contact.get("email"), "contact")
    identifier = optional_text(body.get("event_identifier"))
    at = first_time(
        parse_time(body.get("event_timestamp")), parse_time(body.get("timestamp")), fallback=delivery.received_at
    )
    spec = find_form(delivery.policy, SOURCE, form_id=identifier) if identifier else None
    profile = profile_data([*_contact_attributes(contact), *form_attributes(_spec_fields(contact, spec), spec)])
    key = (kind, person.tool_ids or person.email, identifier, body.get("event_timestamp") or body.get("timestamp"))

    def draft(type_: str, data: Mapping[str, Any], part: str) -> Draft:
        return Draft(person, event_id(SOURCE, *key, part), type_, at, SOURCE, dict(data))

    updated = draft("lead.updated", profile, "profile")
    if kind == CONVERTED:
        return (updated, draft("activity", activity_data(spec), "activity"))
    return (updated, draft("lead.qualified", {"reason": QUALIFIED_REASON}, "qualified"))


def _contact_attributes(contact: Mapping[str, Any]) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [("email", contact.get("email")), ("job_title", contact.get("job_title"))]
    company = contact.get("company")
    if isinstance(company, Mapping):
        pairs.append(("company", company.get("name")))
    pairs += [("city", contact.get("city")), ("tags", contact.get("tags"))]
    pairs += [(name, value) for name, value in contact.items() if name.startswith("cf_")]
    funnel = contact.get("funnel")
    if isinstance(funnel, Mapping):
        pairs += [(attribute, funnel.get(name)) for name, attribute in FUNNEL.items()]
    return pairs


def _spec_fields(fields: Mapping[str, Any], spec: FormSpec | None) -> dict[str, object]:
    """The fields a form spec maps (only those: the rest is mapped by the tool's own table)."""
    listed = spec.fields if spec is not None else {}
    return {name: value for name, value in fields.items() if name in listed}


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _legacy(body: Mapping[str, Any], delivery: Delivery) -> tuple[Draft, ...]:
    leads = body.get("leads")
    if not isinstance(leads, list):
        raise Invalid("leads", "must be a list of leads (RD Station's legacy webhook)")
    return tuple(draft for index, lead in enumerate(leads) for draft in _legacy_lead(index, lead, delivery))


def _legacy_lead(index: int, raw: object, delivery: Delivery) -> tuple[Draft, ...]:
    path = f"leads[{index}]"
    lead = mapping(raw, path, "an object (one lead)")
    person = _person(lead.get("uuid") or lead.get("id"), lead.get("email"), path)
    conversion = _object(lead.get("last_conversion") or lead.get("first_conversion"))
    content = _object(conversion.get("content"))
    identifier = optional_text(content.get("identificador"))
    at: datetime = first_time(
        parse_time(conversion.get("created_at")), parse_time(lead.get("created_at")), fallback=delivery.received_at
    )
    spec = find_form(delivery.policy, SOURCE, form_id=identifier) if identifier else None
    custom = lead.get("custom_fields")
    pairs: list[tuple[str, object]] = [("email", lead.get("email"))]
    pairs += [(attribute, lead.get(name)) for name, attribute in LEGACY.items()]
    pairs += list(custom.items()) if isinstance(custom, Mapping) else []
    pairs.append(("origin", conversion.get("source")))
    pairs += form_attributes({**_spec_fields(lead, spec), **_spec_fields(content, spec)}, spec)
    who = person.tool_ids or person.email
    key = ("legacy", who, identifier, conversion.get("created_at"), conversion.get("cumulative_sum"))

    def draft(type_: str, data: Mapping[str, Any], *parts: object) -> Draft:
        return Draft(person, event_id(SOURCE, *parts), type_, at, SOURCE, dict(data))

    drafts = [draft("lead.updated", profile_data(pairs), *key, "profile")]
    if conversion:
        drafts.append(draft("activity", activity_data(spec), *key, "activity"))
    if str(lead.get("opportunity")).lower() == "true":
        # The legacy payload says what the lead *is*, not what just happened: one id per person, so only the first
        # delivery that finds it an opportunity qualifies it (a later conversion does not re-qualify a recycled lead).
        drafts.append(draft("lead.qualified", {"reason": QUALIFIED_REASON}, "legacy", who, "qualified"))
    return tuple(drafts)
