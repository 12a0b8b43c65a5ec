"""`leadflow replay`: a file of events through the whole worker in one process, in event time (streams.cli.replay)."""

from __future__ import annotations

import base64
import gc
import gzip
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from factories import T0, default_document

from leadflow.schemas.events import EVENT_ADAPTER
from leadflow.schemas.outputs import (
    DEAD_LETTER_ADAPTER,
    HANDOFF_ADAPTER,
    ROUTING_ADAPTER,
    SLA_ADAPTER,
    TRANSITION_ADAPTER,
    DeadLetter,
    SlaBreached,
    SlaMet,
)
from leadflow.streams.cli.main import main
from leadflow.streams.cli.replay import ReplayOptions, ReplayResult, YoungCollections, replay, topic_file
from leadflow.streams.dev.simulator import journeys
from leadflow.streams.runtime.routes import topic_of

Envelope = dict[str, Any]
MINUTE = 60.0


def envelope(type_: str, minutes: float, lead: str, *, event_id: str | None = None, **data: Any) -> Envelope:
    """An envelope of `type_` at T0 + `minutes`, as a producer writes it."""
    event: Envelope = {
        "event_id": event_id or f"{lead}-{type_}-{minutes:g}",
        "lead_id": lead,
        "type": type_,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "source": "test",
    }
    if data:
        event["data"] = data
    return event


def write_lines(path: Path, lines: list[Envelope | bytes | str]) -> Path:
    """One line per item: envelopes as JSON, bytes and text as they are (for broken lines)."""
    encoded = [
        item if isinstance(item, bytes) else item.encode() if isinstance(item, str) else orjson.dumps(item)
        for item in lines
    ]
    data = b"\n".join(encoded) + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def acceptance_policy(tmp_path: Path, minutes: float, name: str = "accept") -> Path:
    """The default policy with one SLA only: accept or reject every MQL within `minutes` of wall-clock time."""
    document = default_document()
    document["name"] = name
    document["slas"] = [
        {
            "name": "mql_acceptance",
            "starts_on_stage": "mql",
            "met_by": ["lead.accepted", "lead.rejected"],
            "allowance": {"minutes": minutes},
        }
    ]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run(path: Path, tmp_path: Path, **options: Any) -> ReplayResult:
    return replay(ReplayOptions(events=path, report_json=tmp_path / f"{path.name}.report.json", **options))


def funnel(result: ReplayResult, side: int = 0) -> dict[str, Any]:
    """The funnel report without the replay block (which names the file and how it was sorted)."""
    return {key: value for key, value in result.reports[side].items() if key != "replay"}


def read_outputs(directory: Path) -> dict[str, list[bytes]]:
    return {
        topic: (directory / topic_file(topic)).read_bytes().splitlines()
        for topic in ("transitions", "sla", "handoffs", "routing", "events", "deadletter")
    }


@pytest.fixture(scope="module")
def simulated() -> list[Envelope]:
    return journeys(seed=5, n_leads=150, start=datetime(2026, 9, 7, tzinfo=UTC))


# ---- sorting -------------------------------------------------------------------------------------------------


def test_unsorted_input_gives_the_same_report_and_outputs_as_sorted_input(
    tmp_path: Path, simulated: list[Envelope]
) -> None:
    shuffled = list(simulated)
    random.Random(3).shuffle(shuffled)
    in_order = run(write_lines(tmp_path / "sorted.jsonl", list(simulated)), tmp_path, outputs=tmp_path / "s")
    mixed = run(write_lines(tmp_path / "shuffled.jsonl", list(shuffled)), tmp_path, outputs=tmp_path / "u")
    assert mixed.events == in_order.events == len(simulated)
    assert funnel(mixed) == funnel(in_order)
    assert funnel(in_order)["reached"]["mql"] > 10
    assert funnel(in_order)["sla"]["mql_acceptance"]["started"] > 10
    # Sorted before the engine sees them: nothing arrives out of order, and every output is the same, in order.
    assert mixed.reports[0]["replay"]["outcomes"] == in_order.reports[0]["replay"]["outcomes"]
    assert "reordered" not in mixed.reports[0]["replay"]["outcomes"]
    assert read_outputs(tmp_path / "u") == read_outputs(tmp_path / "s")


def test_events_are_sorted_by_event_time_then_by_line(tmp_path: Path) -> None:
    lines: list[Envelope | bytes | str] = [
        envelope("activity", 30, "L1", action="pricing_view"),
        # Same instant: file order decides, so the lead exists before it qualifies.
        envelope("lead.created", 10, "L1"),
        envelope("lead.qualified", 10, "L1"),
        envelope("lead.created", 5, "L2"),
    ]
    result = run(write_lines(tmp_path / "events.jsonl", lines), tmp_path)
    report = result.reports[0]
    assert report["replay"]["outcomes"] == {"applied": 4}
    assert report["reached"]["mql"] == 1
    assert report["replay"]["first_event_at"] == (T0 + timedelta(minutes=5)).isoformat()
    assert report["replay"]["last_event_at"] == (T0 + timedelta(minutes=30)).isoformat()


def test_a_tiny_sort_buffer_spills_runs_and_gives_the_in_memory_result(
    tmp_path: Path, simulated: list[Envelope]
) -> None:
    shuffled = list(simulated)
    random.Random(11).shuffle(shuffled)
    path = write_lines(tmp_path / "events.jsonl", list(shuffled))
    in_memory = run(path, tmp_path, outputs=tmp_path / "memory")
    spilled = run(path, tmp_path, outputs=tmp_path / "spilled", sort_buffer=97)
    assert in_memory.runs == 0
    assert spilled.runs == (len(simulated) - 1) // 97  # every full chunk but the last, merged from memory
    assert spilled.reports[0]["replay"]["sort"] == {"buffer": 97, "runs_spilled": spilled.runs}
    assert funnel(spilled) == funnel(in_memory)
    assert read_outputs(tmp_path / "spilled") == read_outputs(tmp_path / "memory")


# ---- malformed lines -----------------------------------------------------------------------------------------

BROKEN: list[Envelope | bytes | str] = [
    envelope("lead.created", 0, "L1"),  # line 1
    "",  # 2: blank, skipped
    b'{"event_id": "x1", "lead_id": "L1", "type": "lead.qual',  # 3: cut short
    "[1, 2, 3]",  # 4: not an object
    {k: v for k, v in envelope("lead.qualified", 1, "L1").items() if k != "source"},  # 5: no source
    {**envelope("activity", 2, "L1"), "type": "lead.teleported"},  # 6: unknown type
    {**envelope("lead.accepted", 3, "L1"), "occurred_at": "2026-11-24T10:03:00"},  # 7: no offset
    {**envelope("lead.qualified", 4, "L1"), "lead_id": 42},  # 8: lead_id not a string
    envelope("lead.qualified", 5, "L1"),  # 9
    "   ",  # 10: blank
    {"event_id": "v1", "type": "site.visits", "occurred_at": "yesterday", "source": "ga4",
     "data": {"date": "2026-11-30", "traffic_source": "google/cpc", "visits": 12}},  # 11: a visits report, bad time
]  # fmt: skip


def test_malformed_lines_are_counted_with_line_and_reason_and_dead_lettered(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "broken.jsonl", BROKEN)
    result = run(path, tmp_path, outputs=tmp_path / "out")
    block = result.reports[0]["replay"]
    assert result.lines == 9
    assert result.events == 2
    assert block["outcomes"] == {"applied": 2}
    assert result.reports[0]["reached"]["mql"] == 1  # the good lines around the bad ones still count
    assert block["malformed"]["count"] == 7
    assert block["malformed"]["by_reason"] == {"invalid_event": 5, "invalid_json": 1, "unknown_type": 1}
    examples = {e["line"]: e["reason"] for e in block["malformed"]["examples"]}
    assert list(examples) == [3, 4, 5, 6, 7, 8, 11]
    assert examples[3].startswith("invalid_json: (record): not valid JSON")
    assert examples[4] == "invalid_event: (top level): must be a JSON object (the event envelope)"
    assert examples[5].startswith("invalid_event: source:")
    assert examples[6].startswith("unknown_type: type: 'lead.teleported' is not a known event type; use one of:")
    assert examples[7].startswith("invalid_event: occurred_at:")
    assert examples[8].startswith("invalid_event: lead_id:")
    assert examples[11].startswith("invalid_event: occurred_at:")  # read as the visits report it is
    # The dead letters the live worker would have sent: topic = the file name, partition 0, offset = the line.
    letters = [DEAD_LETTER_ADAPTER.validate_json(line) for line in read_outputs(tmp_path / "out")["deadletter"]]
    assert sorted(letter.offset for letter in letters) == [3, 4, 5, 6, 7, 8, 11]
    assert {(letter.topic, letter.partition) for letter in letters} == {("broken.jsonl", 0)}
    assert all(letter.original_size > 0 for letter in letters)
    assert block["outputs"]["deadletter"] == 7


def test_the_examples_keep_the_first_hundred_lines(tmp_path: Path) -> None:
    lines: list[Envelope | bytes | str] = [envelope("lead.created", 0, "L1")]
    lines += [f"not json {n}" for n in range(150)]
    result = run(write_lines(tmp_path / "noisy.jsonl", lines), tmp_path)
    malformed = result.reports[0]["replay"]["malformed"]
    assert malformed["count"] == 150
    assert [e["line"] for e in malformed["examples"]] == list(range(2, 102))


def test_no_key_mismatch_for_lines_with_a_lead_id(tmp_path: Path, simulated: list[Envelope]) -> None:
    result = run(write_lines(tmp_path / "events.jsonl", list(simulated[:300])), tmp_path)
    assert result.malformed.count == 0
    outcomes = result.reports[0]["replay"]["outcomes"]
    assert outcomes["applied"] + outcomes.get("refused", 0) == 300


# ---- input formats and outputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl.gz", "gzipped-without-suffix.jsonl"])
def test_gzip_input_by_extension_or_magic_bytes(tmp_path: Path, simulated: list[Envelope], name: str) -> None:
    plain = run(write_lines(tmp_path / "plain.jsonl", list(simulated)), tmp_path)
    packed = tmp_path / name
    packed.write_bytes(gzip.compress(b"\n".join(orjson.dumps(e) for e in simulated)))
    result = run(packed, tmp_path)
    assert result.events == len(simulated)
    assert funnel(result) == funnel(plain)


def test_outputs_dir_holds_the_outputs_by_topic(tmp_path: Path, simulated: list[Envelope]) -> None:
    lines: list[Envelope | bytes | str] = [*simulated, "{oops"]
    result = run(write_lines(tmp_path / "events.jsonl", lines), tmp_path, outputs=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "leads.deadletter.jsonl",
        "leads.events.jsonl",  # merge notices (the simulated journeys merge a few leads), signed live
        "leads.handoffs.jsonl",
        "leads.routing.jsonl",
        "leads.sla.jsonl",
        "leads.transitions.jsonl",
    ]
    adapters: dict[str, Callable[[bytes], Any]] = {
        "transitions": TRANSITION_ADAPTER.validate_json,
        "sla": SLA_ADAPTER.validate_json,
        "handoffs": HANDOFF_ADAPTER.validate_json,
        "routing": ROUTING_ADAPTER.validate_json,
    }
    files = read_outputs(tmp_path / "out")
    for topic, parse in adapters.items():
        assert files[topic], f"no {topic} outputs"
        for line in files[topic]:
            output = parse(line)
            assert topic_of(output) == topic
            assert output.model_dump_json().encode() == line
    assert files["events"], "no merge notices"
    for line in files["events"]:  # what merged leads send back to the events topic: events, not outputs
        event = EVENT_ADAPTER.validate_json(line)
        assert event.type == "lead.absorbed" or event.event_id.startswith("fwd:")
    assert [DEAD_LETTER_ADAPTER.validate_json(line).reason for line in files["deadletter"]] == ["invalid_json"]
    assert result.reports[0]["replay"]["outputs"] == {topic: len(lines) for topic, lines in files.items()}


# ---- event time ----------------------------------------------------------------------------------------------


def acceptance_file(tmp_path: Path, *, later: bool) -> Path:
    lines: list[Envelope | bytes | str] = [
        envelope("lead.created", 0, "never"),
        envelope("lead.qualified", 1, "never"),  # MQL at T0+1 min; 60 min to accept: deadline T0+61 min
        envelope("lead.created", 2, "in-time"),
        envelope("lead.qualified", 3, "in-time"),
        envelope("lead.accepted", 33, "in-time"),  # accepted after 30 minutes
    ]
    if later:
        lines.append(envelope("lead.created", 300, "later"))  # the file goes on, five hours later
    return write_lines(tmp_path / f"acceptance-{later}.jsonl", lines)


def sla_outputs(directory: Path) -> list[Any]:
    return [SLA_ADAPTER.validate_json(line) for line in read_outputs(directory)["sla"]]


def test_an_mql_never_accepted_breaches_at_its_deadline_in_event_time(tmp_path: Path) -> None:
    policy = acceptance_policy(tmp_path, 60)
    result = run(acceptance_file(tmp_path, later=True), tmp_path, policy=policy, outputs=tmp_path / "out")
    outputs = sla_outputs(tmp_path / "out")
    breaches = [o for o in outputs if isinstance(o, SlaBreached)]
    assert [(b.lead_id, b.occurred_at) for b in breaches] == [("never", T0 + timedelta(minutes=61))]
    met = [o for o in outputs if isinstance(o, SlaMet)]
    assert [(m.lead_id, m.late) for m in met] == [("in-time", False)]
    sla = result.reports[0]["sla"]["mql_acceptance"]
    assert (sla["started"], sla["met"], sla["breached"], sla["open"]) == (2, 1, 1, 1)
    # The breach came when event time passed the deadline, before the later lead was created.
    transitions = [TRANSITION_ADAPTER.validate_json(line) for line in read_outputs(tmp_path / "out")["transitions"]]
    assert transitions[-1].lead_id == "later"
    assert result.clock == T0 + timedelta(minutes=300)


def test_no_breach_before_the_deadline_and_until_moves_the_clock(tmp_path: Path) -> None:
    policy = acceptance_policy(tmp_path, 60)
    path = acceptance_file(tmp_path, later=False)  # the last event is at T0+33 min, before the deadline
    ended = run(path, tmp_path, policy=policy)
    assert ended.reports[0]["sla"]["mql_acceptance"]["breached"] == 0
    assert ended.reports[0]["sla"]["mql_acceptance"]["overdue"] == 0
    assert ended.reports[0]["as_of"] == (T0 + timedelta(minutes=33)).isoformat()
    until = (T0 + timedelta(hours=2)).isoformat()
    later = run(path, tmp_path, policy=policy, until=until)
    assert later.reports[0]["sla"]["mql_acceptance"]["breached"] == 1
    assert later.reports[0]["as_of"] == until
    before = datetime.now(UTC)
    now = run(path, tmp_path, policy=policy, until="now")
    assert before <= now.clock <= datetime.now(UTC)
    due = before > T0 + timedelta(minutes=61, seconds=30)  # the deadline, plus the grace
    assert now.reports[0]["sla"]["mql_acceptance"]["breached"] == int(due)


# ---- what-if -------------------------------------------------------------------------------------------------


def test_compare_with_a_shorter_allowance_counts_more_breaches(tmp_path: Path) -> None:
    a, b = acceptance_policy(tmp_path, 60, "hour"), acceptance_policy(tmp_path, 20, "twenty-minutes")
    path = acceptance_file(tmp_path, later=True)
    report_json = tmp_path / "what-if.json"
    result = replay(ReplayOptions(events=path, policy=a, compare=b, report_json=report_json, outputs=tmp_path / "o"))
    document = orjson.loads(report_json.read_bytes())
    assert set(document) == {"a", "b", "difference"}
    assert document["a"]["sla"]["mql_acceptance"]["breached"] == 1
    assert document["b"]["sla"]["mql_acceptance"]["breached"] == 2  # accepted after 30 min: late for B
    assert document["difference"]["sla"]["mql_acceptance"]["breached"] == 1
    assert document["difference"]["sla"]["mql_acceptance"]["compliance"] == -0.5
    assert document["difference"]["reached"]["mql"] == 0
    assert document["a"]["replay"]["policy"]["name"] == "hour"
    assert document["b"]["replay"]["policy"]["name"] == "twenty-minutes"
    assert (tmp_path / "o" / "a" / "leads.sla.jsonl").exists()
    assert (tmp_path / "o" / "b" / "leads.sla.jsonl").exists()
    assert result.events == 6


def test_compare_prints_a_plus_b_and_the_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = acceptance_policy(tmp_path, 60, "hour"), acceptance_policy(tmp_path, 20, "twenty-minutes")
    path = acceptance_file(tmp_path, later=True)
    code = main(["replay", str(path), "--policy", str(a), "--compare", str(b), "--report-json", str(tmp_path / "r")])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"replayed {path.name}: 6 events read, 0 malformed lines; A (hour v1): 6 applied")
    assert "B (twenty-minutes v1): 6 applied" in out[0]
    header = out[1].split()
    assert header[0] == "figure"
    assert "B - A" in out[1]
    rows = {label: cells for label, *cells in (re.split(r"\s{2,}", line.strip()) for line in out[2:-1])}
    assert rows["MQLs (reached mql)"] == ["2", "2", "+0"]
    assert rows["mql_acceptance: breaches"] == ["1", "2", "+1"]
    assert rows["mql_acceptance: compliance"] == ["50.0%", "0.0%", "-50.0 pp"]
    assert rows["mql_acceptance: reassignments"] == ["0", "0", "+0"]
    assert rows["breaches, team inside_sales: mql_acceptance"] == ["1", "2", "+1"]
    assert rows["breaches, pool general: mql_acceptance"] == ["1", "2", "+1"]
    assert rows["hand-offs, pool general"] == ["2", "2", "+0"]
    assert out[-1] == f"report written to {tmp_path / 'r'}"


# ---- the command ---------------------------------------------------------------------------------------------


def test_a_non_terminal_gets_one_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "broken.jsonl", BROKEN)
    assert main(["replay", str(path), "--report-json", str(tmp_path / "r.json")]) == 0
    captured = capsys.readouterr()
    summary, written = captured.out.splitlines()
    assert summary.startswith(
        "replayed broken.jsonl: 2 events read, 2 applied, 0 refused, 0 duplicates, 7 malformed lines, 1 leads, "
    )
    assert summary.endswith(" events/s")
    assert written == f"report written to {tmp_path / 'r.json'}"
    assert captured.err == ""


def errors_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["replay", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.splitlines()


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r.json")
    missing = tmp_path / "missing.jsonl"
    assert errors_of(capsys, str(missing), "--report-json", out) == (2, [f"leadflow replay: {missing}: no such file"])

    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:-40])  # cut short
    code, lines = errors_of(capsys, str(corrupt), "--report-json", out)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"leadflow replay: {corrupt}: cannot read it as gzip: ")

    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_bytes(b'{"not": "gzip"}\n')
    code, lines = errors_of(capsys, str(not_gzip), "--report-json", out)
    assert (code, len(lines)) == (2, 1)
    assert "cannot read it as gzip" in lines[0]

    events = write_lines(tmp_path / "events.jsonl", [envelope("lead.created", 0, "L1")])
    for until in ("yesterday", "2026-11-24T10:00:00"):
        code, lines = errors_of(capsys, str(events), "--report-json", out, "--until", until)
        assert (code, len(lines)) == (2, 1)
        assert lines[0].startswith(f"leadflow replay: --until {until!r}: ")
    assert not Path(out).exists()


def test_a_bad_policy_prints_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = default_document()
    document["mql"]["min_fitt"] = 40
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    events = write_lines(tmp_path / "events.jsonl", [envelope("lead.created", 0, "L1")])
    code, lines = errors_of(capsys, str(events), "--report-json", str(tmp_path / "r.json"), "--compare", str(bad))
    assert code == 2
    assert lines == [
        f"leadflow replay: {bad}: mql.min_fitt: is not a known field (check the spelling)",
        "leadflow replay: --compare: 1 problem(s); the policy was not loaded",
    ]
    code, lines = errors_of(capsys, str(events), "--report-json", "r.json", "--policy", str(tmp_path / "none.yaml"))
    assert code == 2
    assert lines[0].startswith(f"leadflow replay: {tmp_path / 'none.yaml'}: (file): cannot read")


def test_an_empty_file_gives_an_empty_report(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = run(path, tmp_path, until="2026-12-01T00:00:00Z")
    assert result.events == 0
    assert result.reports[0]["leads"] == 0
    assert result.reports[0]["as_of"] == "2026-12-01T00:00:00+00:00"


def test_dead_letters_are_the_worker_s_shape(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", ["{nope"])
    run(path, tmp_path, outputs=tmp_path / "out")
    (line,) = read_outputs(tmp_path / "out")["deadletter"]
    letter = DEAD_LETTER_ADAPTER.validate_json(line)
    assert isinstance(letter, DeadLetter)
    assert (letter.topic, letter.partition, letter.offset, letter.key_b64) == ("x.jsonl", 0, 1, None)
    assert DEAD_LETTER_ADAPTER.dump_json(letter) == line


def test_young_collections_slow_down_while_they_find_nothing_and_come_back_when_they_do() -> None:
    first = YoungCollections.FIRST
    was_enabled = gc.isenabled()
    # The clock each collection reads: before it (the events since the last one give the pace) and after it.
    ticks = iter([0.0, 1.0, 1.0, 3.0, 3.5, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0])
    with YoungCollections(clock=lambda: next(ticks)) as collections:
        assert not gc.isenabled()
        collections.after(first - 1)
        assert collections.collections == 0
        gc.collect()  # nothing cyclic left over from before
        collections.after(first)  # took no time: twice the pace
        assert (collections.collections, collections.every, collections.due) == (1, 2 * first, 3 * first)
        collections.after(3 * first - 1)
        assert collections.collections == 1
        # 0.5 s, after 2 * first events in 2 s: the next one waits until 0.5 s is 2% of the time since (25 s).
        collections.after(3 * first)
        assert (collections.every, collections.due) == (25 * first, 28 * first)

        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        collections.after(28 * first)  # found the cycle: back to the first pace
        assert (collections.collections, collections.every, collections.due) == (3, first, 29 * first)

        collections.every = YoungCollections.LONGEST
        collections.after(29 * first)
        assert collections.every == YoungCollections.LONGEST
        # However long a collection takes, the pace stays under LONGEST.
        ticks = iter([5.0, 1e9])
        collections.clock = lambda: next(ticks)
        collections.after(collections.due)
        assert collections.every == YoungCollections.LONGEST
    try:
        assert gc.isenabled() == was_enabled
        assert gc.get_freeze_count() > 0  # the heap the feed built is never walked again
    finally:
        gc.unfreeze()


# ---- a defect in the core costs one event ---------------------------------------------------------------------


def test_a_defect_on_a_timer_tick_costs_that_tick_not_the_other_leads_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leads a and b breach their acceptance SLA at the same instant, fired by lead c's later event; deciding a's
    ticks raises. b's breach and c's event stand; each of a's ticks is dead-lettered with its own JSON."""
    from leadflow.core import engine as engine_module

    real_decide = engine_module.decide

    def fails_on_ticks_of_a(record, event, policy, now):  # type: ignore[no-untyped-def]
        if event.type == "timer.due" and event.lead_id == "a":
            raise RuntimeError("boom")
        return real_decide(record, event, policy, now)

    monkeypatch.setattr(engine_module, "decide", fails_on_ticks_of_a)
    lines: list[Envelope | bytes | str] = [
        *(envelope("lead.created", 0, lead) for lead in ("a", "b")),
        *(envelope("lead.qualified", 1, lead) for lead in ("a", "b")),
        envelope("lead.created", 300, "c"),
    ]
    result = run(write_lines(tmp_path / "ticks.jsonl", lines), tmp_path, policy=acceptance_policy(tmp_path, 60),
                 outputs=tmp_path / "out")  # fmt: skip
    outputs = read_outputs(tmp_path / "out")
    breached = [o.lead_id for o in map(SLA_ADAPTER.validate_json, outputs["sla"]) if isinstance(o, SlaBreached)]
    assert breached == ["b"]
    assert result.reports[0]["replay"]["outcomes"] == {"applied": 5}  # c's lead.created among them
    letters = [DEAD_LETTER_ADAPTER.validate_json(line) for line in outputs["deadletter"]]
    assert letters, "a's ticks are dead-lettered"
    ticks = [orjson.loads(base64.b64decode(letter.original_b64)) for letter in letters]
    assert {(t["type"], t["lead_id"]) for t in ticks} == {("timer.due", "a")}
    assert {letter.errors for letter in letters} == {("(engine): RuntimeError: boom",)}
    assert len({letter.id for letter in letters}) == len(letters)
    assert result.reports[0]["replay"]["defects"] == len(letters)


def test_a_defect_in_the_router_answers_the_request_unassigned_and_the_lead_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the live router does: a route request the router raised on is answered route.unassigned, so the lead
    stops waiting and applies its later events, and the request is dead-lettered."""
    from leadflow.core import engine as engine_module

    real_answer = engine_module.answer_request

    def fails_for_a(state, request, policy, source):  # type: ignore[no-untyped-def]
        if request.lead_id == "a":
            raise RuntimeError("boom")
        return real_answer(state, request, policy, source)

    monkeypatch.setattr(engine_module, "answer_request", fails_for_a)
    lines: list[Envelope | bytes | str] = [
        *(envelope("lead.created", 0, lead) for lead in ("a", "b")),
        *(envelope("lead.qualified", 1, lead) for lead in ("a", "b")),
        *(envelope("activity", 2, lead, action="page_view") for lead in ("a", "b")),
    ]
    result = run(write_lines(tmp_path / "router.jsonl", lines), tmp_path, outputs=tmp_path / "out")
    records = result.sides[0].engine.records
    assert (records["a"].awaiting, records["a"].held) == ((), ())
    assert records["b"].state is not None
    assert records["b"].state.owner_id is not None
    assert result.reports[0]["replay"]["outcomes"] == {"applied": 6}
    [letter] = [DEAD_LETTER_ADAPTER.validate_json(line) for line in read_outputs(tmp_path / "out")["deadletter"]]
    assert letter.errors == ("(router): RuntimeError: boom",)
    assert orjson.loads(base64.b64decode(letter.original_b64))["lead_id"] == "a"
