"""How the worker's tables write their values, in their stores and changelog topics: compact JSON (issue 15).

A value is the JSON of its schema with defaults left out (pydantic's serializer), compressed with a preset dictionary
of the words every such record shares (schemas/record_vocabulary.py builds them from the schema, the default
policy's names and the core's words; schemas/record_dictionaries.py freezes them). A lead's changelog value went
from ~2.0 KB to ~0.45 KB at the median of the simulator's journeys (benchmarks/RESULTS.md).

The value's first byte says how to read the rest:

- ``{`` (0x7b): the whole value is plain JSON, as every table wrote before 2026-12-06; still read, so that a worker
  restoring a changelog written by an older version loses no lead;
- 0x01-0x3a: a raw deflate stream (RFC 1951, no zlib header or checksum: the broker and the store check records)
  of the JSON, with the preset dictionary of that byte (``DICTIONARIES``); written for a few hours of 2026-12-06,
  still read;
- 0x41-0x7a: a zstd frame (RFC 8878, without its magic number, checksum or dictionary id) of the JSON, with the
  preset dictionary of the byte minus 0x40 as raw content: what every table writes now. zstd compresses a lead
  record four times faster than deflate did (10 against 40 µs) and reads it twice as fast, for ~8% more bytes.

A dictionary, once published, never changes: a new one gets the next format byte and the old ones stay readable, so
any value ever written decodes. A value starting with another byte is refused with an error naming the byte.

Pure: no Faust here (streams.runtime.table_codec registers these encodings as the tables' Faust codecs), so readers
of a changelog topic and the benchmarks decode with the same code as the worker.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from typing import Any, Final, Generic, Literal, TypeVar

import zstandard
from pydantic import TypeAdapter

from leadflow.schemas.record_dictionaries import DICTIONARIES
from leadflow.schemas.record_vocabulary import LAST_DICTIONARY
from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER, LeadRecord, RoutingState
from leadflow.schemas.visits import VISITS_ADAPTER, SiteVisits

T = TypeVar("T")
V = TypeVar("V")

TableKind = Literal["lead_record", "routing_state", "site_visits"]
KIND_NAMES: Final[Mapping[str, str]] = {
    "lead_record": "a lead record (the leads table)",
    "routing_state": "the routing state (the routing table)",
    "site_visits": "a site-visits report (the visits table)",
}

PLAIN_JSON: Final = ord("{")  # the first byte of a plain JSON value: every value written before the encoding
ZSTD: Final = 0x40  # a zstd value's format byte is its dictionary's byte plus this ("A" for dictionary 0x01)
assert LAST_DICTIONARY + ZSTD < PLAIN_JSON
# zstd's default level. A lead record: level 5 would save 6% of the bytes for twice the time.
LEVEL: Final = 3
# The routing state is one record of up to ~300 KB (2,000 answers and releases kept) written at every route
# request and release: the fastest level.
ROUTING_LEVEL: Final = 1
WINDOW_BITS: Final = -15  # the deflate formats: a raw stream, 32 KiB window


class RecordEncodingError(ValueError):
    """A stored value that cannot be read as its table's value: an unknown format byte, or a damaged stream."""


class RecordEncoding(Generic[T]):
    """A table's values: `encode` writes the newest format, `decode` reads every format ever written.

    zstd's compressor and decompressor objects may not be shared between threads, so each thread gets its own."""

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
        self.others = {byte + offset: k for byte, (k, _) in dictionaries.items() if k != kind for offset in (0, ZSTD)}
        self.dictionary_byte = max(self.dictionaries)  # the newest dictionary of this table
        self.format = self.dictionary_byte + ZSTD
        self._header = bytes((self.format,))
        self._zstd_dictionaries = {
            byte: zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            for byte, data in self.dictionaries.items()
        }
        self._zstd_dictionaries[self.dictionary_byte].precompute_compress(level=level)
        self._threads = threading.local()

    def encode(self, value: T) -> bytes:
        """The stored value: its JSON without defaults, compressed with the newest dictionary."""
        return self.pack(self.adapter.dump_json(value, exclude_defaults=True))

    def decode(self, data: bytes) -> T:
        """The value, from any format this table ever wrote (a pydantic ValidationError if the JSON is not one)."""
        return self.adapter.validate_json(self.to_json(data))

    def pack(self, json: bytes) -> bytes:
        """The stored form of a value's JSON (the newest format)."""
        return self._header + self._compressor().compress(json)

    def decode_as(self, adapter: TypeAdapter[V], data: bytes) -> V:
        """The value read as another model of its JSON (a view that reads only some fields: schemas.state)."""
        return adapter.validate_json(self.to_json(data))

    def to_json(self, data: bytes) -> bytes:
        """The JSON of a stored value, whatever its format."""
        if not data:
            raise RecordEncodingError(f"an empty value is not {KIND_NAMES[self.kind]}")
        first = data[0]
        if first == PLAIN_JSON:
            return data
        if first - ZSTD in self.dictionaries:
            return self._unzstd(first, data)
        if first in self.dictionaries:
            return self._inflate(first, data)
        raise RecordEncodingError(self._unknown(first))

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor: zstandard.ZstdCompressor | None = getattr(self._threads, "compressor", None)
        if compressor is None:
            parameters = zstandard.ZstdCompressionParameters.from_level(
                self.level,
                format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                write_checksum=False,
                write_dict_id=False,
                write_content_size=True,
            )
            dictionary = self._zstd_dictionaries[self.dictionary_byte]
            compressor = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=parameters)
            self._threads.compressor = compressor
        return compressor

    def _decompressor(self, dictionary_byte: int) -> zstandard.ZstdDecompressor:
        known: dict[int, zstandard.ZstdDecompressor] | None = getattr(self._threads, "decompressors", None)
        if known is None:
            known = self._threads.decompressors = {}
        decompressor = known.get(dictionary_byte)
        if decompressor is None:
            decompressor = known[dictionary_byte] = zstandard.ZstdDecompressor(
                dict_data=self._zstd_dictionaries[dictionary_byte], format=zstandard.FORMAT_ZSTD1_MAGICLESS
            )
        return decompressor

    def _unzstd(self, first: int, data: bytes) -> bytes:
        try:
            json: bytes = self._decompressor(first - ZSTD).decompress(data[1:], allow_extra_data=False)
        except zstandard.ZstdError as error:
            raise RecordEncodingError(
                f"a value of format byte {first:#04x} ({len(data):,} bytes) is not a whole zstd frame: {error}"
            ) from None
        return json

    def _inflate(self, first: int, data: bytes) -> bytes:
        inflater = zlib.decompressobj(WINDOW_BITS, zdict=self.dictionaries[first])
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
        known = ", ".join(
            f"{byte:#04x}" for byte in sorted((*self.dictionaries, *(b + ZSTD for b in self.dictionaries)))
        )
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
