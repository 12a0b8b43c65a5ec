"""JSON Schema files for producers and consumers in other languages (`leadflow schema --out DIR`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from leadflow.schemas.policy import Policy
from leadflow.schemas.review import Review
from leadflow.streams.runtime.routes import KEY_RULES, ROUTES

# What the schema file of a table's changelog adds: its values are that schema's JSON, compactly encoded.
ENCODED = (
    " A value is not this JSON as such but its compact encoding (schemas/record_encoding.py): a value whose first "
    "byte is `{` is the JSON itself; otherwise that byte names a preset dictionary (schemas/record_dictionaries.py) "
    "and a compression: 0x41-0x7a, what the tables write, is a zstd frame (RFC 8878, no magic number, checksum or "
    "dictionary id) of the JSON, defaults left out, with the dictionary of the byte minus 0x40 as raw content; "
    "0x01-0x3a is a raw deflate stream (RFC 1951) with the dictionary of the byte itself."
)

# A file per topic whose route names one (its values), and the documents that are not records of a topic.
SCHEMAS: dict[str, tuple[TypeAdapter[Any], str]] = {
    **{
        route.schema_file: (
            route.value,
            f"A record of {route.default} (key: {KEY_RULES[route.key]}): {route.description}."
            + (ENCODED if route.encoding is not None else ""),
        )
        for route in ROUTES.values()
        if route.schema_file is not None and route.value is not None
    },
    "policy": (TypeAdapter(Policy), "The SLA policy file (YAML), as validated by `leadflow policy check`."),
    "review": (TypeAdapter(Review), "The weekly or monthly SLA review: `leadflow report --period ... --json`."),
}


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (adapter, description) in SCHEMAS.items():
        schema = adapter.json_schema(by_alias=True)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://leadflow.dev/schemas/{name}.schema.json",
            "description": description,
            **schema,
        }
        path = out / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
