"""How the worker's tables encode their values, in their stores and in their changelog topics."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from pydantic import TypeAdapter

from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER
from leadflow.schemas.visits import VISITS_ADAPTER


class ModelCodec(codecs.Codec):
    """Table values as compact JSON (pydantic's Rust serializer), not Faust Records: cheaper both ways."""

    def __init__(self, adapter: TypeAdapter[Any]) -> None:
        super().__init__()
        self.adapter = adapter

    def _dumps(self, obj: Any) -> bytes:
        return self.adapter.dump_json(obj, exclude_defaults=True)

    def _loads(self, s: bytes) -> Any:
        return self.adapter.validate_json(s)


# The codec names the tables' `value_codec` gives (streams.runtime.app).
LEAD_RECORD_CODEC = "leadrecord"
ROUTING_STATE_CODEC = "routingstate"
SITE_VISITS_CODEC = "sitevisits"
codecs.register(LEAD_RECORD_CODEC, ModelCodec(RECORD_ADAPTER))
codecs.register(ROUTING_STATE_CODEC, ModelCodec(ROUTING_STATE_ADAPTER))
codecs.register(SITE_VISITS_CODEC, ModelCodec(VISITS_ADAPTER))
