"""JSON Schema files for producers and consumers in other languages (`leadflow schema --out DIR`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.events import EVENT_ADAPTER
from schemas.outputs import DEAD_LETTER_ADAPTER, TRANSITION_ADAPTER
from schemas.policy import Policy
from schemas.review import Review
from schemas.state import RECORD_ADAPTER
from schemas.visits import VISITS_ADAPTER

SCHEMAS: dict[str, tuple[TypeAdapter[Any], str]] = {
    "lead-event": (EVENT_ADAPTER, "An input event on leads.events (key = lead_id); `type` selects `data`."),
    "transition": (TRANSITION_ADAPTER, "An output on leads.transitions: stage.changed, event.refused, ..."),
    "dead-letter": (DEAD_LETTER_ADAPTER, "An output on leads.deadletter: reason, errors, original bytes."),
    "lead-record": (RECORD_ADAPTER, "A value of the leads table (its changelog topic)."),
    "policy": (TypeAdapter(Policy), "The SLA policy file (YAML), as validated by `leadflow policy check`."),
    "site-visits": (VISITS_ADAPTER, "A site-visits report on leads.visits (key = <date>|<traffic_source>)."),
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
