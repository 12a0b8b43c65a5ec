"""Site visits: the top of the funnel, before anyone is a lead (issue 10).

Visitors are not leads, so they are not lead events: a web-analytics export (GA4, Matomo, Plausible, a CDN's
logs) reports, once or many times a day, how many visits each traffic source brought on one day:

    {"event_id": "ga4-2026-11-30-google-cpc-1", "type": "site.visits", "occurred_at": "2026-11-30T23:00:00-03:00",
     "source": "ga4", "data": {"date": "2026-11-30", "traffic_source": "google/cpc", "visits": 1234}}

- `data.date` is the local day counted (in `goals.timezone`: the periods the goals are set for);
- `data.traffic_source` is where the visits came from (utm source/medium, a channel name);
- `data.visits` is the day's total so far, not an increment: a later report for the same day and traffic source
  replaces the earlier one (the newest `occurred_at` wins), so re-sending a corrected day, or a redelivery, never
  counts twice.
Topic `leads.visits`, key `<date>|<traffic_source>`; in a file given to `leadflow replay` / `leadflow report`,
such lines may sit among the lead events. `leadflow schema site.visits` prints the JSON Schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from leadflow.schemas.base import Frozen, Identifier
from leadflow.schemas.events import Timestamp

VISITS_TYPE = "site.visits"


class SiteVisitsData(Frozen):
    date: dt.date = Field(description="the local day counted (goals.timezone), e.g. 2026-11-30")
    traffic_source: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="where the visits came from, e.g. google/cpc, newsletter, direct"
    )
    visits: Annotated[int, Field(ge=0, le=10**12)] = Field(description="the day's visits so far (a total)")


class SiteVisits(Frozen):
    """One day's visits from one traffic source, as the analytics tool counts them so far."""

    event_id: Identifier
    type: Literal["site.visits"]
    occurred_at: Timestamp = Field(description="when the tool counted them (RFC 3339 with an offset)")
    source: Annotated[str, Field(min_length=1, max_length=100)] = Field(description="the reporting tool")
    data: SiteVisitsData

    @property
    def key(self) -> bytes:
        return f"{self.data.date.isoformat()}|{self.data.traffic_source}".encode()


VISITS_ADAPTER: TypeAdapter[SiteVisits] = TypeAdapter(SiteVisits)
