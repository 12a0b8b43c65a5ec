"""Business time: working hours in a team's time zone, minus weekends, holidays and an owner's away periods.

`add(start, seconds)` gives the instant when `seconds` of business time have passed since `start`;
`elapsed(a, b)` measures the business time between two instants. Both walk the working windows of each local
day, built in the calendar's zone (zoneinfo), so DST changes and midnight need no special case: a window is
two aware instants, and business time is the sum of their overlaps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays as holiday_data

from leadflow.schemas.policy import CalendarSpec

# A calendar with no working time at all would make `add` walk forever; stop after this many days.
MAX_SEARCH_DAYS = 3 * 366
# Local days whose working windows a calendar keeps computed (a few years of clocks), and calendars kept built.
MAX_CACHED_DAYS = 4096
MAX_CACHED_CALENDARS = 256

Window = tuple[datetime, datetime]


class NoWorkingTime(ValueError):
    """The calendar has no working time within MAX_SEARCH_DAYS of the start."""


@cache
def national_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holiday_data.country_holidays(country, subdiv=subdivision, years=year).keys())


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    hours: dict[int, tuple[tuple[time, time], ...]]  # weekday (Monday = 0) -> working windows, local time
    holidays: frozenset[date] = frozenset()
    country: str | None = None
    subdivision: str | None = None
    away: tuple[tuple[datetime, datetime], ...] = field(default=())  # owner's absences, aware instants
    # Each local day's windows, computed once: clocks that open, warn and are measured on the same days ask for
    # them again and again, and zoneinfo conversions are the cost.
    _days: dict[date, tuple[Window, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_spec(cls, spec: CalendarSpec, away: tuple[tuple[datetime, datetime], ...] = ()) -> BusinessCalendar:
        return cls(
            zone=ZoneInfo(spec.timezone),
            hours={day: tuple((w.start, w.end) for w in windows) for day, windows in spec.weekday_hours().items()},
            holidays=frozenset(spec.holidays),
            country=spec.national_holidays.country if spec.national_holidays else None,
            subdivision=spec.national_holidays.subdivision if spec.national_holidays else None,
            away=tuple(sorted(away)),
        )

    def is_holiday(self, day: date) -> bool:
        if day in self.holidays:
            return True
        return self.country is not None and day in national_holidays(self.country, self.subdivision, day.year)

    def windows(self, day: date) -> tuple[Window, ...]:
        """The working windows of one local day as UTC instants, away periods cut out."""
        known = self._days.get(day)
        if known is None:
            if len(self._days) >= MAX_CACHED_DAYS:
                self._days.clear()
            known = self._days[day] = tuple(self._compute_windows(day))
        return known

    def _compute_windows(self, day: date) -> Iterator[Window]:
        if self.is_holiday(day):
            return
        for start, end in self.hours.get(day.weekday(), ()):
            opens = datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC)
            closes = (
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
                if end == time(0)
                else datetime.combine(day, end, tzinfo=self.zone)
            ).astimezone(UTC)
            yield from self._minus_away(opens, closes)

    def _minus_away(self, opens: datetime, closes: datetime) -> Iterator[Window]:
        cursor = opens
        for gone, back in self.away:
            if back <= cursor or gone >= closes:
                continue
            if gone > cursor:
                yield cursor, gone
            cursor = max(cursor, back)
            if cursor >= closes:
                return
        if cursor < closes:
            yield cursor, closes

    def _windows_from(self, start: datetime, days: int = MAX_SEARCH_DAYS) -> Iterator[Window]:
        day = start.astimezone(self.zone).date() - timedelta(days=1)  # a window may start the local day before
        for offset in range(days + 2):
            for opens, closes in self.windows(day + timedelta(days=offset)):
                if closes > start:
                    yield max(opens, start), closes

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of business time have passed since `start` (aware, in UTC)."""
        start = start.astimezone(UTC)
        if seconds <= 0:
            return start
        remaining = timedelta(seconds=seconds)
        for opens, closes in self._windows_from(start):
            if closes - opens >= remaining:
                return opens + remaining
            remaining -= closes - opens
        raise NoWorkingTime(f"no {seconds:g} s of working time within {MAX_SEARCH_DAYS} days of {start.isoformat()}")

    def elapsed(self, a: datetime, b: datetime) -> float:
        """Business seconds between two instants (0 when b is not after a)."""
        a, b = a.astimezone(UTC), b.astimezone(UTC)
        if b <= a:
            return 0.0
        total = timedelta()
        for opens, closes in self._windows_from(a, days=(b - a).days + 2):
            if opens >= b:
                break
            total += min(closes, b) - opens
        return total.total_seconds()

    def is_working(self, instant: datetime) -> bool:
        instant = instant.astimezone(UTC)
        return any(opens <= instant < closes for opens, closes in self._windows_near(instant))

    def _windows_near(self, instant: datetime) -> Iterator[Window]:
        day = instant.astimezone(self.zone).date()
        for offset in (-1, 0, 1):
            yield from self.windows(day + timedelta(days=offset))


_built: dict[int, tuple[CalendarSpec, BusinessCalendar]] = {}


def calendar_for(spec: CalendarSpec) -> BusinessCalendar:
    """The business calendar of a policy's calendar (no away periods), built once per spec object: the core asks
    for it at every clock it opens, resumes or measures, and a built calendar keeps its days' windows."""
    known = _built.get(id(spec))
    if known is not None and known[0] is spec:  # the spec is kept with it, so its id names no other object
        return known[1]
    if len(_built) >= MAX_CACHED_CALENDARS:
        _built.clear()
    calendar = BusinessCalendar.from_spec(spec)
    _built[id(spec)] = (spec, calendar)
    return calendar
