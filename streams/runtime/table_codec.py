"""How the worker's tables encode their values, in their stores and in their changelog topics."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from leadflow.schemas.record_encoding import (
    LEAD_RECORD_ENCODING,
    ROUTING_STATE_ENCODING,
    VISITS_ENCODING,
    RecordEncoding,
)


class ModelCodec(codecs.Codec):
    """Table values in the compact encoding of schemas.record_encoding (JSON without defaults, compressed
    with zstd and the table's preset dictionary; plain JSON written before it is still read), not Faust Records:
    cheaper both ways."""

    def __init__(self, encoding: RecordEncoding[Any]) -> None:
        super().__init__()
        self.encoding = encoding

    def _dumps(self, obj: Any) -> bytes:
        return self.encoding.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.encoding.decode(s)


# The codec names the tables' `value_codec` gives (streams.runtime.app).
LEAD_RECORD_CODEC = "leadrecord"
ROUTING_STATE_CODEC = "routingstate"
SITE_VISITS_CODEC = "sitevisits"
codecs.register(LEAD_RECORD_CODEC, ModelCodec(LEAD_RECORD_ENCODING))
codecs.register(ROUTING_STATE_CODEC, ModelCodec(ROUTING_STATE_ENCODING))
codecs.register(SITE_VISITS_CODEC, ModelCodec(VISITS_ENCODING))
