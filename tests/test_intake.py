"""Intake: raw record bytes from hostile producers -> an event, or a dead letter that says why and keeps the bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from factories import LEAD

from leadflow.core.intake import DEFAULT_MAX_EVENT_BYTES, Origin, decode, decode_routing
from leadflow.schemas.events import EVENT_TYPES, Activity, DealWon, LeadCreated, LeadUpdated
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, DeadLetter, RouteRelease, RouteRequest

RECEIVED = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
WHERE: dict[str, Any] = {"topic": "leads.events", "partition": 3, "offset": 41, "received_at": RECEIVED}


def envelope(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "ev-1",
        "lead_id": LEAD,
        "type": "activity",
        "occurred_at": "2026-11-24T07:00:00-03:00",
        "source": "mautic",
        "actor": {"team": "marketing", "user_id": "u-1"},
        "data": {"action": "page_view", "url": "https://example.com/pricing"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def dead(value: bytes | None, key: bytes | None = LEAD.encode(), **where: Any) -> DeadLetter:
    where_to = {**WHERE, **where}
    result = decode(key, value, **where_to)
    assert isinstance(result, DeadLetter), result
    # Whatever went wrong, the original record is kept byte for byte, with where it came from.
    assert base64.b64decode(result.original_b64) == (value or b"")
    assert result.original_size == len(value or b"")
    assert result.key_b64 == (base64.b64encode(key).decode() if key is not None else None)
    assert (result.topic, result.partition, result.offset) == (
        where_to["topic"],
        where_to["partition"],
        where_to["offset"],
    )
    assert result.received_at == RECEIVED
    assert result.errors
    assert DEAD_LETTER_ADAPTER.validate_json(DEAD_LETTER_ADAPTER.dump_json(result)) == result
    return result


def test_a_valid_event_decodes() -> None:
    event = decode(LEAD.encode(), orjson.dumps(envelope()), **WHERE)
    assert isinstance(event, Activity)
    assert event.occurred_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert event.data.action == "page_view"


def test_a_record_without_a_key_is_dead_lettered() -> None:
    letter = decode(None, orjson.dumps(envelope()), **WHERE)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "key_mismatch"
    assert letter.errors[0].startswith("(record key): no key is not the lead_id")


def test_defaults_fill_optional_data() -> None:
    event = decode(LEAD.encode(), orjson.dumps(envelope(type="lead.created", data=..., actor=...)), **WHERE)
    assert isinstance(event, LeadCreated)
    assert event.data.initial_stage == "lead"


@pytest.mark.parametrize(
    ("value", "at"),
    [(b"{nope", 1), (b'{"type": "activity",', 20), (b"NaN", 0), (b"", 0), (b'{"a": "\xc3\xa9\xc3\xa9" x}', 13)],
)
def test_invalid_json_names_the_byte_offset_and_the_fix(value: bytes, at: int) -> None:
    letter = dead(value)
    assert letter.reason == "invalid_json"
    (problem,) = letter.errors
    assert problem.startswith(f"(record): not valid JSON at byte {at}: ")
    assert problem.endswith("; send one JSON object per record")


@pytest.mark.parametrize(
    ("value", "at", "byte"),
    [
        (b"\xff\xfe\x00", 0, "0xff"),
        (b'{"event_id": "e\xe9", "type": "activity"}', 15, "0xe9"),  # Latin-1, not UTF-8
        (b'{"a": "\xc3\xa9", "b": "\xed\xa0\x80"}', 18, "0xed"),  # an encoded surrogate
        (b'{"a": "ok"}' + b" " * 100 + b"\x80", 111, "0x80"),
    ],
)
def test_invalid_utf8_names_the_offset_of_the_first_bad_byte(value: bytes, at: int, byte: str) -> None:
    # orjson says "surrogates not allowed ... (char 0)" whatever the byte and wherever it is.
    letter = dead(value)
    assert letter.reason == "invalid_json"
    (problem,) = letter.errors
    assert problem.startswith(f"(record): not valid UTF-8 at byte {at} ({byte}): ")
    assert problem.endswith("; encode the record as UTF-8")
    routed = decode_routing(Origin(b"latam", value, "leads.routing", 0, 7, RECEIVED))
    assert isinstance(routed, DeadLetter)
    assert routed.errors == letter.errors


def raw_envelope(*pairs: tuple[str, bytes]) -> bytes:
    """An envelope written by hand, so a key can appear twice."""
    return b"{" + b", ".join(orjson.dumps(name) + b": " + value for name, value in pairs) + b"}"


VALID_PAIRS = [
    ("event_id", b'"ev-1"'),
    ("lead_id", orjson.dumps(LEAD)),
    ("type", b'"activity"'),
    ("occurred_at", b'"2026-11-24T10:00:00Z"'),
    ("source", b'"mautic"'),
    ("data", b'{"action": "page_view"}'),
]


@pytest.mark.parametrize(
    ("pairs", "path"),
    [
        ([("type", b'"lead.teleported"'), *VALID_PAIRS], "type"),  # the last one would win: applied as an activity
        ([*VALID_PAIRS, ("source", b'"other"')], "source"),
        ([*VALID_PAIRS[:-1], ("data", b'{"action": "page_view", "action": "demo_request"}')], "data.action"),
        ([*VALID_PAIRS, ("actor", b'{"team": "sales", "user_id": "u1", "team" : "marketing"}')], "actor.team"),
        (
            [("type", b'"lead.updated"'), *VALID_PAIRS[3:5], ("data", b'{"origin": "a",\n "origin"\t:\n "b"}'),
             *VALID_PAIRS[:2]],
            "data.origin",
        ),  # custom attributes too, with whitespace around the colon
        (
            [("type", b'"deal.stage_changed"'), *VALID_PAIRS[3:5], *VALID_PAIRS[:2],
             ("data", b'{"stage": "proposal_sent", "bant": {"budget": true, "need": true, "budget": false}}')],
            "data.bant.budget",
        ),  # nested objects too
        ([*VALID_PAIRS, ("event_id", b'"ev-1"')], "event_id"),  # even with the same value twice
        ([("type", b'"lead.teleported"'), ("type", b'"lead.teleported"'), *VALID_PAIRS[3:]], "type"),  # also invalid
    ],
)  # fmt: skip
def test_a_key_given_twice_is_dead_lettered_naming_it(pairs: list[tuple[str, bytes]], path: str) -> None:
    letter = dead(raw_envelope(*pairs))
    assert letter.reason == "invalid_json"
    assert letter.errors == (
        f"{path}: the key appears twice in one JSON object (readers disagree on which one counts); "
        "send each field once",
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"action": "page_view", "campaign": "say \\"hi\\": \\"there\\":"}',  # `":` inside a text
        b'{"action": "page_view", "url": "https://example.com/a\\":b"}',
    ],
)
def test_a_colon_after_a_quote_inside_a_text_is_not_a_repeated_key(data: bytes) -> None:
    value = raw_envelope(*VALID_PAIRS[:-1], ("data", data))
    assert isinstance(decode(LEAD.encode(), value, **WHERE), Activity)


def test_the_same_key_in_different_objects_is_fine() -> None:
    value = raw_envelope(
        *VALID_PAIRS[:-1], ("data", b'{"action": "page_view"}'), ("actor", b'{"team": "sales", "user_id": "type"}')
    )
    assert isinstance(decode(LEAD.encode(), value, **WHERE), Activity)


def test_empty_value() -> None:
    letter = dead(None)
    assert letter.reason == "invalid_json"
    assert letter.errors == ("(record): empty value; send one JSON event per record",)


@pytest.mark.parametrize("value", [b"[1, 2]", b'"activity"', b"42", b"null", b"[]"])
def test_json_that_is_not_an_object(value: bytes) -> None:
    letter = dead(value)
    assert letter.reason == "invalid_event"
    assert letter.errors == ("(top level): must be a JSON object (the event envelope)",)


@pytest.mark.parametrize("kind", ["lead.exploded", "Activity", "", 5, ["activity"], None])
def test_unknown_type_lists_the_known_types(kind: Any) -> None:
    letter = dead(orjson.dumps(envelope(type=kind)))
    assert letter.reason == "unknown_type"
    (problem,) = letter.errors
    assert problem.startswith(f"type: {str(kind)!r} is not a known event type")
    assert problem.endswith("use one of: " + ", ".join(EVENT_TYPES))


def test_missing_type() -> None:
    letter = dead(orjson.dumps(envelope(type=...)))
    assert (letter.reason, letter.errors) == (
        "invalid_event",
        (f"type: is required; name the event type, one of: {', '.join(EVENT_TYPES)}",),
    )


def test_every_missing_field_is_named() -> None:
    letter = dead(orjson.dumps({"type": "lead.rejected"}))
    assert letter.reason == "invalid_event"
    assert letter.errors == (
        "event_id: is required",
        "lead_id: is required",
        "occurred_at: is required",
        "source: is required",
        "data: is required",
    )


def test_missing_data_field_is_named_with_its_path() -> None:
    letter = dead(orjson.dumps(envelope(type="lead.rejected", data={"note": "meh"})))
    assert letter.errors == ("data.reason: is required",)


@pytest.mark.parametrize(
    ("overrides", "problems"),
    [
        ({"event_id": 5}, ["event_id: must be a string"]),
        ({"source": ["crm"]}, ["source: must be a string"]),
        ({"data": "page_view"}, ["data: must be an object"]),
        ({"data": {"action": 3}}, ["data.action: must be a string"]),
        ({"actor": {"team": "finance", "user_id": "u"}}, ["actor.team: must be 'marketing', 'sales' or 'system'"]),
        ({"colour": "red"}, ["colour: is not a known field (check the spelling)"]),
        ({"data": {"action": "page_view", "extra": 1}}, ["data.extra: is not a known field (check the spelling)"]),
        ({"lead_id": "has space"}, ["lead_id: must be text without spaces, control or invisible characters"]),
        ({"lead_id": "zero\u200bwidth"}, ["lead_id: must be text without spaces, control or invisible characters"]),
        (
            {"data": {"action": "Page View"}},
            ["data.action: must be a lower-case code of letters, digits and _ starting with a letter, e.g. page_view"],
        ),
        ({"lead_id": "x" * 201}, ["lead_id: must have at most 200 characters"]),
        ({"type": "deal.won", "data": {"amount": "lots"}}, ["data.amount: must be a number"]),
        ({"type": "deal.won", "data": {"amount": -1}}, ["data.amount: must be greater than or equal to 0"]),
        (
            {"occurred_at": "yesterday"},
            ["occurred_at: must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z"],
        ),
        ({"event_id": 5, "source": None}, ["event_id: must be a string", "source: must be a string"]),
    ],
)
def test_wrong_types_are_named_with_their_path(overrides: dict[str, Any], problems: list[str]) -> None:
    letter = dead(orjson.dumps(envelope(**overrides)))
    assert letter.reason == "invalid_event"
    assert list(letter.errors) == problems


# -- custom attributes: unknown fields of lead.created / lead.updated data --------------------------------------


@pytest.mark.parametrize("type_", ["lead.created", "lead.updated"])
def test_unknown_profile_fields_are_custom_attributes(type_: str) -> None:
    custom = {"origin": "rd_station", "landing_page_id": 812, "score_hs": 71.5, "opted_in": True, "utm_term": None}
    event = decode(LEAD.encode(), orjson.dumps(envelope(type=type_, data={"seniority": "vp", **custom})), **WHERE)
    assert isinstance(event, LeadCreated | LeadUpdated)
    assert event.data.custom_attributes() == custom
    assert event.data.attributes_set() == {"seniority": "vp"}


def test_fifty_custom_attributes_of_the_largest_size_are_valid() -> None:
    data = {f"a{i:02d}_" + "x" * 60: "v" * 500 for i in range(50)}
    assert all(len(name) == 64 for name in data)
    event = decode(LEAD.encode(), orjson.dumps(envelope(type="lead.created", data=data)), **WHERE)
    assert isinstance(event, LeadCreated)
    assert len(event.data.custom_attributes()) == 50


NAME_RULE = (
    "data: custom attribute names must be lower-case codes of letters, digits and _ starting with a letter, "
    "at most 64 characters (e.g. landing_page_id); rename "
)
SCALARS_ONLY = (
    "a custom attribute must be a string, a number, true/false or null, not an object or a list; "
    "send each value as an attribute of its own"
)


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        (
            {f"a{i}": i for i in range(51)},
            [
                "data: 51 custom attributes is over the limit of 50 per event; "
                "send only the attributes fit rules, routing or sales use"
            ],
        ),
        ({"Landing Page": "/pricing"}, [NAME_RULE + "'Landing Page' in the producer"]),
        ({"x" * 65: 1}, [NAME_RULE + repr("x" * 65) + " in the producer"]),
        ({"n" * 5000: 1}, [NAME_RULE + repr("n" * 77 + "...") + " in the producer"]),  # a hostile name is cut
        (
            {f"Bad{i}": 1 for i in range(7)},
            [NAME_RULE + "'Bad0', 'Bad1', 'Bad2', 'Bad3', 'Bad4' and 2 more in the producer"],
        ),
        (
            {"origin": "x" * 501},
            [
                "data.origin: a custom attribute value has at most 500 characters (this one 501); "
                "send a shorter value or leave the attribute out"
            ],
        ),
        ({"origin": {"source": "ads"}}, ["data.origin: " + SCALARS_ONLY]),
        ({"tags": ["a", "b"]}, ["data.tags: " + SCALARS_ONLY]),
        (
            {"revenue": 10**19},
            ["data.revenue: a custom attribute number must be finite and within ±1e18; "
             "send it as text if it is an identifier"],
        ),
        ({"seniority": "VP", "tags": []}, [
            "data.seniority: must be a lower-case code of letters, digits and _ starting with a letter, e.g. page_view",
            "data.tags: " + SCALARS_ONLY,
        ]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("type_", ["lead.created", "lead.updated"])
def test_custom_attributes_over_a_limit_are_dead_lettered_naming_the_limit_and_the_fix(
    type_: str, data: dict[str, Any], problems: list[str]
) -> None:
    letter = dead(orjson.dumps(envelope(type=type_, data=data)))
    assert letter.reason == "invalid_event"
    assert list(letter.errors) == problems


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400])
def test_custom_numbers_must_be_finite_and_bounded(number: bytes) -> None:
    body = orjson.dumps(envelope(type="lead.updated", data={"revenue": 0})).replace(
        b'"revenue":0', b'"revenue":' + number
    )
    letter = dead(body)
    assert letter.reason in ("invalid_event", "invalid_json")
    assert letter.errors[0].startswith(("data.revenue: a custom attribute number", "(record): not valid JSON"))


def test_other_events_still_refuse_unknown_fields() -> None:
    letter = dead(orjson.dumps(envelope(type="deal.won", data={"amount": 5, "origin": "crm"})))
    assert letter.errors == ("data.origin: is not a known field (check the spelling)",)


@pytest.mark.parametrize("data", [..., {}, {"currency": "BRL"}])
def test_a_won_deal_without_an_amount_is_valid(data: Any) -> None:
    event = decode(LEAD.encode(), orjson.dumps(envelope(type="deal.won", data=data)), **WHERE)
    assert isinstance(event, DealWon)
    assert event.data.amount is None


@pytest.mark.parametrize("stamp", ["2026-11-24T10:00:00", "2026-11-24 10:00:00", "2026-11-24"])
def test_timestamp_without_offset_names_occurred_at_and_the_fix(stamp: str) -> None:
    letter = dead(orjson.dumps(envelope(occurred_at=stamp)))
    assert letter.reason == "invalid_event"
    (problem,) = letter.errors
    assert problem.startswith("occurred_at: must include a UTC offset (RFC 3339)")
    assert "2026-11-24T10:00:00Z" in problem


@pytest.mark.parametrize("stamp", [1764000000, 1764000000.5])
def test_a_number_is_not_a_timestamp(stamp: float) -> None:
    letter = dead(orjson.dumps(envelope(occurred_at=stamp)))
    assert letter.reason == "invalid_event"
    assert letter.errors == (
        "occurred_at: must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z, not a number",
    )


@pytest.mark.parametrize("stamp", ["1764600000", "1764600000.5", "-5", "+1764600000", "1764600000000", " 17646e5 "])
def test_a_number_in_a_string_is_not_a_timestamp(stamp: str) -> None:
    # pydantic alone reads "1764600000" as Unix seconds; the contract is RFC 3339 with an offset.
    letter = dead(orjson.dumps(envelope(occurred_at=stamp)))
    assert letter.reason == "invalid_event"
    (problem,) = letter.errors
    assert problem.startswith(
        "occurred_at: must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z, not a number in a string"
    )
    assert "convert Unix time to RFC 3339 in the producer" in problem


def test_every_timestamp_field_refuses_a_number_in_a_string() -> None:
    value = orjson.dumps(envelope(type="meeting.scheduled", data={"starts_at": "1764600000"}))
    (problem,) = dead(value).errors
    assert problem.startswith("data.starts_at: must be an RFC 3339 timestamp with an offset")
    for stamp in ("2026-11-24T10:00:00Z", "2026-11-24T07:00:00.250-03:00", "2026-11-24 10:00:00+00:00"):
        event = decode(LEAD.encode(), orjson.dumps(envelope(occurred_at=stamp)), **WHERE)
        assert isinstance(event, Activity), stamp


@pytest.mark.parametrize("stamp", ["0001-01-01T00:05:00Z", "1969-12-31T23:59:59Z"])
def test_timestamps_before_1970_are_refused(stamp: str) -> None:
    letter = dead(orjson.dumps(envelope(occurred_at=stamp)))
    assert letter.errors == ("occurred_at: must be after 1970-01-01T00:00:00Z",)


@pytest.mark.parametrize("number", [b"Infinity", b"-Infinity", b"NaN", b"1e400"])
def test_amounts_must_be_finite(number: bytes) -> None:
    body = orjson.dumps(envelope(type="deal.won", data={"amount": 0})).replace(b'"amount":0', b'"amount":' + number)
    letter = dead(body)
    assert letter.reason in ("invalid_event", "invalid_json")
    assert letter.errors[0].startswith(("data.amount:", "(record): not valid JSON"))


def test_five_megabytes_is_too_large() -> None:
    value = orjson.dumps(envelope(data={"action": "page_view", "campaign": "x" * (5 * 1024 * 1024)}))
    letter = dead(value)
    assert letter.reason == "payload_too_large"
    assert letter.errors == (
        f"(record): {len(value):,} bytes is over the {DEFAULT_MAX_EVENT_BYTES:,}-byte limit; "
        "send one small event per record",
    )


def test_the_size_limit_is_a_parameter() -> None:
    value = orjson.dumps(envelope())
    assert isinstance(decode(LEAD.encode(), value, **WHERE, max_bytes=len(value)), Activity)
    assert dead(value, max_bytes=len(value) - 1).reason == "payload_too_large"


def test_key_must_be_the_lead_id() -> None:
    value = orjson.dumps(envelope())
    letter = dead(value, key=b"L2")
    assert letter.reason == "key_mismatch"
    (problem,) = letter.errors
    assert problem.startswith("(record key): b'L2' is not the lead_id 'L1'")
    assert "key = lead_id" in problem


def test_a_huge_key_is_cut_in_the_message() -> None:
    letter = dead(orjson.dumps(envelope()), key=b"k" * 10_000)
    assert letter.reason == "key_mismatch"
    assert len(letter.errors[0]) < 300


def test_dead_letter_id_is_deterministic_and_depends_on_where() -> None:
    value = b"{nope"
    first, again = dead(value), dead(value)
    assert first.id == again.id
    assert first == again
    assert dead(value, offset=42).id != first.id
    assert dead(value, partition=4).id != first.id
    assert dead(value, topic="other").id != first.id
    assert dead(b"[1]").id == first.id  # the id names the record's position, whatever it held


def test_binary_garbage_round_trips() -> None:
    value = bytes(range(256)) * 10
    letter = dead(value, key=b"\x00\xff")
    assert letter.reason == "invalid_json"
    assert base64.b64decode(letter.key_b64 or "") == b"\x00\xff"


# -- the internal routing topic ---------------------------------------------------------------------------------


ROUTE_FIELDS = {"id": "r1", "lead_id": LEAD, "pool": "latam", "occurred_at": "2026-11-25T10:00:00Z"}
UNKNOWN_ROUTING_TYPE = "type: 'route.maybe' is not a routing message; use route.request, route.release"


def routing_record(value: bytes | None) -> RouteRequest | RouteRelease | DeadLetter:
    return decode_routing(Origin(b"latam", value, "leads.routing", 0, 7, datetime(2026, 11, 25, tzinfo=UTC)))


def test_a_route_request_decodes() -> None:
    decoded = routing_record(orjson.dumps({**ROUTE_FIELDS, "type": "route.request"}))
    assert isinstance(decoded, RouteRequest)
    assert (decoded.lead_id, decoded.pool, decoded.exclude) == (LEAD, "latam", ())


@pytest.mark.parametrize(
    ("value", "reason", "errors"),
    [
        (b"garbage", "invalid_json", None),
        (None, "invalid_json", None),
        (b'{"type": "route.maybe"}', "unknown_type", [UNKNOWN_ROUTING_TYPE]),
        (orjson.dumps({**ROUTE_FIELDS, "type": "route.release"}), "invalid_event", ["owner_id: is required"]),
    ],
)
def test_an_unreadable_routing_record_is_dead_lettered_with_its_bytes(
    value: bytes | None, reason: str, errors: list[str] | None
) -> None:
    letter = routing_record(value)
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == (reason, "leads.routing", 0, 7)
    assert base64.b64decode(letter.original_b64) == (value or b"")
    if errors is not None:
        assert list(letter.errors) == errors


@pytest.mark.parametrize("depth", [200, 1000, 2000])
def test_data_nested_too_deep_is_dead_lettered_naming_where(depth: int) -> None:
    # 1,000 levels: past pydantic's limit and Python's stack for the repeated-key parse, which raised
    # RecursionError (a crash of the worker's agent, the record fetched again: a poison pill). 2,000: orjson's own.
    nested = b"[" * depth + b"]" * depth
    value = orjson.dumps(envelope(data={"action": "page_view"}))[:-2] + b',"deep":' + nested + b"}}"
    letter = dead(value)
    assert letter.reason == "invalid_json"
    assert letter.errors[0].startswith("(record): ")
    at = int(letter.errors[0].split("at byte ")[1].split(":")[0].split(";")[0])
    assert value.index(nested) <= at < value.index(nested) + depth  # inside the nesting
    assert "send " in letter.errors[0]
