"""The goal pacing metrics (issue 10, item 4): what /metrics says about the current week and month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_review import LEADS, visits

from leadflow.core.report import LeadSummary
from leadflow.schemas.policy import load_policy
from leadflow.streams.runtime.goal_metrics import GoalCollector
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


async def test_the_policy_in_force_is_an_info_metric() -> None:
    got = await scraped()
    key = ("leadflow_policy_info", (("fingerprint", POLICY.fingerprint), ("name", "default"), ("version", "1")))
    assert got[key] == 1
