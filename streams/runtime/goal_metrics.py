"""Live attainment and pacing of the goals (issue 10): targets, actuals and projections for the current week and
month, counted at scrape time from this worker's leads and site visits by the review's own function
(core.attainment), so the Goals dashboard and the weekly meeting see the same figures.

Actuals and projections are additive: each worker counts its partitions, `sum by (period, measure)` is the
total. Targets and the elapsed share are the same on every worker (`max by`). Labels are bounded: two periods
and a fixed list of measures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from leadflow.core.attainment import ACTUAL_MEASURES, actuals
from leadflow.core.period import period_of, projection
from leadflow.core.report import LeadSummary
from leadflow.core.targets import planned, targets
from leadflow.schemas.policy import Policy
from leadflow.schemas.review import Period, PeriodKind
from leadflow.schemas.visits import SiteVisits

PERIODS: tuple[PeriodKind, ...] = ("week", "month")
MIN_REFRESH_S = 10.0  # recount at most this often
# The share of the worker's time recounts may take: a recount walks every lead of the worker's partitions, and with
# memory:// a lead not among the recently used is decoded first (~50 µs, ~60 s a million leads), so a large table
# is recounted less often (every ~20 min at a million leads); weekly and monthly goals move slower than that.
MAX_RECOUNT_SHARE = 0.05


def recount_interval(last_recount_s: float) -> float:
    """Seconds to wait after a recount that took `last_recount_s` before the next one."""
    return max(MIN_REFRESH_S, last_recount_s / MAX_RECOUNT_SHARE)


class GoalCollector(Collector):
    """`leadflow_goal_target`, `leadflow_goal_actual`, `leadflow_goal_projection` {period, measure} and
    `leadflow_goal_period_elapsed_ratio` {period}. `read_summaries` gives the lead summaries of this worker's
    active partitions, `read_visits` its site-visits reports."""

    def __init__(
        self,
        policy: Policy,
        read_summaries: Callable[[], Awaitable[list[LeadSummary]]],
        read_visits: Callable[[], Iterable[SiteVisits]],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        the_plan = planned(policy)
        self.targets = {kind: targets(policy, kind, the_plan) for kind in PERIODS}
        self.read_summaries = read_summaries
        self.read_visits = read_visits
        self.clock = clock
        self.timezone = policy.goals.timezone if policy.goals is not None else "UTC"
        self.counted: dict[PeriodKind, tuple[Period, dict[str, float]]] = {}
        self.monotonic = monotonic
        self.counted_at = float("-inf")
        self.recount_s = 0.0  # how long the last recount took (walking the leads yields to the stream meanwhile)

    async def refresh(self) -> None:
        if self.policy.goals is None or self.monotonic() - self.counted_at < recount_interval(self.recount_s):
            return
        started = self.monotonic()
        summaries = await self.read_summaries()
        visits = list(self.read_visits())
        now = self.clock()
        self.counted = {}
        for kind in PERIODS:
            period = period_of(kind, now, self.timezone, now)
            self.counted[kind] = (period, actuals(summaries, visits, self.policy, period))
        self.counted_at = self.monotonic()
        self.recount_s = self.counted_at - started

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(self.counted)

    def _families(self, counted: dict[PeriodKind, tuple[Period, dict[str, float]]]) -> Sequence[Metric]:
        labels = ["period", "measure"]
        target = GaugeMetricFamily(
            "leadflow_goal_target", "What the period must reach (same on every worker)", labels=labels
        )
        actual = GaugeMetricFamily(
            "leadflow_goal_actual", "What the period reached so far (this worker's partitions)", labels=labels
        )
        projected = GaugeMetricFamily(
            "leadflow_goal_projection", "The period end at the pace so far (this worker's partitions)", labels=labels
        )
        elapsed = GaugeMetricFamily(
            "leadflow_goal_period_elapsed_ratio", "Share of the current period gone by", labels=["period"]
        )
        if self.policy.goals is None:
            return []
        for kind in PERIODS:
            for measure, value in self.targets[kind].items():
                target.add_metric([kind, measure], value)
            if kind not in counted:
                continue
            period, counts = counted[kind]
            elapsed.add_metric([kind], period.elapsed)
            for measure in ACTUAL_MEASURES:
                actual.add_metric([kind, measure], counts[measure])
                projected.add_metric([kind, measure], projection(counts[measure], period.elapsed))
        return [target, actual, projected, elapsed]
