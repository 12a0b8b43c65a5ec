"""How the worker's tables write their values, in their stores and changelog topics: compact JSON (issue 15).

A value is the JSON of its schema with defaults left out (pydantic's serializer), then, since 2026-12-06, deflated
with a preset dictionary of the words every such record shares (schemas/record_vocabulary.py builds them from the
schema, the default policy's names and the core's words; schemas/record_dictionaries.py freezes them). A lead's
changelog value went from ~2.0 KB to ~0.4 KB at the median of the simulator's journeys (benchmarks/RESULTS.md).

The value's first byte says how to read the rest:

- ``{`` (0x7b): the whole value is plain JSON, as every table wrote before; still read, so that a worker restoring a
  changelog written by an older version loses no lead;
- 0x01-0x7a: the rest is a raw deflate stream (RFC 1951, no zlib header or checksum: the broker and the store check
  records) of the JSON, compressed with the preset dictionary of that format byte (``DICTIONARIES``).

A dictionary, once published, never changes: a new one gets the next format byte and the old ones stay readable, so
any value ever written decodes. A value starting with another byte is refused with an error naming the byte.

Pure: no Faust here (streams.runtime.table_codec registers these encodings as the tables' Faust codecs), so readers
of a changelog topic and the benchmarks decode with the same code as the worker.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import TypeAdapter

from leadflow.schemas.record_dictionaries import DICTIONARIES
from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER, LeadRecord, RoutingState
from leadflow.schemas.visits import VISITS_ADAPTER, SiteVisits

T = TypeVar("T")

TableKind = Literal["lead_record", "routing_state", "site_visits"]
KIND_NAMES: Final[Mapping[str, str]] = {
    "lead_record": "a lead record (the leads table)",
    "routing_state": "the routing state (the routing table)",
    "site_visits": "a site-visits report (the visits table)",
}

PLAIN_JSON: Final = ord("{")  # the first byte of a plain JSON value: every value written before the encoding
LEVEL: Final = 6  # zlib's default; a lead record: level 9 saves under 1% more, level 1 costs 13% more bytes
# The routing state is one record of up to ~300 KB (2,000 answers and releases kept) written at every route request
# and release: level 1 deflates it in a third of level 6's time (1.9 against 5.3 ms) for 7% more bytes.
ROUTING_LEVEL: Final = 1
WINDOW_BITS: Final = -15  # negative: a raw deflate stream; 32 KiB, room for the dictionary and a large record


class RecordEncodingError(ValueError):
    """A stored value that cannot be read as its table's value: an unknown format byte, or a damaged stream."""


class RecordEncoding(Generic[T]):
    """A table's values: `encode` writes the newest format, `decode` reads every format ever written."""

    def __init__(
        self,
        adapter: TypeAdapter[T],
        kind: TableKind,
        dictionaries: Mapping[int, tuple[str, bytes]],
        level: int = LEVEL,
    ) -> None:
        self.adapter, self.kind, self.level = adapter, kind, level
        self.dictionaries = {byte: data for byte, (k, data) in dictionaries.items() if k == kind}
        if not self.dictionaries:
            raise ValueError(f"no preset dictionary for {kind}; run python -m leadflow.schemas.record_vocabulary")
        self.others = {byte: k for byte, (k, _) in dictionaries.items() if k != kind}
        self.format = max(self.dictionaries)  # the newest dictionary of this table
        self._header = bytes((self.format,))
        self._dictionary = self.dictionaries[self.format]

    def encode(self, value: T) -> bytes:
        """The stored value: its JSON without defaults, deflated with the newest dictionary."""
        return self.pack(self.adapter.dump_json(value, exclude_defaults=True))

    def decode(self, data: bytes) -> T:
        """The value, from any format this table ever wrote (a pydantic ValidationError if the JSON is not one)."""
        return self.adapter.validate_json(self.to_json(data))

    def pack(self, json: bytes) -> bytes:
        """The stored form of a value's JSON (the newest format)."""
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, WINDOW_BITS, zlib.DEF_MEM_LEVEL, 0, self._dictionary)
        return self._header + compressor.compress(json) + compressor.flush()

    def to_json(self, data: bytes) -> bytes:
        """The JSON of a stored value, whatever its format."""
        if not data:
            raise RecordEncodingError(f"an empty value is not {KIND_NAMES[self.kind]}")
        first = data[0]
        if first == PLAIN_JSON:
            return data
        dictionary = self.dictionaries.get(first)
        if dictionary is None:
            raise RecordEncodingError(self._unknown(first))
        inflater = zlib.decompressobj(WINDOW_BITS, zdict=dictionary)
        try:
            json = inflater.decompress(data[1:])
        except zlib.error as error:
            raise RecordEncodingError(
                f"a value of format byte {first:#04x} ({len(data):,} bytes) is not a deflate stream: {error}"
            ) from None
        if not inflater.eof or inflater.unused_data:
            raise RecordEncodingError(
                f"a value of format byte {first:#04x} ({len(data):,} bytes) is "
                + ("cut short" if not inflater.eof else f"followed by {len(inflater.unused_data):,} stray bytes")
            )
        return json

    def _unknown(self, first: int) -> str:
        what = f"{KIND_NAMES[self.kind]} starts with format byte {first:#04x}"
        other = self.others.get(first)
        if other is not None:
            return f"{what}, which is {KIND_NAMES[other]}'s: a value of another table was given to this one"
        known = ", ".join(f"{byte:#04x}" for byte in sorted(self.dictionaries))
        return (
            f"{what}, which this leadflow does not know (it reads {{ and {known}): a newer leadflow wrote it with a "
            "dictionary added since, or the value is not one of this table's. Run the leadflow version that wrote "
            "the changelog (or a newer one); do not delete the changelog, its leads would be lost"
        )


LEAD_RECORD_ENCODING: Final[RecordEncoding[LeadRecord]] = RecordEncoding(RECORD_ADAPTER, "lead_record", DICTIONARIES)
ROUTING_STATE_ENCODING: Final[RecordEncoding[RoutingState]] = RecordEncoding(
    ROUTING_STATE_ADAPTER, "routing_state", DICTIONARIES, ROUTING_LEVEL
)
VISITS_ENCODING: Final[RecordEncoding[SiteVisits]] = RecordEncoding(VISITS_ADAPTER, "site_visits", DICTIONARIES)

ENCODINGS: Final[Mapping[TableKind, RecordEncoding[Any]]] = {
    "lead_record": LEAD_RECORD_ENCODING,
    "routing_state": ROUTING_STATE_ENCODING,
    "site_visits": VISITS_ENCODING,
}
