"""Site visits per day and traffic source (schemas.visits): the newest report of a day replaces the older ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from leadflow.schemas.visits import SiteVisits


def newer(current: SiteVisits | None, report: SiteVisits) -> bool:
    """Whether `report` replaces `current` (same day and traffic source): the newest count wins; at the same
    instant, the larger (a count so far only grows)."""
    if current is None:
        return True
    return (report.occurred_at, report.data.visits) >= (current.occurred_at, current.data.visits)


@dataclass
class Visits:
    """The latest report of each (day, traffic source)."""

    days: dict[bytes, SiteVisits] = field(default_factory=dict)

    def add(self, report: SiteVisits) -> None:
        if newer(self.days.get(report.key), report):
            self.days[report.key] = report


def visits_between(reports: Iterable[SiteVisits], start: date, end: date) -> int:
    """Visits of the days in [start, end) (each report the latest of its day and traffic source)."""
    return sum(r.data.visits for r in reports if start <= r.data.date < end)
