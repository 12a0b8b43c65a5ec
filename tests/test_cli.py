"""The `leadflow` command as a user runs it: a separate process, its exit code and what it prints."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from e2e import PARTITIONS, read_topic, topic_size

from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker, free_port
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.runtime.topics import ensure_topics


def leadflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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
        "handoff.schema.json",
        "lead-event.schema.json",
        "lead-record.schema.json",
        "policy.schema.json",
        "review.schema.json",
        "routing-message.schema.json",
        "site-visits.schema.json",
        "sla-output.schema.json",
        "transition.schema.json",
    ]
    visits = jsonschema.Draft202012Validator(
        orjson.loads((tmp_path / "site-visits.schema.json").read_bytes()),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    report = {"event_id": "v1", "type": "site.visits", "occurred_at": "2026-11-30T23:00:00-03:00", "source": "ga4",
              "data": {"date": "2026-11-30", "traffic_source": "google/cpc", "visits": 1234}}  # fmt: skip
    visits.validate(report)
    for bad in ({"visits": -1}, {"date": "yesterday"}, {"traffic_source": ""}):
        with pytest.raises(jsonschema.ValidationError):
            visits.validate({**report, "data": {**report["data"], **bad}})
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
@pytest.mark.parametrize("named_by", ["flag", "environment"])
async def test_produce_sends_every_line_keyed_by_lead_id(
    broker: BrokerProcess, unique_topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    """To the topic `--topic` names, else to the events topic of the worker's settings (LEADFLOW_TOPIC_EVENTS)."""
    topic = f"{unique_topic_prefix}events"
    await ensure_topics(broker.bootstrap, {topic: PARTITIONS})
    lines = [orjson.dumps({"event_id": f"e{i}", "lead_id": f"lead-{i % 3}", "type": "lead.created"}) for i in range(6)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    tansu = ["--embedded"] if broker.one_record_per_batch else []
    if named_by == "flag":
        given = ["--topic", topic]
    else:
        monkeypatch.setenv("LEADFLOW_TOPIC_EVENTS", topic)
        given = []
    result = leadflow("produce", str(path), "--broker", broker.url, *given, *tansu)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"to {topic}")
    got = await read_topic(broker.bootstrap, topic)
    assert sorted(v or b"" for _, v in got) == sorted([*lines, b"{not json"])
    assert {(k, orjson.loads(v)["lead_id"].encode()) for k, v in got if v != b"{not json"} == {
        (f"lead-{i}".encode(), f"lead-{i}".encode()) for i in range(3)
    }


@pytest.mark.broker
async def test_produce_follows_leadflow_embedded_on_the_embedded_broker(
    tansu: EmbeddedBroker, unique_topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LEADFLOW_EMBEDDED=1 (as `--embedded`) sends one record per batch: tansu's end offsets then count them all
    (GUIDE section 4); batched, they count only up to the last batch's first record."""
    topic = f"{unique_topic_prefix}events"
    await ensure_topics(tansu.bootstrap, {topic: 1})
    lines = [orjson.dumps({"event_id": f"e{i}", "lead_id": "lead-1", "type": "lead.created"}) for i in range(20)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("LEADFLOW_EMBEDDED", "1")
    result = leadflow("produce", str(path), "--broker", tansu.url, "--topic", topic)
    assert result.returncode == 0, result.stderr
    assert await topic_size(tansu.bootstrap, topic, partitions=1) == len(lines)


@pytest.mark.broker
@pytest.mark.parametrize("local", ["kafka", "tansu"])
def test_run_for_a_bounded_time_prints_a_summary_and_writes_the_report(tmp_path: Path, local: str) -> None:
    report = tmp_path / "report.json"
    result = leadflow(
        "run", "--for", "20", "--leads-per-s", "20", "--web-port", str(free_port()), "--embedded-broker", local,
        "--workdir", str(tmp_path / "run"), "--report-json", str(report), "--no-live",
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final summary" in result.stdout
    assert ("Apache Kafka" if local == "kafka" else "embedded broker") in result.stdout
    figures = orjson.loads(report.read_bytes())
    assert figures["reached"]["lead"] > 100
    assert figures["reached"]["mql"] > 0
    assert figures["reached"]["sal"] > 0
    assert sum(figures["dead_letters"].values()) > 0  # --bad-ratio defaults to 1 %: the dead-letter path is live
    assert set(figures) >= {"stage_counts", "reached", "conversion", "durations_s", "sla", "rejections"}
    assert figures["sla"]["mql_acceptance"]["started"] > 0


def test_replay_writes_the_report_and_prints_one_summary_line(tmp_path: Path) -> None:
    events = journeys(seed=4, n_leads=80, start=datetime(2026, 9, 7, tzinfo=UTC))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in reversed(events)) + b"{broken\n")
    report = tmp_path / "report.json"
    result = leadflow("replay", str(path), "--report-json", str(report), "--outputs", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    summary, written = result.stdout.splitlines()
    assert summary.startswith(f"replayed events.jsonl: {len(events):,} events read, ")
    assert ", 1 malformed lines, " in summary
    assert written == f"report written to {report}"
    figures = orjson.loads(report.read_bytes())
    assert set(figures) >= {"stage_counts", "reached", "conversion", "durations_s", "sla", "rejections", "replay"}
    assert figures["replay"]["malformed"]["examples"][0]["line"] == len(events) + 1
    assert (tmp_path / "out" / "leads.deadletter.jsonl").read_bytes().count(b"\n") == 1


def test_replay_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = leadflow("replay", str(tmp_path / "nope.jsonl"), "--report-json", str(tmp_path / "r.json"))
    assert result.returncode == 2
    assert result.stderr == f"leadflow replay: {tmp_path / 'nope.jsonl'}: no such file\n"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    result = leadflow("replay", str(path), "--report-json", str(tmp_path / "r.json"), "--until", "soon")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("leadflow replay: --until 'soon': not an RFC 3339 time")


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    """A stand-in for a worker's web server: GET /funnel/leads answers `body` (JSON lines of summaries)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/funnel/leads" else 404
            self.send_response(status)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_report_merges_the_workers_summaries(tmp_path: Path) -> None:
    from leadflow.core.report import SUMMARY_ADAPTER, funnel_report, summaries_of
    from leadflow.schemas.policy import load_policy
    from leadflow.streams.cli.replay import ReplayOptions, replay

    events = journeys(seed=6, n_leads=120, start=datetime(2026, 9, 7, tzinfo=UTC))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    replayed = replay(ReplayOptions(events=path))
    summaries = list(summaries_of(replayed.sides[0].engine.leads()))
    halves = [summaries[::2], summaries[1::2]]
    servers = [serve(b"".join(SUMMARY_ADAPTER.dump_json(s) + b"\n" for s in half)) for half in halves]
    try:
        out = tmp_path / "report.json"
        result = leadflow("report", "--worker", servers[0][1], "--worker", servers[1][1], "--json", str(out))
    finally:
        for server, _ in servers:
            server.shutdown()
            server.server_close()
    assert result.returncode == 0, result.stderr
    merged = orjson.loads(out.read_bytes())
    expected = funnel_report(summaries, load_policy(), datetime.now(UTC))
    for key in ("leads", "stage_counts", "reached", "conversion", "rejections", "handoffs"):
        assert merged[key] == expected[key], key
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"leads: {expected['leads']:,} (as of ")
    assert lines[1].startswith("stages: subscriber ")
    assert any(line.startswith("SLA mql_acceptance: compliance ") for line in lines)
    assert lines[-2].startswith("overdue MQLs by owner: ")
    assert lines[-1] == f"report written to {out}"


def test_report_names_a_worker_it_cannot_reach(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = leadflow("report", "--worker", url, "--timeout", "5")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"leadflow report: {url}/funnel/leads: cannot connect")
    assert "Traceback" not in result.stderr


# ---- leadflow plan: the reverse funnel -------------------------------------------------------------------------


def policy_file(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    change(document)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_plan_prints_the_reverse_funnel_per_month_and_week_with_capacity_and_costs() -> None:
    result = leadflow("plan")
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in result.stdout.splitlines() if "  " in line}
    # The shipped goals are the worked example ten times over: 10 customers = 50 proposals = 100 SQLs = 300
    # qualification calls = 5,000 MQLs = 25,000 leads = 75,000 visitors a month.
    assert rows["customers"][:3] == ["customers", "10", "3"]
    assert rows["proposals"][:3] == ["proposals", "50", "12"]
    assert rows["SQLs"][:3] == ["SQLs", "100", "24"]
    assert rows["qualification calls"][2:4] == ["300", "70"]
    assert rows["MQLs"][:3] == ["MQLs", "5,000", "1,154"]
    assert rows["leads"][:3] == ["leads", "25,000", "5,770"]
    assert rows["visitors"][:3] == ["visitors", "75,000", "17,308"]
    assert rows["rep-hours"][:3] == ["rep-hours", "450.00", "105.00"]
    assert rows["reps needed"][2:4] == ["4", "4"]
    assert rows["cost per customer (CAC)"][4] == "3,000.00"
    assert rows["marketing ROI"][2] == "300.0%"
    assert "weeks per month: 52/12 = 4.33" in result.stdout
    assert "given: goals.conversion.lead_to_mql" in result.stdout


def test_plan_json_is_the_plan_document() -> None:
    from leadflow.core.plan import plan, plan_document
    from leadflow.schemas.policy import load_policy

    result = leadflow("plan", "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == plan_document(plan(load_policy()))


def test_plan_from_history_uses_what_the_replay_measures_and_says_so(tmp_path: Path) -> None:
    from leadflow.core.plan import measure, plan, plan_document
    from leadflow.schemas.policy import load_policy
    from leadflow.streams.cli.replay import ReplayOptions, replay

    events = journeys(seed=4, n_leads=400, start=datetime(2026, 9, 7, tzinfo=UTC))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    result = leadflow("plan", "--from-history", str(path), "--json")
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    policy = load_policy()
    report = replay(ReplayOptions(events=path)).reports[0]
    assert document == plan_document(plan(policy, measure(report, policy, str(path))))
    assert document["history"]["file"] == str(path)
    assert document["average_deal_value"]["source"] == "measured"
    assert document["average_deal_value"]["value"] == round(
        report["revenue"]["amount"] / report["revenue"]["won_known"], 2
    )
    assert document["shares"]["lead_to_mql"] == {
        "share": report["conversion"]["lead->mql"],
        "fraction": document["shares"]["lead_to_mql"]["fraction"],
        "source": "measured",
        "from": f"lead->mql over {report['reached']['lead']:,} leads",
    }
    assert document["shares"]["visitor_to_lead"]["source"] == "given"
    text = leadflow("plan", "--from-history", str(path))
    assert text.returncode == 0, text.stderr
    assert f"measured from {path}: {report['leads']:,} leads" in text.stdout
    assert "measured: lead->mql over " in text.stdout


def test_plan_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    no_goals = policy_file(tmp_path, lambda document: document.pop("goals"))
    result = leadflow("plan", "--policy", str(no_goals))
    assert result.returncode == 2
    assert result.stderr == (
        f"leadflow plan: {no_goals} has no goals section: add one (copy `goals:` from the shipped "
        "schemas/default_policy.yaml; README, 'Goals and the reverse funnel')\n"
    )

    zero = policy_file(tmp_path, lambda document: document["goals"]["conversion"].update(lead_to_mql=0))
    result = leadflow("plan", "--policy", str(zero))
    assert result.returncode == 2
    assert result.stderr == (
        f"leadflow plan: {zero}: goals.conversion.lead_to_mql: must be greater than 0: no goal can be planned "
        "through a step nobody passes; e.g. 0.2, 1/5 or 20% for one in five\n"
    )

    unmeasured = policy_file(tmp_path, lambda document: document["goals"].pop("average_deal_value"))
    history = tmp_path / "no-won.jsonl"
    created = {"type": "lead.created", "occurred_at": "2026-11-24T10:00:00Z", "source": "test", "data": {}}
    history.write_bytes(
        b"".join(orjson.dumps({**created, "event_id": f"e{i}", "lead_id": f"L{i}"}) + b"\n" for i in range(3))
    )
    result = leadflow("plan", "--policy", str(unmeasured), "--from-history", str(history))
    assert result.returncode == 2
    assert result.stderr == (
        f"leadflow plan: --from-history {history}: no won deal with a known amount (0 won without one): the "
        "average deal value cannot be measured; give goals.average_deal_value in the policy\n"
    )

    result = leadflow("plan", "--policy", str(unmeasured))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("leadflow plan: goals.average_deal_value is not given: give it ")

    result = leadflow("plan", "--from-history", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert result.stderr == f"leadflow plan: --from-history: {tmp_path / 'nope.jsonl'}: no such file\n"
    assert "Traceback" not in result.stderr


def test_report_period_reviews_an_events_file_with_its_site_visits(tmp_path: Path) -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    events = journeys(seed=5, n_leads=300, start=start, mean_gap_s=4000)  # arrivals spread over ~two weeks
    visits = [
        {"event_id": f"v{day}-{n}", "type": "site.visits", "occurred_at": f"2026-11-{day:02d}T{12 + n}:00:00Z",
         "source": "ga4", "data": {"date": f"2026-11-{day:02d}", "traffic_source": "cpc", "visits": 100 * (n + 1)}}
        for day in range(2, 9)
        for n in range(3)  # three reports a day, growing: the last one (300) counts
    ]  # fmt: skip
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in [*visits, *events]))
    out, page = tmp_path / "review.json", tmp_path / "review.html"
    result = leadflow(
        "report", "--period", "week", "--from", "2026-11-04", "--events", str(history), "--json", str(out),
        "--html", str(page), "--lang", "pt-BR",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    assert 'lang="pt-BR"' in html
    assert orjson.loads(out.read_bytes())["policy"]["fingerprint"] in html  # the page names the agreement
    review = orjson.loads(out.read_bytes())
    assert review["period"]["label"] == "2026-W45"
    goals = {g["measure"]: g for g in review["goals"]}
    assert goals["visitors"]["actual"] == 7 * 300
    # The funnel report of `leadflow replay` counts each week's first entries on its own: the same figures.
    funnel = tmp_path / "funnel.json"
    assert leadflow("replay", str(history), "--report-json", str(funnel)).returncode == 0
    entered = orjson.loads(funnel.read_bytes())["by_period"]["week"]["2026-W45"]["entered"]
    stages = {"leads": "lead", "mqls": "mql", "qualification_calls": "sal", "sqls": "sql", "customers": "customer"}
    assert {m: goals[m]["actual"] for m in stages} == {m: entered.get(stage, 0) for m, stage in stages.items()}
    assert goals["leads"]["actual"] > 0
    assert review["policy"]["fingerprint"] in result.stdout
    assert "bottleneck:" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "x.jsonl", "--html", "out.html"], "--events, --html and --from need --period week|month"),
        (["--period", "week", "--events", "missing.jsonl"], "--events missing.jsonl: no such file"),
        (["--period", "week", "--events", "x", "--from", "last monday"], "--from 'last monday': not a date"),
    ],
)
def test_report_period_says_what_is_wrong_with_its_options(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "x").write_text("")
    (tmp_path / "x.jsonl").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", "report", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr


def test_policy_check_of_a_file_it_cannot_read_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "polcy.yaml"
    result = leadflow("policy", "check", str(missing))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"leadflow policy: {missing}: (file): cannot read: No such file or directory; name a policy file you can read"
    ]
    result = leadflow("policy", "check", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "cannot read: Is a directory" in result.stderr
