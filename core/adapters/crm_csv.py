"""A CRM lead export (CSV) -> lead histories as envelopes: what `leadflow import-csv` writes for calibration.

The shape is the common one (e.g. the public "Lead Scoring" X Education export): one row per lead with an id,
the lead source and origin, activity counts (visits, page views per visit), time on site, the last activity,
profile answers, and a converted flag. Pure: a row (header -> text) in, the lead's events or the reason it cannot
be used out; the shell (streams.cli.csv_import) reads the file and writes the JSONL.

Per row, in order:

- `lead.created` at the row's creation time (a `created`/`create_date` column, else `start + position x spacing`,
  where the position orders rows by a lead-number column when there is one, else by line), with every other
  column as a profile attribute: a column named like a built-in attribute (seniority, industry, country as an
  ISO code, ...) sets it, anything else becomes a custom attribute named after the header (`Lead Source` ->
  `lead_source`, `Lead Origin` -> `origin`), text as it is, numbers as numbers, yes/no as `yes`/`no`; blanks
  and placeholders (`Select`, `NA`, ...) are left out;
- one `activity` per page view (`visits x page views per visit`, or the visits alone), spread over the first
  hour, at most `max_views`;
- the last activity as an `activity` whose action is the text as a code (`Email Opened` -> `email_open`,
  `Form Submitted on Website` -> `form_submit`, others e.g. `olark_chat_conversation`);
- when converted: a `deal.won` (a fact: the lead becomes a customer, the stages it skipped are recorded)
  `converted_after` later.

Columns sales fills in after the hand-off (in the X Education export: Tags, Lead Quality, Lead Profile, the
Asymmetrique scores) would leak the outcome into the calibration: drop them (`drop`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from leadflow.schemas.events import MAX_CUSTOM_ATTRIBUTES, MAX_CUSTOM_NAME, MAX_CUSTOM_TEXT

SOURCE: Final = "crm_csv"
ID_COLUMNS: Final = ("prospect_id", "lead_id", "id", "record_id", "contact_id", "email")
NUMBER_COLUMNS: Final = ("lead_number", "number", "lead_no")
CREATED_COLUMNS: Final = ("created_at", "create_date", "created_date", "created", "date_created")
CONVERTED_COLUMNS: Final = ("converted", "is_converted", "won", "is_won", "closed_won")
VISITS_COLUMNS: Final = ("totalvisits", "total_visits", "visits", "number_of_visits")
PAGES_PER_VISIT_COLUMNS: Final = ("page_views_per_visit", "pages_per_visit", "pageviews_per_visit")
PAGE_VIEWS_COLUMNS: Final = ("page_views", "pageviews", "total_page_views")
LAST_ACTIVITY_COLUMNS: Final = ("last_activity",)
TIME_ON_SITE_COLUMNS: Final = ("total_time_spent_on_website", "time_on_site", "time_spent_on_website")
RENAMED: Final = {"lead_origin": "origin"}  # the report's by_source reads the custom attribute `origin`
BUILT_IN_TEXT: Final = ("seniority", "industry", "persona", "segment", "territory")
BLANKS: Final = ("", "select", "na", "n/a", "null", "none", "nan", "-")
TRUE: Final = ("1", "yes", "y", "true", "t", "sim", "si", "sí")
FALSE: Final = ("0", "no", "n", "false", "f", "não", "nao")
ACTIONS: Final = {
    "email_opened": "email_open",
    "email_link_clicked": "email_click",
    "form_submitted_on_website": "form_submit",
    "page_visited_on_website": "page_view",
    "converted_to_lead": "form_submit",
    "unsubscribed": "unsubscribe",
}


def column_key(header: str) -> str:
    """A header as a code: lower case, runs of other characters as `_` (`Lead Source` -> `lead_source`)."""
    key = re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")
    if not key or not key[0].isalpha():
        key = f"c_{key}"
    return key[:MAX_CUSTOM_NAME]


def action_code(text: str) -> str:
    key = column_key(text)
    return ACTIONS.get(key, key)


@dataclass(frozen=True)
class CsvOptions:
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    spacing: timedelta = timedelta(hours=1)
    converted_after: timedelta = timedelta(days=14)
    max_views: int = 50
    drop: frozenset[str] = frozenset()  # column keys left out
    blanks: frozenset[str] = frozenset(BLANKS)


@dataclass(frozen=True)
class Columns:
    """Which column plays which part, found once from the header."""

    keys: dict[str, str]  # column key -> header as written
    id: str | None
    number: str | None
    created: str | None
    converted: str | None
    visits: str | None
    pages_per_visit: str | None
    page_views: str | None
    last_activity: str | None
    profile: tuple[str, ...] = field(default=())

    def missing(self) -> list[str]:
        """What the export must have, with the names it may go by."""
        problems = []
        if self.id is None:
            problems.append(f"no lead id column: name one {', '.join(ID_COLUMNS)}")
        if self.converted is None:
            problems.append(f"no converted flag column: name one {', '.join(CONVERTED_COLUMNS)} (1/0 or yes/no)")
        return problems


def columns(headers: Sequence[str], drop: frozenset[str] = frozenset()) -> Columns:
    keys = {column_key(h): h for h in headers if h.strip() and column_key(h) not in drop}

    def first(names: Sequence[str]) -> str | None:
        return next((name for name in names if name in keys), None)

    chosen = {
        "id": first(ID_COLUMNS),
        "number": first(NUMBER_COLUMNS),
        "created": first(CREATED_COLUMNS),
        "converted": first(CONVERTED_COLUMNS),
        "visits": first(VISITS_COLUMNS),
        "pages_per_visit": first(PAGES_PER_VISIT_COLUMNS),
        "page_views": first(PAGE_VIEWS_COLUMNS),
        "last_activity": first(LAST_ACTIVITY_COLUMNS),
    }
    roles = {key for key in chosen.values() if key is not None}
    profile = tuple(key for key in keys if key not in roles)[:MAX_CUSTOM_ATTRIBUTES]
    return Columns(keys=keys, profile=profile, **chosen)


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", "")) if text.strip() else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and abs(value) < 1e15 else None


def _flag(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    return None


def attribute(key: str, text: str) -> tuple[str, Any] | None:
    """A profile attribute from a column, or None (a blank, an unusable value)."""
    name = RENAMED.get(key, key)
    if name == "country":
        code = text.strip()
        return ("country", code) if re.fullmatch(r"[A-Z]{2}", code) else ("country_name", code[:MAX_CUSTOM_TEXT])
    if name in BUILT_IN_TEXT:
        code = column_key(text)
        return (name, code) if code[0].isalpha() else None
    if name == "company_size":
        number = _number(text)
        return (name, int(number)) if number is not None and 0 <= number <= 10_000_000 else None
    if name in ("email", "job_title", "company"):
        return (name, text.strip()[:320])
    flag = _flag(text) if not text.strip().isdigit() else None
    if flag is not None:
        return name, "yes" if flag else "no"
    number = _number(text)
    if number is not None:
        return name, int(number) if number.is_integer() else number
    return name, text.strip()[:MAX_CUSTOM_TEXT]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_created(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


def lead_events(
    row: Mapping[str, str], position: int, cols: Columns, options: CsvOptions
) -> list[dict[str, Any]] | str:
    """The lead's events, or the reason the row cannot be used (naming the column and the fix)."""

    def cell(key: str | None) -> str:
        if key is None:
            return ""
        text = row.get(cols.keys[key]) or ""
        return "" if text.strip().lower() in options.blanks else text

    lead_id = cell(cols.id).strip()
    if not lead_id or any(ch.isspace() for ch in lead_id) or len(lead_id) > 200:
        return f"{cols.keys.get(cols.id or '', 'id')}: a lead id without spaces is required (got {lead_id!r})"
    converted = _flag(cell(cols.converted))
    if converted is None:
        header = cols.keys.get(cols.converted or "", "converted")
        return f"{header}: must be 1/0, yes/no or true/false (got {cell(cols.converted)!r})"
    created = options.start + options.spacing * position
    if cols.created is not None and cell(cols.created):
        parsed = parse_created(cell(cols.created))
        if parsed is None:
            header = cols.keys[cols.created]
            return f"{header}: not a date; write it as ISO 8601, e.g. 2026-03-01T10:00:00Z (got {cell(cols.created)!r})"
        created = parsed
    data: dict[str, Any] = {}
    for key in cols.profile:
        text = cell(key)
        if text:
            found = attribute(key, text)
            if found is not None and found[0] not in data:
                data[found[0]] = found[1]
    events = [_event(lead_id, "created", "lead.created", created, data)]
    views = _views(cell(cols.visits), cell(cols.pages_per_visit), cell(cols.page_views), options.max_views)
    step = timedelta(hours=1) / max(1, views + 1)
    for n in range(views):
        events.append(_event(lead_id, f"view-{n}", "activity", created + step * (n + 1), {"action": "page_view"}))
    last = cell(cols.last_activity)
    if last:
        at = created + timedelta(hours=1)
        events.append(_event(lead_id, "last-activity", "activity", at, {"action": action_code(last)}))
    if converted:
        events.append(_event(lead_id, "won", "deal.won", created + options.converted_after, {}))
    return events


def _views(visits: str, per_visit: str, page_views: str, most: int) -> int:
    total = _number(page_views)
    if total is None:
        count = _number(visits)
        if count is None:
            return 0
        pages = _number(per_visit)
        total = count * pages if pages is not None and pages > 0 else count
    return int(max(0, min(most, round(total))))


def _event(lead_id: str, suffix: str, kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{SOURCE}:{lead_id}:{suffix}",
        "lead_id": lead_id,
        "type": kind,
        "occurred_at": _iso(at),
        "source": SOURCE,
        "data": data,
    }
