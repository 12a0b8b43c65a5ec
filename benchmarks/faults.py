"""The fault-injection suite's long variants (tests/faults, issue 13 item 7): 20 SIGKILLs of the worker during a
real-time stream, a broker stopped for a minute, two workers with one killed under load, every event twice and
shuffled, 50,000 hostile records. Runs pytest on tests/faults with LEADFLOW_FAULTS=long (each test then prints what it
used: kills, events, hostile records) and, with --write-results, appends the figures to benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.faults                      # the long variants (~15-20 min)
    .venv/bin/python -m benchmarks.faults --write-results
    .venv/bin/python -m benchmarks.faults -k kills             # one of them (a pytest -k expression)

The CI variants are the same tests at their default sizes (tests/faults/sizes.py), in the ordinary pytest run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
SHOWN = ("kills", "kill_moments_s", "workers", "join_s", "takeover_s", "outage_s", "down_s", "events", "delivered",
         "leads", "seeds_done", "reordered_in_lead", "sla_outputs", "breaches", "breach_records_repeated", "handoffs",
         "hostile_records", "applied", "refused", "dead_lettered", "worker_log_lines")  # fmt: skip


def run(expression: str | None) -> tuple[int, list[dict[str, Any]], float]:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "faults.json"
        env = {**os.environ, "LEADFLOW_FAULTS": "long", "LEADFLOW_FAULTS_REPORT": str(report)}
        command = [sys.executable, "-m", "pytest", "tests/faults", "-p", "no:cacheprovider", "-q"]
        if expression:
            command += ["-k", expression]
        started = time.monotonic()
        code = subprocess.call(command, env=env)
        elapsed = time.monotonic() - started
        rows = json.loads(report.read_text()) if report.exists() else []
    return code, rows, elapsed


def section(rows: list[dict[str, Any]], elapsed: float) -> str:
    info = machine_info()
    today = datetime.now(UTC).date().isoformat()
    lines = [
        f"### {today}: fault-injection suite, long variants (`python -m benchmarks.faults`)",
        "",
        f"Machine: {info['arch']}, {info['cpu']}, {info['cpus']} CPUs, Python {info['python']}; Apache Kafka "
        f"(single KRaft node) per session; whole run {elapsed / 60:.1f} min.",
        "",
        "| test | outcome | duration | figures |",
        "|---|---|---:|---|",
    ]
    for row in rows:
        figures = "; ".join(f"{name} {row[name]}" for name in SHOWN if name in row)
        name = row["test"].split("::")[-1]
        lines.append(f"| `{name}` | {row['outcome']} | {row.get('duration_s', '?')} s | {figures} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", dest="expression", help="only the tests matching this pytest -k expression")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    code, rows, elapsed = run(args.expression)
    text = section(rows, elapsed)
    print(text)
    if args.write_results and rows:
        with RESULTS_MD.open("a", encoding="utf-8") as out:
            out.write("\n\n" + text)
        print(f"wrote {RESULTS_MD}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
