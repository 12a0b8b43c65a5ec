"""Goal periods: the ISO week (Monday to Monday) or the calendar month, in the goals' time zone, and the pace.

The projection of a period's end is the run rate so far: actual / the share of the period elapsed. It is the
projection both teams can check by hand in the meeting ("we are at 40% of the month with 35% of the MQLs"), it
needs no history, and it does not pretend to know a seasonality the data has not shown. It is noisy early in a
period, so the alert waits until a fifth of the period has gone by (grafana/prometheus/rules). Weekends count as
elapsed time: a goal per week or month is a goal per calendar week or month.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow.schemas.review import Period, PeriodKind


def _local_start(kind: PeriodKind, day: date) -> date:
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_start(kind: PeriodKind, start: date) -> date:
    if kind == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _previous_start(kind: PeriodKind, start: date) -> date:
    return _local_start(kind, start - timedelta(days=1))


def label_of(kind: PeriodKind, start: date) -> str:
    if kind == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year}-{start.month:02d}"


def period_starting(kind: PeriodKind, start: date, timezone: str, now: datetime) -> Period:
    """The period that begins on the local day `start`, with its figures as of `now` (or its end, if past)."""
    zone = ZoneInfo(timezone)
    begins = datetime.combine(start, datetime.min.time(), zone)
    ends = datetime.combine(_next_start(kind, start), datetime.min.time(), zone)
    as_of = min(max(now, begins), ends)
    # In UTC: the difference of two times of one ZoneInfo is wall-clock time, wrong across a DST change.
    elapsed = (as_of.astimezone(UTC) - begins.astimezone(UTC)) / (ends.astimezone(UTC) - begins.astimezone(UTC))
    return Period(
        kind=kind, label=label_of(kind, start), start=begins, end=ends, as_of=as_of, elapsed=elapsed, timezone=timezone
    )


def period_of(kind: PeriodKind, instant: datetime, timezone: str, now: datetime) -> Period:
    """The week or month that contains `instant` (local time), as of `now`."""
    return period_starting(kind, _local_start(kind, instant.astimezone(ZoneInfo(timezone)).date()), timezone, now)


def previous_of(period: Period, now: datetime) -> Period:
    return period_starting(period.kind, _previous_start(period.kind, period.start.date()), period.timezone, now)


def projection(actual: float, elapsed: float) -> float:
    """The period end at the pace so far; before any time has passed there is no pace: the actual."""
    return actual / elapsed if elapsed > 0 else actual


def contains(period: Period, instant: datetime) -> bool:
    return period.start <= instant < period.end and instant <= period.as_of
