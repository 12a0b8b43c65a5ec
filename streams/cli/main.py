"""The `leadflow` command: run, worker, ingest, simulate, produce, replay, report, plan, calibrate, import-csv,
schema, policy check.

Exit codes (README "Exit codes"): 0 done; 1 the command ran and failed (`policy check` found problems, the
worker of `run` exited, the broker failed mid-way); 2 usage or configuration: nothing was started (a flag, the
policy, the broker URL, a broker that cannot be reached, a port in use); 70 a bug (one line names the file that
holds the traceback); 130 interrupted by Ctrl-C (`run` instead stops in order and exits 0). Every error is one
line on stderr that says what to change; none is a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import math
import re
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import orjson

from leadflow.schemas.policy import Policy, PolicyError, PolicyFileError, load_policy, notification_problems
from leadflow.streams.cli.replay import DEFAULT_SORT_BUFFER
from leadflow.streams.runtime.heap import tune_gc
from leadflow.streams.runtime.routes import ROUTES

if TYPE_CHECKING:
    from rich.console import RenderableType

    from leadflow.core.plan import TextTable
    from leadflow.streams.runtime.settings import Settings


EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed: policy check problems, run's worker exited, the broker failed mid-way
EXIT_USAGE = 2  # usage or configuration: a flag, the policy, the broker (URL or unreachable), a port; nothing started
EXIT_INTERNAL = 70  # a bug (sysexits EX_SOFTWARE): the traceback is written to a file the message names
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), except in `run`, which stops in order and exits 0
POLICY_HELP = "policy YAML (default: LEADFLOW_POLICY, else the shipped policy: the worker's)"
EVENTS_TOPIC_HELP = f"the events topic (default: LEADFLOW_TOPIC_EVENTS, else {ROUTES['events'].default}: the worker's)"
BROKER_PROBE_S = 5.0  # how long `worker`, `run --broker`, `produce` and `simulate` wait for the broker's metadata


class UsageError(Exception):
    """A usage or configuration error found before anything started: one line that says what to change (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one `--help` away), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# -- argument types: each says what it allows ------------------------------------------------------------------------


Number = TypeVar("Number", int, float)


def flag_type(
    convert: Callable[[str], Number], is_allowed: Callable[[Number], bool], allowed: str
) -> Callable[[str], Number]:
    """An argparse `type` that reads a number and says which values are allowed when it is not one of them."""

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed} (got {text!r})") from None
        if not is_allowed(value):
            raise argparse.ArgumentTypeError(f"must be {allowed} (got {text!r})")
        return value

    return parse


positive_number = flag_type(float, lambda v: math.isfinite(v) and v > 0, "a number greater than 0, e.g. 10 or 0.5")
# (at most a billion: a line count, a partition count, a sample size; beyond, it no longer fits a report's JSON)
positive_int = flag_type(int, lambda v: 1 <= v <= 10**9, "a whole number of at least 1 (at most 1,000,000,000)")
share = flag_type(float, lambda v: 0 <= v < 1, "a share from 0 up to (not including) 1, e.g. 0.05")  # of records
tcp_port = flag_type(int, lambda v: 1 <= v <= 65_535, "a TCP port from 1 to 65535")


def topic_name(text: str) -> str:
    """A Kafka topic name (what a broker accepts), checked before anything connects."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kafka topic name: use 1 to 249 letters, digits, '.', '_' or '-'"
        )
    return text


def broker_url(text: str) -> str:
    """One or more brokers, comma-separated: ``kafka://host:port`` or ``host:port``."""
    for part in text.split(","):
        scheme, sep, address = part.strip().rpartition("://")
        host, _, port = address.rpartition(":")
        if (
            (sep and scheme not in ("kafka", "aiokafka"))
            or not host
            or not port.isdigit()
            or not 0 < int(port) < 65_536
        ):
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a broker address: write kafka://HOST:PORT or HOST:PORT, e.g. "
                "kafka://localhost:9092 (several: comma-separated)"
            )
    return text.strip()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def check_web_port(host: str, port: int) -> None:
    """Raise UsageError when another process listens on the worker's web port (a worker already running?)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise UsageError(
                f"the web port {host}:{port} is in use ({error.strerror}): stop what holds it (another worker or "
                "`leadflow run`?) or pass --web-port with a free port"
            ) from None


def check_broker(settings: Settings) -> None:
    """One metadata request with a short timeout: raise UsageError when the brokers cannot be reached."""
    from aiokafka.client import AIOKafkaClient

    from leadflow.streams.runtime.topics import client_options

    try:
        broker_url(settings.broker)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"LEADFLOW_BROKER: {error}") from None

    async def probe() -> None:
        client = AIOKafkaClient(
            bootstrap_servers=settings.bootstrap,
            request_timeout_ms=int(BROKER_PROBE_S * 1000),
            **client_options(settings),
        )
        try:
            await asyncio.wait_for(client.bootstrap(), BROKER_PROBE_S)
        finally:
            await client.close()

    import logging

    from aiokafka.errors import KafkaConnectionError

    quiet = logging.getLogger("aiokafka")
    level, quiet.level = quiet.level, logging.CRITICAL  # its "Unable connect to ..." line would be a second line
    try:
        asyncio.run(probe())
    except Exception as error:  # refused, timed out, TLS or SASL failure: all one answer
        if isinstance(error, TimeoutError):
            because = "no answer"
        elif isinstance(error, KafkaConnectionError):
            because = "could not connect"
        else:
            because = _one_line(error)
        raise UsageError(
            f"cannot reach a Kafka broker at {settings.bootstrap} within {BROKER_PROBE_S:.0f} s ({because}): start "
            "the broker, or pass --broker kafka://HOST:PORT (env LEADFLOW_BROKER) naming a running one"
        ) from None
    finally:
        quiet.setLevel(level)


def checked_policy(path: Path | None) -> Policy:
    """The policy, or UsageError naming its first problem (`leadflow policy check FILE` lists them all)."""
    try:
        return load_policy(path)
    except PolicyError as error:
        more = len(error.problems) - 1
        also = f" (and {more} more: `leadflow policy check {error.source}` lists them)" if more else ""
        raise UsageError(f"policy {error.source}: {error.problems[0]}{also}") from None


def cmd_worker(args: argparse.Namespace) -> int:
    flags = {"policy": args.policy, "web_port": args.web_port}
    settings = worker_settings(args.broker, args.embedded or None, **{k: v for k, v in flags.items() if v})
    # Faust's own CLI runs the worker and answers a bad policy or an absent broker with a traceback (or retries
    # forever): check both here, and the web port, and say in one line what to change.
    policy = checked_policy(settings.policy)
    check_web_port(settings.web_host, settings.web_port)
    check_broker(settings)
    # `kill -USR1 <pid>` writes every thread's stack to the log: how to see where a stuck worker is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from faust.cli.faust import cli

    from leadflow.streams.runtime.worker import Worker

    worker = Worker(settings, policy)
    cli.main(args=["worker", "-l", args.loglevel], prog_name="leadflow worker", app=worker.app)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from leadflow.streams.dev.runner import RunOptions, run

    env = worker_settings(None)  # the LEADFLOW_* environment: what the flags not given default to, as for `worker`
    policy = args.policy or env.policy
    checked_policy(policy)  # before a broker starts
    web_port = args.web_port or env.web_port
    check_web_port(env.web_host, web_port)
    if args.broker:
        check_broker(worker_settings(args.broker))

    options = RunOptions(
        broker=args.broker,
        duration_s=args.for_s,
        leads_per_s=args.leads_per_s,
        speed=args.speed,
        bad_ratio=args.bad_ratio,
        partitions=args.partitions or env.partitions,
        web_port=web_port,
        web_host=env.web_host,
        workdir=Path(args.workdir),
        policy=policy,
        report_json=args.report_json,
        live=not args.no_live and sys.stdout.isatty(),
        real_time_slas=args.real_time_slas,
        embedded_broker=args.embedded_broker,
    )
    from leadflow.streams.dev.broker import BrokerStartError
    from leadflow.streams.dev.kafka import MissingToolError

    try:
        return asyncio.run(run(options))
    except (MissingToolError, BrokerStartError) as error:
        first = str(error).splitlines()[0].rstrip(":")  # a broker's failure names its log; the tail is there
        raise UsageError(first) from None


def worker_settings(broker: str | None, embedded: bool | None = None, **flags: Any) -> Settings:
    """The worker's settings: the environment's (LEADFLOW_*), with the command's flags over them (--broker gives
    the bootstrap list; the TLS / SASL client options stay the environment's)."""
    from pydantic import ValidationError

    from leadflow.streams.runtime.settings import Settings

    if broker:
        flags["broker"] = broker if "://" in broker else f"kafka://{broker}"
    if embedded is not None:
        flags["embedded"] = embedded
    try:
        return Settings(**flags)
    except ValidationError as error:
        problems = "; ".join(
            f"LEADFLOW_{'_'.join(str(part) for part in e['loc']).upper() or '*'}: {e['msg']}" for e in error.errors()
        )
        raise UsageError(f"settings: {problems}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from leadflow.streams.dev.simulator import LiveSimulator
    from leadflow.streams.runtime.producer import kafka_sender

    settings = worker_settings(args.broker, args.embedded or None)
    check_broker(settings)

    async def main() -> int:
        simulator = LiveSimulator(
            seed=args.seed,
            leads_per_s=args.leads_per_s,
            speed=args.speed,
            bad_ratio=args.bad_ratio,
            id_prefix=args.id_prefix or f"sim{datetime.now(UTC):%H%M%S}",
        )
        topic = args.topic or settings.topic_events
        async with kafka_sender(settings.bootstrap, topic, embedded=settings.embedded, settings=settings) as send:
            sent = await simulator.run(send, duration_s=args.for_s)
        print(f"sent {sent} records ({simulator.leads_started} leads) to {topic}")
        return 0

    return asyncio.run(main())


def cmd_produce(args: argparse.Namespace) -> int:
    from leadflow.streams.runtime.producer import produce_records, read_jsonl

    settings = worker_settings(args.broker, args.embedded or None)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file: name a JSONL file of events, one envelope per line")
    check_broker(settings)
    records = read_jsonl(path)
    topic = args.topic or settings.topic_events
    sent = asyncio.run(
        produce_records(settings.bootstrap, topic, records, embedded=settings.embedded, settings=settings)
    )
    print(f"sent {sent} records from {path} to {topic}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """`leadflow ingest`: the webhook gateway (streams/runtime/gateway.py) until SIGINT/SIGTERM."""
    import logging

    from pydantic import ValidationError

    from leadflow.streams.runtime.gateway import load_gateway_settings, serve

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = worker_settings(args.broker, args.embedded or None)
    try:
        policy = load_policy(args.policy or settings.policy)  # the worker's (LEADFLOW_POLICY): its forms map alike
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
        serve(settings, gateway.model_copy(update=overrides), policy)
    except ValueError as error:
        print(f"leadflow ingest: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """`leadflow notify`: hand-offs and SLA outputs to people (streams/runtime/notifier.py) until SIGINT/SIGTERM."""
    import logging

    from pydantic import ValidationError

    from leadflow.streams.runtime.channels import ChannelConfigError, Secrets, check_secrets
    from leadflow.streams.runtime.notifier import NotifySettings, serve

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = worker_settings(args.broker, args.embedded or None)
    policy = checked_policy(args.policy or settings.policy)
    problems = notification_problems(policy)
    if problems:
        more = f" (and {len(problems) - 1} more: leadflow policy check lists them)" if len(problems) > 1 else ""
        raise UsageError(f"policy: {problems[0]}{more}")
    if not policy.notifications.rules:
        raise UsageError("the policy's notifications section has no rules: nothing to send (README, 'Notifications')")
    try:
        overrides = {"port": args.port} if args.port is not None else {}
        notify = NotifySettings().model_copy(update=overrides)
    except ValidationError as error:
        raise UsageError(f"settings: {_one_line(error)}") from None
    try:
        if not args.dry_run:  # a dry run shows what would be sent without the secrets
            check_secrets(policy.notifications, Secrets(notify.secrets_dir))
        check_broker(settings)
        return asyncio.run(serve(settings, notify, policy, dry_run=args.dry_run))
    except ChannelConfigError as error:
        raise UsageError(str(error)) from None


def add_service_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_broker: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    """The long-running services beside the worker: `ingest` (webhooks in) and `notify` (people out)."""
    add_ingest_command(sub, add_broker)
    add_notify_command(sub, add_broker)


def add_notify_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_broker: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    """`notify`: the notifier (streams/runtime/notifier.py)."""
    notify = sub.add_parser("notify", help="hand-offs, SLA warnings, breaches and escalations to Slack, Teams, ...")
    add_broker(notify, True)
    notify.add_argument("--policy", type=Path, default=None, help="policy YAML: its notifications section")
    notify.add_argument(
        "--port", type=tcp_port, default=None, help="/healthz, /metrics port (env LEADFLOW_NOTIFY_PORT, default 6070)"
    )
    notify.add_argument(
        "--dry-run", action="store_true", help="print what would be sent (to the topics' end), send and commit nothing"
    )
    notify.add_argument("-l", "--loglevel", default="info", choices=["critical", "error", "warning", "info", "debug"])
    notify.set_defaults(func=cmd_notify)


def cmd_replay(args: argparse.Namespace) -> int:
    from leadflow.streams.cli.replay import ReplayOptions, run_replay

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
    from leadflow.streams.cli.replay import report_summary
    from leadflow.streams.cli.report_client import ReportSourceError, merged_report

    try:
        policy = load_policy(args.policy)
    except PolicyError as error:
        for problem in error.problems:
            print(f"leadflow report: {error.source}: {problem}", file=sys.stderr)
        return 2
    if args.period is not None:
        from leadflow.streams.cli.review_command import cmd_review

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

    from leadflow.core.plan import Measured, PlanError, measure, plan, plan_document, plan_tables

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
        from leadflow.streams.cli.replay import ReplayError, ReplayOptions, RichProgress, replay

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
    from leadflow.streams.cli.schema_files import write_schemas

    try:
        written = write_schemas(Path(args.out))
    except OSError as error:
        raise UsageError(f"--out {args.out}: cannot write: {error.strerror}; name a directory you can write") from None
    for path in written:
        print(path)
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyFileError as error:  # nothing was checked: exit 2, as for every missing file
        raise UsageError(f"{error.source}: {error.problems[0]}; name a policy file you can read") from None
    except PolicyError as error:
        for problem in error.problems:
            print(f"{error.source}: {problem}", file=sys.stderr)
        print(f"{len(error.problems)} problem(s); the policy was not loaded", file=sys.stderr)
        return 1
    notifying = notification_problems(policy)  # the notifier's references: `leadflow notify` refuses them too
    for problem in notifying:
        print(f"{args.file or 'default policy'}: {problem}", file=sys.stderr)
    if notifying:
        print(
            f"{len(notifying)} problem(s) in notifications; the worker runs, `leadflow notify` does not",
            file=sys.stderr,
        )
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
    from leadflow.core.targets import targets

    if policy.goals is None:
        return None
    return {"timezone": policy.goals.timezone, "week": targets(policy, "week"), "month": targets(policy, "month")}


def add_replay_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`replay` (offline, in event time; what-if), `report` (the merged report of running workers) and `plan`."""
    replay = sub.add_parser("replay", help="replay a JSONL file of events offline, in event time; what-if")
    replay.add_argument("file", help="events, one envelope per line (.jsonl, or gzip: .jsonl.gz); need not be sorted")
    replay.add_argument("--policy", type=Path, default=None, help=POLICY_HELP)
    replay.add_argument("--compare", type=Path, default=None, metavar="POLICY_B", help="what-if: also replay with B")
    replay.add_argument("--report-json", type=Path, required=True, metavar="OUT", help="write the funnel report here")
    replay.add_argument("--outputs", type=Path, default=None, metavar="DIR", help="write the outputs, a file per topic")
    replay.add_argument(
        "--until", default=None, metavar="TIME|now", help="fire SLA timers up to this time (default: the last event)"
    )
    replay.add_argument(
        "--sort-buffer",
        type=positive_int,
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
    report.add_argument("--policy", type=Path, default=None, help=POLICY_HELP)
    report.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the report JSON here")
    report.add_argument("--timeout", type=positive_number, default=60.0, help="seconds to wait for each worker (> 0)")
    report.set_defaults(func=cmd_report)

    add_plan_command(sub)  # the reverse funnel, measured from a replayed history with --from-history
    add_calibrate_commands(sub)  # the MQL definition measured on a replayed history, and a proposal


def add_plan_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`plan`: the reverse funnel of the policy's goals (core/plan.py)."""
    plan = sub.add_parser(
        "plan", help="the reverse funnel: what the revenue goal takes at each stage, per month and week"
    )
    plan.add_argument("--policy", type=Path, default=None, help=f"{POLICY_HELP}; with a goals section")
    plan.add_argument(
        "--from-history",
        type=Path,
        default=None,
        metavar="EVENTS.jsonl",
        help="replay these events and use the conversion and average deal value they measure",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from leadflow.streams.cli.calibrate_command import CalibrateOptions, run_calibrate

    options = CalibrateOptions(
        history=Path(args.file),
        policy=args.policy,
        target=args.target,
        report_json=args.report_json,
        html=args.html,
        lang=args.lang,
        proposal=args.proposal,
        train_share=args.train_share,
        min_support=args.min_support,
    )
    return run_calibrate(options)


def cmd_import_csv(args: argparse.Namespace) -> int:
    from leadflow.streams.cli.csv_import import run_import

    return run_import(
        Path(args.file),
        args.out,
        start=args.start,
        spacing_minutes=args.spacing_minutes,
        converted_after_days=args.converted_after_days,
        drop=args.drop or [],
    )


def add_calibrate_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`calibrate` (the MQL definition measured on the history, and a proposal) and `import-csv` (a CRM export)."""
    calibrate = sub.add_parser("calibrate", help="measure the scoring and MQL rule on the history; propose new points")
    calibrate.add_argument("file", help="the history: events, one envelope per line (.jsonl or .jsonl.gz)")
    calibrate.add_argument("--policy", type=Path, default=None, help=POLICY_HELP)
    calibrate.add_argument(
        "--target", choices=("customer", "sql", "sal"), default="customer", help="what conversion means"
    )
    calibrate.add_argument("--report-json", type=Path, default=None, metavar="OUT", help="write the report JSON here")
    calibrate.add_argument("--html", type=Path, default=None, metavar="OUT", help="write the report page here")
    calibrate.add_argument("--lang", choices=("en", "pt-BR", "es"), default="en", help="language of the page")
    calibrate.add_argument(
        "--proposal", type=Path, default=None, metavar="OUT.yaml", help="write the proposed policy (and OUT.diff)"
    )
    calibrate.add_argument(
        "--train-share", type=share, default=0.7, help="share of the older leads the proposal is fitted on (0 < s < 1)"
    )
    calibrate.add_argument(
        "--min-support", type=positive_int, default=30, metavar="N", help="leads a finding needs (>= 1)"
    )
    calibrate.set_defaults(func=cmd_calibrate)

    convert = sub.add_parser("import-csv", help="a CRM lead export (CSV) as a history of envelopes to calibrate on")
    convert.add_argument("file", help="the CSV export: one row per lead, with an id and a converted flag")
    convert.add_argument("--out", type=Path, required=True, metavar="HISTORY.jsonl", help="write the envelopes here")
    convert.add_argument(
        "--start", default="2026-01-01T00:00:00Z", metavar="TIME", help="creation time of the first lead (no dates)"
    )
    convert.add_argument(
        "--spacing-minutes", type=positive_number, default=60.0, help="minutes between two leads' creation (no dates)"
    )
    convert.add_argument(
        "--converted-after-days", type=positive_number, default=14.0, help="days from creation to the won deal"
    )
    convert.add_argument(
        "--drop", action="append", metavar="COLUMN", help="leave this column out (repeat): e.g. what sales fills in"
    )
    convert.set_defaults(func=cmd_import_csv)


def add_ingest_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_broker: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    """`ingest`: the webhook gateway (streams/runtime/gateway.py)."""
    ingest = sub.add_parser("ingest", help="the webhook gateway: HubSpot, RD Station, Mautic, web forms, envelopes")
    add_broker(ingest, True)
    ingest.add_argument(
        "--port", type=tcp_port, default=None, help="HTTP port (env LEADFLOW_INGEST_PORT, default 8080)"
    )
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
    top = _Parser(prog="leadflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every subparser is a _Parser too (argparse uses the parent's class); typed as the helpers below expect.
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]", top.add_subparsers(dest="command", required=True))

    def add_broker(p: argparse.ArgumentParser, embedded_flag: bool = False) -> None:
        p.add_argument(
            "--broker", type=broker_url, help="Kafka bootstrap URL, e.g. kafka://localhost:9092 (env LEADFLOW_BROKER)"
        )
        if embedded_flag:
            p.add_argument(
                "--embedded",
                action="store_true",
                help="the broker is the embedded tansu broker: send one record per batch (GUIDE section 4)",
            )

    run = sub.add_parser("run", help="the main job: embedded broker, worker, simulator and a live funnel view")
    add_broker(run)
    run.add_argument(
        "--for", dest="for_s", type=positive_number, help="stop after this many seconds (> 0) and print a summary"
    )
    run.add_argument("--leads-per-s", type=positive_number, default=10.0, help="new simulated leads per second (> 0)")
    run.add_argument("--speed", type=positive_number, default=172_800.0, help="simulated seconds per real second (> 0)")
    run.add_argument("--bad-ratio", type=share, default=0.01, help="share of deliberately bad records, 0 <= r < 1")
    run.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        help="partitions of leads.events, >= 1 (LEADFLOW_PARTITIONS, 4)",
    )
    run.add_argument(
        "--web-port", type=tcp_port, default=None, help="the worker's web port (LEADFLOW_WEB_PORT, default 6066)"
    )
    run.add_argument("--policy", type=Path, default=None, help=POLICY_HELP)
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

    worker = sub.add_parser(
        "worker",
        help="run a worker (`faust -A leadflow.streams.runtime.app worker` builds the same from LEADFLOW_*)",
    )
    add_broker(worker, embedded_flag=True)
    worker.add_argument("--policy", type=Path, default=None)
    worker.add_argument(
        "--web-port", type=tcp_port, default=None, help="web port (env LEADFLOW_WEB_PORT, default 6066)"
    )
    worker.add_argument("-l", "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=cmd_worker)

    simulate = sub.add_parser("simulate", help="produce a realistic live funnel to a broker")
    add_broker(simulate, embedded_flag=True)
    simulate.add_argument("--topic", type=topic_name, default=None, help=EVENTS_TOPIC_HELP)
    simulate.add_argument("--for", dest="for_s", type=positive_number, default=60.0, help="seconds to send (> 0)")
    simulate.add_argument("--leads-per-s", type=positive_number, default=10.0, help="new leads per second (> 0)")
    simulate.add_argument("--speed", type=positive_number, default=172_800.0, help="simulated s per real s (> 0)")
    simulate.add_argument("--bad-ratio", type=share, default=0.0, help="share of bad records, 0 <= r < 1")
    simulate.add_argument("--seed", type=int, default=0, help="the simulator's random seed (default 0)")
    simulate.add_argument("--id-prefix", default=None, help="prefix of lead and event ids (default: per run)")
    simulate.set_defaults(func=cmd_simulate)

    produce = sub.add_parser("produce", help="send the events of a JSONL file (one envelope per line)")
    add_broker(produce, embedded_flag=True)
    produce.add_argument("file")
    produce.add_argument("--topic", type=topic_name, default=None, help=EVENTS_TOPIC_HELP)
    produce.set_defaults(func=cmd_produce)

    add_service_commands(sub, add_broker)

    add_replay_commands(sub)

    add_schema_command(sub)

    policy = sub.add_parser("policy", help="work with the SLA policy file")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy file and print every problem with its path")
    check.add_argument("file", nargs="?", default=None, help="policy YAML (default: the shipped policy)")
    check.set_defaults(func=cmd_policy_check)
    return top


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and turn every error into one line on stderr and an exit code (module docstring)."""
    args = parser().parse_args(argv)
    prog = f"leadflow {args.command}"
    tune_gc()  # every command: the worker and replay hold many lead records
    try:
        if getattr(args, "policy", False) is None:
            # The deployment's policy (LEADFLOW_POLICY) when --policy is not given, for every command as for the
            # worker: a report, replay, plan or calibration under another policy would count otherwise, silently.
            args.policy = worker_settings(None).policy
        return int(args.func(args))
    except UsageError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # the last resort: one line, the traceback in a file
        from aiokafka.errors import KafkaError

        if isinstance(error, KafkaError):
            print(
                f"{prog}: the broker failed: {_one_line(error)}: check that it is up and reachable, then run again",
                file=sys.stderr,
            )
            return EXIT_FAILED
        with tempfile.NamedTemporaryFile("w", prefix="leadflow-error-", suffix=".txt", delete=False) as out:
            traceback.print_exception(error, file=out)
        print(
            f"{prog}: internal error: {type(error).__name__}: {_one_line(error)} (traceback in {out.name}; "
            "please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
