"""Identity: one stable lead_id per person across tools, without personal data in it.

The choice (README, "Identity"): a person's lead_id is `lf-` + a keyed hash (HMAC-SHA256, the gateway's identity
key) of their normalized e-mail, so a HubSpot contact and the same person's RD Station conversion are one lead with
no table at all, and the id (and so an erased lead's marker) holds no e-mail. Some payloads name the person only by
the tool's id (HubSpot subscriptions carry the contact's object id, not its e-mail): those ids are aliases in an
identity table (alias -> lead_id), learned from every payload that names both, kept by the gateway in a compacted
topic. A tool id seen before any e-mail gets a lead of its own (a keyed hash of the tool id); when a later payload
links that tool id to an e-mail whose lead already exists, the tool's lead is merged into the e-mail's lead
(`lead.merged`), and later events of the tool id go to the e-mail's lead. (An event that still names the tool's
lead, from a producer that kept the old id, is forwarded there by the worker: core.merges.)

Pure: the table is passed in and the aliases to remember come back with the answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from leadflow.core.adapters import Draft, Person

LEAD_PREFIX = "lf-"
_EMAIL_ALIAS = "email:"  # + keyed hash of the normalized e-mail: the table never holds an e-mail either


def normalize_email(raw: str | None) -> str | None:
    """Trimmed and lower-cased; None when it is not an address (no single @ with text on both sides)."""
    if raw is None:
        return None
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        return None
    return email


def keyed_hash(key: bytes, text: str) -> str:
    """32 hex digits (128 bits) of HMAC-SHA256: stable for a key, not reversible without it."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def email_alias(key: bytes, email: str) -> str:
    return _EMAIL_ALIAS + keyed_hash(key, email)


def lead_id_for_email(key: bytes, email: str) -> str:
    return LEAD_PREFIX + keyed_hash(key, "email\x00" + email)


def lead_id_for_tool_id(key: bytes, tool_id: str) -> str:
    return LEAD_PREFIX + keyed_hash(key, "tool\x00" + tool_id)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Who a person is: their lead, the aliases to remember, and the leads found to be the same person."""

    lead_id: str
    remember: Mapping[str, str]  # alias -> lead_id, new or changed
    merged: tuple[str, ...] = ()  # leads of this person's tool ids that now merge into lead_id
    is_new: bool = False  # no alias of the person was known: the first event of a new lead


def aliases_of(person: Person, key: bytes) -> tuple[str, ...]:
    """The table keys naming this person: their e-mail's (hashed) first, then the tool ids."""
    email = normalize_email(person.email)
    return ((email_alias(key, email),) if email else ()) + person.tool_ids


def aliases_named(drafts: Iterable[Draft], key: bytes) -> set[str]:
    """Every alias the identity step may read or write for these drafts: their people's and the people they merge
    into. Requests naming no common alias decide independently (`resolve` reads only the person's own aliases)."""
    people = (p for draft in drafts for p in (draft.person, draft.merged_into) if p is not None)
    return {alias for person in people for alias in aliases_of(person, key)}


def resolve(person: Person, table: Mapping[str, str], key: bytes) -> Resolution | None:
    """The person's lead_id given what the table knows; None when the person names nobody (no e-mail, no id)."""
    if person.lead_id is not None:
        return Resolution(person.lead_id, {})
    email = normalize_email(person.email)
    aliases = aliases_of(person, key)
    if not aliases:
        return None
    known = [table[alias] for alias in aliases if alias in table]
    if known:
        lead = known[0]  # the e-mail's lead when it is known: it wins over leads of tool ids
    elif email is not None:
        lead = lead_id_for_email(key, email)
    else:
        lead = lead_id_for_tool_id(key, person.tool_ids[0])
    merged = tuple(dict.fromkeys(other for other in known if other != lead))
    remember = {alias: lead for alias in aliases if table.get(alias) != lead}
    return Resolution(lead, remember, merged, is_new=not known)


def forget(person: Person, table: Mapping[str, str], key: bytes) -> tuple[str, ...]:
    """The aliases an erasure removes from the table (those it holds for this person)."""
    return tuple(alias for alias in aliases_of(person, key) if alias in table)
