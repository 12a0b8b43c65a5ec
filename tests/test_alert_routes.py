"""Alertmanager's routing (grafana/alertmanager/alertmanager.yml), checked with amtool: operations alerts reach the
on-call receiver, SLA and goal alerts the sales teams' receiver; every alert of the rule file has a route."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "grafana" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "grafana" / "prometheus" / "rules" / "leadflow.rules.yml"
TEAM_ALERTS = {
    "LeadSlaBreachRateHigh",
    "LeadMqlAcceptanceBacklog",
    "LeadRoutingUnassigned",
    "LeadCommitmentProjectedToMiss",
    "LeadCommitmentFloorMissed",
}


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is missing: apt-get install -y prometheus-alertmanager (.ci/run does it)")
    return path


def receiver(**labels: str) -> str:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def alerts() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {r["alert"]: r["labels"]["severity"] for g in groups for r in g["rules"] if "alert" in r}


def test_the_config_is_valid() -> None:
    result = subprocess.run([amtool(), "check-config", str(CONFIG)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 receivers" in result.stdout


@pytest.mark.parametrize(("alert", "severity"), sorted(alerts().items()))
def test_each_alert_reaches_its_audience(alert: str, severity: str) -> None:
    expected = "sales-teams" if alert in TEAM_ALERTS else "oncall"
    assert receiver(alertname=alert, severity=severity) == expected


def test_the_team_alerts_exist() -> None:
    assert set(alerts()) >= TEAM_ALERTS
    assert "LeadNotificationsFailing" in alerts()


def test_receivers_read_their_secrets_from_files() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    for receiver_config in config["receivers"]:
        for slack in receiver_config.get("slack_configs", []):
            assert "api_url" not in slack
            assert slack["api_url_file"].startswith("/run/secrets/")
    assert "smtp_auth_password" not in config["global"]
    assert config["global"]["smtp_auth_password_file"].startswith("/run/secrets/")
    assert "hooks.slack.com" not in text
