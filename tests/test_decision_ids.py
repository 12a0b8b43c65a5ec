"""The output ids a lead remembers for dedupe (`LeadRecord.emitted`, `PendingEvent.output_ids`): kept in short form
(core.ids.short_id, 64 bits), and records written before, with whole ids, read and dedupe the same.

Why `emitted` keeps the ids of clocks that are closed and settled: a later event may open the same clock again, under
the same ids (test_a_late_event_at_the_instant_a_closed_clock_started_does_not_emit_its_outputs_again).
"""

from __future__ import annotations

import base64

from factories import DAY, UNROUTED, at, make_event

from leadflow.core.decision import Decision, decide
from leadflow.core.ids import SHORT_ID_LENGTH, output_id, short_id
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import Output, SlaStarted
from leadflow.schemas.record_encoding import LEAD_RECORD_ENCODING
from leadflow.schemas.state import LeadRecord

POLICY = UNROUTED
LATENESS = POLICY.processing.lateness_seconds
NOW = at(365 * DAY)

# Created, qualified at 100 s (mql_acceptance and first_contact start), rejected at 200 s (their clocks end), a page
# view 30 minutes later (the window has settled): an SLA output's id names its clock, so a later event that opens
# the same clock again brings the same ids back.
REJECTED = [
    make_event("lead.created", 0, event_id="c"),
    make_event("lead.qualified", 100, event_id="q1"),
    make_event("lead.rejected", 200, event_id="r", reason="not_icp"),
    make_event("activity", 200 + 3 * LATENESS, action="page_view", event_id="v"),
]
# Created, and a demo request a minute later (a hand-raiser: MQL, its clocks start): both still in the window.
HAND_RAISER = [
    make_event("lead.created", 0, event_id="c"),
    make_event("activity", 60, action="demo_request", event_id="d"),
]

# The leads table's values for those two leads as leadflow wrote them before ids were kept short (commit 5a64073,
# format byte 0x41): `emitted` and the pending events' `output_ids` hold whole 32-digit ids.
WRITTEN_BEFORE = {
    "rejected": (
        "QWB8B2UMAEJMIxyAp80BOv7x8pgSaengWKGnjSTJJmnL/AEOzAYNe0cxXlLkK0FbX1ekRGWqZqaiJlV4d8gkJJ0zz42tjoXqSWl6"
        "K0S520nLjNVXXuqSez1PIUODIKYQBR3Bf53rpd54LvQcWRWy9GKVo+yewGz3WDuowuFYY8CGMyxgKBCr/hrBhhnjd8CZgT1AUwxQ"
        "EGSo4SZRauzPGlBCIYSmig8SYKEgigiBEOwEpUQqoCApI/bKsgbxA6meiQtD7P94owFre/wfgbZgmbAKtS4JhGkMi5Witz7htBgW"
        "AwpXmaM/FfV+C6Ixv+NQodVW7wcHgLH0WmPxgJgdhEZS4hXuGfulnpwsYckdcxWF1JYvjguJIH0MPasCQz3ofy1Nl2LJrR5oXST0"
        "jxZe0oVP9CwFH0qIQhj+uhjfepOkNnZY3VJbSPNIaTjn4mSJ1yTYg2agPbTz2LNwwQHdzaaw/AGwCoJ147WhHWN03x1uMXMI+b49"
        "BbWJ8oEX9zMHECq06MHzByQvKVluu7bsusmIAg=="
    ),
    "hand_raiser": (
        "QWBqBS0NANINJxtwJ3EDwatB9ICQX4b2EhEAZ1eMSMrmnxVV9YQvvwaxiBoX7aQpG1srO5OI+EQiax9ksF5WkM9OHPPETtnUZ1sT"
        "Y6hfjOrp3NUbPml7M9lyaeMQTfY7r4F9MnHT0w1LO0lbNlcQryIjhzxcwXurqEKosCgMBtK5wpO38gozDVgga0/MgAWE8qnW45Pn"
        "Hg6o6g8oSfgJJwsCgXGAg2mosaYhbal+tAZgQpkpIuoBEsBhFIdxPEiSGVNmZkxBykg9MhxsjmD0V6Ui9YupcrpfhQ5kNWv5j+vG"
        "FEM5l8LKSSKDcxgeqo5evxnO96u1BjwA4CKCIiTJFFWkUGkiuMQ6M2vpWS+zwcjppQR9LCCVQvuNsazmRVO7aw57PcmVi55kjBMI"
        "Yw+oqPhch5otN6GCbi0NumnKvQv6p45A5Q/MhhoOmQqtbSKN/L+mSfqNJdgGouCkN3n837ciaeTvTlIOeifDkKHSQxUD/kw+aFBo"
        "juYAhYtVDLBwhAF2C6K38PksIGTtDoOJ3ANCNsebxDwL+U6U+tqHihSwyKW47URrol9XHWU="
    ),
}


def deliver(events: list[LeadEvent], record: LeadRecord | None = None) -> tuple[LeadRecord, list[Decision]]:
    decisions = []
    for event in events:
        decision = decide(record, event, POLICY, NOW)
        decisions.append(decision)
        record = decision.record
    assert record is not None
    return record, decisions


def outputs(decisions: list[Decision]) -> list[Output]:
    return [o for d in decisions for o in d.outputs]


def written_before(name: str) -> LeadRecord:
    return LEAD_RECORD_ENCODING.decode(base64.b64decode(WRITTEN_BEFORE[name]))


def ids_held(record: LeadRecord) -> list[str]:
    return [*record.emitted, *(oid for p in record.pending for oid in p.output_ids)]


def test_a_short_id_is_the_first_64_bits_of_an_output_id_and_shortening_it_again_changes_nothing() -> None:
    whole = output_id("L1", "sla", "first_contact", "2026-12-06T10:00:00+00:00", "started")
    assert len(whole) == 2 * SHORT_ID_LENGTH
    assert short_id(whole) == whole[:SHORT_ID_LENGTH]
    assert short_id(short_id(whole)) == short_id(whole)
    other = short_id("an id of another shape")
    assert len(other) == SHORT_ID_LENGTH
    assert int(other, 16) >= 0
    assert other == short_id("an id of another shape") != short_id("an id of another shape!")


def test_a_lead_remembers_the_outputs_it_emitted_by_their_short_ids() -> None:
    record, decisions = deliver(HAND_RAISER)
    emitted = {o.id[:SHORT_ID_LENGTH] for o in outputs(decisions)}
    held = ids_held(record)
    assert held
    assert all(len(oid) == SHORT_ID_LENGTH for oid in held)
    assert set(held) == emitted
    assert set(record.emitted) == {short_id(o.id) for o in outputs(decisions) if isinstance(o, SlaStarted)}


def test_a_late_event_at_the_instant_a_closed_clock_started_does_not_emit_its_outputs_again() -> None:
    """The clocks qualified at 100 s ended at 200 s and every event of theirs has left the window: `base` and `state`
    have no clock. A second lead.qualified stamped 100 s (a producer's retry under a new id) comes after the window:
    applied after what settled, it opens both SLAs again at 100 s, the ids of the clocks that ended. Only `emitted`
    still knows they were said: it keeps them (bounded), it does not drop the ids of clocks that are gone."""
    record, decisions = deliver(REJECTED)
    first = [o for o in outputs(decisions) if isinstance(o, SlaStarted)]
    assert {o.sla for o in first} == {"mql_acceptance", "first_contact"}
    assert record.state is not None
    assert record.state.clocks == {}
    assert record.base is None or record.base.clocks == {}
    retry = decide(record, make_event("lead.qualified", 100, event_id="q2"), POLICY, NOW)
    assert retry.outcome == "late"
    assert retry.record.state is not None
    assert {c.sla: c.started_at for c in retry.record.state.clocks.values()} == {o.sla: o.started_at for o in first}
    assert [o.type for o in retry.outputs] == ["stage.changed"], "the clocks' sla.started were emitted already"


def test_a_record_written_with_whole_ids_dedupes_its_remembered_outputs_as_before() -> None:
    legacy = written_before("rejected")
    assert len(legacy.emitted) == 4
    assert all(len(oid) == 2 * SHORT_ID_LENGTH for oid in legacy.emitted)
    current, _ = deliver(REJECTED)
    assert current.emitted == tuple(map(short_id, legacy.emitted))
    assert current == legacy.model_copy(update={"emitted": current.emitted})
    retry = make_event("lead.qualified", 100, event_id="q2")
    from_legacy, from_current = decide(legacy, retry, POLICY, NOW), decide(current, retry, POLICY, NOW)
    assert [o.type for o in from_legacy.outputs] == ["stage.changed"]
    assert from_legacy.outputs == from_current.outputs
    assert (from_legacy.outcome, from_legacy.record) == (from_current.outcome, from_current.record)
    assert all(len(oid) == SHORT_ID_LENGTH for oid in from_legacy.record.emitted), "shortened once written again"
    for event in REJECTED:  # every event again: duplicates
        again = decide(legacy, event, POLICY, NOW)
        assert (again.outcome, again.outputs, again.changed) == ("duplicate", (), False)


def test_a_record_written_with_whole_ids_dedupes_its_window_as_before() -> None:
    """The window applied again after an earlier event: what its events emitted (their whole `output_ids`) is not
    emitted again, and the record goes on as one written with short ids."""
    legacy = written_before("hand_raiser")
    assert [len(p.output_ids) for p in legacy.pending] == [1, 3]
    assert all(len(oid) == 2 * SHORT_ID_LENGTH for oid in ids_held(legacy))
    current, decisions = deliver(HAND_RAISER)
    assert [p.output_ids for p in current.pending] == [tuple(map(short_id, p.output_ids)) for p in legacy.pending]
    before = {o.id for o in outputs(decisions)}
    earlier = make_event("activity", 30, action="pricing_view", event_id="p")
    from_legacy, from_current = decide(legacy, earlier, POLICY, NOW), decide(current, earlier, POLICY, NOW)
    assert from_legacy.outcome == "reordered"
    assert not {o.id for o in from_legacy.outputs} & before
    assert from_legacy.outputs == from_current.outputs
    assert from_legacy.record == from_current.record
    assert all(len(oid) == SHORT_ID_LENGTH for oid in ids_held(from_legacy.record))
    assert decide(legacy, HAND_RAISER[1], POLICY, NOW).outcome == "duplicate"
