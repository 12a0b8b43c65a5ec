"""Identity: one lead per person across tools, no e-mail in ids or in the table (core/identity.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from leadflow.core.adapters import Draft, Person
from leadflow.core.identity import (
    LEAD_PREFIX,
    aliases_named,
    email_alias,
    forget,
    keyed_hash,
    lead_id_for_email,
    normalize_email,
    resolve,
)

KEY = b"test-identity-key"


def test_normalize_email_trims_and_lowers_and_refuses_non_addresses() -> None:
    assert normalize_email("  Ana.Silva@Example.COM ") == "ana.silva@example.com"
    assert normalize_email("no-at-sign") is None
    assert normalize_email("@example.com") is None
    assert normalize_email("ana@") is None
    assert normalize_email("ana silva@example.com") is None
    assert normalize_email(None) is None


def test_the_same_email_from_two_tools_is_one_lead_without_a_table() -> None:
    hubspot = resolve(Person(email="Ana@Example.com", tool_ids=("hubspot:1:42",)), {}, KEY)
    rdstation = resolve(Person(email="ana@example.com ", tool_ids=("rdstation:u-1",)), {}, KEY)
    assert hubspot is not None
    assert rdstation is not None
    assert hubspot.lead_id == rdstation.lead_id == lead_id_for_email(KEY, "ana@example.com")


def test_lead_ids_and_aliases_hold_no_email() -> None:
    who = resolve(Person(email="ana@example.com", tool_ids=("mautic:52",)), {}, KEY)
    assert who is not None
    assert who.lead_id.startswith(LEAD_PREFIX)
    assert "ana" not in who.lead_id
    assert "example" not in who.lead_id
    assert all("ana" not in alias and "example" not in alias for alias in who.remember)
    assert set(who.remember) == {email_alias(KEY, "ana@example.com"), "mautic:52"}


def test_another_key_gives_another_lead_id() -> None:
    a = resolve(Person(email="ana@example.com"), {}, KEY)
    b = resolve(Person(email="ana@example.com"), {}, b"another-key")
    assert a is not None
    assert b is not None
    assert a.lead_id != b.lead_id


def test_a_tool_id_learned_with_an_email_routes_later_events_to_that_lead() -> None:
    table: dict[str, str] = {}
    first = resolve(Person(email="ana@example.com", tool_ids=("hubspot:1:42",)), table, KEY)
    assert first is not None
    table.update(first.remember)
    later = resolve(Person(tool_ids=("hubspot:1:42",)), table, KEY)  # a property change: only the object id
    assert later is not None
    assert later.lead_id == first.lead_id
    assert later.remember == {}
    assert later.merged == ()


def test_a_tool_id_seen_first_gets_its_own_lead_and_is_merged_into_the_email_lead_when_linked() -> None:
    table: dict[str, str] = {}
    contact = resolve(Person(tool_ids=("hubspot:1:42",)), table, KEY)  # contact.creation carries no e-mail
    assert contact is not None
    table.update(contact.remember)
    elsewhere = resolve(Person(email="ana@example.com", tool_ids=("rdstation:u-1",)), table, KEY)
    assert elsewhere is not None
    table.update(elsewhere.remember)
    assert elsewhere.lead_id != contact.lead_id
    linked = resolve(Person(email="ana@example.com", tool_ids=("hubspot:1:42",)), table, KEY)
    assert linked is not None
    assert linked.lead_id == elsewhere.lead_id  # the e-mail's lead wins
    assert linked.merged == (contact.lead_id,)
    assert linked.remember == {"hubspot:1:42": elsewhere.lead_id}


def test_a_tool_id_seen_first_keeps_its_lead_when_the_email_is_new() -> None:
    table: dict[str, str] = {}
    contact = resolve(Person(tool_ids=("hubspot:1:42",)), table, KEY)
    assert contact is not None
    table.update(contact.remember)
    linked = resolve(Person(email="ana@example.com", tool_ids=("hubspot:1:42",)), table, KEY)
    assert linked is not None
    assert linked.lead_id == contact.lead_id
    assert linked.merged == ()
    assert linked.remember == {email_alias(KEY, "ana@example.com"): contact.lead_id}


def test_a_canonical_lead_id_is_kept_and_a_person_naming_nobody_is_none() -> None:
    assert resolve(Person(lead_id="crm-7"), {}, KEY) == resolve(Person(lead_id="crm-7", email="x@y.z"), {}, KEY)
    kept = resolve(Person(lead_id="crm-7"), {}, KEY)
    assert kept is not None
    assert kept.lead_id == "crm-7"
    assert kept.remember == {}
    assert resolve(Person(), {}, KEY) is None
    assert resolve(Person(email="not an address"), {}, KEY) is None


def test_forget_names_the_aliases_the_table_holds_for_the_person() -> None:
    who = resolve(Person(email="ana@example.com", tool_ids=("mautic:52",)), {}, KEY)
    assert who is not None
    table = dict(who.remember)
    assert set(forget(Person(email="ANA@example.com", tool_ids=("mautic:52", "mautic:99")), table, KEY)) == set(table)


emails = st.emails()
tool_ids = st.lists(st.sampled_from(["hubspot:1:1", "hubspot:1:2", "rdstation:a", "mautic:3"]), max_size=3, unique=True)


@given(st.lists(st.tuples(st.one_of(st.none(), emails), tool_ids), min_size=1, max_size=12))
def test_every_alias_points_at_one_lead_and_resolving_again_changes_nothing(
    people: list[tuple[str | None, list[str]]],
) -> None:
    table: dict[str, str] = {}
    for email, ids in people:
        who = resolve(Person(email=email, tool_ids=tuple(ids)), table, KEY)
        if who is None:
            assert normalize_email(email) is None
            assert not ids
            continue
        table.update(who.remember)
        again = resolve(Person(email=email, tool_ids=tuple(ids)), table, KEY)
        assert again is not None
        assert again.lead_id == who.lead_id
        assert again.remember == {}
        assert again.merged == ()
        assert who.lead_id not in who.merged


@given(
    st.lists(st.tuples(st.one_of(st.none(), emails), tool_ids), min_size=1, max_size=8),
    st.one_of(st.none(), emails),
    tool_ids,
    st.one_of(st.none(), st.tuples(st.one_of(st.none(), emails), tool_ids)),
)
def test_resolving_reads_and_writes_only_the_aliases_a_request_names(
    known: list[tuple[str | None, list[str]]],
    email: str | None,
    ids: list[str],
    into: tuple[str | None, list[str]] | None,
) -> None:
    """What the gateway's alias locks rely on: requests naming no common alias decide independently."""
    table: dict[str, str] = {}
    for other_email, other_ids in known:
        who = resolve(Person(email=other_email, tool_ids=tuple(other_ids)), table, KEY)
        table.update(who.remember if who else {})
    person, merged_into = Person(email=email, tool_ids=tuple(ids)), into and Person(into[0], tuple(into[1]))
    draft = Draft(person, "e1", "activity", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "forms", merged_into=merged_into)
    named = aliases_named([draft], KEY)
    only_named = {alias: lead for alias, lead in table.items() if alias in named}
    for someone in (person, merged_into):
        if someone is not None:
            assert resolve(someone, table, KEY) == resolve(someone, only_named, KEY)
            assert set(getattr(resolve(someone, table, KEY), "remember", {})) <= named


def test_keyed_hash_is_128_bits_of_hex() -> None:
    digest = keyed_hash(KEY, "x")
    assert len(digest) == 32
    assert int(digest, 16) >= 0
