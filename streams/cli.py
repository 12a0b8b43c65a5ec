"""The `leadflow` command: run, worker, ingest, simulate, produce, replay, report, plan, schema, policy check."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from schemas.policy import Policy, PolicyError, load_policy
from streams.replay import DEFAULT_SORT_BUFFER

if TYPE_CHECKING:
    from rich.console import RenderableType

    from core.plan import TextTable
    from streams.settings import Settings


def _broker_env(broker: str | None, embedded: bool | None = None) -> None:
    if broker:
        os.environ["LEADFLOW_BROKER"] = broker if "://" in broker else f"kafka://{broker}"
    if embedded is not None:
        os.environ["LEADFLOW_EMBEDDED"] = "1" if embedded else "0"


def cmd_worker(args: argparse.Namespace) -> int:
    _broker_env(args.broker, True if args.embedded else None)
    if args.policy:
        os.environ["LEADFLOW_POLICY"] = str(args.policy)
    if args.web_port:
        os.environ["LEADFLOW_WEB_PORT"] = str(args.web_port)
    # `kill -USR1 <pid>` writes every thread's stack to the log: how to see where a stuck worker is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from faust.cli.faust import cli  # imported late: the app module reads the environment set above

    cli.main(args=["-A", "streams.app", "worker", "-l", args.loglevel], prog_name="leadflow worker")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from streams.runner import RunOptions, run

    options = RunOptions(
        broker=args.broker,
        duration_s=args.for_s,
        leads_per_s=args.leads_per_s,
        speed=args.speed,
        bad_ratio=args.bad_ratio,
        partitions=args.partitions,
        web_port=args.web_port or 6066,
        workdir=Path(args.workdir),
        policy=args.policy,
        report_json=args.report_json,
        live=not args.no_live and sys.stdout.isatty(),
        real_time_slas=args.real_time_slas,
        embedded_broker=args.embedded_broker,
    )
    from streams.broker import BrokerStartError
    from streams.kafka import MissingToolError

    try:
        return asyncio.run(run(options))
    except (MissingToolError, BrokerStartError) as error:
        print(f"leadflow run: {error}", file=sys.stderr)
        return 2


def _client_settings(broker: str | None) -> Settings:
    """The worker's settings with --broker applied: the bootstrap list and the TLS / SASL client options."""
    _broker_env(broker)
    from streams.settings import Settings

    return Settings()


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.producer import kafka_sender
    from streams.simulator import LiveSimulator

    settings = _client_settings(args.broker)

    async def main() -> int:
        simulator = LiveSimulator(
            seed=args.seed,
            leads_per_s=args.leads_per_s,
            speed=args.speed,
            bad_ratio=args.bad_ratio,
            id_prefix=args.id_prefix or f"sim{datetime.now(UTC):%H%M%S}",
        )
        async with kafka_sender(settings.bootstrap, args.topic, embedded=args.embedded, settings=settings) as send:
            sent = await simulator.run(send, duration_s=args.for_s)
        print(f"sent {sent} records ({simulator.leads_started} leads) to {args.topic}")
        return 0

    return asyncio.run(main())


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.producer import produce_records, read_jsonl

    settings = _client_settings(args.broker)
    path = Path(args.file)
    if not path.is_file():
        print(f"leadflow produce: {path}: no such file", file=sys.stderr)
        return 2
    records = read_jsonl(path)
    sent = asyncio.run(
        produce_records(settings.bootstrap, args.topic, records, embedded=args.embedded, settings=settings)
    )
    print(f"sent {sent} records from {path} to {args.topic}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """`leadflow ingest`: the webhook gateway (streams/gateway.py) until SIGINT/SIGTERM."""
    import logging

    from pydantic import ValidationError

    from streams.gateway import load_gateway_settings, serve
    from streams.settings import Settings

    _broker_env(args.broker, True if args.embedded else None)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        policy = load_policy(args.policy)
        gateway = load_gateway_settings(args.secrets_dir)
    except PolicyError as error:
        for problem in error.problems:
            print(f"leadflow ingest: {error.source}: {problem}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"leadflow ingest: settings: {error}", file=sys.stderr)
        return 2
    overrides = {name: value for name, value in (("port", args.port), ("host", args.host)) if value is not None}
    try:
        serve(Settings(), gateway.model_copy(update=overrides), policy)
    except ValueError as error:
        print(f"leadflow ingest: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.replay import ReplayOptions, run_replay

    options = ReplayOptions(
        events=Path(args.file),
        policy=args.policy,
        compare=args.compare,
        report_json=args.report_json,
        outputs=args.outputs,
        until=args.until,
        sort_buffer=args.sort_buffer,
    )
    return run_replay(options)


def cmd_report(args: argparse.Namespace) -> int:
    from streams.replay import report_summary
    from streams.report_client import ReportSourceError, merged_report

    try:
        policy = load_policy(args.policy)
    except PolicyError as error:
        for problem in error.problems:
            print(f"leadflow report: {error.source}: {problem}", file=sys.stderr)
        return 2
    if args.period is not None:
        from streams.review_command import cmd_review

        return cmd_review(args, policy)
    if args.events is not None or args.html is not None or args.start is not None:
        print("leadflow report: --events, --html and --from need --period week|month", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(merged_report(args.worker, policy, datetime.now(UTC), timeout_s=args.timeout))
    except ReportSourceError as error:
        print(f"leadflow report: {error}", file=sys.stderr)
        return 2
    if args.json:
        try:
            args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        except OSError as error:
            print(f"leadflow report: --json {args.json}: cannot write: {error.strerror}", file=sys.stderr)
            return 2
    print("\n".join(report_summary(report)))
    if args.json:
        print(f"report written to {args.json}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """`leadflow plan`: the reverse funnel of the policy's goals, measured from a history with --from-history."""
    from rich.console import Console

    from core.plan import Measured, PlanError, measure, plan, plan_document, plan_tables

    try:
        policy = load_policy(args.policy)
    except PolicyError as error:
        for problem in error.problems:
            print(f"leadflow plan: {error.source}: {problem}", file=sys.stderr)
        return 2
    if policy.goals is None:
        print(
            f"leadflow plan: {args.policy or 'the policy'} has no goals section: add one (copy `goals:` from the "
            "shipped schemas/default_policy.yaml; README, 'Goals and the reverse funnel')",
            file=sys.stderr,
        )
        return 2
    measured: Measured | None = None
    if args.from_history is not None:
        from streams.replay import ReplayError, ReplayOptions, RichProgress, replay

        options = ReplayOptions(events=args.from_history, policy=args.policy)
        err = Console(stderr=True)
        try:
            if err.is_terminal and args.from_history.is_file():
                with RichProgress(err, args.from_history.stat().st_size) as bar:
                    result = replay(options, bar)
            else:
                result = replay(options)
        except ReplayError as error:
            print(f"leadflow plan: --from-history: {'; '.join(error.lines)}", file=sys.stderr)
            return 2
        measured = measure(result.reports[0], policy, str(args.from_history))
    try:
        the_plan = plan(policy, measured)
    except PlanError as error:
        print(f"leadflow plan: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(plan_document(the_plan), option=orjson.OPT_INDENT_2).decode())
        return 0
    out, tables = Console(), plan_tables(the_plan)
    if out.is_terminal:
        for table in tables:
            out.print(_rich_table(table))
    else:
        print("\n\n".join(_text_table(table) for table in tables), flush=True)
    return 0


def _rich_table(table: TextTable) -> RenderableType:
    from rich.table import Table

    view = Table(title=table.title, caption="\n".join(table.notes) or None, caption_justify="left")
    for i, column in enumerate(table.columns):
        view.add_column(column, justify="right" if i in (1, 2) else "left", no_wrap=i < 3)
    for row in table.rows:
        view.add_row(*row)
    return view


def _text_table(table: TextTable) -> str:
    """Plain text for a pipe or a file: the title, aligned columns (numbers right-aligned), then the notes."""
    rows = [table.columns, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.columns))]
    lines = [table.title]
    for row in rows:
        cells = [
            cell.rjust(width) if i in (1, 2) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join([*lines, *table.notes])


def cmd_schema(args: argparse.Namespace) -> int:
    from streams.schema_files import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as error:
        for problem in error.problems:
            print(f"{error.source}: {problem}", file=sys.stderr)
        print(f"{len(error.problems)} problem(s); the policy was not loaded", file=sys.stderr)
        return 1
    summary = {
        "name": policy.name,
        "version": policy.version,
        "stages": list(policy.all_stages),
        "fit_rules": len(policy.scoring.fit),
        "engagement_rules": len(policy.scoring.engagement),
        "rejection_reasons": sorted(policy.rejection_codes),
        "pipeline": [p.stage for p in policy.deals.pipeline],
        "fingerprint": policy.fingerprint,
        "goals": goals_summary(policy),
    }
    print(f"{args.file or 'default policy'}: ok")
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def goals_summary(policy: Policy) -> dict[str, object] | None:
    """The week's and month's targets the goals section gives (plan and commitments), for `policy check`."""
    from core.targets import targets

    if policy.goals is None:
        return None
    return {"timezone": policy.goals.timezone, "week": targets(policy, "week"), "month": targets(policy, "month")}


def add_replay_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`replay` (offline, in event time; what-if), `report` (the merged report of running workers) and `plan`."""
    replay = sub.add_parser("replay", help="replay a JSONL file of events offline, in event time; what-if")
    replay.add_argument("file", help="events, one envelope per line (.jsonl, or gzip: .jsonl.gz); need not be sorted")
    replay.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the shipped policy)")
    replay.add_argument("--compare", type=Path, default=None, metavar="POLICY_B", help="what-if: also replay with B")
    replay.add_argument("--report-json", type=Path, required=True, metavar="OUT", help="write the funnel report here")
    replay.add_argument("--outputs", type=Path, default=None, metavar="DIR", help="write the outputs, a file per topic")
    replay.add_argument(
        "--until", default=None, metavar="TIME|now", help="fire SLA timers up to this time (default: the last event)"
    )
    replay.add_argument(
        "--sort-buffer",
        type=int,
        default=DEFAULT_SORT_BUFFER,
        metavar="N",
        help="lines sorted in memory; more spill to disk",
    )
    replay.set_defaults(func=cmd_replay)

    report = sub.add_parser(
        "report", help="the funnel report of running workers, merged; with --period, the weekly or monthly review"
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--worker", action="append", metavar="URL", help="a worker's web address (repeat for each)")
    source.add_argument("--events", type=Path, metavar="FILE", help="an events file, replayed offline (--period)")
    report.add_argument("--period", choices=("week", "month"), help="the SLA review of a week or a month")
    report.add_argument("--from", dest="start", metavar="DATE", help="a day of the period to review (default: now)")
    report.add_argument("--html", type=Path, metavar="OUT", help="write the review page here (--period)")
    report.add_argument("--lang", choices=("en", "pt-BR", "es"), default="en", help="language of the review page")
    report.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the shipped policy)")
    report.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the report JSON here")
    report.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each worker")
    report.set_defaults(func=cmd_report)

    add_plan_command(sub)  # the reverse funnel, measured from a replayed history with --from-history


def add_plan_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`plan`: the reverse funnel of the policy's goals (core/plan.py)."""
    plan = sub.add_parser(
        "plan", help="the reverse funnel: what the revenue goal takes at each stage, per month and week"
    )
    plan.add_argument("--policy", type=Path, default=None, help="policy YAML with a goals section (default: shipped)")
    plan.add_argument(
        "--from-history",
        type=Path,
        default=None,
        metavar="EVENTS.jsonl",
        help="replay these events and use the conversion and average deal value they measure",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)


def add_ingest_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_broker: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    """`ingest`: the webhook gateway (streams/gateway.py)."""
    ingest = sub.add_parser("ingest", help="the webhook gateway: HubSpot, RD Station, Mautic, web forms, envelopes")
    add_broker(ingest, True)
    ingest.add_argument("--port", type=int, default=None, help="HTTP port (env LEADFLOW_INGEST_PORT, default 8080)")
    ingest.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    ingest.add_argument("--policy", type=Path, default=None, help="policy YAML: its forms section maps submissions")
    ingest.add_argument(
        "--secrets-dir", type=Path, default=None, help="a directory of secret files (Docker/Kubernetes secrets)"
    )
    ingest.add_argument("-l", "--loglevel", default="info", choices=["critical", "error", "warning", "info", "debug"])
    ingest.set_defaults(func=cmd_ingest)


def add_schema_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = sub.add_parser("schema", help="write JSON Schema files for producers in other languages")
    schema.add_argument("--out", required=True, help="directory to write into")
    schema.set_defaults(func=cmd_schema)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    def add_broker(p: argparse.ArgumentParser, embedded_flag: bool = False) -> None:
        p.add_argument("--broker", help="Kafka bootstrap URL, e.g. kafka://localhost:9092 (env LEADFLOW_BROKER)")
        if embedded_flag:
            p.add_argument(
                "--embedded",
                action="store_true",
                help="the broker is the embedded tansu broker: send one record per batch (GUIDE section 4)",
            )

    run = sub.add_parser("run", help="the main job: embedded broker, worker, simulator and a live funnel view")
    add_broker(run)
    run.add_argument("--for", dest="for_s", type=float, help="stop after this many seconds and print a summary")
    run.add_argument("--leads-per-s", type=float, default=10.0, help="new simulated leads per second")
    run.add_argument("--speed", type=float, default=172_800.0, help="simulated seconds per real second")
    run.add_argument("--bad-ratio", type=float, default=0.01, help="share of deliberately bad records")
    run.add_argument("--partitions", type=int, default=4)
    run.add_argument("--web-port", type=int, default=None)
    run.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the shipped policy)")
    run.add_argument("--workdir", default=".leadflow", help="logs and worker data go here")
    run.add_argument("--report-json", type=Path, default=None, help="write the final funnel report here")
    run.add_argument(
        "--real-time-slas",
        action="store_true",
        help="keep the policy's SLA allowances (default: divided by --speed, so clocks breach during the demo)",
    )
    run.add_argument("--no-live", action="store_true", help="no live terminal view, only the final summary")
    run.add_argument(
        "--embedded-broker",
        choices=("auto", "kafka", "tansu"),
        default="auto",
        help="the broker started without --broker: Apache Kafka, or tansu (auto: Kafka when Java is installed)",
    )
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="run a Faust worker (same as faust -A streams.app worker)")
    add_broker(worker, embedded_flag=True)
    worker.add_argument("--policy", type=Path, default=None)
    worker.add_argument("--web-port", type=int, default=None)
    worker.add_argument("-l", "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=cmd_worker)

    simulate = sub.add_parser("simulate", help="produce a realistic live funnel to a broker")
    add_broker(simulate, embedded_flag=True)
    simulate.add_argument("--topic", default="leads.events")
    simulate.add_argument("--for", dest="for_s", type=float, default=60.0)
    simulate.add_argument("--leads-per-s", type=float, default=10.0)
    simulate.add_argument("--speed", type=float, default=172_800.0)
    simulate.add_argument("--bad-ratio", type=float, default=0.0)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--id-prefix", default=None, help="prefix of lead and event ids (default: per run)")
    simulate.set_defaults(func=cmd_simulate)

    produce = sub.add_parser("produce", help="send the events of a JSONL file (one envelope per line)")
    add_broker(produce, embedded_flag=True)
    produce.add_argument("file")
    produce.add_argument("--topic", default="leads.events")
    produce.set_defaults(func=cmd_produce)

    add_ingest_command(sub, add_broker)

    add_replay_commands(sub)

    add_schema_command(sub)

    policy = sub.add_parser("policy", help="work with the SLA policy file")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy file and print every problem with its path")
    check.add_argument("file", nargs="?", default=None, help="policy YAML (default: the shipped policy)")
    check.set_defaults(func=cmd_policy_check)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
