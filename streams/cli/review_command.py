"""`leadflow report --period week|month`: the weekly or monthly SLA review (core.review), from an events file
(replayed offline, the same core as `leadflow replay`) or from running workers (their /funnel/leads and
/visits), written as a self-contained HTML page (streams.cli.review_page) and/or JSON, with a text summary."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from leadflow.core.report import LeadSummary, summaries_of
from leadflow.core.review import review
from leadflow.schemas.policy import Policy
from leadflow.schemas.review import Review
from leadflow.schemas.visits import SiteVisits
from leadflow.streams.cli.output_paths import first_unwritable


class ReviewError(RuntimeError):
    """What stops a review; the message names the option and the fix."""


def parse_from(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReviewError(
            f"--from {text!r}: not a date; give YYYY-MM-DD (a day of the week or month to review)"
        ) from None


def from_events(path: Path, policy_path: Path | None) -> tuple[list[LeadSummary], list[SiteVisits], datetime]:
    """Replay the file (lead events and site-visits reports) and take its leads as of the replay clock."""
    from leadflow.streams.cli.replay import ReplayError, ReplayOptions, replay

    try:
        result = replay(ReplayOptions(events=path, policy=policy_path))
    except ReplayError as error:
        raise ReviewError(f"--events {path}: {error}") from None
    summaries = list(summaries_of(result.sides[0].engine.leads()))
    return summaries, list(result.visits.days.values()), result.clock


async def from_workers(urls: list[str], timeout_s: float) -> tuple[list[LeadSummary], list[SiteVisits]]:
    from leadflow.streams.cli.report_client import fetch_summaries, fetch_visits

    leads = await asyncio.gather(*(fetch_summaries(url, timeout_s=timeout_s) for url in urls))
    visits = await asyncio.gather(*(fetch_visits(url, timeout_s=timeout_s) for url in urls))
    return [s for part in leads for s in part], [v for part in visits for v in part]


def build(args: argparse.Namespace, policy: Policy) -> Review:
    start = parse_from(args.start)
    reads = [args.events] if args.events is not None else []
    problem = first_unwritable([("--html", args.html), ("--json", args.json)], reads=reads)
    if problem is not None:
        raise ReviewError(problem)
    if args.events is not None:
        if not args.events.exists():
            raise ReviewError(f"--events {args.events}: no such file")
        if not args.events.is_file():
            raise ReviewError(f"--events {args.events}: not a file; name a JSONL file of events")
        summaries, visits, now = from_events(args.events, args.policy)
    else:
        from leadflow.streams.cli.report_client import ReportSourceError

        try:
            summaries, visits = asyncio.run(from_workers(args.worker, args.timeout))
        except ReportSourceError as error:
            raise ReviewError(str(error)) from None
        now = datetime.now(UTC)
    try:
        return review(summaries, visits, policy, args.period, now, start=start)
    except OverflowError:
        raise ReviewError(
            f"the {args.period} or the one before it would pass the calendar's limits (years 1 to 9999): check --from "
            "and the events' dates"
        ) from None


def summary_lines(result: Review) -> list[str]:
    period = result.period
    lines = [
        f"{period.kind} {period.label} ({period.start.date()} to {period.end.date()}), as of "
        f"{period.as_of.isoformat(timespec='minutes')}: {period.elapsed:.0%} elapsed",
        f"policy {result.policy.name} v{result.policy.version} ({result.policy.fingerprint})",
    ]
    for goal in result.goals:
        target = f"{goal.target:,.0f}" if goal.target is not None else "-"
        figures = f"actual {goal.actual:>12,.0f}  projection {goal.projection:>12,.0f}  target {target:>10}"
        lines.append(f"  {goal.measure:<20} {figures}")
    lines.append(f"bottleneck: {result.bottleneck or 'none (every stage on plan)'}")
    for c in result.commitments:
        state = {True: "kept", False: "missed", None: "not measurable"}[c.kept]
        shown = {"share": "{:.0%}", "count": "{:,.0f}", "attempts": "{:,.1f}"}[c.unit]
        actual = "-" if c.actual is None else shown.format(c.actual)
        target = shown.format(c.target)
        lines.append(f"  {c.team:<9} {c.name:<20} {actual:>8} (target {target}): {state}")
    return lines


def cmd_review(args: argparse.Namespace, policy: Policy) -> int:
    """Run the review the arguments ask for; returns the exit code."""
    try:
        result = build(args, policy)
    except ReviewError as error:
        print(f"leadflow report: {error}", file=sys.stderr)
        return 2
    written = []
    try:
        if args.html is not None:
            from leadflow.streams.cli.review_page import render_review

            args.html.write_text(render_review(result, args.lang), encoding="utf-8")
            written.append(args.html)
        if args.json is not None:
            args.json.write_text(result.model_dump_json(indent=2), encoding="utf-8")
            written.append(args.json)
    except OSError as error:
        print(f"leadflow report: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    for path in written:
        print(f"review written to {path}")
    return 0
