"""Grafana dashboards: the committed JSON is what grafana/dashboards.py generates, every panel uses the
provisioned datasource, and every query is valid PromQL over metrics and recording rules that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
RULES = GRAFANA / "prometheus" / "rules" / "leadflow.rules.yml"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"

EXPECTED_UIDS = {
    "funnel.json": "leadflow-funnel",
    "sla.json": "leadflow-sla",
    "handoff.json": "leadflow-handoff",
    "pipeline.json": "leadflow-pipeline",
    "goals.json": "leadflow-goals",
    "ingest.json": "leadflow-ingest",
}

# What the worker exports (streams/runtime/metrics.py) and what Prometheus adds; histograms by their series names.
COUNTERS = {
    "leadflow_ingest_requests_total",
    "leadflow_ingest_events_total",
    "leadflow_ingest_rejections_total",
    "leadflow_events_total",
    "leadflow_dead_letters_total",
    "leadflow_stage_transitions_total",
    "leadflow_refusals_total",
    "leadflow_rejections_total",
    "leadflow_sla_started_total",
    "leadflow_sla_met_total",
    "leadflow_sla_breaches_total",
    "leadflow_sla_warnings_total",
    "leadflow_sla_cancelled_total",
    "leadflow_sla_escalations_total",
    "leadflow_handoffs_total",
    "leadflow_routing_unassigned_total",
    "leadflow_timer_events_total",
    "leadflow_stage_skips_total",
    "leadflow_deals_won_total",
    "leadflow_deals_won_unknown_amount_total",
    "leadflow_deals_won_amount_total",
    "leadflow_deals_lost_total",
}
GAUGES = {
    "leadflow_leads",
    "leadflow_sla_open",
    "leadflow_sla_overdue",
    "leadflow_consumer_lag",
    "leadflow_consumer_group_lag",
    "leadflow_consumer_committed_offset",
    "leadflow_timer_last_sweep_timestamp_seconds",
    "leadflow_timer_deadlines",
    "leadflow_routing_open_mqls",
    "leadflow_routing_capacity",
    "leadflow_sla_clock_delay_seconds",
    "leadflow_policy_info",
    "leadflow_goal_target",
    "leadflow_goal_actual",
    "leadflow_goal_projection",
    "leadflow_goal_period_elapsed_ratio",
    # the worker's health, read at scrape time (streams/runtime/health.py)
    "leadflow_ready",
    "leadflow_broker_reachable",
    "leadflow_broker_last_contact_timestamp_seconds",
    # the webhook gateway's (streams/runtime/gateway.py)
    "leadflow_ingest_ready",
    "leadflow_ingest_identity_aliases",
}
HISTOGRAMS = {
    "leadflow_sla_response_seconds",
    "leadflow_event_lag_seconds",
    "leadflow_timer_sweep_duration_seconds",
    "leadflow_ingest_request_duration_seconds",
}
KNOWN = (
    COUNTERS
    | GAUGES
    | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | {"up", "process_cpu_seconds_total", "process_resident_memory_bytes"}
)
FUNCTIONS = {
    "sum", "max", "count", "rate", "increase", "histogram_quantile", "time", "label_values",
    "sort", "bottomk", "vector", "clamp_min",
}  # fmt: skip
KEYWORDS = {"by", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "without"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("leadflow_grafana_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def committed() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in (GRAFANA / "dashboards").glob("*.json")}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, board in committed().items():
        for panel in board["panels"]:
            yield name, panel


def exprs() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target."""
    for name, panel in panels():
        for target in panel["targets"]:
            yield name, panel["title"], target["expr"]


def substituted(expr: str) -> str:
    """The query as the live test sends it: $__rate_interval -> 1m, any other $var -> .*"""
    return re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "1m"))


def recorded() -> set[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def test_committed_files_are_the_generator_output() -> None:
    rendered = GENERATOR.render()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in (GRAFANA / "dashboards").glob("*.json")}
    assert set(on_disk) == set(rendered), "a dashboard file is missing or left over"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} differs from the generator: run python grafana/dashboards.py"


def test_generator_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_dashboards_have_stable_unique_uids() -> None:
    boards = committed()
    assert {name: board["uid"] for name, board in boards.items()} == EXPECTED_UIDS
    titles = [board["title"] for board in boards.values()]
    assert len(set(titles)) == len(titles)
    for board in boards.values():
        assert "id" not in board, "provisioned dashboards carry no database id"
        assert "leadflow" in board["tags"]


def test_every_panel_uses_the_provisioned_datasource() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == GENERATOR.DATASOURCE_UID
    for name, panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, (name, panel["title"])
        assert panel["targets"], (name, panel["title"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    for name, board in committed().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0, (name, panel["title"])
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            area = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & area, f"{name}: {panel['title']} overlaps another panel"
            cells |= area
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs))


def test_template_variables_are_defined_and_only_in_label_matchers() -> None:
    for name, board in committed().items():
        defined = {variable["name"] for variable in board["templating"]["list"]}
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"}
                assert used <= defined, (name, expr)
                # A variable other than $__rate_interval only as a regex matcher value: ...=~"$var"
                assert not re.search(r'\$(?!__rate_interval)\w+(?!")', expr.replace('=~"$', "")), expr
                assert "$__rate_interval" not in expr or "[$__rate_interval]" in expr, expr


def test_queries_use_known_metrics_and_existing_recording_rules() -> None:
    rules = recorded()
    for name, title, expr in exprs():
        text = re.sub(r'"[^"]*"', '""', substituted(expr))  # drop label values and legend-like strings
        text = re.sub(r"\{[^}]*\}", "", text)  # drop matchers (label names)
        text = re.sub(r"\([^()]*\)\s*(?=\()", "", text)
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
            if token in FUNCTIONS or token in KEYWORDS or token in {"1m", "1h", "5m"}:
                continue
            if ":" in token:
                assert token in rules, f"{name} / {title}: {token} is not a recording rule"
            elif token.startswith(("leadflow_", "process_")) or token == "up":
                assert token in KNOWN, f"{name} / {title}: unknown metric {token}"


def _by_clause_labels(expr: str) -> Iterator[str]:
    for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
        yield from (label.strip() for label in group.split(",") if label.strip())


def test_grouping_labels_exist() -> None:
    labels = {
        "sla", "team", "pool", "fraction", "action", "stage", "from_stage", "to_stage", "reason", "type",
        "source", "outcome", "topic", "partition", "instance", "job", "le", "late", "owner", "currency",
        "period", "measure", "name", "version", "fingerprint",
    }  # fmt: skip
    for name, title, expr in exprs():
        for label in _by_clause_labels(expr):
            assert label in labels, f"{name} / {title}: unknown label {label}"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (.ci/run does it)")
    return path


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every query (with the variables substituted) as the expression of a recording rule."""
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": substituted(expr)}
        for index, (_, _, expr) in enumerate(exprs())
    ]
    assert len(rules) >= 40
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_panels_exist() -> None:
    titles = {name: {panel["title"] for panel in board["panels"]} for name, board in committed().items()}
    wanted = {
        "funnel.json": ["Leads per stage now", "Flow between stages", "Conversion", "time in stage",
                        "Process gaps", "unknown revenue", "Won revenue", "Lost deals by reason"],
        "sla.json": ["Compliance", "Response time percentiles", "Open clocks", "Overdue", "Warnings", "Breaches",
                     "team and pool"],
        "handoff.json": ["Hand-offs per pool", "Rejection reasons", "Recycled", "Escalations"],
        "pipeline.json": ["Throughput by outcome", "Consumer lag", "Dead letters", "Event-time lag",
                          "Timer sweep duration", "last timer sweep", "Workers up", "SLA clock delay"],
        "goals.json": ["Policy in force", "Period elapsed", "Targets vs actual and projection", "Attainment",
                       "Projected attainment", "Pacing", "Marketing commitments", "Sales commitments",
                       "acceptance rate vs floor", "response compliance vs floor", "follow-up depth vs floor",
                       "Bottleneck"],
    }  # fmt: skip
    for name, parts in wanted.items():
        for part in parts:
            assert any(part.lower() in title.lower() for title in titles[name]), f"{name}: no panel about {part}"


# --- the Goals dashboard (issue 10, item 4) ---------------------------------------------------------------------


def goals_panels() -> list[dict[str, Any]]:
    return list(committed()["goals.json"]["panels"])


def test_goals_panels_read_the_goal_metrics_of_the_selected_period() -> None:
    """Every panel but the policy's reads leadflow_goal_* (or a recording rule over them) of $period only."""
    for panel in goals_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            if panel["title"] == "Policy in force":
                assert "leadflow_policy_info" in expr
                continue
            assert "leadflow_goal_" in expr, (panel["title"], expr)
            selectors = re.findall(r"leadflow_goal_\w*(?::\w+)?(\{[^}]*\})?", expr)
            assert selectors, (panel["title"], expr)
            assert all('period=~"$period"' in selector for selector in selectors), (panel["title"], expr)


def test_goals_period_variable_offers_week_and_month() -> None:
    (variable,) = committed()["goals.json"]["templating"]["list"]
    assert variable["name"] == "period"
    assert [option["value"] for option in variable["options"]] == ["week", "month"]
    assert variable["multi"] is False
    assert variable["includeAll"] is False, "the figures of a week and a month do not add up"


def test_goals_measures_are_the_ones_the_worker_counts() -> None:
    """The generator's measure lists follow the core's (core/targets.py, core/attainment.py): a renamed measure
    would leave panels silently empty."""
    from leadflow.core.attainment import ACTUAL_MEASURES
    from leadflow.core.targets import STAGE_MEASURES

    assert GENERATOR.GOAL_STAGE_MEASURES == STAGE_MEASURES
    assert set(GENERATOR.GOAL_COUNT_MEASURES) <= set(ACTUAL_MEASURES)
    assert set(ACTUAL_MEASURES) - set(GENERATOR.GOAL_COUNT_MEASURES) == {
        "followed_up_leads", "follow_up_attempts", "mqls_accepted", "mqls_rejected", "responses", "responses_in_time",
    }  # fmt: skip


def test_goals_bottleneck_ranks_the_funnel_stages_lowest_first() -> None:
    (panel,) = [p for p in goals_panels() if p["title"].startswith("Bottleneck: projected attainment")]
    (target,) = panel["targets"]
    assert target["expr"].startswith("sort(period_measure:leadflow_goal_projected_attainment:ratio{")
    assert "|".join(GENERATOR.GOAL_STAGE_MEASURES) in target["expr"]
    assert target["instant"] is True


def test_goals_table_merges_series_without_metric_names() -> None:
    """Grafana's merge joins table rows on equal labels: every query aggregates away __name__."""
    (panel,) = [p for p in goals_panels() if p["type"] == "table"]
    assert [t["format"] for t in panel["targets"]] == ["table"] * len(panel["targets"])
    for target in panel["targets"]:
        assert target["expr"].startswith("sum by (period, measure) ("), target["expr"]
