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
MIN_REFRESH_S = 10.0  # summarizing every lead costs ~10 µs each: recount at most this often


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
    ) -> None:
        self.policy = policy
        the_plan = planned(policy)
        self.targets = {kind: targets(policy, kind, the_plan) for kind in PERIODS}
        self.read_summaries = read_summaries
        self.read_visits = read_visits
        self.clock = clock
        self.timezone = policy.goals.timezone if policy.goals is not None else "UTC"
        self.counted: dict[PeriodKind, tuple[Period, dict[str, float]]] = {}
        self.counted_at = float("-inf")

    async def refresh(self) -> None:
        if self.policy.goals is None or time.monotonic() - self.counted_at < MIN_REFRESH_S:
            return
        summaries = await self.read_summaries()
        visits = list(self.read_visits())
        now = self.clock()
        self.counted = {}
        for kind in PERIODS:
            period = period_of(kind, now, self.timezone, now)
            self.counted[kind] = (period, actuals(summaries, visits, self.policy, period))
        self.counted_at = time.monotonic()

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
