"""Every CLI error is one line that says what to change, with a documented exit code; never a traceback (issue 13,
item 4). Exit codes: streams/cli/main.py's module docstring and README "Exit codes"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import leadflow.streams.cli.main as cli
from leadflow.streams.dev.broker import free_port

BROKER_COMMANDS = ("worker", "run", "produce", "simulate")


def leadflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The only line on stderr, after checking the exit code and that there is no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def command_args(command: str, tmp_path: Path, web_port: int) -> list[str]:
    """What each command needs besides --broker to get as far as the broker: a file, a free web port."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "lead_id": "L1", "type": "lead.created"}\n')
    return {
        "worker": ["worker", "--web-port", str(web_port)],
        "run": ["run", "--for", "1", "--no-live", "--web-port", str(web_port), "--workdir", str(tmp_path / "run")],
        "produce": ["produce", str(events)],
        "simulate": ["simulate", "--for", "1"],
    }[command]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--speed", "0"], "argument --speed: must be a number greater than 0"),
        (["simulate", "--speed", "0"], "argument --speed: must be a number greater than 0"),
        (["run", "--for", "-5"], "argument --for: must be a number greater than 0"),
        (["run", "--for", "0"], "argument --for: must be a number greater than 0"),
        (["simulate", "--for", "nan"], "argument --for: must be a number greater than 0"),
        (["run", "--leads-per-s", "0"], "argument --leads-per-s: must be a number greater than 0"),
        (["simulate", "--leads-per-s", "-1"], "argument --leads-per-s: must be a number greater than 0"),
        (["run", "--partitions", "0"], "argument --partitions: must be a whole number of at least 1"),
        (["run", "--partitions", "2.5"], "argument --partitions: must be a whole number of at least 1"),
        (
            ["replay", "x", "--report-json", "o", "--sort-buffer", "99999999999999999999999"],
            "argument --sort-buffer: must be a whole number of at least 1 (at most 1,000,000,000)",
        ),
        (["produce", "x.jsonl", "--topic", "bad topic!"], "argument --topic: 'bad topic!' is not a Kafka topic name"),
        (["simulate", "--topic", ""], "argument --topic: '' is not a Kafka topic name"),
        (["run", "--bad-ratio", "1.5"], "argument --bad-ratio: must be a share from 0 up to (not including) 1"),
        (["run", "--bad-ratio", "-0.1"], "argument --bad-ratio: must be a share from 0 up to (not including) 1"),
        (["simulate", "--bad-ratio", "1"], "argument --bad-ratio: must be a share from 0 up to (not including) 1"),
        (["run", "--web-port", "70000"], "argument --web-port: must be a TCP port from 1 to 65535"),
        (["worker", "--web-port", "0"], "argument --web-port: must be a TCP port from 1 to 65535"),
        (["ingest", "--port", "-1"], "argument --port: must be a TCP port from 1 to 65535"),
        (["report", "--worker", "http://x", "--timeout", "0"], "argument --timeout: must be a number greater than 0"),
        (["run", "--embedded-broker", "redpanda"], "argument --embedded-broker: invalid choice: 'redpanda'"),
    ],
)
def test_numeric_flags_say_what_they_allow(args: list[str], message: str) -> None:
    line = one_line(leadflow(*args), 2)
    assert line.startswith(f"leadflow {args[0]}: {message}")
    assert line.endswith(f"(see leadflow {args[0]} --help)")


@pytest.mark.parametrize("command", BROKER_COMMANDS)
@pytest.mark.parametrize("url", ["nonsense:::x", "localhost", "http://localhost:9092", "kafka://localhost:99999"])
def test_a_wrong_broker_url_is_one_line_naming_the_form(command: str, url: str, tmp_path: Path) -> None:
    line = one_line(leadflow(*command_args(command, tmp_path, free_port()), "--broker", url), 2)
    assert f"argument --broker: {url!r} is not a broker address: write kafka://HOST:PORT or HOST:PORT" in line


@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_an_unreachable_broker_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    line = one_line(leadflow(*command_args(command, tmp_path, free_port()), "--broker", f"kafka://127.0.0.1:{port}"), 2)
    assert line.startswith(f"leadflow {command}: cannot reach a Kafka broker at 127.0.0.1:{port} within 5 s")
    assert "pass --broker kafka://HOST:PORT" in line
    assert not (tmp_path / "run" / "kafka").exists()  # `run --broker` started no broker of its own


def test_the_broker_named_by_the_environment_is_checked_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leadflow.streams.cli", *command_args("worker", tmp_path, free_port())],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "LEADFLOW_BROKER": "kafka://:x"},
    )  # fmt: skip
    assert "LEADFLOW_BROKER: 'kafka://:x' is not a broker address" in one_line(result, 2)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_bad_policy_is_one_line_naming_the_problem_and_the_check_command(command: str, tmp_path: Path) -> None:
    document = yaml.safe_load(Path("schemas/default_policy.yaml").read_text())
    document["mql"]["min_fitt"] = 40
    document["scoring"]["engagement"][2]["points"] = "three"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(document))
    # The policy is checked before anything else: no broker is needed (none runs on this port) and none starts.
    args = [*command_args(command, tmp_path, free_port()), "--policy", str(policy), "--broker", "127.0.0.1:1"]
    line = one_line(leadflow(*args), 2)
    assert line.startswith(f"leadflow {command}: policy {policy}: ")
    assert f"(and 1 more: `leadflow policy check {policy}` lists them)" in line
    missing = tmp_path / "nope.yaml"
    line = one_line(leadflow(*command_args(command, tmp_path, free_port()), "--policy", str(missing)), 2)
    assert line == f"leadflow {command}: policy {missing}: (file): cannot read: No such file or directory"


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_web_port_in_use_is_one_line_before_anything_starts(command: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(leadflow(*command_args(command, tmp_path, port), "--broker", "127.0.0.1:1"), 2)
    assert f"the web port 127.0.0.1:{port} is in use" in line
    assert "pass --web-port with a free port" in line


def test_produce_names_a_missing_file() -> None:
    line = one_line(leadflow("produce", "no/such.jsonl"), 2)
    assert line == "leadflow produce: no/such.jsonl: no such file: name a JSONL file of events, one envelope per line"


def test_a_bug_is_one_line_naming_the_file_that_holds_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_: object) -> int:
        raise KeyError("stage")

    monkeypatch.setattr(cli, "cmd_schema", broken)
    assert cli.main(["schema", "--out", "x"]) == 70
    line = capsys.readouterr().err.strip()
    assert line.startswith("leadflow schema: internal error: KeyError: 'stage' (traceback in ")
    saved = Path(line.split("traceback in ")[1].split(";")[0])
    assert "Traceback" in saved.read_text()
    assert "broken" in saved.read_text()
    saved.unlink()


def test_ctrl_c_outside_run_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_schema", interrupted)
    assert cli.main(["schema", "--out", "x"]) == 130
    assert capsys.readouterr().err == "leadflow schema: interrupted\n"


def test_ingest_reads_the_policy_the_worker_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --policy the gateway maps forms with LEADFLOW_POLICY, the worker's policy: a broken one is named."""
    broken = tmp_path / "policy.yaml"
    broken.write_text("scoring:\n  engagement: 7\n")
    monkeypatch.setenv("LEADFLOW_POLICY", str(broken))
    result = leadflow("ingest", "--broker", "127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    assert str(broken) in result.stderr, result.stderr
    assert "scoring.engagement" in result.stderr, result.stderr


def test_run_takes_what_its_flags_leave_out_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`leadflow run` builds its worker from the LEADFLOW_* environment as `leadflow worker` does: the web port,
    host, partitions and policy the flags do not give (the run itself is replaced: only its options are read)."""
    from leadflow.streams.dev import runner

    policy = tmp_path / "policy.yaml"
    policy.write_text(Path("schemas/default_policy.yaml").read_text())
    port = free_port()
    monkeypatch.setenv("LEADFLOW_WEB_PORT", str(port))
    monkeypatch.setenv("LEADFLOW_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("LEADFLOW_PARTITIONS", "2")
    monkeypatch.setenv("LEADFLOW_POLICY", str(policy))
    given: list[runner.RunOptions] = []

    async def ran(options: runner.RunOptions) -> int:
        given.append(options)
        return 0

    monkeypatch.setattr(runner, "run", ran)
    assert cli.main(["run", "--for", "1", "--workdir", str(tmp_path / "run")]) == 0
    (options,) = given
    assert (options.web_port, options.web_host, options.partitions, options.policy) == (port, "0.0.0.0", 2, policy)
    assert runner.web_url(options) == f"http://127.0.0.1:{port}"  # where run itself reads the worker
    assert cli.main(["run", "--for", "1", "--web-port", str(free_port()), "--partitions", "3"]) == 0
    assert given[1].partitions == 3  # a flag wins


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "{events}", "--report-json", "{out}"],
        ["report", "--period", "week", "--events", "{events}"],
        ["plan"],
        ["calibrate", "{events}"],
    ],
)
def test_offline_commands_read_the_policy_the_worker_reads(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --policy a replay, a review, a plan and a calibration count under LEADFLOW_POLICY, the worker's."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "lead_id": "L1", "type": "lead.created", "occurred_at": '
                      '"2026-11-02T10:00:00Z", "source": "crm", "data": {}}\n')  # fmt: skip
    broken = tmp_path / "policy.yaml"
    broken.write_text("scoring:\n  engagement: 7\n")
    monkeypatch.setenv("LEADFLOW_POLICY", str(broken))
    args = [part.format(events=events, out=tmp_path / "out.json") for part in command]
    result = leadflow(*args)
    assert result.returncode == 2, result.stderr
    assert str(broken) in result.stderr, result.stderr
    assert "scoring.engagement" in result.stderr, result.stderr


ONE_EVENT = (
    '{"event_id": "e1", "lead_id": "L1", "type": "lead.created", "occurred_at": "2026-11-02T10:00:00Z", '
    '"source": "crm", "data": {}}\n'
)


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["replay", "{events}", "--outputs", "{out}/topics", "--report-json", "{file}/report.json"], "--report-json"),
        (["report", "--period", "week", "--events", "{events}", "--html", "{out}/review.html", "--json",
          "{file}/review.json"], "--json"),
        (["calibrate", "{events}", "--proposal", "{out}/proposal.yaml", "--report-json", "{file}/c.json"],
         "--report-json"),
        (["import-csv", "tests/data/crm_leads.csv", "--out", "{file}/history.jsonl"], "--out"),
    ],
)  # fmt: skip
def test_an_output_path_that_cannot_be_written_stops_the_command_before_it_writes_anything(
    command: list[str], flag: str, tmp_path: Path
) -> None:
    """Checked first: a replay of a quarter must not fail on its last step, leaving its other outputs behind."""
    events, a_file, out = tmp_path / "events.jsonl", tmp_path / "a-file", tmp_path / "out"
    events.write_text(ONE_EVENT)
    a_file.write_text("")
    out.mkdir()
    line = one_line(leadflow(*[p.format(events=events, file=a_file, out=out) for p in command]), 2)
    assert f"{flag} {a_file}/" in line
    assert f"{a_file} is not a directory; create it first or name another path" in line
    assert list(out.iterdir()) == [], "nothing written"


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "{events}", "--report-json", "{events}"],
        ["report", "--period", "week", "--events", "{events}", "--json", "{events}"],
        ["import-csv", "{csv}", "--out", "{csv}"],
    ],
)
def test_an_output_path_that_is_the_input_file_is_refused(command: list[str], tmp_path: Path) -> None:
    events, csv = tmp_path / "events.jsonl", tmp_path / "export.csv"
    events.write_text(ONE_EVENT)
    csv.write_bytes(Path("tests/data/crm_leads.csv").read_bytes())
    before = events.read_bytes(), csv.read_bytes()
    line = one_line(leadflow(*[p.format(events=events, csv=csv) for p in command]), 2)
    assert "is the command's input file; name another path" in line
    assert (events.read_bytes(), csv.read_bytes()) == before


def test_import_csv_refuses_a_drop_column_the_export_does_not_have(tmp_path: Path) -> None:
    """--drop keeps outcome columns out of a calibration: a misspelt one would leak them silently."""
    result = leadflow("import-csv", "tests/data/crm_leads.csv", "--out", str(tmp_path / "h.jsonl"), "--drop", "Tagz")
    line = one_line(result, 2)
    assert line.startswith("leadflow import-csv: --drop tagz: no such column in crm_leads.csv; its columns: ")
    assert "Tags" in line
    assert not (tmp_path / "h.jsonl").exists()


def test_a_blank_leadflow_policy_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`LEADFLOW_POLICY=` (a compose file's `${LEADFLOW_POLICY:-}`) means the shipped policy, not the directory."""
    monkeypatch.setenv("LEADFLOW_POLICY", "")
    result = leadflow("plan", "--json")
    assert result.returncode == 0, result.stderr


def test_schema_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = one_line(leadflow("schema", "--out", str(tmp_path / "a-file")), 2)
    assert (
        line
        == f"leadflow schema: --out {tmp_path / 'a-file'}: cannot write: File exists; name a directory you can write"
    )


@pytest.mark.parametrize(
    "flags", [["--spacing-minutes", "1e300"], ["--converted-after-days", "1e9"], ["--start", "9999-12-31T23:00:00Z"]]
)
def test_import_csv_times_past_the_year_9999_are_one_line_and_leave_no_file(flags: list[str], tmp_path: Path) -> None:
    out = tmp_path / "h.jsonl"
    line = one_line(leadflow("import-csv", "tests/data/crm_leads.csv", "--out", str(out), *flags), 2)
    assert line == (
        "leadflow import-csv: the leads' times would pass the year 9999: lower --start, --spacing-minutes or "
        "--converted-after-days"
    )
    assert not out.exists()


@pytest.mark.parametrize("start", ["9999-12-31", "0001-01-01"])
def test_a_review_at_the_calendars_limits_is_one_line(start: str, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(ONE_EVENT)
    line = one_line(leadflow("report", "--period", "month", "--events", str(events), "--from", start), 2)
    assert line == (
        "leadflow report: the month or the one before it would pass the calendar's limits (years 1 to 9999): "
        "check --from and the events' dates"
    )
