"""Turn pydantic validation errors into lines a person can act on: `path.to[2].field: what to do`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

from leadflow.schemas.base import PATTERN_HINTS

_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "missing": "is required",
    "extra_forbidden": "is not a known field (check the spelling)",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "tuple_type": "must be a list",
    "timezone_aware": "must include a UTC offset (RFC 3339), e.g. 2026-11-24T10:00:00Z or 2026-11-24T07:00:00-03:00",
    "datetime_parsing": "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z",
    "datetime_type": "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z",
    "datetime_from_date_parsing": "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T10:00:00Z",
}

# A model validator that names the field it complains about starts its message with a path relative to the model.
_RELATIVE_PATH = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z0-9_]+)*): (.+)$", re.DOTALL)


def format_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def describe_errors(error: ValidationError, *, drop_leading: int = 0) -> list[str]:
    """One line per problem. `drop_leading` strips union tags pydantic puts in front of the path."""
    problems = []
    for e in error.errors():
        hint = PATTERN_HINTS.get(str(e.get("ctx", {}).get("pattern")))
        message = (
            hint
            or _MESSAGES.get(e["type"])
            or (
                str(e["msg"])
                .removeprefix("Value error, ")
                .replace("Input should", "must")
                .replace("String should", "must")
                .replace("Tuple should", "must")
            )
        )
        loc = tuple(e["loc"])[drop_leading:]
        relative = _RELATIVE_PATH.match(message) if e["type"] == "value_error" else None
        if relative:  # "lifecycle" + "transitions.lead: ..." -> "lifecycle.transitions.lead: ..."
            inner, message = relative.groups()
            problems.append(f"{format_path(loc)}.{inner}: {message}" if loc else f"{inner}: {message}")
        else:
            problems.append(f"{format_path(loc)}: {message}")
    return problems
