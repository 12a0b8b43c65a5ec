"""`leadflow import-csv EXPORT.csv --out HISTORY.jsonl`: a CRM lead export as a history of envelopes.

The file around core.adapters.crm_csv (the pure row -> events mapping, documented there): reads the CSV (UTF-8,
with or without a BOM; the delimiter is sniffed among `,` `;` and tab), orders the rows by their lead-number column
when there is one, and writes one envelope per line, each lead's events together. A row that cannot be used is
skipped and counted with its line number and reason (never fatal); a file that lacks an id or a converted column
stops with one line naming the columns it may go by (exit 2).
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from leadflow.core.adapters.crm_csv import Columns, CsvOptions, column_key, columns, lead_events
from leadflow.streams.cli.output_paths import unwritable

PROG = "leadflow import-csv"
MAX_EXAMPLES = 5


class ImportError_(Exception):
    """What stops an import; the message names the file or column and the fix (exit code 2)."""


@dataclass
class Imported:
    rows: int = 0
    leads: int = 0
    events: int = 0
    converted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def _sort_position(row: dict[str, str], cols: Columns, line: int) -> tuple[float, int]:
    if cols.number is None:
        return (0.0, line)
    text = (row.get(cols.keys[cols.number]) or "").strip()
    try:
        return (float(text), line)
    except ValueError:
        return (float("inf"), line)


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.exists():
        raise ImportError_(f"{path}: no such file: name the CSV export of your CRM's leads")
    if not path.is_file():
        raise ImportError_(f"{path}: not a file: name the CSV export of your CRM's leads")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportError_(f"{path}: not UTF-8 text (byte {error.start}): export the CSV as UTF-8") from None
    except OSError as error:
        raise ImportError_(f"{path}: cannot read: {error.strerror}") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    headers = list(reader.fieldnames or [])
    if not headers:
        raise ImportError_(f"{path}: empty: the first line must name the columns")
    rows = [(number, row) for number, row in enumerate(reader, start=2)]
    return headers, rows


def import_csv(path: Path, out: Path, options: CsvOptions) -> Imported:
    problem = unwritable("--out", out, reads=(path,))
    if problem is not None:
        raise ImportError_(problem)
    headers, rows = read_rows(path)
    unknown = sorted(options.drop - {column_key(h) for h in headers})
    if unknown:
        # --drop is how outcome columns are kept out of a calibration: a misspelt one must not leak them.
        raise ImportError_(
            f"--drop {', '.join(unknown)}: no such column in {path.name}; its columns: {', '.join(headers)}"
        )
    cols = columns(headers, options.drop)
    missing = cols.missing()
    if missing:
        raise ImportError_(f"{path}: {'; '.join(missing)}")
    ordered = sorted(rows, key=lambda item: _sort_position(item[1], cols, item[0]))
    result = Imported(rows=len(rows))
    seen: set[str] = set()
    try:
        with out.open("wb") as sink:
            for position, (line, row) in enumerate(ordered):
                events = lead_events(row, position, cols, options)
                if isinstance(events, str):
                    skip(result, line, events)
                    continue
                lead = events[0]["lead_id"]
                if lead in seen:
                    skip(result, line, f"{cols.keys[cols.id or '']}: {lead} appears twice; the first row was kept")
                    continue
                seen.add(lead)
                result.leads += 1
                result.events += len(events)
                result.converted += events[-1]["type"] == "deal.won"
                sink.write(b"".join(orjson.dumps(event) + b"\n" for event in events))
    except OSError as error:
        raise ImportError_(f"--out {out}: cannot write: {error.strerror}") from None
    except OverflowError:
        out.unlink(missing_ok=True)
        raise ImportError_(PAST_9999) from None
    return result


PAST_9999 = "the leads' times would pass the year 9999: lower --start, --spacing-minutes or --converted-after-days"


def skip(result: Imported, line: int, reason: str) -> None:
    result.skipped[reason.split(":", 1)[0]] += 1
    if len(result.examples) < MAX_EXAMPLES:
        result.examples.append(f"line {line}: {reason}")


def parse_start(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ImportError_(
            f"--start {text!r}: not a time; give RFC 3339 with an offset, e.g. 2026-01-01T00:00:00Z"
        ) from None
    if at.utcoffset() is None:
        raise ImportError_(f"--start {text!r}: the time needs an offset, e.g. {text}Z")
    return at


def run_import(
    path: Path,
    out: Path,
    *,
    start: str,
    spacing_minutes: float,
    converted_after_days: float,
    drop: list[str],
) -> int:
    try:
        try:
            options = CsvOptions(
                start=parse_start(start),
                spacing=timedelta(minutes=spacing_minutes),
                converted_after=timedelta(days=converted_after_days),
                drop=frozenset(column_key(name) for name in drop),
            )
        except OverflowError:
            raise ImportError_(PAST_9999) from None
        result = import_csv(path, out, options)
    except ImportError_ as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    skipped = sum(result.skipped.values())
    print(
        f"imported {path.name}: {result.rows:,} rows, {result.leads:,} leads ({result.converted:,} converted), "
        f"{result.events:,} events, {skipped:,} rows skipped; written to {out}"
    )
    for example in result.examples:
        print(f"  skipped {example}")
    return 0
