"""`leadflow calibrate` on a history of 10,000 leads, against `leadflow replay` of the same file in the same run.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.calibrate --write-results        # 10,000 simulated leads (~62k events)
    .venv/bin/python -m benchmarks.calibrate --leads 2000

Input: simulated lead journeys (``streams.dev.simulator.journeys``, seed 7), generated once into ``--cache-dir``
(default: the system temp dir) and reused while it exists. The file is read once beforehand (page cache).

Cases, in one run, over the same file, in process, with the default policy:

  a  ``streams.cli.replay.replay``: read, sort, decode, the whole worker (core.engine), the funnel report
  b  ``streams.cli.calibrate_command.calibrate`` with the JSON report, the proposal file and the HTML page: the
     observed replay, the metrics with their bootstrap intervals (1,000 resamples), the evidence, the fitted
     proposal, the what-if replay under it, and the writing

The goal (issue 16): (b) under a minute for 10,000 leads. The ratio b / a says what calibrating costs beyond one
replay (it replays twice: the history under the policy, then under the proposal).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section
from leadflow.streams.cli.calibrate_command import CalibrateOptions, calibrate, write_outputs
from leadflow.streams.cli.replay import ReplayOptions, replay
from leadflow.streams.dev.simulator import journeys

SEED = 7
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SECTION_TITLE = "calibrate"
GOAL_S = 60.0


@dataclass
class CaseResult:
    case: str
    label: str
    seconds: float
    notes: str


def history_file(leads: int, cache_dir: Path) -> tuple[Path, int]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"calibrate-seed{SEED}-{leads}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("wb", buffering=1 << 20) as out:
            for event in journeys(SEED, leads, START):
                out.write(orjson.dumps(event) + b"\n")
        partial.rename(path)
    with path.open("rb") as lines:
        events = sum(1 for _ in lines)  # also warms the page cache
    return path, events


def replay_case(path: Path, workdir: Path) -> CaseResult:
    started = time.perf_counter()
    result = replay(ReplayOptions(events=path, report_json=workdir / "replay.json", temp_dir=workdir))
    seconds = time.perf_counter() - started
    return CaseResult("a", "leadflow replay", seconds, f"{result.reports[0]['leads']:,} leads")


def calibrate_case(path: Path, workdir: Path) -> CaseResult:
    options = CalibrateOptions(
        history=path,
        report_json=workdir / "calibration.json",
        html=workdir / "calibration.html",
        proposal=workdir / "proposed.yaml",
    )
    started = time.perf_counter()
    calibration = calibrate(options)
    write_outputs(calibration)
    seconds = time.perf_counter() - started
    proposal = calibration.proposal
    combined = calibration.measurement.all.scores["combined"].auc
    notes = f"combined AUC {combined:.3f}" if combined is not None else "combined AUC -"
    if proposal is not None and proposal.test.proposed_auc is not None and proposal.test.current_auc is not None:
        notes += (
            f"; newer leads: AUC {proposal.test.current_auc:.3f} -> {proposal.test.proposed_auc:.3f}, "
            f"{len(proposal.changes())} changes proposed"
        )
    return CaseResult("b", "leadflow calibrate (--report-json --html --proposal)", seconds, notes)


def section(results: list[CaseResult], leads: int, events: int, *, load: str, peak_rss_mb: float) -> str:
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    a, b = results
    lines = [
        f"## {now}: {SECTION_TITLE}, {leads:,} leads ({events:,} events), one process",
        "",
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}.",
        f"Input: simulated lead journeys (`benchmarks/calibrate.py`: streams.dev.simulator.journeys, seed {SEED}); "
        f"default policy, target customer. Peak RSS {peak_rss_mb:,.0f} MB. Load average (1 min) {load}.",
        "",
        "| case | what | seconds | vs (a) | notes |",
        "|---|---|---:|---:|---|",
        *(f"| {r.case} | {r.label} | {r.seconds:.1f} | {r.seconds / a.seconds:.2f}x | {r.notes} |" for r in results),
        "",
        f"Goal: calibrate {leads:,} leads in under {GOAL_S:.0f} s: {'met' if b.seconds < GOAL_S else 'missed'} "
        f"({b.seconds:.1f} s).",
        "",
    ]
    return "\n".join(lines)


def write_results(text_section: str, leads: int) -> None:
    """Append the section to RESULTS.md, replacing an earlier calibrate section of the same day and size."""
    append_section(text_section, rf"{SECTION_TITLE}, {leads:,} leads [^\n]*")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=10_000, help="leads in the history (default 10,000)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "leadflow-bench-calibrate")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    path, events = history_file(args.leads, args.cache_dir)
    print(f"input {path} ({args.leads:,} leads, {events:,} events)", flush=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-calibrate-") as temp:
        workdir = Path(temp)
        results = []
        for name, case in (("a", replay_case), ("b", calibrate_case)):
            print(f"case {name} ...", flush=True)
            results.append(case(path, workdir))
            print(f"  {results[-1].seconds:.1f} s: {results[-1].notes}", flush=True)
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = section(results, args.leads, events, load=load, peak_rss_mb=peak_rss_mb)
    print(text)
    if args.write_results:
        write_results(text, args.leads)
        print(f"wrote {RESULTS_MD}")
    return 0 if results[1].seconds < GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
