"""The `leadflow` command as a user runs it: a separate process, its exit code and what it prints."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest
import yaml
from e2e import PARTITIONS, read_topic

from streams.broker import EmbeddedBroker, free_port
from streams.simulator import journeys
from streams.topics import ensure_topics


def leadflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_policy_check_accepts_the_default_policy() -> None:
    result = leadflow("policy", "check")
    assert result.returncode == 0, result.stderr
    assert "default policy: ok" in result.stdout


def test_policy_check_lists_every_problem_with_its_path_and_no_traceback(tmp_path: Path) -> None:
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["scoring"]["engagement"][2]["points"] = "three"
    document["mql"]["min_fitt"] = 40
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    result = leadflow("policy", "check", str(path))
    assert result.returncode == 1
    assert f"{path}: scoring.engagement[2].points: must be an integer" in result.stderr
    assert f"{path}: mql.min_fitt: is not a known field (check the spelling)" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_files_describe_the_events_producers_send(tmp_path: Path) -> None:
    result = leadflow("schema", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "dead-letter.schema.json",
        "lead-event.schema.json",
        "lead-record.schema.json",
        "policy.schema.json",
        "transition.schema.json",
    ]
    schema = orjson.loads((tmp_path / "lead-event.schema.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    events = journeys(seed=3, n_leads=60, start=datetime(2026, 1, 5, tzinfo=UTC))
    for event in events:
        validator.validate(event)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**events[0], "type": "lead.exploded"})
    envelope = {"event_id": "e1", "lead_id": "L1", "occurred_at": "2026-11-24T10:00:00Z", "source": "hubspot"}
    custom = {"origin": "rd_station", "landing_page_id": 812, "hs_score": 7.5, "opted_in": True, "utm_term": None}
    for kind in ("lead.created", "lead.updated"):
        validator.validate({**envelope, "type": kind, "data": {"seniority": "vp", **custom}})
        for bad in ({"tags": ["a"]}, {"origin": "x" * 501}, {"Landing Page": "/"}, {"x" * 65: 1}):
            with pytest.raises(jsonschema.ValidationError):
                validator.validate({**envelope, "type": kind, "data": bad})
    validator.validate({**envelope, "type": "deal.won", "data": {}})  # unknown revenue
    validator.validate({**envelope, "type": "deal.won"})
    validator.validate({**envelope, "type": "deal.lost", "data": {"reason": "went_dark"}})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**envelope, "type": "deal.won", "data": {"amount": 5, "origin": "crm"}})


@pytest.mark.broker
async def test_produce_sends_every_line_keyed_by_lead_id(
    broker: EmbeddedBroker, unique_topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{unique_topic_prefix}events"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    lines = [orjson.dumps({"event_id": f"e{i}", "lead_id": f"lead-{i % 3}", "type": "lead.created"}) for i in range(6)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    result = leadflow("produce", str(path), "--broker", broker.url, "--topic", topic, "--embedded")
    assert result.returncode == 0, result.stderr
    got = await read_topic(broker.bootstrap, topic)
    assert sorted(v or b"" for _, v in got) == sorted([*lines, b"{not json"])
    assert {(k, orjson.loads(v)["lead_id"].encode()) for k, v in got if v != b"{not json"} == {
        (f"lead-{i}".encode(), f"lead-{i}".encode()) for i in range(3)
    }


@pytest.mark.broker
def test_run_for_a_bounded_time_prints_a_summary_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = leadflow(
        "run", "--for", "20", "--leads-per-s", "20", "--web-port", str(free_port()),
        "--workdir", str(tmp_path / "run"), "--report-json", str(report), "--no-live",
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final summary" in result.stdout
    figures = orjson.loads(report.read_bytes())
    assert figures["reached"]["lead"] > 100
    assert figures["reached"]["mql"] > 0
    assert figures["reached"]["sal"] > 0
    assert sum(figures["dead_letters"].values()) > 0  # --bad-ratio defaults to 1 %: the dead-letter path is live
    assert set(figures) >= {"stage_counts", "reached", "conversion", "durations_s", "sla", "rejections"}
    assert figures["sla"]["mql_acceptance"]["started"] > 0
