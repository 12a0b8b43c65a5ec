"""Generates the Grafana dashboards of leadflow as JSON files in grafana/dashboards/.

Plain dicts, no dependency: `python grafana/dashboards.py` rewrites the files, `--check` exits 1 when the
committed files differ from what this module generates (tests/test_dashboards.py checks the same).

Conventions: every panel queries the provisioned Prometheus datasource (uid DATASOURCE_UID, see
grafana/provisioning/datasources/prometheus.yml); time series use `$__rate_interval`, "last hour" figures use
the recording rules of grafana/prometheus/rules/leadflow.rules.yml; template variables appear only inside
label matchers (`{sla=~"$sla"}`), so every query is valid PromQL once they are substituted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
POLICY = HERE.parent / "schemas" / "default_policy.yaml"

DATASOURCE_UID = "leadflow-prometheus"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
JOB = "leadflow"
GRID_WIDTH = 24
SCHEMA_VERSION = 39

Json = dict[str, Any]


def funnel_stages() -> list[str]:
    """The main funnel of the shipped policy, in order (the bar of leads per stage follows it)."""
    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    return [str(stage) for stage in policy["lifecycle"]["stages"]]


def side_stages() -> list[str]:
    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    return [str(stage) for stage in policy["lifecycle"]["side_stages"]]


# --- panels ---------------------------------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, instant: bool = False) -> Json:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "instant": instant, "range": not instant}


def _field_config(unit: str, *, thresholds: list[tuple[float | None, str]] | None = None, **custom: Any) -> Json:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    defaults: Json = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if thresholds:
        defaults["color"] = {"mode": "thresholds"}
    if custom:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": []}


LAST: Json = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _panel(kind: str, title: str, description: str, targets: list[Json], *, field_config: Json, options: Json) -> Json:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": field_config,
        "options": options,
    }


def timeseries(title: str, description: str, targets: list[Json], unit: str = "short", *, stack: bool = False) -> Json:
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        field_config=_field_config(
            unit,
            drawStyle="line",
            lineWidth=1,
            fillOpacity=25 if stack else 10,
            showPoints="never",
            spanNulls=True,
            stacking={"mode": "normal" if stack else "none", "group": "A"},
        ),
        options={
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def bars(
    title: str,
    description: str,
    targets: list[Json],
    unit: str = "short",
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Json:
    """Horizontal bar gauge of the current value of each series (instant queries)."""
    options = {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True, "reduceOptions": LAST}
    field_config = _field_config(unit, thresholds=thresholds or [(None, "blue")])
    return _panel("bargauge", title, description, targets, field_config=field_config, options=options)


def stat(
    title: str,
    description: str,
    targets: list[Json],
    unit: str = "short",
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
    text_mode: str = "auto",
) -> Json:
    options = {"colorMode": "value", "graphMode": "area", "justifyMode": "auto", "textMode": text_mode}
    field_config = _field_config(unit, thresholds=thresholds)
    return _panel(
        "stat", title, description, targets, field_config=field_config, options={**options, "reduceOptions": LAST}
    )


def table(title: str, description: str, columns: list[tuple[str, Json, str]], *, hide: Iterable[str] = ()) -> Json:
    """One row per label set, one column per instant query: columns are (header, target, unit); Grafana merges
    the queries on their labels ("merge" transformation) and names each value column by its header."""
    targets = [{**t, "format": "table", "instant": True, "range": False} for _, t, _ in columns]
    refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    renames = {f"Value #{refs[i]}": header for i, (header, _, _) in enumerate(columns)}
    overrides = [
        {"matcher": {"id": "byName", "options": header}, "properties": [{"id": "unit", "value": unit}]}
        for header, _, unit in columns
    ]
    field_config = {**_field_config("short"), "overrides": overrides}
    panel = _panel(
        "table",
        title,
        description,
        targets,
        field_config=field_config,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    )
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True, **dict.fromkeys(hide, True)},
                                       "renameByName": renames}},
    ]  # fmt: skip
    return panel


def layout(rows: Iterable[tuple[int, list[Json]]]) -> list[Json]:
    """Place panels row by row: each row has a height and panels of equal width; ids in reading order."""
    panels: list[Json] = []
    y = 0
    for height, row in rows:
        width = GRID_WIDTH // len(row)
        for column, panel in enumerate(row):
            refs = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            placed = {
                "id": len(panels) + 1,
                "gridPos": {"h": height, "w": width, "x": column * width, "y": y},
                **panel,
                "targets": [{**t, "refId": next(refs)} for t in panel["targets"]],
            }
            panels.append(placed)
        y += height
    return panels


def query_variable(name: str, label: str, query: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def custom_variable(name: str, label: str, values: list[str]) -> Json:
    """A single-choice variable over fixed values (the first is the default)."""
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "multi": False,
        "includeAll": False,
        "current": {"selected": True, "text": values[0], "value": values[0]},
        "options": [{"selected": i == 0, "text": value, "value": value} for i, value in enumerate(values)],
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    variables: Iterable[Json] = (),
    *,
    time_from: str = "now-6h",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["leadflow"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": "30s",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "leadflow",
                "tags": ["leadflow"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": list(variables)},
        "panels": panels,
    }


PER_MINUTE = "* 60"
PERCENT_THRESHOLDS: list[tuple[float | None, str]] = [(None, "red"), (0.8, "orange"), (0.9, "yellow"), (0.95, "green")]


# --- the six dashboards ----------------------------------------------------------------------------------------


def funnel() -> Json:
    per_stage = [
        target(f'sum(leadflow_leads{{stage="{stage}"}})', stage, instant=True)
        for stage in (*funnel_stages(), *side_stages())
    ]
    rows = [
        (
            9,
            [
                bars(
                    "Leads per stage now",
                    "Leads currently in each lifecycle stage, funnel order then side stages "
                    "(sum of leadflow_leads over the workers).",
                    per_stage,
                ),
                bars(
                    "Stage entries in the last hour",
                    "Leads that entered each stage in the last hour (stage:leadflow_stage_entries:rate1h).",
                    [target("stage:leadflow_stage_entries:rate1h * 3600", "{{stage}}", instant=True)],
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Leads per stage",
                    "Leads in each stage over time.",
                    [target("stage:leadflow_leads:sum", "{{stage}}")],
                    stack=True,
                ),
                timeseries(
                    "New leads per minute",
                    "Leads created (transitions from none).",
                    [
                        target(
                            'sum(rate(leadflow_stage_transitions_total{from_stage="none"}[$__rate_interval]))'
                            f" {PER_MINUTE}",
                            "new leads",
                        )
                    ],
                ),
            ],
        ),
        (
            10,
            [
                timeseries(
                    "Flow between stages (per minute)",
                    "Stage changes per minute, by from and to stage.",
                    [
                        target(
                            "sum by (from_stage, to_stage) "
                            f"(rate(leadflow_stage_transitions_total[$__rate_interval])) {PER_MINUTE}",
                            "{{from_stage}} → {{to_stage}}",
                        )
                    ],
                ),
                bars(
                    "Conversion: where leads go from each stage (last hour)",
                    "Share of the leads leaving a stage that went to each next stage "
                    "(from_stage_to_stage:leadflow_stage_transitions:ratio_rate1h). mql → sal is the acceptance "
                    "rate, mql → nurturing the rejection rate.",
                    [
                        target(
                            "from_stage_to_stage:leadflow_stage_transitions:ratio_rate1h",
                            "{{from_stage}} → {{to_stage}}",
                            instant=True,
                        )
                    ],
                    "percentunit",
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Average time in stage (Little's law, last hour)",
                    "Leads in a stage divided by the leads leaving it per second over the last hour "
                    "(stage:leadflow_time_in_stage_seconds:littles_law_1h): an estimate of the average time a "
                    "lead spends in the stage, in real time. Stages nobody left in the last hour have none.",
                    [target("stage:leadflow_time_in_stage_seconds:littles_law_1h", "{{stage}}", instant=True)],
                    "s",
                ),
                timeseries(
                    "Exits per stage (per minute)",
                    "Leads leaving each stage per minute (the denominator of the time-in-stage estimate).",
                    [
                        target(
                            'sum by (from_stage) (rate(leadflow_stage_transitions_total{from_stage!="none"}'
                            f"[$__rate_interval])) {PER_MINUTE}",
                            "{{from_stage}}",
                        )
                    ],
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Process gaps: stage skips in the last hour",
                    "Stage changes made by a fact from a system of record (deal.won, an external lead.qualified) "
                    "that jumped over main-funnel stages, by the move, in the last hour "
                    "(from_stage_to_stage:leadflow_stage_skips:rate1h): e.g. a deal won on an MQL that sales "
                    "never accepted. Applied, not refused: a process gap to review.",
                    [
                        target(
                            "from_stage_to_stage:leadflow_stage_skips:rate1h * 3600",
                            "{{from_stage}} → {{to_stage}}",
                            instant=True,
                        )
                    ],
                    thresholds=[(None, "orange")],
                ),
                timeseries(
                    "Process gaps per minute (stage skips by move)",
                    "Stage changes that skipped main-funnel stages, per minute, by from and to stage "
                    "(leadflow_stage_skips_total).",
                    [
                        target(
                            "sum by (from_stage, to_stage) "
                            f"(rate(leadflow_stage_skips_total[$__rate_interval])) {PER_MINUTE}",
                            "{{from_stage}} → {{to_stage}}",
                        )
                    ],
                    stack=True,
                ),
            ],
        ),
        (
            8,
            [
                stat(
                    "Won deals in the last hour: known vs unknown revenue",
                    "deal.won events applied in the last hour, with an amount (known revenue) and without one "
                    "(unknown revenue: counted apart, never as 0).",
                    [
                        target(
                            "sum(job:leadflow_deals_won:rate1h - job:leadflow_deals_won_unknown_amount:rate1h) * 3600",
                            "known amount",
                            instant=True,
                        ),
                        target(
                            "sum(job:leadflow_deals_won_unknown_amount:rate1h) * 3600",
                            "unknown amount",
                            instant=True,
                        ),
                    ],
                ),
                timeseries(
                    "Won deals per minute: known vs unknown revenue",
                    "deal.won events applied per minute, with an amount and without one "
                    "(leadflow_deals_won_total minus leadflow_deals_won_unknown_amount_total, and the latter).",
                    [
                        target(
                            f"(sum(rate(leadflow_deals_won_total[$__rate_interval])) - "
                            f"sum(rate(leadflow_deals_won_unknown_amount_total[$__rate_interval]))) {PER_MINUTE}",
                            "known amount",
                        ),
                        target(
                            f"sum(rate(leadflow_deals_won_unknown_amount_total[$__rate_interval])) {PER_MINUTE}",
                            "unknown amount",
                        ),
                    ],
                    stack=True,
                ),
                timeseries(
                    "Won revenue per hour by currency (known amounts)",
                    "Revenue of the wins with a known amount, per hour, in each currency "
                    "(leadflow_deals_won_amount_total); wins of unknown revenue add nothing here.",
                    [
                        target(
                            "sum by (currency) (rate(leadflow_deals_won_amount_total[$__rate_interval])) * 3600",
                            "{{currency}}",
                        )
                    ],
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Lost deals by reason (last hour)",
                    "deal.lost events applied in the last hour by reason (reason:leadflow_deals_lost:rate1h): the "
                    "policy's deals.lost_reasons, any other reason as other.",
                    [target("reason:leadflow_deals_lost:rate1h * 3600", "{{reason}}", instant=True)],
                    thresholds=[(None, "orange")],
                ),
                timeseries(
                    "Lost deals per minute by reason",
                    "deal.lost events applied per minute, by reason (leadflow_deals_lost_total).",
                    [
                        target(
                            f"sum by (reason) (rate(leadflow_deals_lost_total[$__rate_interval])) {PER_MINUTE}",
                            "{{reason}}",
                        )
                    ],
                    stack=True,
                ),
            ],
        ),
    ]
    return dashboard(
        "leadflow-funnel",
        "leadflow / Funnel",
        "Leads per lifecycle stage, the flow between stages, conversion, time in stage, process gaps (stage skips), "
        "won deals (known and unknown revenue) and lost deals by reason.",
        layout(rows),
    )


def sla() -> Json:
    selected = '{sla=~"$sla"}'
    quantiles = [
        target(
            f"histogram_quantile({q}, sla:leadflow_sla_response_seconds_bucket:rate5m{selected})",
            f"{{{{sla}}}} p{round(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    ]
    rows = [
        (
            6,
            [
                stat(
                    "Compliance (last hour)",
                    "Clocks met on time / clocks decided (met on time or breached) in the last hour, per SLA "
                    "(sla:leadflow_sla_compliance:ratio_rate1h).",
                    [target(f"sla:leadflow_sla_compliance:ratio_rate1h{selected}", "{{sla}}", instant=True)],
                    "percentunit",
                    thresholds=PERCENT_THRESHOLDS,
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Compliance (5 minute windows)",
                    "Share of the clocks decided in the last 5 minutes that were met on time.",
                    [target(f"sla:leadflow_sla_compliance:ratio_rate5m{selected}", "{{sla}}")],
                    "percentunit",
                ),
                timeseries(
                    "Response time percentiles",
                    "Allowance used by the clocks met (business seconds for business-time SLAs), p50/p90/p99, "
                    "from leadflow_sla_response_seconds (a bucket at every allowance).",
                    quantiles,
                    "s",
                ),
            ],
        ),
        (
            8,
            [
                timeseries(
                    "Open clocks",
                    "SLA clocks running now (sum over the workers).",
                    [target(f"sla:leadflow_sla_open:sum{selected}", "{{sla}}")],
                ),
                timeseries(
                    "Overdue clocks",
                    "Open clocks past their deadline: leads waiting for sales after the allowance.",
                    [target(f"sla:leadflow_sla_overdue:sum{selected}", "{{sla}}")],
                ),
            ],
        ),
        (
            8,
            [
                timeseries(
                    "Warnings per minute",
                    "SLA warnings by the share of the allowance used (warn_at in the policy).",
                    [
                        target(
                            "sum by (sla, fraction) "
                            f"(rate(leadflow_sla_warnings_total{selected}[$__rate_interval])) {PER_MINUTE}",
                            "{{sla}} at {{fraction}}",
                        )
                    ],
                ),
                timeseries(
                    "Breaches per minute",
                    "SLA deadlines passed per minute.",
                    [
                        target(
                            f"sum by (sla) (rate(leadflow_sla_breaches_total{selected}[$__rate_interval])) "
                            f"{PER_MINUTE}",
                            "{{sla}}",
                        )
                    ],
                ),
            ],
        ),
        (
            8,
            [
                bars(
                    "Breaches by team and pool (last hour)",
                    "Breached clocks in the last hour by the owner's team and routing pool "
                    "(sla_team_pool:leadflow_sla_breaches:rate1h).",
                    [
                        target(
                            f"sum by (team, pool) (sla_team_pool:leadflow_sla_breaches:rate1h{selected}) * 3600",
                            "{{team}} / {{pool}}",
                            instant=True,
                        )
                    ],
                    thresholds=[(None, "orange")],
                ),
                timeseries(
                    "Clocks started and met per minute",
                    "SLA clocks started and met (on time or late) per minute.",
                    [
                        target(
                            f"sum by (sla) (rate(leadflow_sla_started_total{selected}[$__rate_interval])) {PER_MINUTE}",
                            "{{sla}} started",
                        ),
                        target(
                            f"sum by (sla) (rate(leadflow_sla_met_total{selected}[$__rate_interval])) {PER_MINUTE}",
                            "{{sla}} met",
                        ),
                    ],
                ),
            ],
        ),
    ]
    variable = query_variable("sla", "SLA", "label_values(leadflow_sla_started_total, sla)")
    return dashboard(
        "leadflow-sla",
        "leadflow / SLA",
        "SLA compliance, response times, open and overdue clocks, warnings and breaches.",
        layout(rows),
        [variable],
    )


def handoff() -> Json:
    rows = [
        (
            9,
            [
                timeseries(
                    "Hand-offs per pool (per minute)",
                    "Leads handed to an owner, by routing pool.",
                    [
                        target(
                            f"sum by (pool) (rate(leadflow_handoffs_total[$__rate_interval])) {PER_MINUTE}",
                            "{{pool}}",
                        )
                    ],
                    stack=True,
                ),
                bars(
                    "Hand-offs by pool and reason (last hour)",
                    "routed: round robin in the lead's pool; fallback: its pool had nobody free; assigned: an "
                    "external lead.assigned; escalated: reassigned after an SLA breach.",
                    [
                        target(
                            "sum by (pool, reason) (increase(leadflow_handoffs_total[1h]))",
                            "{{pool}} / {{reason}}",
                            instant=True,
                        )
                    ],
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Open MQLs per owner (now)",
                    "MQLs each owner holds, by pool: what capacity counts (reported by the worker that runs the "
                    "router).",
                    [target("sum by (pool, owner) (leadflow_routing_open_mqls)", "{{pool}} / {{owner}}", instant=True)],
                ),
                bars(
                    "Load vs capacity (now)",
                    "Open MQLs / capacity for owners with a limit: at 100 % round robin skips them.",
                    [
                        target(
                            "sum by (pool, owner) (leadflow_routing_open_mqls) / "
                            "sum by (pool, owner) (leadflow_routing_capacity)",
                            "{{pool}} / {{owner}}",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=[(None, "green"), (0.8, "yellow"), (1.0, "red")],
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Rejection reasons (last hour)",
                    "MQLs rejected by sales in the last hour, by reason code (reason:leadflow_rejections:rate1h): "
                    "what marketing should fix at the source.",
                    [target("reason:leadflow_rejections:rate1h * 3600", "{{reason}}", instant=True)],
                    thresholds=[(None, "orange")],
                ),
                timeseries(
                    "Rejections per minute",
                    "MQLs rejected per minute, by reason.",
                    [
                        target(
                            f"sum by (reason) (rate(leadflow_rejections_total[$__rate_interval])) {PER_MINUTE}",
                            "{{reason}}",
                        )
                    ],
                    stack=True,
                ),
            ],
        ),
        (
            6,
            [
                stat(
                    "Rejected share of MQLs leaving mql (last hour)",
                    "Rejections / all exits from the mql stage in the last hour.",
                    [
                        target(
                            "sum(rate(leadflow_rejections_total[1h])) / "
                            'sum(rate(leadflow_stage_transitions_total{from_stage="mql"}[1h]))',
                            "rejected",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=[(None, "green"), (0.2, "yellow"), (0.4, "red")],
                ),
                stat(
                    "Recycled leads (last hour)",
                    "Leads sent back to marketing (transitions to nurturing) in the last hour.",
                    [
                        target(
                            'sum(increase(leadflow_stage_transitions_total{to_stage="nurturing"}[1h]))',
                            "recycled",
                            instant=True,
                        )
                    ],
                ),
                stat(
                    "Leads in nurturing now",
                    "Recycled leads waiting to re-qualify.",
                    [target('sum(stage:leadflow_leads:sum{stage="nurturing"})', "nurturing", instant=True)],
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Recycled leads per minute (to nurturing, by stage left)",
                    "Rejected MQLs, lost deals and leads recycled by the contact_attempts SLA.",
                    [
                        target(
                            'sum by (from_stage) (rate(leadflow_stage_transitions_total{to_stage="nurturing"}'
                            f"[$__rate_interval])) {PER_MINUTE}",
                            "from {{from_stage}}",
                        )
                    ],
                    stack=True,
                ),
                timeseries(
                    "Escalations per minute",
                    "SLA breach escalations by SLA and action (reassign, notify).",
                    [
                        target(
                            "sum by (sla, action) (rate(leadflow_sla_escalations_total[$__rate_interval])) "
                            f"{PER_MINUTE}",
                            "{{sla}}: {{action}}",
                        )
                    ],
                ),
            ],
        ),
    ]
    return dashboard(
        "leadflow-handoff",
        "leadflow / Hand-off & rejections",
        "Hand-offs per pool and reason, owners' load and capacity, rejection reasons, recycled leads, escalations.",
        layout(rows),
    )


def pipeline() -> Json:
    worker = '{instance=~"$instance"}'
    job_worker = f'{{job="{JOB}",instance=~"$instance"}}'

    def quantiles(metric: str, by: str, legend: str) -> list[Json]:
        return [
            target(
                f"histogram_quantile({q}, sum by ({by}) (rate({metric}{worker}[$__rate_interval])))",
                f"{legend}p{round(q * 100)}",
            )
            for q in (0.5, 0.9, 0.99)
        ]

    rows = [
        (
            5,
            [
                stat(
                    "Workers up",
                    "Worker processes Prometheus scrapes successfully.",
                    [target(f'sum(up{{job="{JOB}"}})', "up", instant=True)],
                    thresholds=[(None, "red"), (1, "green")],
                ),
                stat(
                    "Workers not ready",
                    "Workers whose /readyz answers 503: recovering their tables, joining the group, cut off from the "
                    "broker or unable to send (their /readyz says which). Seconds during a rebalance; longer pages "
                    "(LeadWorkerNotReady, LeadBrokerUnreachable).",
                    [target(f'count(leadflow_ready{{job="{JOB}"}} == 0) or vector(0)', "not ready", instant=True)],
                    thresholds=[(None, "green"), (1, "red")],
                ),
                stat(
                    "Events per second",
                    "Decoded events handled per second, every outcome.",
                    [target(f"sum(rate(leadflow_events_total{worker}[$__rate_interval]))", "events/s")],
                    "short",
                ),
                stat(
                    "Consumer lag",
                    "Records of the events topic not processed yet (topic:leadflow_consumer_lag:sum).",
                    [target("sum(topic:leadflow_consumer_lag:sum)", "lag", instant=True)],
                    thresholds=[(None, "green"), (1000, "yellow"), (10000, "red")],
                ),
                stat(
                    "Open SLA deadlines",
                    "Entries in the workers' deadline indexes.",
                    [target(f"sum(leadflow_timer_deadlines{worker})", "deadlines", instant=True)],
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Throughput by outcome (events/s)",
                    "applied, reordered (late within the lateness bound, applied in event-time order), late, "
                    "refused (event.refused), duplicate (redelivered), ignored.",
                    [
                        target(
                            f"sum by (outcome) (rate(leadflow_events_total{worker}[$__rate_interval]))",
                            "{{outcome}}",
                        )
                    ],
                    stack=True,
                ),
                timeseries(
                    "Events by type (events/s)",
                    "Decoded events per second by event type (timer.due are the worker's own SLA instants).",
                    [
                        target(
                            f"sum by (type) (rate(leadflow_events_total{worker}[$__rate_interval]))",
                            "{{type}}",
                        )
                    ],
                    stack=True,
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Consumer lag per partition",
                    "End offset minus the consumer's position (processing), and minus the group's committed offset "
                    "read through the Kafka admin API (what a restart would read again), per partition of the "
                    "events topic.",
                    [
                        target(
                            f"max by (topic, partition) (leadflow_consumer_lag{worker})",
                            "{{topic}} [{{partition}}]",
                        ),
                        target(
                            f"max by (topic, partition) (leadflow_consumer_group_lag{worker})",
                            "{{topic}} [{{partition}}] committed",
                        ),
                    ],
                ),
                timeseries(
                    "Dead letters per minute by reason",
                    "Records that could not be processed, sent to leads.deadletter.",
                    [
                        target(
                            f"sum by (reason) (rate(leadflow_dead_letters_total{worker}[$__rate_interval])) "
                            f"{PER_MINUTE}",
                            "{{reason}}",
                        )
                    ],
                    stack=True,
                ),
            ],
        ),
        (
            8,
            [
                timeseries(
                    "SLA clock delay per partition",
                    "How far each partition's SLA clock (its partition time: the later of the newest event time "
                    "applied and the last moment nothing waited on it) is behind the worker clock "
                    "(leadflow_sla_clock_delay_seconds). SLA instants fire at partition time minus "
                    "processing.sla_grace_seconds, so a backlog or a broker outage holds them back: no false "
                    "breaches, and no true ones either until the backlog is applied. A second or two when the "
                    "workers keep up; LeadSlaClocksHeldBack fires above 10 minutes for 10 minutes.",
                    [
                        target(
                            f"max by (partition) (leadflow_sla_clock_delay_seconds{worker})",
                            "partition {{partition}}",
                        )
                    ],
                    "s",
                ),
                bars(
                    "SLA clock delay now",
                    "The current delay of each partition's SLA clock behind the worker clock; no bar while a "
                    "partition's time is unknown (just after a rebalance).",
                    [
                        target(
                            f"max by (partition) (leadflow_sla_clock_delay_seconds{worker})",
                            "partition {{partition}}",
                            instant=True,
                        )
                    ],
                    "s",
                    thresholds=[(None, "green"), (60, "yellow"), (600, "red")],
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Event-time lag percentiles",
                    "Processing time minus the event's occurred_at (leadflow_event_lag_seconds).",
                    quantiles("leadflow_event_lag_seconds_bucket", "le", ""),
                    "s",
                ),
                timeseries(
                    "Timer sweep duration percentiles",
                    "Duration of one sweep of the deadline index, per worker.",
                    quantiles("leadflow_timer_sweep_duration_seconds_bucket", "instance, le", "{{instance}} "),
                    "s",
                ),
            ],
        ),
        (
            8,
            [
                timeseries(
                    "Age of the last timer sweep",
                    "Seconds since each worker last completed a sweep (sweeps run every 0.25 s by default; "
                    "LeadTimerSweepStalled fires above 60 s).",
                    [target(f"time() - leadflow_timer_last_sweep_timestamp_seconds{worker}", "{{instance}}")],
                    "s",
                ),
                timeseries(
                    "Timer events per second",
                    "timer.due events the sweeps send (due SLA instants).",
                    [
                        target(
                            f"sum by (instance) (rate(leadflow_timer_events_total{worker}[$__rate_interval]))",
                            "{{instance}}",
                        )
                    ],
                ),
            ],
        ),
        (
            8,
            [
                timeseries(
                    "Workers up",
                    "1 when Prometheus scraped the worker, 0 when not.",
                    [target(f"up{job_worker}", "{{instance}}")],
                ),
                timeseries(
                    "CPU per worker",
                    "CPU seconds per second of each worker process.",
                    [target(f"rate(process_cpu_seconds_total{job_worker}[$__rate_interval])", "{{instance}}")],
                    "percentunit",
                ),
                timeseries(
                    "Memory per worker",
                    "Resident memory of each worker process.",
                    [target(f"process_resident_memory_bytes{job_worker}", "{{instance}}")],
                    "bytes",
                ),
            ],
        ),
    ]
    variable = query_variable("instance", "Worker", f'label_values(up{{job="{JOB}"}}, instance)')
    return dashboard(
        "leadflow-pipeline",
        "leadflow / Pipeline health",
        "Throughput, consumer lag, dead letters, SLA clock delay, event-time lag, timer sweeps and the workers.",
        layout(rows),
        [variable],
    )


# Goal measures of the worker's leadflow_goal_* gauges (core/targets.py, core/attainment.py), funnel order.
GOAL_STAGE_MEASURES = ("visitors", "leads", "mqls", "qualification_calls", "sqls", "proposals", "customers")
GOAL_COUNT_MEASURES = (*GOAL_STAGE_MEASURES, "revenue", "contact_attempts")
PACE_THRESHOLDS: list[tuple[float | None, str]] = [(None, "red"), (0.8, "orange"), (0.95, "yellow"), (1.0, "green")]
KEPT_THRESHOLDS: list[tuple[float | None, str]] = [(None, "red"), (1.0, "green")]


def goals() -> Json:
    """The shared daily dashboard of marketing and sales: the period's targets, actual, projection and pace."""
    period = 'period=~"$period"'
    counts = f'{{{period},measure=~"{"|".join(GOAL_COUNT_MEASURES)}"}}'
    stages = f'{{{period},measure=~"{"|".join(GOAL_STAGE_MEASURES)}"}}'

    def of(measure: str) -> str:
        return f'{{{period},measure="{measure}"}}'

    def commitment(team: str, measures: str) -> Json:
        return target(
            f'team_period_measure:leadflow_goal_commitment_attainment:ratio{{{period},team="{team}",'
            f'measure=~"{measures}"}}',
            "{{measure}}",
            instant=True,
        )

    def versus_target(measure: str) -> list[Json]:
        return [
            target(f"period_measure:leadflow_goal_actual:sum{of(measure)}", "actual", instant=True),
            target(f"period_measure:leadflow_goal_projection:sum{of(measure)}", "projected", instant=True),
            target(f"period_measure:leadflow_goal_target:max{of(measure)}", "target", instant=True),
        ]

    def versus_floor(measure: str, legend: str) -> list[Json]:
        return [
            target(f"period_measure:leadflow_goal_floor:ratio{of(measure)}", legend, instant=True),
            target(f"period_measure:leadflow_goal_target:max{of(measure)}", "floor", instant=True),
        ]

    rows = [
        (
            5,
            [
                stat(
                    "Policy in force",
                    "The SLA the figures measure: policy name, version and the first 16 hex digits of its content "
                    "hash (leadflow_policy_info). Two lines mean the workers run different policies.",
                    [
                        target(
                            "max by (name, version, fingerprint) (leadflow_policy_info)",
                            "{{name}} v{{version}} · {{fingerprint}}",
                            instant=True,
                        )
                    ],
                    text_mode="name",
                ),
                stat(
                    "Period elapsed",
                    "Share of the current ISO week (Monday to Monday) or calendar month gone by, in the goals' time "
                    "zone (weekends count). Pacing compares the attainment with it.",
                    [target(f"period:leadflow_goal_period_elapsed_ratio:max{{{period}}}", "elapsed", instant=True)],
                    "percentunit",
                ),
                stat(
                    "Revenue: projected attainment",
                    "Won revenue projected to the period's end at the pace so far / the revenue goal.",
                    [
                        target(
                            f"period_measure:leadflow_goal_projected_attainment:ratio{of('revenue')}",
                            "revenue",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=PACE_THRESHOLDS,
                ),
                stat(
                    "Customers: projected attainment",
                    "New customers projected to the period's end at the pace so far / the customers the reverse "
                    "funnel needs.",
                    [
                        target(
                            f"period_measure:leadflow_goal_projected_attainment:ratio{of('customers')}",
                            "customers",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=PACE_THRESHOLDS,
                ),
                stat(
                    "Commitments projected to miss",
                    "How many of the teams' five commitments (MQLs, MQL acceptance rate, contact attempts, response "
                    "compliance, follow-up depth) are below 100% now: counts projected short of their target, "
                    "floors below their floor. The alerts wait for a fifth of the period and a minimum volume.",
                    [
                        target(
                            f"count(team_period_measure:leadflow_goal_commitment_attainment:ratio{{{period}}} < 1) "
                            "or vector(0)",
                            "commitments",
                            instant=True,
                        )
                    ],
                    thresholds=[(None, "green"), (1, "red")],
                ),
                stat(
                    "Bottleneck: the stage furthest behind plan",
                    "The funnel stage with the lowest projected attainment (projection / target) this period: "
                    "where the plan breaks first. visitors count only the site visits reported to leadflow.",
                    [
                        target(
                            f"bottomk(1, period_measure:leadflow_goal_projected_attainment:ratio{stages})",
                            "{{measure}}",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=PACE_THRESHOLDS,
                    text_mode="value_and_name",
                ),
            ],
        ),
        (
            10,
            [
                table(
                    "Targets vs actual and projection per measure",
                    "Each goal measure of the period: the target from the reverse-funnel plan (or the teams' stated "
                    "commitments), what the period reached so far (sum over the workers), the projection to the "
                    "period's end at the pace so far (actual / elapsed share), and both as a share of the target.",
                    [
                        (header, target(f"sum by (period, measure) ({rule}{counts})", header), unit)
                        for header, rule, unit in (
                            ("target", "period_measure:leadflow_goal_target:max", "short"),
                            ("actual", "period_measure:leadflow_goal_actual:sum", "short"),
                            ("projected", "period_measure:leadflow_goal_projection:sum", "short"),
                            ("attainment", "period_measure:leadflow_goal_attainment:ratio", "percentunit"),
                            (
                                "projected attainment",
                                "period_measure:leadflow_goal_projected_attainment:ratio",
                                "percentunit",
                            ),
                        )
                    ],
                    hide=["period"],
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Attainment so far per measure",
                    "Actual / target of each goal measure (period_measure:leadflow_goal_attainment:ratio): compare "
                    "with the period elapsed.",
                    [target(f"period_measure:leadflow_goal_attainment:ratio{counts}", "{{measure}}", instant=True)],
                    "percentunit",
                ),
                bars(
                    "Projected attainment per measure",
                    "Projection / target of each goal measure (period_measure:leadflow_goal_projected_attainment:"
                    "ratio): green from 100% (on pace to meet the target), red below 80%.",
                    [
                        target(
                            f"period_measure:leadflow_goal_projected_attainment:ratio{counts}",
                            "{{measure}}",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=PACE_THRESHOLDS,
                ),
            ],
        ),
        (
            9,
            [
                timeseries(
                    "Pacing: elapsed share vs attainment",
                    "The share of the period gone by against each measure's attainment so far: a measure above the "
                    "elapsed line is ahead of pace, below it behind.",
                    [
                        target(f"period:leadflow_goal_period_elapsed_ratio:max{{{period}}}", "elapsed"),
                        target(f"period_measure:leadflow_goal_attainment:ratio{counts}", "{{measure}}"),
                    ],
                    "percentunit",
                ),
                timeseries(
                    "Projected attainment over time",
                    "Projection / target of each goal measure over time (noisy early in a period, when little of "
                    "it has gone by).",
                    [target(f"period_measure:leadflow_goal_projected_attainment:ratio{counts}", "{{measure}}")],
                    "percentunit",
                ),
            ],
        ),
        (
            6,
            [
                stat(
                    "Marketing commitments (100% = kept)",
                    "mqls: MQLs projected to the period's end / the MQLs committed; mql_acceptance_rate: the "
                    "acceptance rate / its floor (team_period_measure:leadflow_goal_commitment_attainment:ratio). "
                    "Red below 100%: projected to miss (LeadCommitmentProjectedToMiss, LeadCommitmentFloorMissed).",
                    [commitment("marketing", "mqls|mql_acceptance_rate")],
                    "percentunit",
                    thresholds=KEPT_THRESHOLDS,
                ),
                stat(
                    "Marketing: MQLs vs commitment",
                    "MQLs handed to sales this period, projected to its end, and the commitment.",
                    versus_target("mqls"),
                ),
                stat(
                    "Marketing: MQL acceptance rate vs floor",
                    "Accepted / (accepted + rejected) MQLs of the period, from the counts summed over the workers "
                    "(period_measure:leadflow_goal_floor:ratio), and marketing's quality floor.",
                    versus_floor("mql_acceptance_rate", "accepted share"),
                    "percentunit",
                ),
            ],
        ),
        (
            6,
            [
                stat(
                    "Sales commitments (100% = kept)",
                    "contact_attempts: attempts projected to the period's end / the attempts committed; "
                    "response_compliance and follow_up_depth: the measured value / its floor. Red below 100%.",
                    [commitment("sales", "contact_attempts|response_compliance|follow_up_depth")],
                    "percentunit",
                    thresholds=KEPT_THRESHOLDS,
                ),
                stat(
                    "Sales: contact attempts vs commitment",
                    "Contact attempts made this period, projected to its end, and the commitment.",
                    versus_target("contact_attempts"),
                ),
                stat(
                    "Sales: response compliance vs floor",
                    "First-response SLA clocks met in time / decided this period (summed counts), and the floor.",
                    versus_floor("response_compliance", "in time"),
                    "percentunit",
                ),
                stat(
                    "Sales: follow-up depth vs floor",
                    "Attempts per lead whose follow-up ended this period (its contact_attempts clock met or "
                    "breached: the attempts it had by then), and the floor.",
                    versus_floor("follow_up_depth", "attempts per lead"),
                ),
            ],
        ),
        (
            9,
            [
                bars(
                    "Bottleneck: projected attainment per funnel stage (lowest first)",
                    "The funnel stages sorted by projected attainment, lowest first: the top bar is the stage "
                    "furthest behind plan; fix it before pushing the stages above it.",
                    [
                        target(
                            f"sort(period_measure:leadflow_goal_projected_attainment:ratio{stages})",
                            "{{measure}}",
                            instant=True,
                        )
                    ],
                    "percentunit",
                    thresholds=PACE_THRESHOLDS,
                ),
                timeseries(
                    "Quality floors over time",
                    "MQL acceptance rate and response compliance of the period so far, from the summed counts.",
                    [
                        target(
                            f"period_measure:leadflow_goal_floor:ratio{{{period},"
                            f'measure=~"mql_acceptance_rate|response_compliance"}}',
                            "{{measure}}",
                        ),
                    ],
                    "percentunit",
                ),
            ],
        ),
    ]
    variable = custom_variable("period", "Period", ["week", "month"])
    return dashboard(
        "leadflow-goals",
        "leadflow / Goals",
        "The shared daily dashboard of marketing and sales: the period's targets vs actual and projection, pacing, "
        "each team's commitments kept or projected to miss, and the funnel's bottleneck.",
        layout(rows),
        [variable],
        time_from="now-7d",
    )


def ingest() -> Json:
    """The webhook gateway (leadflow ingest): what each tool sends, what was stored, what was refused and why."""
    requests = "leadflow_ingest_requests_total"
    refused = 'outcome=~"unauthorized|disabled|unmappable|too_large"'
    panels = layout(
        [
            (
                5,
                [
                    stat(
                        "Accepted per minute",
                        "Webhook requests answered 202 (stored: the broker acknowledged every event) per minute.",
                        [target(f'sum(rate({requests}{{outcome="accepted"}}[5m])) {PER_MINUTE}', instant=True)],
                    ),
                    stat(
                        "Refused share",
                        "Requests answered 401, 403, 413 or 422 over the last hour: not stored, and tools do not "
                        "retry a 4xx (alert LeadIngestRejectionsHigh).",
                        [
                            target(
                                f"sum(increase({requests}{{{refused}}}[1h]))"
                                f" / clamp_min(sum(increase({requests}[1h])), 1)",
                                instant=True,
                            )
                        ],
                        "percentunit",
                        thresholds=[(None, "green"), (0.01, "yellow"), (0.05, "red")],
                    ),
                    stat(
                        "Unavailable (503) per minute",
                        "Requests the gateway could not store because the broker did not acknowledge: the tools retry "
                        "(alert LeadIngestUnavailable).",
                        [target(f'sum(rate({requests}{{outcome="unavailable"}}[5m])) {PER_MINUTE}', instant=True)],
                        thresholds=[(None, "green"), (0.001, "red")],
                    ),
                    stat(
                        "Gateways ready",
                        "Gateways connected to the broker with their identity table loaded (/readyz).",
                        [target("sum(leadflow_ingest_ready)", instant=True)],
                        thresholds=[(None, "red"), (1, "green")],
                    ),
                    stat(
                        "Identity aliases",
                        "Tool contact ids and e-mail hashes the identity table maps to a lead (max over gateways).",
                        [target("max(leadflow_ingest_identity_aliases)", instant=True)],
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Requests per minute by source and answer",
                        "Each tool's webhook requests and how they were answered: accepted (202), unauthorized "
                        "(401), disabled (403), unknown_source (404), too_large (413), unmappable (422), "
                        "unavailable (503).",
                        [
                            target(
                                f"sum by (source, outcome) (rate({requests}[5m])) {PER_MINUTE} > 0",
                                "{{source}} {{outcome}}",
                            )
                        ],
                        stack=True,
                    ),
                    timeseries(
                        "Events produced per minute by type",
                        "Canonical events the gateway stored on leads.events, by source and type (identity merges "
                        "and creations included).",
                        [
                            target(
                                f"sum by (source, type) (rate(leadflow_ingest_events_total[5m])) {PER_MINUTE}",
                                "{{source}} {{type}}",
                            )
                        ],
                        stack=True,
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Refusals per hour by reason",
                        "Why requests were refused: auth_missing / auth_mismatch (secret), auth_stale (HubSpot "
                        "timestamp over 5 minutes away), auth_disabled, too_large, unmappable (the payload), "
                        "invalid_event (an event it maps to). See the runbook of LeadIngestRejectionsHigh.",
                        [
                            target(
                                "sum by (source, reason) (increase(leadflow_ingest_rejections_total[1h]))",
                                "{{source}} {{reason}}",
                            )
                        ],
                    ),
                    timeseries(
                        "Answer time p50 / p99 by source",
                        "From request to answer; a 202 includes the broker's acknowledgement (acks=all).",
                        [
                            target(
                                "histogram_quantile(0.5, sum by (source, le) "
                                "(rate(leadflow_ingest_request_duration_seconds_bucket[5m])))",
                                "p50 {{source}}",
                            ),
                            target(
                                "histogram_quantile(0.99, sum by (source, le) "
                                "(rate(leadflow_ingest_request_duration_seconds_bucket[5m])))",
                                "p99 {{source}}",
                            ),
                        ],
                        "s",
                    ),
                ],
            ),
        ]
    )
    return dashboard(
        "leadflow-ingest",
        "leadflow · Ingest",
        "The webhook gateway: requests by tool and answer, events stored, refusals and why, answer times.",
        panels,
        time_from="now-24h",
    )


DASHBOARDS = {
    "funnel": funnel,
    "sla": sla,
    "handoff": handoff,
    "pipeline": pipeline,
    "goals": goals,
    "ingest": ingest,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [
            name
            for name, text in files.items()
            if not (OUT_DIR / name).is_file() or (OUT_DIR / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{OUT_DIR / name} differs from the generator: run python grafana/dashboards.py", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        print(OUT_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
