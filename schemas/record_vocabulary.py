"""The preset dictionaries of the tables' compact values (schemas.record_encoding), built from what every record
shares: its schema, the default policy's words and the words the core writes.

A preset dictionary is text the compressor (zstd; deflate before it) may refer back to before the value's first
byte, so a record's field names and the words it repeats cost a few bits from their first occurrence on. What goes
in, per table:

- from the value's JSON Schema: each model as a skeleton, its field names in their order, each followed by the
  start of a value that differs from its default (only such values are written: defaults are left out), and every
  literal of an enum or a constant (event types, SLA entry kinds, hand-off reasons, contact channels);
- from the default policy: stage, SLA, calendar, team and pool names, engagement actions, rejection and lost
  reasons, deal pipeline stages (the contract's vocabulary; people, profile values and amounts are left out);
- the words the core writes into records: stage-change and cancellation reasons, the prefixes of its own event
  ids, the sources of its own events;
- the shape of a timestamp as the records write it (`T00:00:00.000000Z"`).

Nothing comes from data (e-mails, companies, ids of leads or of owners, the simulator's sources or campaigns):
a real deployment's values differ, and a dictionary fitted to the benchmark's would flatter it.

The dictionaries the encoding uses are frozen in schemas/record_dictionaries.py; a published one never changes
(values written with it must stay readable). When the schema or these words change, `python -m
leadflow.schemas.record_vocabulary --write` adds a new version of each table's dictionary that differs from its
newest one, under a new format byte (tests/test_record_encoding.py fails until it is done).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter

from leadflow.schemas.policy import Policy, load_policy
from leadflow.schemas.state import RECORD_ADAPTER, ROUTING_STATE_ADAPTER
from leadflow.schemas.visits import VISITS_ADAPTER

if TYPE_CHECKING:  # the encoding reads the frozen dictionaries this module writes: no import at run time
    from leadflow.schemas.record_encoding import TableKind

# The last byte a dictionary may take: its zstd format byte (0x40 higher, schemas.record_encoding) stays below "{".
LAST_DICTIONARY: Final = 0x3A

ADAPTERS: Final[Mapping[TableKind, TypeAdapter[Any]]] = {
    "lead_record": RECORD_ADAPTER,
    "routing_state": ROUTING_STATE_ADAPTER,
    "site_visits": VISITS_ADAPTER,
}

# What the core writes into a lead's record beside the schema's literals: the reasons of stage entries
# (core.lifecycle, core.sla.breach) and of cancelled clocks (core.sla.outcome, core.sla.follow), the prefixes of its
# own events' ids (core.deadlines, core.routing, core.merges) and their sources.
CORE_WORDS: Final = (
    "created",
    "score",
    "hand_raiser",
    "external",
    "accepted",
    "advocacy",
    "converted",
    "disqualified",
    "won",
    "none",
    "erased",
    "not_escalated",
    "rejected:",
    "lost:",
    "deal:",
    "sla:",
    "left:",
    "merged:",
    "timer:",
    "route:",
    "merge:",
    "leadflow.timer",
    "leadflow.routing",
    "leadflow.merge",
)

# A timestamp as pydantic writes an aware UTC datetime (microseconds, Z); only its shape is shared.
TIMESTAMP_SHAPE: Final = '"2000-01-01T00:00:00.000000Z"'


def policy_words(policy: Policy) -> list[str]:
    """The contract's vocabulary that records repeat: names of stages, SLAs, calendars, teams, pools, actions,
    reasons and deal stages (not people, profile values or amounts)."""
    words = [*policy.lifecycle.stages, *policy.lifecycle.side_stages, *policy.lifecycle.advocacy_actions]
    words += [rule.action for rule in policy.scoring.engagement]
    words += [reason.code for reason in policy.rejection_reasons]
    words += [stage.stage for stage in policy.deals.pipeline] + list(policy.deals.lost_reasons)
    words += list(policy.calendars) + routing_words(policy)
    words += [sla.name for sla in policy.slas]
    return words


def routing_words(policy: Policy) -> list[str]:
    """The names the router's state repeats: its pools' teams and names (not its owners: people)."""
    if policy.routing is None:
        return []
    pools = policy.routing.pools
    return [*(pool.team for pool in pools), *(pool.name for pool in pools), policy.routing.fallback_pool]


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _not_null(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = _resolve(schema, defs)
    branches = [_resolve(b, defs) for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def _value_start(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """How a value of `schema` that differs from its default starts, in JSON."""
    default = schema.get("default")
    schema = _not_null(schema, defs)
    kind = schema.get("type")
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return json.dumps(schema["enum"][0])
    if kind == "string":
        return TIMESTAMP_SHAPE if schema.get("format") == "date-time" else '"'
    if kind == "boolean":
        return "false" if default is True else "true"
    if kind in ("integer", "number"):
        return ""
    if kind == "array":
        return "["
    return "{"  # an object, a model or a union of models


def _skeleton(model: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    fields = model.get("properties", {})
    return "{" + ",".join(f'"{name}":{_value_start(field, defs)}' for name, field in fields.items()) + "}"


def _literals(schema: Any) -> Iterator[str]:
    """Every string of an enum or a constant anywhere in `schema`, in document order."""
    if isinstance(schema, Mapping):
        if isinstance(schema.get("const"), str):
            yield schema["const"]
        for value in schema.get("enum", ()):
            if isinstance(value, str):
                yield value
        for key, value in schema.items():
            if key not in ("const", "enum", "default", "description", "title", "pattern", "examples"):
                yield from _literals(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _literals(item)


def _models(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The value's models, the root last, each before the models that hold it (breadth-first from the root,
    reversed): the nearer the end of the dictionary, the cheaper a reference to it."""
    defs = schema.get("$defs", {})
    order: list[str] = []
    seen: set[str] = set()
    queue: list[Mapping[str, Any]] = [schema]
    found: list[Mapping[str, Any]] = []
    while queue:
        current = queue.pop(0)
        if "properties" in current:
            found.append(current)
        for ref in _refs(current):
            if ref not in seen:
                seen.add(ref)
                order.append(ref)
                queue.append(defs[ref])
    return found[::-1]


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, Mapping):
        if "$ref" in schema:
            yield schema["$ref"].rsplit("/", 1)[-1]
        for key, value in schema.items():
            if key != "$defs":
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _unique(words: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(words))


def _without_shared_fields(skeletons: Iterable[str]) -> list[str]:
    """Each skeleton without the first fields it shares with the one before (the members of a union, e.g. the
    event types, share their envelope: it is written once)."""
    parts: list[str] = []
    previous = ""
    for skeleton in skeletons:
        common = min(len(previous), len(skeleton))
        shared = next((n for n in range(common) if previous[n] != skeleton[n]), common)
        parts.append(skeleton[max(0, skeleton.rfind(',"', 0, shared)) :])
        previous = skeleton
    return parts


def build(adapter: TypeAdapter[Any], words: Iterable[str] = ()) -> bytes:
    """A preset dictionary for JSON values of `adapter` (dumped without defaults): `words` and the schema's literals
    as JSON strings, then each model's skeleton, the root's last (a skeleton that starts with the same fields as the
    one before it is written from its first field of its own). Deterministic: the same schema and words give the
    same bytes."""
    schema = adapter.json_schema(mode="serialization")
    defs = schema.get("$defs", {})
    vocabulary = _unique([*words, *_literals(schema)])
    parts = [json.dumps(word) for word in vocabulary]
    parts += _without_shared_fields(_skeleton(model, defs) for model in _models(schema))
    return "".join(parts).encode("ascii")


def vocabulary(kind: TableKind, policy: Policy | None = None) -> list[str]:
    """The words beside the schema's own for one table's dictionary."""
    policy = policy or load_policy()
    if kind == "site_visits":
        return []  # a visits report holds a date, a traffic source and a count: data, no contract words
    if kind == "routing_state":
        return routing_words(policy)
    return [*policy_words(policy), *CORE_WORDS]


def dictionary(kind: TableKind) -> bytes:
    """The dictionary this tree's schema and words give for one table (the newest frozen one must equal it)."""
    return build(ADAPTERS[kind], vocabulary(kind))


FROZEN = Path(__file__).with_name("record_dictionaries.py")
HEADER = '''"""The preset dictionaries of the tables' compact values, frozen: GENERATED by `python -m
leadflow.schemas.record_vocabulary --write` (schemas/record_vocabulary.py says what is in them).

NEVER EDIT OR REMOVE A PUBLISHED DICTIONARY: values in changelogs and stores were written with it, and a worker
restoring them needs it byte for byte. A new dictionary gets a new format byte; every one stays decodable.
"""

from __future__ import annotations

from typing import Final
'''


def _literal(data: bytes, width: int = 100) -> str:
    lines = [data[i : i + width] for i in range(0, len(data), width)]
    return "(\n" + "".join(f"    {line!r}\n" for line in lines) + ")"


def render(dictionaries: Mapping[int, tuple[TableKind, bytes]]) -> str:
    """The source of schemas/record_dictionaries.py for `dictionaries` (format byte -> table kind, bytes)."""
    body = [HEADER]
    for byte, (kind, data) in sorted(dictionaries.items()):
        body.append(f"\n# Format byte {byte:#04x}: {kind}, {len(data):,} bytes.\nD{byte} = {_literal(data)}\n")
    entries = "".join(f'    {byte}: ("{kind}", D{byte}),\n' for byte, (kind, _) in sorted(dictionaries.items()))
    body.append(
        "\n# Format byte (the value's first byte) -> the table kind and the dictionary it was written with.\n"
        f"DICTIONARIES: Final[dict[int, tuple[str, bytes]]] = {{\n{entries}}}\n"
    )
    return "".join(body)


def with_new_versions(published: Mapping[int, tuple[TableKind, bytes]]) -> dict[int, tuple[TableKind, bytes]]:
    """`published` plus, for each table whose newest dictionary differs from what this tree gives, a new one under
    the next free format byte (up to 0x3a: its zstd format byte, 0x40 higher, stays below "{", which starts a plain
    JSON value; schemas.record_encoding)."""

    result = dict(published)
    for kind in ADAPTERS:
        newest = [data for _, (k, data) in sorted(published.items()) if k == kind]
        fresh = dictionary(kind)
        if not newest or newest[-1] != fresh:
            byte = max(result, default=0) + 1
            if byte > LAST_DICTIONARY:
                raise ValueError("dictionary bytes up to 0x3a are used; extend the format before adding dictionaries")
            result[byte] = (kind, fresh)
    return result


def published_dictionaries() -> dict[int, tuple[TableKind, bytes]]:
    """The frozen dictionaries (none before the first was written)."""
    try:
        from leadflow.schemas.record_dictionaries import DICTIONARIES
    except ModuleNotFoundError:
        return {}
    return {byte: (_kind(kind), data) for byte, (kind, data) in DICTIONARIES.items()}


def _kind(name: str) -> TableKind:
    for kind in ADAPTERS:
        if kind == name:
            return kind
    raise ValueError(f"schemas/record_dictionaries.py names an unknown table kind {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or extend the frozen preset dictionaries of table values.")
    parser.add_argument("--write", action="store_true", help="add new versions to schemas/record_dictionaries.py")
    args = parser.parse_args(argv)
    published = published_dictionaries()
    extended = with_new_versions(published)
    added = sorted(set(extended) - set(published))
    for byte in added:
        print(f"format byte {byte:#04x}: a new {extended[byte][0]} dictionary, {len(extended[byte][1]):,} bytes")
    if not added:
        print("the frozen dictionaries are up to date")
        return 0
    if args.write:
        FROZEN.write_text(render(extended), encoding="utf-8")
        print(f"wrote {FROZEN}")
        return 0
    print("run with --write to add them", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
