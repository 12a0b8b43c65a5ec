"""The tables' compact values (schemas.record_encoding): what is written reads back the same, values written as plain
JSON before the encoding still read, a value of a format this version does not know is refused with a reason, the
frozen dictionaries are what their generator gives and never change once published, and a lead's record is small."""

from __future__ import annotations

import hashlib
import zlib
from datetime import timedelta
from typing import Any

import pytest
from factories import DAY, LEAD, POLICY, Router, at, make_event
from faust.serializers import codecs
from hypothesis import given
from hypothesis import strategies as st

from leadflow.core.routing import release, route
from leadflow.schemas.outputs import RouteRelease, RouteRequest
from leadflow.schemas.record_dictionaries import DICTIONARIES
from leadflow.schemas.record_encoding import (
    ENCODINGS,
    LEAD_RECORD_ENCODING,
    PLAIN_JSON,
    ROUTING_STATE_ENCODING,
    VISITS_ENCODING,
    WINDOW_BITS,
    ZSTD,
    RecordEncodingError,
)
from leadflow.schemas.record_vocabulary import ADAPTERS, dictionary, published_dictionaries, with_new_versions
from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER, LeadRecord, RoutingState
from leadflow.schemas.visits import VISITS_ADAPTER, SiteVisits
from leadflow.streams.cli.schema_files import SCHEMAS
from leadflow.streams.runtime.routes import ROUTES, value_adapters
from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.table_codec import LEAD_RECORD_CODEC, ROUTING_STATE_CODEC

HOUR = 3600.0

# sha256 of every published dictionary. A dictionary, once values were written with it, never changes: add the
# hash of a new one here when it is published (python -m leadflow.schemas.record_vocabulary --write).
PUBLISHED = {
    1: "5b88e2621d42b30d6deec2495b9ce5d750740be90c28743a04f864edb286a97b",  # lead_record
    2: "abd19f0dd9329fc8c501b4e3199c998882d308334bba2539d7f40ec7f3febbd9",  # routing_state
    3: "26405df58d0f646a1c13d78d4ea324081215c246ce5894807d55f1a1e1a7bdd9",  # site_visits
}

# A person's journey from a HubSpot form to a won deal, with the profile, custom attributes, campaigns and amounts
# real leads carry: every record the lead has along the way (the router answers at once, factories.Router).
JOURNEY: list[tuple[str, float, dict[str, Any]]] = [
    (
        "lead.created",
        0.0,
        {
            "email": "ana.souza@acme-industrial.com.br",
            "job_title": "Gerente de Marketing",
            "seniority": "manager",
            "company": "Acme Industrial Ltda",
            "company_size": 1200,
            "industry": "manufacturing",
            "country": "BR",
            "utm_source": "google",
            "landing_page_id": "lp-42",
        },
    ),
    ("activity", 2 * HOUR, {"action": "page_view", "url": "https://acme.example/pricing"}),
    ("activity", 1 * DAY, {"action": "email_open", "campaign": "nov-newsletter"}),
    ("activity", 2 * DAY, {"action": "content_download", "campaign": "ebook-sla"}),
    ("activity", 3 * DAY, {"action": "demo_request"}),
    ("contact.attempted", 3 * DAY + 600, {"channel": "phone", "outcome": "no_answer"}),
    ("contact.attempted", 3 * DAY + 3 * HOUR, {"channel": "email", "outcome": "replied"}),
    ("lead.accepted", 4 * DAY, {}),
    ("meeting.scheduled", 4 * DAY + HOUR, {"kind": "discovery"}),
    ("deal.stage_changed", 6 * DAY, {"stage": "qualified_call", "bant": {"need": True}}),
    (
        "deal.stage_changed",
        9 * DAY,
        {"stage": "proposal_sent", "bant": {"budget": True, "authority": True, "need": True}, "amount": 24000.0},
    ),
    ("deal.won", 15 * DAY, {"amount": 24000.0, "currency": "BRL"}),
]


def journey_records() -> list[LeadRecord]:
    router = Router()
    record: LeadRecord | None = None
    records = []
    for n, (kind, t, data) in enumerate(JOURNEY):
        event = make_event(kind, t, event_id=f"hubspot-{1000 + n}", **data)
        record = router.decide(record, event, event.occurred_at).record
        assert record is not None
        records.append(record)
    final = records[-1].state
    assert final is not None
    assert final.stage == "customer"
    return records


def routing_state(requests: int = 300) -> RoutingState:
    """The router's state after `requests` route requests over the default pools, a release for every other one."""
    state = RoutingState()
    for n in range(requests):
        pool = ("enterprise", "latam", "general")[n % 3]
        request = RouteRequest(id=f"{n:032x}", lead_id=f"lead-{n}", pool=pool, occurred_at=at(60.0 * n))
        state, answered = route(state, request, POLICY)
        if answered is not None and n % 2:
            freed = RouteRelease(
                id=f"r{n:031x}", lead_id=answered.lead_id, pool=answered.pool, owner_id=answered.owner_id,
                occurred_at=at(60.0 * n + 30),
            )  # fmt: skip
            state = release(state, freed)
    return state


VISITS = SiteVisits.model_validate(
    {
        "event_id": "ga4-2026-11-30-google-cpc-1",
        "type": "site.visits",
        "occurred_at": "2026-11-30T23:00:00-03:00",
        "source": "ga4",
        "data": {"date": "2026-11-30", "traffic_source": "google/cpc", "visits": 1234},
    }
)


# --- reading back what was written --------------------------------------------------------------------------------


def test_every_record_of_a_journey_reads_back_equal() -> None:
    for record in journey_records():
        value = LEAD_RECORD_ENCODING.encode(record)
        assert value[0] == LEAD_RECORD_ENCODING.format != PLAIN_JSON
        assert LEAD_RECORD_ENCODING.decode(value) == record


def test_the_routing_state_and_a_visits_report_read_back_equal() -> None:
    state = routing_state()
    assert state.answers
    assert state.released
    assert ROUTING_STATE_ENCODING.decode(ROUTING_STATE_ENCODING.encode(state)) == state
    assert VISITS_ENCODING.decode(VISITS_ENCODING.encode(VISITS)) == VISITS


@given(st.binary(max_size=5000))
def test_any_json_bytes_pack_and_unpack_unchanged(json: bytes) -> None:
    """The compression layer is lossless for any bytes, multi-byte UTF-8 included, long or empty."""
    assert LEAD_RECORD_ENCODING.to_json(LEAD_RECORD_ENCODING.pack(json)) == json


def test_the_tables_faust_codecs_write_the_compact_form_and_read_both() -> None:
    record = journey_records()[4]
    written = codecs.dumps(LEAD_RECORD_CODEC, record)
    assert written == LEAD_RECORD_ENCODING.encode(record)
    assert codecs.loads(LEAD_RECORD_CODEC, written) == record
    assert codecs.loads(LEAD_RECORD_CODEC, RECORD_ADAPTER.dump_json(record, exclude_defaults=True)) == record
    state = routing_state(30)
    assert codecs.loads(ROUTING_STATE_CODEC, codecs.dumps(ROUTING_STATE_CODEC, state)) == state


# --- values written before the encoding ---------------------------------------------------------------------------


def test_plain_json_written_before_the_encoding_still_reads() -> None:
    """A worker restoring a changelog of plain JSON values (every table wrote them before) loses no lead."""
    for record in journey_records():
        assert LEAD_RECORD_ENCODING.decode(RECORD_ADAPTER.dump_json(record, exclude_defaults=True)) == record
        assert LEAD_RECORD_ENCODING.decode(RECORD_ADAPTER.dump_json(record)) == record  # defaults written too
    state = routing_state(30)
    assert ROUTING_STATE_ENCODING.decode(ROUTING_STATE_ADAPTER.dump_json(state, exclude_defaults=True)) == state
    assert VISITS_ENCODING.decode(VISITS_ADAPTER.dump_json(VISITS)) == VISITS


def deflated(kind: str, json: bytes) -> bytes:
    """A value as the tables wrote it in the deflate format (format byte = the dictionary's, 2026-12-06)."""
    byte, data = max((b, d) for b, (k, d) in DICTIONARIES.items() if k == kind)
    compressor = zlib.compressobj(6, zlib.DEFLATED, WINDOW_BITS, zlib.DEF_MEM_LEVEL, 0, data)
    return bytes((byte,)) + compressor.compress(json) + compressor.flush()


def test_values_written_in_the_deflate_format_still_read() -> None:
    """Values of the first compact format (deflate, written before zstd) restore unchanged."""
    for record in journey_records():
        value = deflated("lead_record", RECORD_ADAPTER.dump_json(record, exclude_defaults=True))
        assert value[0] == LEAD_RECORD_ENCODING.format - ZSTD
        assert LEAD_RECORD_ENCODING.decode(value) == record
    state = routing_state(30)
    assert ROUTING_STATE_ENCODING.decode(deflated("routing_state", ROUTING_STATE_ADAPTER.dump_json(state))) == state


# --- values this version cannot read -------------------------------------------------------------------------------


@pytest.mark.parametrize("unknown", [max(DICTIONARIES) + 1, max(DICTIONARIES) + 1 + ZSTD, 0x00, 0xFF])
def test_an_unknown_format_byte_is_refused_naming_the_byte_and_what_to_do(unknown: int) -> None:
    value = bytes((unknown,)) + zlib.compress(b"{}")
    with pytest.raises(RecordEncodingError) as raised:
        LEAD_RECORD_ENCODING.decode(value)
    message = str(raised.value)
    assert f"format byte {unknown:#04x}" in message
    assert "a newer leadflow wrote it" in message
    assert "do not delete the changelog" in message


def test_a_value_of_another_table_is_refused_as_such() -> None:
    routing = ROUTING_STATE_ENCODING.encode(routing_state(3))
    with pytest.raises(RecordEncodingError, match=r"format byte 0x42, which is the routing state \(the routing "):
        LEAD_RECORD_ENCODING.decode(routing)
    old = deflated("routing_state", ROUTING_STATE_ADAPTER.dump_json(routing_state(3)))
    with pytest.raises(RecordEncodingError, match=r"format byte 0x02, which is the routing state \(the routing "):
        LEAD_RECORD_ENCODING.decode(old)


def test_a_damaged_value_is_refused_not_misread() -> None:
    record = journey_records()[-1]
    value = LEAD_RECORD_ENCODING.encode(record)
    for damaged, why in (
        (value[: len(value) // 2], "did not decompress full frame"),
        (value + b"more", "4 bytes of unused data"),
        (value[:1] + b"\xff" * 40, "content size"),
    ):
        with pytest.raises(RecordEncodingError, match=f"format byte 0x41 .* is not a whole zstd frame: .*{why}"):
            LEAD_RECORD_ENCODING.decode(damaged)
    old = deflated("lead_record", RECORD_ADAPTER.dump_json(record))
    with pytest.raises(RecordEncodingError, match="cut short"):
        LEAD_RECORD_ENCODING.decode(old[: len(old) // 2])
    with pytest.raises(RecordEncodingError, match="stray bytes"):
        LEAD_RECORD_ENCODING.decode(old + b"more")
    with pytest.raises(RecordEncodingError, match="not a deflate stream"):
        LEAD_RECORD_ENCODING.decode(old[:1] + b"\xff" * 40)
    with pytest.raises(RecordEncodingError, match="an empty value"):
        LEAD_RECORD_ENCODING.decode(b"")


# --- the dictionaries -----------------------------------------------------------------------------------------------


def test_the_newest_dictionary_of_each_table_is_what_the_generator_gives() -> None:
    """Changing a schema, the default policy's names or the core's words changes what the generator gives: publish
    it as a new version instead of letting the frozen one drift from its recipe."""
    assert set(ENCODINGS) == set(ADAPTERS)
    for kind, encoding in ENCODINGS.items():
        assert encoding.dictionary_byte == max(b for b, (k, _) in DICTIONARIES.items() if k == kind)
        assert encoding.format == encoding.dictionary_byte + ZSTD
        assert encoding.dictionaries[encoding.dictionary_byte] == dictionary(kind), (
            f"the {kind} dictionary is not what schemas/record_vocabulary.py gives for this tree: run `python -m "
            "leadflow.schemas.record_vocabulary --write` (it adds a new version; never edit a published one)"
        )
    published = published_dictionaries()
    assert with_new_versions(published) == published


def test_a_published_dictionary_never_changes() -> None:
    hashes = {byte: hashlib.sha256(data).hexdigest() for byte, (_, data) in DICTIONARIES.items()}
    assert hashes == PUBLISHED, "a published dictionary changed, or a new one is not listed in PUBLISHED"
    assert PLAIN_JSON not in DICTIONARIES


def test_the_dictionaries_hold_words_of_the_schema_and_policy_not_data() -> None:
    lead = dictionary("lead_record")
    for word in (b'"lead_id":"', b'"mql_acceptance"', b'"contact.attempted"', b'"inside_sales"', b"T00:00:00.000000Z"):
        assert word in lead
    for data in (b"@", b"sim-", b"simulator", b"rep-0", b"example", b"acme"):
        assert data not in lead, f"{data!r} is data, not a word every record shares"


# --- sizes ----------------------------------------------------------------------------------------------------------


def test_a_lead_record_is_a_fraction_of_its_json() -> None:
    """A new lead well under the 600-byte goal, a won deal with its whole ledger under 1,400 bytes, and every record
    under 30% of its JSON; the dictionary saves a fifth or more over deflate alone on a new lead."""
    records = journey_records()
    sizes = [
        (len(RECORD_ADAPTER.dump_json(r, exclude_defaults=True)), len(LEAD_RECORD_ENCODING.encode(r))) for r in records
    ]
    created, won = sizes[0], sizes[-1]
    assert created[1] <= 400
    assert won[1] <= 1400
    assert all(compact <= 0.3 * plain for plain, compact in sizes), sizes
    alone = len(zlib.compress(RECORD_ADAPTER.dump_json(records[0], exclude_defaults=True), 6))
    assert created[1] <= 0.8 * alone, (created, alone)


def test_the_routing_state_is_a_fraction_of_its_json() -> None:
    state = routing_state()
    plain = ROUTING_STATE_ADAPTER.dump_json(state, exclude_defaults=True)
    assert len(ROUTING_STATE_ENCODING.encode(state)) <= len(plain) / 2


# --- readers of the changelogs --------------------------------------------------------------------------------------


def test_every_table_changelog_is_read_with_its_encoding() -> None:
    assert ROUTES["leads_changelog"].encoding is LEAD_RECORD_ENCODING
    assert ROUTES["routing_changelog"].encoding is ROUTING_STATE_ENCODING
    assert ROUTES["visits_changelog"].encoding is VISITS_ENCODING
    with pytest.raises(ValueError, match="compactly encoded values"):
        value_adapters(Settings.model_construct(), ("leads_changelog",))
    _, description = SCHEMAS["lead-record"]
    assert "compact encoding" in description


def test_a_later_event_keeps_the_record_readable() -> None:
    """A record whose window holds several pending events (events minutes apart) reads back equal too."""
    router = Router()
    record: LeadRecord | None = None
    for n in range(6):
        event = make_event("activity", 60.0 * n, action="page_view", lead_id=LEAD)
        if record is None:
            created = make_event("lead.created", -60.0, lead_id=LEAD)
            record = router.decide(None, created, created.occurred_at).record
        record = router.decide(record, event, event.occurred_at + timedelta(seconds=1)).record
    assert record is not None
    assert len(record.pending) > 1
    assert LEAD_RECORD_ENCODING.decode(LEAD_RECORD_ENCODING.encode(record)) == record
