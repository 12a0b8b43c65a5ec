"""Appending a benchmark's section to benchmarks/RESULTS.md (one place for every benchmark's writer)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nAppended by `benchmarks/*.py`.\n"


def append_section(section: str, same_title: str, path: Path = RESULTS_MD) -> None:
    """Append `section`, first removing the file's last section if it is of today and its title (after the time)
    matches the regular expression `same_title`: a rerun straight after replaces its figures instead of repeating
    them, while an earlier run with other sections written after it (a "before" and its reading) stays."""
    text = path.read_text() if path.exists() else HEADER
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    last = re.compile(rf"\n## {day} \d\d:\d\d UTC: {same_title}\n(?:(?!\n## ).)*\Z", re.S)
    path.write_text(last.sub("", text).rstrip("\n") + "\n\n" + section)
