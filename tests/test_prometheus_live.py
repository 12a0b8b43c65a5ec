"""The monitoring files against a real Prometheus scraping a real worker (issue 5, item 5).

A worker on the embedded broker gets simulated traffic under a policy whose SLA allowances are a fraction of a
second, so clocks warn, breach and escalate while the test runs, and a webhook gateway gets web form posts (some
with a wrong token). A `prometheus` process (Debian package) scrapes the worker's and the gateway's /metrics every
second and evaluates the project's rule files. Then every recording rule and every
dashboard panel query must return data, and the SLA breach alert must be pending or firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from e2e import Deployment
from test_gateway import TOKEN, gateway_settings, serve

from leadflow.streams.dev.broker import BrokerProcess, free_port
from leadflow.streams.dev.simulator import LiveSimulator
from leadflow.streams.dev.worker_process import WorkerProcess
from leadflow.streams.runtime.producer import kafka_sender

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
ALERT = "LeadSlaBreachRateHigh"
TIMEOUT_S = 150.0
POLL_S = 2.0
TINY_ALLOWANCE = {"minutes": 0.01}  # 0.6 s of wall-clock time


def rule_files() -> list[Path]:
    """Prometheus rule files under grafana/: YAML documents with rule `groups` (not promtool test files)."""
    found = []
    for path in sorted([*GRAFANA.rglob("*.yml"), *GRAFANA.rglob("*.yaml")]):
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and isinstance(document.get("groups"), list) and "tests" not in document:
            found.append(path)
    return found


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule with a `record` (kind="record") or an `alert` (kind="alert") key."""
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group.get("rules", [])
        if kind in rule
    ]


def dashboard_files() -> list[Path]:
    return sorted(p for p in GRAFANA.rglob("*.json") if "panels" in json.loads(p.read_text()))


def panel_targets(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, expr) of every panel target, rows and nested panels included."""
    if isinstance(node, dict):
        for target in node.get("targets", []) or []:
            if isinstance(target, dict) and target.get("expr"):
                yield f"{where} / {node.get('title', '?')} / {target.get('refId', '?')}", target["expr"]
        for key in ("panels", "rows"):
            for child in node.get(key, []) or []:
                yield from panel_targets(child, where)


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        queries.extend(panel_targets(dashboard, path.relative_to(ROOT).as_posix()))
    return queries


def concrete(expr: str) -> str:
    """A panel query as Prometheus can run it: Grafana's interval variables as 1m, template variables as .*"""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "1m", expr)
    expr = re.sub(r"\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\[\[[A-Za-z0-9_]+\]\]|\$[A-Za-z_][A-Za-z0-9_]*", ".*", expr)
    return expr


def fast_sla_policy(path: Path) -> Path:
    """The default policy with every SLA allowance (overrides too) a fraction of a second of wall-clock time."""
    document = yaml.safe_load((ROOT / "schemas" / "default_policy.yaml").read_text())
    document["processing"]["sla_grace_seconds"] = 1  # breaches within the test's minute
    for sla in document.get("slas", []):
        sla["allowance"] = dict(TINY_ALLOWANCE)
        for override in sla.get("overrides", []):
            override["allowance"] = dict(TINY_ALLOWANCE)
    path.write_text(yaml.safe_dump(document))
    return path


@contextlib.contextmanager
def prometheus(workdir: Path, target_port: int, ingest_port: int) -> Iterator[str]:
    """A Prometheus scraping the worker and the gateway every second with the project's rules; yields its URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: apt-get install -y prometheus"
    files = rule_files()
    assert files, f"no rule files under {GRAFANA}"
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(p) for p in files],
        "scrape_configs": [
            {
                "job_name": "leadflow",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            },
            {
                "job_name": "leadflow-ingest",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{ingest_port}"]}],
            },
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


serve_gateway = contextlib.asynccontextmanager(serve)


@contextlib.asynccontextmanager
async def traffic(deployment: Deployment) -> AsyncIterator[LiveSimulator]:
    """Simulated leads (with a few bad records) flowing into the deployment's events topic until the block ends."""
    simulator = LiveSimulator(seed=5, leads_per_s=15, bad_ratio=0.03, id_prefix="prom")
    stop = asyncio.Event()

    async def run() -> None:
        async with kafka_sender(
            deployment.broker.bootstrap, deployment.events, embedded=deployment.broker.one_record_per_batch
        ) as send:
            await simulator.run(send, stop=stop)

    task = asyncio.create_task(run())
    try:
        yield simulator
    finally:
        stop.set()
        await task


async def form_posts(url: str, stop: asyncio.Event) -> None:
    """A web form every 0.2 s, and every fifth one with a wrong token (refused: 401), until `stop`."""
    async with aiohttp.ClientSession() as session:
        n = 0
        while not stop.is_set():
            token = TOKEN if n % 5 else f"wrong-{TOKEN}"
            form = {"form_id": "newsletter", "email": f"visitor{n}@example.com", "submission_id": f"s-{n}"}
            async with session.post(f"{url}/ingest/forms?token={token}", data=form) as answer:
                assert answer.status in (202, 401), await answer.text()
            n += 1
            await asyncio.sleep(0.2)


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> list[Any]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    result: list[Any] = body["data"]["result"]
    return result


async def alert_states(session: aiohttp.ClientSession, base: str) -> dict[str, set[str]]:
    async with session.get(f"{base}/api/v1/alerts") as response:
        body = await response.json()
    states: dict[str, set[str]] = {}
    for alert in body["data"]["alerts"]:
        states.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
    return states


async def missing(session: aiohttp.ClientSession, base: str, queries: list[tuple[str, str]]) -> list[str]:
    empty = []
    for where, expr in queries:
        if not await query(session, base, expr):
            empty.append(f"{where}: {expr}")
    return empty


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def test_rules_and_dashboards_return_data_and_the_breach_alert_fires(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path
) -> None:
    records = [(f"record {r['record']}", r["record"]) for r in rules("record")]
    panels = [(f"panel {where}", concrete(expr)) for where, expr in dashboard_queries()]
    assert records, f"no recording rules in {rule_files()}"
    assert ALERT in {r["alert"] for r in rules("alert")}, f"no alert {ALERT} in {rule_files()}"

    deployment = Deployment(broker, unique_topic_prefix, tmp_path)
    await deployment.create_topics()
    policy = fast_sla_policy(tmp_path / "policy.yaml")
    worker: WorkerProcess = deployment.worker(LEADFLOW_POLICY=str(policy)).start()
    ingest_config = gateway_settings()
    stop_posting = asyncio.Event()
    try:
        with prometheus(tmp_path, deployment.web_port, ingest_config.port) as base:
            async with (
                serve_gateway(deployment.settings(), ingest_config),
                traffic(deployment),
                aiohttp.ClientSession() as session,
            ):
                posting = asyncio.create_task(form_posts(f"http://127.0.0.1:{ingest_config.port}", stop_posting))
                deadline = time.monotonic() + TIMEOUT_S
                while True:
                    await asyncio.sleep(POLL_S)
                    assert worker.exit_code() is None, worker.log_tail()
                    with contextlib.suppress(aiohttp.ClientError):  # Prometheus still starting
                        empty = await missing(session, base, [*records, *panels])
                        alerts = await alert_states(session, base)
                        if not empty and alerts.get(ALERT, set()) & {"pending", "firing"}:
                            break
                    if time.monotonic() > deadline:
                        summary = "\n".join(empty) if "empty" in locals() else "(Prometheus never answered)"
                        pytest.fail(
                            f"after {TIMEOUT_S:.0f} s, queries without data:\n{summary}\nalerts: "
                            f"{locals().get('alerts')}\n--- prometheus log ---\n{log_tail(tmp_path / 'prometheus.log')}"
                            f"\n--- worker log ---\n{worker.log_tail()}"
                        )
                up = await query(session, base, 'up{job="leadflow"}')
                assert [float(s["value"][1]) for s in up] == [1.0]
                stop_posting.set()
                await posting
    finally:
        stop_posting.set()
        worker.stop()


def test_panel_queries_get_grafana_variables_replaced() -> None:
    expr = 'sum by (sla) (rate(leadflow_sla_breaches_total{sla=~"$sla", pool=~"${pool:regex}"}[$__rate_interval]))'
    assert concrete(expr) == 'sum by (sla) (rate(leadflow_sla_breaches_total{sla=~".*", pool=~".*"}[1m]))'
    assert concrete("increase(leadflow_events_total[${__range}])") == "increase(leadflow_events_total[1m])"
