"""The goal pacing metrics (issue 10, item 4): what /metrics says about the current week and month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_review import LEADS, visits

from leadflow.core.report import LeadSummary
from leadflow.schemas.policy import load_policy
from leadflow.streams.runtime.goal_metrics import MAX_RECOUNT_SHARE, MIN_REFRESH_S, GoalCollector, recount_interval
from leadflow.streams.runtime.lead_census import LeadCensus
from leadflow.streams.runtime.metrics import LeadCollector, Metrics

POLICY = load_policy()
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }


async def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async def summaries() -> list[LeadSummary]:
        return LEADS

    metrics = Metrics(POLICY)
    metrics.watch(
        LeadCollector(POLICY, lambda: (LeadCensus(), set()), lambda: NOW),  # no lead census: not under test
        GoalCollector(POLICY, summaries, lambda: [visits(date(2026, 11, 23), 900)], lambda: NOW),
    )
    return samples(await metrics.render())


def label(period: str, measure: str) -> tuple[tuple[str, str], ...]:
    return (("measure", measure), ("period", period))


async def test_the_worker_exports_targets_actuals_and_projections_for_the_week_and_the_month() -> None:
    got = await scraped()
    elapsed_week = (2 * 24 + 12) / (7 * 24)
    assert got[("leadflow_goal_period_elapsed_ratio", (("period", "week"),))] == pytest.approx(elapsed_week)
    assert got[("leadflow_goal_period_elapsed_ratio", (("period", "month"),))] == pytest.approx(
        (24 * 24 + 12) / (30 * 24)
    )
    assert got[("leadflow_goal_target", label("week", "mqls"))] == 1154
    assert got[("leadflow_goal_target", label("month", "revenue"))] == 120_000
    assert got[("leadflow_goal_target", label("week", "mql_acceptance_rate"))] == 0.06
    assert got[("leadflow_goal_actual", label("week", "customers"))] == 2
    assert got[("leadflow_goal_actual", label("week", "visitors"))] == 900
    assert got[("leadflow_goal_actual", label("month", "mqls"))] == 3  # a, b and c entered mql in November
    assert got[("leadflow_goal_projection", label("week", "customers"))] == pytest.approx(2 / elapsed_week)
    assert got[("leadflow_goal_actual", label("week", "responses_in_time"))] == 1
    labels = {dict(k[1]).get("measure") for k in got if k[0].startswith("leadflow_goal_")}
    assert len(labels) < 20, "bounded labels: a fixed list of measures"


async def test_a_recount_that_takes_long_is_redone_less_often() -> None:
    """A recount walks every lead: it may take at most MAX_RECOUNT_SHARE of the worker's time."""
    now = 0.0
    walks: list[float] = []

    async def summaries() -> list[LeadSummary]:
        nonlocal now
        walks.append(now)
        now += walk_s  # the walk takes this long
        return LEADS

    collector = GoalCollector(POLICY, summaries, lambda: [], lambda: NOW, monotonic=lambda: now)
    walk_s = 0.1
    for _ in range(5):  # a quick walk: every MIN_REFRESH_S
        await collector.refresh()
        now += MIN_REFRESH_S / 2
    assert len(walks) == 3
    walk_s = 60.0  # a million leads to decode
    now += MIN_REFRESH_S
    await collector.refresh()
    assert collector.recount_s == 60.0
    assert recount_interval(60.0) == 60.0 / MAX_RECOUNT_SHARE
    count = len(walks)
    now += recount_interval(60.0) - 1
    await collector.refresh()
    assert len(walks) == count, "not again before 20 times its own length"
    now += 1
    await collector.refresh()
    assert len(walks) == count + 1
    assert recount_interval(0.0) == MIN_REFRESH_S


async def test_the_policy_in_force_is_an_info_metric() -> None:
    got = await scraped()
    key = ("leadflow_policy_info", (("fingerprint", POLICY.fingerprint), ("name", "default"), ("version", "1")))
    assert got[key] == 1
