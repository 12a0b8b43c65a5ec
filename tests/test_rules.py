"""Prometheus rules: promtool checks and unit-tests them; alerts follow the mixin conventions and their runbooks
exist in the README."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "grafana" / "prometheus" / "rules" / "leadflow.rules.yml"
RULE_TESTS = ROOT / "grafana" / "prometheus" / "tests" / "leadflow.rules.test.yml"
README = ROOT / "README.md"

REQUIRED_ALERTS = {
    "LeadSlaBreachRateHigh",
    "LeadMqlAcceptanceBacklog",
    "LeadDeadLettersRising",
    "LeadConsumerLagHigh",
    "LeadWorkerDown",
    "LeadTimerSweepStalled",
    "LeadRoutingUnassigned",
    "LeadSlaClocksHeldBack",
    "LeadCommitmentProjectedToMiss",
    "LeadCommitmentFloorMissed",
    "LeadIngestUnavailable",
    "LeadIngestRejectionsHigh",
    "LeadNotificationsFailing",
    "LeadBrokerUnreachable",
    "LeadConsumerStalled",
    "LeadWorkerNotReady",
}
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (.ci/run does it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def rule_tests() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"])


def test_promtool_check_rules() -> None:
    result = run(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    result = run(promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_tests_load_the_rule_file() -> None:
    files = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["rule_files"]
    assert [(RULE_TESTS.parent / f).resolve() for f in files] == [RULES.resolve()]


def test_required_alerts_exist() -> None:
    assert {rule["alert"] for rule in alerts()} >= REQUIRED_ALERTS


def test_recording_rule_names_follow_level_metric_operations() -> None:
    names = [rule["record"] for rule in rules() if "record" in rule]
    assert names
    bad = [name for name in names if not RECORD_NAME.match(name)]
    assert not bad, f"not level:metric:operations: {bad}"
    assert len(names) == len(set(names)), "a recording rule is defined twice"


def test_every_recording_rule_has_an_expression_test() -> None:
    tested = " ".join(case["expr"] for test in rule_tests() for case in test.get("promql_expr_test", []))
    untested = [rule["record"] for rule in rules() if "record" in rule and rule["record"] not in tested]
    assert not untested, f"recording rules without a promql_expr_test: {untested}"


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_alert_follows_mixin_conventions(alert: str) -> None:
    (rule,) = [rule for rule in alerts() if rule["alert"] == alert]
    assert re.fullmatch(r"Lead(?:[A-Z][a-z0-9]*)+", alert)
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule.get("for"), "an alert waits before firing"
    annotations = rule["annotations"]
    assert annotations["summary"].endswith(".")
    assert "{{" in annotations["description"], "the description is templated"
    assert annotations["runbook_url"] == f"README.md#{alert.lower()}"


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_alert_is_tested_before_and_after_its_for(alert: str) -> None:
    cases = [case for test in rule_tests() for case in test.get("alert_rule_test", []) if case["alertname"] == alert]
    quiet = [case for case in cases if not case.get("exp_alerts")]
    firing = [case for case in cases if case.get("exp_alerts")]
    assert quiet, f"{alert}: no case before its `for`"
    assert firing, f"{alert}: no case where it fires"
    (rule,) = [rule for rule in alerts() if rule["alert"] == alert]
    for case in firing:
        for expected in case["exp_alerts"]:
            assert expected["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}


def _runbook_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Runbooks\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, "README.md has no '## Runbooks' section"
    return match.group(1)


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_runbook_anchor_exists(alert: str) -> None:
    section = _runbook_section()
    # GitHub's anchor of "### LeadWorkerDown" is "#leadworkerdown".
    assert re.search(rf"^### {alert}$", section, flags=re.M), f"README.md: no '### {alert}' under '## Runbooks'"
    body = re.search(rf"^### {alert}\n(.*?)(?=^### |\Z)", section, flags=re.S | re.M)
    assert body
    for part in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
        assert f"**{part}" in body.group(1), f"runbook {alert}: no {part}"


def test_alert_table_lists_every_alert() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Alerts\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Alerts' section"
    for rule in alerts():
        assert f"[`{rule['alert']}`](#{rule['alert'].lower()})" in match.group(1)


# --- goals and pacing (issue 10, item 4) ------------------------------------------------------------------------


def _alert(name: str) -> dict[str, Any]:
    (rule,) = [rule for rule in alerts() if rule["alert"] == name]
    return rule


def _measures(expr: str) -> set[str]:
    (values,) = re.findall(r'measure=~"([^"]+)"', expr)
    return set(values.split("|"))


def test_goal_alerts_cover_each_commitment_once() -> None:
    """The count commitments page when projected to miss, the floors when below the floor: the core's lists."""
    from leadflow.core.targets import COUNT_COMMITMENTS, FLOOR_COMMITMENTS

    assert _measures(_alert("LeadCommitmentProjectedToMiss")["expr"]) == set(COUNT_COMMITMENTS)
    assert _measures(_alert("LeadCommitmentFloorMissed")["expr"]) == set(FLOOR_COMMITMENTS)


def test_commitments_belong_to_their_team() -> None:
    """Marketing commits to MQLs and their acceptance rate, sales to the rest (the `team` label of the alerts)."""
    (rule,) = [r for r in rules() if r.get("record") == "team_period_measure:leadflow_goal_commitment_attainment:ratio"]
    teams = dict(re.findall(r'"team", "(\w+)", "measure", "([\w|]+)"', rule["expr"]))
    assert {team: set(measures.split("|")) for team, measures in teams.items()} == {
        "marketing": {"mqls", "mql_acceptance_rate"},
        "sales": {"contact_attempts", "response_compliance", "follow_up_depth"},
    }


def test_goal_alerts_wait_for_a_share_of_the_period_or_a_minimum_volume() -> None:
    """A projection a few hours into a week is noise, and one rejection on a Monday is not a trend."""
    assert "period:leadflow_goal_period_elapsed_ratio:max >= 0.2" in _alert("LeadCommitmentProjectedToMiss")["expr"]
    assert "period_measure:leadflow_goal_floor_basis:sum >= 20" in _alert("LeadCommitmentFloorMissed")["expr"]


def test_goal_targets_are_not_summed_over_workers() -> None:
    """Every worker exports the same targets and elapsed share: max by, never sum (two workers would double them)."""
    exprs = {r["record"]: r["expr"] for r in rules() if "record" in r}
    assert exprs["period_measure:leadflow_goal_target:max"] == "max by (period, measure) (leadflow_goal_target)"
    assert exprs["period:leadflow_goal_period_elapsed_ratio:max"] == (
        "max by (period) (leadflow_goal_period_elapsed_ratio)"
    )
    assert exprs["period_measure:leadflow_goal_actual:sum"] == "sum by (period, measure) (leadflow_goal_actual)"
    assert exprs["period_measure:leadflow_goal_projection:sum"] == (
        "sum by (period, measure) (leadflow_goal_projection)"
    )
