"""Form submissions and tool fields -> profile attributes: the policy's form lookup and the field mapping all
adapters share.

A tool's field becomes a built-in profile attribute (schemas.events.ProfileAttributes) when the form spec or the
tool's own field table maps it to one, and its value fits (a country becomes ISO alpha-2, a code becomes a
lower-case code, a size an integer); a value that does not fit is kept as the custom attribute `<attribute>_raw`
instead of producing an invalid event. Anything else is a custom attribute: names become lower-case codes, values
scalars of at most 500 characters (lists are joined), at most 50 per event. Personal data other than the e-mail
(names, phones, addresses, social profiles) is never mapped: leadflow keys people by e-mail and tool ids only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from leadflow.core.adapters.country import country_code
from leadflow.core.adapters.payload import email_of
from leadflow.schemas.events import (
    MAX_CUSTOM_ATTRIBUTES,
    MAX_CUSTOM_NAME,
    MAX_CUSTOM_NUMBER,
    MAX_CUSTOM_TEXT,
    PROFILE_ATTRIBUTES,
    CustomValue,
)
from leadflow.schemas.policy import FormSpec, Policy

CODE_ATTRIBUTES = frozenset({"seniority", "industry", "persona", "territory", "segment"})
TEXT_ATTRIBUTES = frozenset({"job_title", "company"})
MAX_COMPANY_SIZE = 10_000_000
# Personal data leadflow does not keep (GUIDE: the e-mail and the tools' ids are the only person keys).
PERSONAL_FIELDS = frozenset(
    {
        "name",
        "nome",
        "fullname",
        "full_name",
        "firstname",
        "first_name",
        "lastname",
        "last_name",
        "title",
        "salutation",
        "phone",
        "telefone",
        "mobile",
        "mobilephone",
        "personal_phone",
        "mobile_phone",
        "fax",
        "address",
        "address1",
        "address2",
        "zip",
        "zipcode",
        "bio",
        "facebook",
        "linkedin",
        "twitter",
        "instagram",
        "skype",
        "foursquare",
        "googleplus",
        "ip_address",
        "date_of_birth",
        "birthday",
    }
)
_PERSONAL_PARTS = ("phone", "firstname", "lastname", "birth")
# Field names of lead.created data that are not profile attributes: a custom attribute may not take them.
RESERVED = frozenset({"initial_stage"})


def find_form(policy: Policy, source: str, *, form_id: str | None = None, names: Iterable[str] = ()) -> FormSpec | None:
    """The policy's form for this submission: by the tool's id first, then by name or alias."""
    forms = [form for form in policy.forms if form.source == source]
    if form_id is not None:
        for form in forms:
            if form.id == form_id:
                return form
    wanted = [name for name in names if name]
    for name in wanted:
        for form in forms:
            if form.name is not None and form.name == name:
                return form
    return None


def slug(name: str) -> str | None:
    """A name as a lower-case code (`Job Title` -> `job_title`, `região` -> `regiao`), None when nothing is left."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    code = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", ascii_only)).strip("_")
    if not code:
        return None
    if not code[0].isalpha():
        code = f"f_{code}"
    return code[:MAX_CUSTOM_NAME].rstrip("_")


def is_personal(name: str) -> bool:
    code = slug(name) or ""
    return code in PERSONAL_FIELDS or any(part in code for part in _PERSONAL_PARTS)


def scalar(value: object) -> CustomValue | None:
    """A custom attribute value: text up to 500 characters (lists joined), a bounded number, true/false.
    None when there is nothing usable (null, empty, an object)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value if abs(value) <= MAX_CUSTOM_NUMBER else str(value)[:MAX_CUSTOM_TEXT]
    if isinstance(value, str):
        text = value.strip()
        return text[:MAX_CUSTOM_TEXT] if text else None
    if isinstance(value, list | tuple):
        parts = [str(item).strip() for item in value if isinstance(item, str | int | float) and str(item).strip()]
        return ", ".join(parts)[:MAX_CUSTOM_TEXT] if parts else None
    return None


def _company_size(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if 0 <= number <= MAX_COMPANY_SIZE else None


def builtin_value(attribute: str, value: object) -> object | None:
    """The value as the built-in attribute takes it, or None when it does not fit."""
    if attribute == "email":
        return email_of(value)
    if attribute == "country":
        return country_code(value)
    if attribute == "company_size":
        return _company_size(value)
    text = scalar(value)
    if not isinstance(text, str):
        return None
    if attribute in CODE_ATTRIBUTES:
        return slug(text)
    return text  # job_title, company: text up to 500 characters


def profile_data(attributes: Iterable[tuple[str, object]]) -> dict[str, Any]:
    """`data` for lead.updated / lead.created from (attribute, value) pairs, later pairs winning. Built-in
    attributes are checked; custom ones named as codes; empty values dropped; at most 50 custom attributes."""
    data: dict[str, Any] = {}
    custom: dict[str, CustomValue] = {}
    for raw_name, value in attributes:
        name = slug(raw_name)
        if name is None:
            continue
        if name in PROFILE_ATTRIBUTES:
            fitted = builtin_value(name, value)
            if fitted is not None:
                data[name] = fitted
                continue
            name = f"{name}_raw"
        elif name in RESERVED:
            name = f"{name}_raw"
        kept = scalar(value)
        if kept is not None:
            custom.pop(name, None)
            custom[name] = kept
    kept_custom = dict(list(custom.items())[-MAX_CUSTOM_ATTRIBUTES:])
    return {**kept_custom, **data}


def form_attributes(
    fields: Mapping[str, object], spec: FormSpec | None, native: Mapping[str, str] | None = None
) -> list[tuple[str, object]]:
    """(attribute, value) pairs a submission sets: each field through the form spec's `fields`, else the tool's
    own table (`native`), else a field named like a built-in attribute; other fields are not mapped. The spec's
    persona and buying stage come last."""
    table = {**(native or {}), **(spec.fields if spec else {})}
    pairs: list[tuple[str, object]] = []
    for name, value in fields.items():
        attribute = table.get(name) or (slug(name) if slug(name) in PROFILE_ATTRIBUTES else None)
        if attribute is not None and (attribute == "email" or not is_personal(name) or name in table):
            pairs.append((attribute, value))
    if spec is not None and spec.persona is not None:
        pairs.append(("persona", spec.persona))
    if spec is not None and spec.buying_stage is not None:
        pairs.append(("buying_stage", spec.buying_stage))
    return pairs


def activity_data(spec: FormSpec | None, *, url: object = None, campaign: object = None) -> dict[str, Any]:
    """`data` of the activity a submission counts as: the spec's action (form_submit when the form is unknown)."""
    data: dict[str, Any] = {"action": spec.action if spec else "form_submit"}
    if isinstance(url, str) and url.strip() and len(url.strip()) <= 2000:
        data["url"] = url.strip()
    label = scalar(campaign)
    if isinstance(label, str):
        data["campaign"] = label
    return data
