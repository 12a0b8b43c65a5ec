"""What every adapter shares: reading the body, naming fields by path, times, ids, and rejections without
personal data."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from leadflow.core.adapters import Delivery, Rejection
from leadflow.core.ids import output_id
from leadflow.schemas.events import EARLIEST

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EMAIL = 320


class Invalid(Exception):
    """Raised inside an adapter to stop at the first unusable field; `adapt` turns it into its Rejection."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field)
        self.rejection = reject(field, reason)


def reject(field: str, reason: str) -> Rejection:
    """A Rejection whose text can hold no e-mail address, whatever a caller interpolated by mistake."""
    return Rejection(field=_EMAIL.sub("<e-mail>", field), reason=_EMAIL.sub("<e-mail>", reason))


def shown(value: object) -> str:
    """A payload value safe to quote in a Rejection: a short code-like token, else nothing of it."""
    text = str(value)
    return repr(text) if _SAFE_TOKEN.fullmatch(text) and "@" not in text else "(not shown)"


def json_body(delivery: Delivery) -> Any:
    """The body as JSON, or Invalid naming the body."""
    try:
        return json.loads(delivery.body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Invalid("(body)", "must be UTF-8 JSON text") from None
    except (json.JSONDecodeError, RecursionError):
        raise Invalid("(body)", "must be a JSON document (check that the tool sends application/json)") from None


def mapping(value: object, field: str, what: str = "an object") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(field, f"must be {what}")
    return value


def text_id(value: object, field: str) -> str:
    """An id the tool sends as a number or a string: a non-empty string without whitespace, at most 200 chars."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(field, "is required: a number or a string id")
    text = str(value).strip()
    if not text or len(text) > 200 or any(c.isspace() for c in text):
        raise Invalid(field, "must be an id of 1-200 characters without spaces")
    return text


def optional_text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def email_of(value: object) -> str | None:
    """An e-mail address as the person key, or None when the value is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_EMAIL or _EMAIL.fullmatch(text) is None:
        return None
    return text


def _usable(moment: datetime) -> datetime | None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None  # a time without an offset is ambiguous: the caller falls back to the receipt time
    return moment if moment >= EARLIEST else None


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 / ISO 8601 timestamp with an offset, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return _usable(moment)


def parse_millis(value: object) -> datetime | None:
    """Milliseconds since the Unix epoch (HubSpot's occurredAt), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value < 253_402_300_800_000:  # before year 10000
        return None
    return _usable(datetime.fromtimestamp(value / 1000, UTC))


def first_time(*candidates: datetime | None, fallback: datetime) -> datetime:
    return next((moment for moment in candidates if moment is not None), fallback)


def event_id(source: str, *parts: object) -> str:
    """A deterministic event id: the same delivery (a redelivery included) always gives the same id."""
    return f"{source}-{output_id(source, *(str(part) for part in parts))}"
