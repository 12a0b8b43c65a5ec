"""Offline replay and what-if: a file of events through the whole worker in one process, in event time.

`leadflow replay EVENTS.jsonl[.gz]` reads one envelope per line (the format of `leadflow produce`), sorts the
events by `occurred_at` (then by line) within a bounded memory budget, feeds them to `core.engine.Engine` (every
lead, the router and the SLA timers, with the replay's event time as the clock: GUIDE section 2) and writes the
funnel report of the records it ends with (`core.report`), the report the live workers compute.

Sorting is an external merge sort: lines are read in chunks of `sort_buffer` lines; a file that fits one chunk is
sorted in memory and never touches the disk; otherwise each full chunk is sorted and spilled to a temporary run
file, and the runs are merged (`heapq.merge`) with the last chunk, which stays in memory. While reading, only the
sort key is parsed (orjson, `occurred_at`); each line is validated once, by `core.intake.decode`, when the merge
hands it on. A line that is not an event is counted with its line number and reason, and dead-lettered as the
live worker would (topic = the file name, partition 0, offset = the line number): never fatal.

`--compare B.yaml` runs a second engine with policy B over the same sorted stream in the same pass; the report
then holds both reports and their difference (`core.report.compare_reports`, b - a).
"""

from __future__ import annotations

import gc
import heapq
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol, get_args

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from leadflow.core.engine import Engine
from leadflow.core.intake import Origin, dead_letter, decode, decode_visits, is_visits
from leadflow.core.report import LeadSummary, compare_reports, funnel_report, summaries_of
from leadflow.core.visits import Visits
from leadflow.schemas.events import LeadEvent
from leadflow.schemas.outputs import DEAD_LETTER_ADAPTER, DeadLetter, Output
from leadflow.schemas.policy import Policy, PolicyError, load_policy
from leadflow.schemas.visits import SiteVisits
from leadflow.streams.cli.output_paths import unwritable
from leadflow.streams.runtime.producer import gunzipped
from leadflow.streams.runtime.routes import ROUTES, OutputTopic, record_value, topic_of

DEFAULT_SORT_BUFFER: Final = 200_000
MAX_EXAMPLES: Final = 100
PROGRESS_EVERY: Final = 8192  # lines between two progress updates
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)

OutputFile = OutputTopic | Literal["deadletter"]  # the output topics (streams.runtime.routes.topic_of) and dead letters
# `events`: what merged leads send back to the events topic (forwarded events, merge notices: core.merges), which
# the replay applies at once, as the live workers do when the records come back.
TOPICS: Final[tuple[OutputFile, ...]] = (*get_args(OutputTopic), "deadletter")


def topic_file(topic: OutputFile) -> str:
    """The file an output kind goes to: its default topic name (streams.runtime.routes), e.g. leads.sla.jsonl."""
    return f"{ROUTES[topic].default}.jsonl"


class ReplayError(Exception):
    """A replay that cannot start or finish (missing file, unreadable gzip, bad policy, bad --until, ...).

    `lines` are printed one per line, without a traceback; the command exits 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class ReplayOptions:
    events: Path
    policy: Path | None = None
    compare: Path | None = None
    report_json: Path | None = None
    outputs: Path | None = None
    until: str | None = None  # None: the newest event time; "now"; or an RFC 3339 time with an offset
    sort_buffer: int = DEFAULT_SORT_BUFFER
    temp_dir: Path | None = None  # where sorted runs are spilled (default: the system's temp dir)


# ---- progress ----------------------------------------------------------------------------------------------


class ProgressSink(Protocol):
    """What a replay tells while it works; `RichProgress` draws it, `None` (no sink) stays silent."""

    def reading(self, bytes_read: int, lines: int) -> None: ...

    def replaying(self, done: int, total: int) -> None: ...


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        count = int(task.fields.get("count", 0))
        rate = count / elapsed if elapsed else 0.0
        return Text(f"{count:>11,} {task.fields.get('unit', '')} {rate:>9,.0f}/s", style="progress.data.speed")


class RichProgress:
    """Two bars on a terminal: reading and sorting (ETA from bytes read / file size), then the replay itself
    (ETA from events replayed / events sorted)."""

    def __init__(self, console: Console, file_size: int) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.read_task: TaskID = self.bar.add_task("reading", total=max(file_size, 1), count=0, unit="lines")
        self.replay_task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def reading(self, bytes_read: int, lines: int) -> None:
        self.bar.update(self.read_task, completed=bytes_read, count=lines)

    def replaying(self, done: int, total: int) -> None:
        if self.replay_task is None:
            self.replay_task = self.bar.add_task("replaying", total=max(total, 1), count=0, unit="events")
        self.bar.update(self.replay_task, completed=done, count=done)


# ---- reading and sorting ------------------------------------------------------------------------------------

Line = tuple[int, int, bytes, bytes]
"""(occurred_at in microseconds since the epoch, line number, the lead_id bytes or b"", the line's bytes)."""

_RUN_HEADER: Final = struct.Struct("<qqII")


def _micros(at: datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def sort_key(line: bytes) -> tuple[int | None, bytes]:
    """The line's occurred_at (microseconds since the epoch; None when it has no usable one) and lead_id bytes.

    Only what sorting needs; the whole envelope is validated later, once, by core.intake.decode."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, b""
    if not isinstance(document, dict):
        return None, b""
    lead = document.get("lead_id")
    key = lead.encode() if isinstance(lead, str) else b""
    occurred = document.get("occurred_at")
    if not isinstance(occurred, str):
        return None, key
    try:
        at = datetime.fromisoformat(occurred)
    except ValueError:
        return None, key
    return (_micros(at) if at.utcoffset() is not None else None), key


def _write_run(path: Path, lines: Iterable[Line]) -> None:
    with path.open("wb", buffering=1 << 20) as out:
        for at, number, key, value in lines:
            out.write(_RUN_HEADER.pack(at, number, len(key), len(value)))
            out.write(key)
            out.write(value)


def _read_run(path: Path) -> Iterator[Line]:
    with path.open("rb", buffering=1 << 20) as run:
        while header := run.read(_RUN_HEADER.size):
            at, number, key_size, value_size = _RUN_HEADER.unpack(header)
            yield at, number, run.read(key_size), run.read(value_size)


class ExternalSort:
    """Lines sorted by (occurred_at, line number), holding at most `buffer` lines in memory.

    A file that fits one chunk is never spilled; otherwise each full chunk is sorted and written to a run file
    in `workdir`, and `merged()` merges the runs with the last chunk."""

    def __init__(self, buffer: int, workdir: Path) -> None:
        if buffer < 1:
            raise ValueError("the sort buffer must hold at least one line")
        self.buffer = buffer
        self.workdir = workdir
        self.chunk: list[Line] = []
        self.runs: list[Path] = []
        self.count = 0

    def add(self, line: Line) -> None:
        if len(self.chunk) >= self.buffer:
            self.spill()
        self.chunk.append(line)
        self.count += 1

    def spill(self) -> None:
        self.chunk.sort()  # (occurred_at, line number) is unique: the bytes are never compared
        path = self.workdir / f"run-{len(self.runs):05d}.bin"
        _write_run(path, self.chunk)
        self.runs.append(path)
        self.chunk = []

    def merged(self) -> Iterator[Line]:
        self.chunk.sort()
        if not self.runs:
            return iter(self.chunk)
        return heapq.merge(*(_read_run(path) for path in self.runs), self.chunk)


def open_events(path: Path, stack: ExitStack) -> tuple[Iterable[bytes], IO[bytes]]:
    """(lines, raw): the file's lines (gunzipped when its name ends in .gz or it starts with the gzip magic
    bytes) and the raw file, whose position says how much of the file has been read."""
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    if not path.is_file():
        raise ReplayError(f"{path}: not a file")
    try:
        raw: IO[bytes] = stack.enter_context(path.open("rb"))
    except OSError as error:
        raise ReplayError(f"{path}: cannot read: {error.strerror}") from None
    lines = gunzipped(raw, path)
    return (stack.enter_context(lines) if lines is not raw else raw), raw


# ---- the replay ---------------------------------------------------------------------------------------------


class OutputFiles:
    """What the live worker would have sent, one JSONL file per topic, each line an output's JSON."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.files = {topic: stack.enter_context((directory / topic_file(topic)).open("wb")) for topic in TOPICS}
        except OSError as error:
            raise ReplayError(f"--outputs {directory}: cannot write: {error.strerror or error}") from None
        self.directory = directory

    def output(self, output: Output) -> None:
        self.files[topic_of(output)].write(record_value(output) + b"\n")

    def dead_letter(self, letter: DeadLetter) -> None:
        self.files["deadletter"].write(DEAD_LETTER_ADAPTER.dump_json(letter) + b"\n")


@dataclass
class Side:
    """One policy's run over the stream: `a` (the policy), and `b` with --compare."""

    name: str
    policy: Policy
    policy_file: Path | None
    engine: Engine
    files: OutputFiles | None = None
    outputs: Counter[str] = field(default_factory=Counter)
    defects: int = 0  # events and routing messages the core raised on (dead-lettered as internal_error)

    def feed(self, event: LeadEvent, origin: Origin) -> None:
        try:
            outputs = self.engine.feed(event)
        except Exception as error:  # a defect outside the engine's own decisions (core.engine: those cost one each)
            self.defects += 1
            self.dead_letter(dead_letter("internal_error", [f"(replay): {type(error).__name__}: {error}"], origin))
            return
        self.emit(outputs)
        self.dead_letter_defects(event, origin)

    def finish(self, end: datetime | None, origin: Origin) -> None:
        self.emit(self.engine.finish(end))
        self.dead_letter_defects(None, origin)

    def dead_letter_defects(self, event: LeadEvent | None, origin: Origin) -> None:
        """What the core raised on while it took this input line (or the end of the file): the input event's
        dead letter holds the line; a timer tick's, router answer's or route message's holds its own JSON, as
        the live worker's does, and names the line whose time or decision brought it."""
        for defect in self.engine.take_defects():
            self.defects += 1
            problem = [f"({defect.where}): {type(defect.error).__name__}: {defect.error}"]
            if defect.subject is event:
                self.dead_letter(dead_letter("internal_error", problem, origin))
                continue
            subject = defect.subject
            internal = replace(origin, key=subject.lead_id.encode(), value=subject.model_dump_json().encode())
            self.dead_letter(dead_letter("internal_error", problem, internal, about=defect.subject_id))

    def emit(self, outputs: Sequence[Output]) -> None:
        for output in outputs:
            self.outputs[topic_of(output)] += 1
            if self.files is not None:
                self.files.output(output)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.outputs["deadletter"] += 1
        if self.files is not None:
            self.files.dead_letter(letter)


@dataclass
class Malformed:
    """Lines that are not events: how many, by reason, and the first MAX_EXAMPLES (by line number)."""

    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    _examples: list[tuple[int, str]] = field(default_factory=list)  # a max-heap on the line number (negated)

    def add(self, line: int, letter: DeadLetter) -> None:
        self.count += 1
        self.reasons[letter.reason] += 1
        item = (-line, f"{letter.reason}: {'; '.join(letter.errors)}")
        if len(self._examples) < MAX_EXAMPLES:
            heapq.heappush(self._examples, item)
        elif item > self._examples[0]:
            heapq.heapreplace(self._examples, item)

    def examples(self) -> list[dict[str, Any]]:
        return [{"line": -line, "reason": reason} for line, reason in sorted(self._examples, reverse=True)]


@dataclass
class ReplayResult:
    file: Path
    lines: int  # non-blank lines read
    events: int  # lines that were events, fed to the engine(s)
    malformed: Malformed
    runs: int  # sorted runs spilled to disk (0: sorted in memory)
    sort_buffer: int
    first_event_at: datetime | None
    last_event_at: datetime | None
    clock: datetime  # the replay clock at the end: what the report is as of
    sides: list[Side]
    reports: list[dict[str, Any]]  # one per side: the funnel report with its `replay` block
    read_s: float
    replay_s: float
    report_s: float
    visits: Visits = field(default_factory=Visits)  # the site-visits reports read (schemas.visits)

    @property
    def elapsed_s(self) -> float:
        return self.read_s + self.replay_s + self.report_s

    def document(self) -> dict[str, Any]:
        """What --report-json holds: the report, or with --compare {"a", "b", "difference"}."""
        if len(self.reports) == 1:
            return self.reports[0]
        a, b = self.reports
        return {"a": a, "b": b, "difference": compare_reports(a, b)}


def parse_until(text: str | None) -> datetime | Literal["now"] | None:
    if text is None:
        return None
    if text == "now":
        return "now"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(
            f"--until {text!r}: not an RFC 3339 time; give one with an offset, e.g. 2026-12-31T23:59:59Z, or 'now'"
        ) from None
    if at.utcoffset() is None:
        raise ReplayError(f"--until {text!r}: the time needs an offset, e.g. {text}Z or {text}-03:00")
    return at


def read_policy(path: Path | None, flag: str) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as error:
        problems = [f"{error.source}: {problem}" for problem in error.problems]
        raise ReplayError(*problems, f"{flag}: {len(error.problems)} problem(s); the policy was not loaded") from None


class YoungCollections:
    """No automatic garbage collection while the replay feeds its engines: the young generations are collected by
    `after(events)`, every few thousand events at first and more rarely while collections find nothing, and the
    heap the feed built is frozen when it ends.

    The lead records are a heap of millions of objects that lives until the end of the replay, and every event
    replaces its lead's record, so the young generations soon hold most of that heap: a young collection walks
    about all of it, and so does the first automatic full collection after the feed (300,000 events: collections
    at a doubling pace took 3.6 s of 45, the full one 2.6 s, and found 0 objects; the records are freed by
    reference counting). So while collections find nothing, the next one waits until the time since the last one
    is `1 / BUDGET` times what it took (and at least twice as many events as the pace before, at most `LONGEST`);
    as soon as one finds cyclic garbage, the pace is back to every `FIRST` events. At the end the heap is frozen
    (`gc.freeze`): the collector never walks it again, reference counting still frees it. Cyclic garbage that
    reached the old generation waits for the first automatic collection after the feed.
    """

    FIRST: Final = PROGRESS_EVERY
    LONGEST: Final = 1 << 20
    BUDGET: Final = 0.02  # of the feed's time, at most, in collections that find nothing

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.every = self.FIRST
        self.due = self.FIRST
        self.collections = 0
        self.enabled = gc.isenabled()
        self.since = (0, clock())  # events and clock at the last collection (or the start)

    def after(self, events: int) -> None:
        if events < self.due:
            return
        started = self.clock()
        found = gc.collect(1)
        ended = self.clock()
        self.collections += 1
        if found:
            self.every = self.FIRST
        else:
            last_events, last_at = self.since
            per_second = (events - last_events) / max(started - last_at, 1e-9)
            budgeted = int((ended - started) / self.BUDGET * per_second)
            self.every = min(max(2 * self.every, budgeted), self.LONGEST)
        self.due = events + self.every
        self.since = (events, ended)

    def __enter__(self) -> YoungCollections:
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        gc.freeze()
        if self.enabled:
            gc.enable()


def replay(options: ReplayOptions, progress: ProgressSink | None = None) -> ReplayResult:
    """Replay the file (see the module docstring); raises ReplayError for what stops a replay."""
    return Replay(options, progress).run()


class Replay:
    """One replay: read and sort, feed every engine, report; see the module docstring."""

    def __init__(self, options: ReplayOptions, progress: ProgressSink | None) -> None:
        self.options = options
        self.progress = progress
        self.until = parse_until(options.until)
        self.policies = [("a", options.policy, read_policy(options.policy, "--policy"))]
        if options.compare is not None:
            self.policies.append(("b", options.compare, read_policy(options.compare, "--compare")))
        if options.sort_buffer < 1:
            raise ReplayError(f"--sort-buffer {options.sort_buffer}: must be at least 1 line")
        problem = unwritable("--report-json", options.report_json, reads=(options.events,))
        if problem is not None:
            raise ReplayError(problem)
        self.path = options.events
        self.received_at = datetime.now(UTC)  # when the replay read the lines: the dead letters' received_at
        self.malformed = Malformed()
        self.sides: list[Side] = []
        self.lines = 0
        self.events = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.visits = Visits()  # site-visits reports among the lines: not lead events (schemas.visits)

    def run(self) -> ReplayResult:
        with ExitStack() as stack:
            lines, raw = open_events(self.path, stack)
            self.sides = [Side(name, policy, file, Engine(policy)) for name, file, policy in self.policies]
            if self.options.outputs is not None:
                for side in self.sides:
                    many = len(self.sides) > 1
                    side.files = OutputFiles(self.options.outputs / side.name if many else self.options.outputs, stack)
            try:
                temp = tempfile.TemporaryDirectory(prefix="leadflow-replay-", dir=self.options.temp_dir)
                workdir = Path(stack.enter_context(temp))
            except OSError as error:
                raise ReplayError(f"cannot create a temporary directory for sorting: {error}") from None
            started = time.perf_counter()
            sorter = self.read(lines, raw, ExternalSort(self.options.sort_buffer, workdir))
            read_s = time.perf_counter() - started
            end = self.feed(sorter)
            replay_s = time.perf_counter() - read_s - started
            result = self.result(sorter, end, read_s, replay_s)
        if self.options.report_json is not None:
            try:
                self.options.report_json.write_bytes(orjson.dumps(result.document(), option=orjson.OPT_INDENT_2))
            except OSError as error:
                raise ReplayError(f"--report-json {self.options.report_json}: cannot write: {error.strerror}") from None
        return result

    def decode(self, number: int, key: bytes, value: bytes) -> LeadEvent | DeadLetter:
        return decode(
            key or None, value, topic=self.path.name, partition=0, offset=number, received_at=self.received_at
        )

    def decode_visits(self, number: int, key: bytes, value: bytes) -> SiteVisits | DeadLetter:
        return decode_visits(Origin(key or None, value, self.path.name, 0, number, self.received_at))

    def decode_line(self, number: int, key: bytes, value: bytes) -> LeadEvent | SiteVisits | DeadLetter:
        """A line as what it is: a site-visits report or a lead event."""
        return self.decode_visits(number, key, value) if is_visits(value) else self.decode(number, key, value)

    def add_visits(self, number: int, key: bytes, value: bytes) -> None:
        report = self.decode_visits(number, key, value)
        if isinstance(report, DeadLetter):
            self.dead_letter(number, report)
        else:
            self.visits.add(report)

    def dead_letter(self, number: int, letter: DeadLetter) -> None:
        self.malformed.add(number, letter)
        for side in self.sides:
            side.dead_letter(letter)

    def read(self, lines: Iterable[bytes], raw: IO[bytes], sorter: ExternalSort) -> ExternalSort:
        """Read every line and keep its sort key; the sorter spills sorted runs when one chunk is not enough."""
        for number, line in enumerate(_read_lines(lines, self.path), start=1):
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            self.lines += 1
            if self.progress is not None and self.lines % PROGRESS_EVERY == 0:
                self.progress.reading(raw.tell(), self.lines)
            at, key = sort_key(value)
            if at is None:
                # No occurred_at the sort can read: decode now, as what the line is (the schema has the last word).
                decoded = self.decode_line(number, key, value)
                if isinstance(decoded, DeadLetter):
                    self.dead_letter(number, decoded)
                    continue
                at = _micros(decoded.occurred_at)
            try:
                sorter.add((at, number, key, value))
            except OSError as error:
                raise ReplayError(f"cannot write sorted runs to {sorter.workdir}: {error}") from None
        if self.progress is not None:
            self.progress.reading(raw.tell(), self.lines)
        return sorter

    def feed(self, sorter: ExternalSort) -> datetime | None:
        """The sorted stream through every engine, then each engine's timers up to the end; returns --until."""
        total = sorter.count
        with YoungCollections() as collections:
            for done, (_, number, key, value) in enumerate(sorter.merged(), start=1):
                collections.after(done)
                if self.progress is not None and done % PROGRESS_EVERY == 0:
                    self.progress.replaying(done, total)
                if is_visits(value):
                    self.add_visits(number, key, value)
                    continue
                event = self.decode(number, key, value)
                if isinstance(event, DeadLetter):
                    self.dead_letter(number, event)
                    continue
                self.events += 1
                self.first = self.first or event.occurred_at
                self.last = event.occurred_at
                for side in self.sides:
                    side.feed(event, Origin(key or None, value, self.path.name, 0, number, self.received_at))
        if self.progress is not None:
            self.progress.replaying(total, total)
        end = datetime.now(UTC) if self.until == "now" else self.until
        the_end = Origin(None, None, self.path.name, 0, 0, self.received_at)  # no line: the timers after the last one
        for side in self.sides:
            side.finish(end, the_end)
        return end

    def result(self, sorter: ExternalSort, end: datetime | None, read_s: float, replay_s: float) -> ReplayResult:
        """The funnel report of each engine's records as of the replay clock, with its replay block."""
        started = time.perf_counter()
        clock = self.sides[0].engine.clock or end or self.received_at
        result = ReplayResult(
            file=self.path,
            lines=self.lines,
            events=self.events,
            malformed=self.malformed,
            runs=len(sorter.runs),
            sort_buffer=self.options.sort_buffer,
            first_event_at=self.first,
            last_event_at=self.last,
            clock=clock,
            sides=self.sides,
            reports=[],
            read_s=read_s,
            replay_s=replay_s,
            report_s=0.0,
            visits=self.visits,
        )
        for side in self.sides:
            summaries = list(summaries_of(side.engine.leads()))
            report = funnel_report(summaries, side.policy, now=clock)
            result.reports.append({**report, "replay": replay_block(result, side, summaries)})
        result.report_s = time.perf_counter() - started
        return result


def _read_lines(lines: Iterable[bytes], path: Path) -> Iterator[bytes]:
    """The file's lines; a read error (a truncated or corrupt gzip, an I/O error) stops the replay."""
    try:
        yield from lines
    except (OSError, EOFError, zlib.error) as error:
        raise ReplayError(f"{path}: cannot read it as {_format_of(path)}: {error}") from None


def _format_of(path: Path) -> str:
    return "gzip" if path.suffix == ".gz" else "a JSONL file (or gzip)"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def replay_block(result: ReplayResult, side: Side, summaries: Sequence[LeadSummary]) -> dict[str, Any]:
    """What the replay adds to the funnel report: the input, what became of it, and figures of the ledgers."""
    engine = side.engine
    return {
        "file": str(result.file),
        "lines": result.lines,
        "events": result.events,
        "malformed": {
            "count": result.malformed.count,
            "by_reason": dict(sorted(result.malformed.reasons.items())),
            "examples": result.malformed.examples(),
        },
        "outcomes": dict(sorted(engine.inputs.items())),
        "decisions": dict(sorted(engine.outcomes.items())),  # with the engine's own timer and router events
        "unassigned": engine.unassigned,
        "defects": side.defects,
        "outputs": {topic: side.outputs.get(topic, 0) for topic in TOPICS},
        "policy": {
            "file": str(side.policy_file) if side.policy_file else None,
            "name": side.policy.name,
            "version": side.policy.version,
        },
        "first_event_at": _iso(result.first_event_at),
        "last_event_at": _iso(result.last_event_at),
        "clock": result.clock.isoformat(),
        "sort": {"buffer": result.sort_buffer, "runs_spilled": result.runs},
    }


# ---- what a person reads ------------------------------------------------------------------------------------


def summary_line(result: ReplayResult) -> str:
    """One line: events read, applied, refused, duplicates, malformed lines, leads, elapsed, events/s (the
    figures that depend on the policy once per policy with --compare)."""
    eps = result.events / result.elapsed_s if result.elapsed_s > 0 else 0.0
    timing = f"{result.elapsed_s:.1f} s, {eps:,.0f} events/s"
    read = f"replayed {result.file.name}: {result.events:,} events read"
    malformed = f"{result.malformed.count:,} malformed lines"
    per_side = []
    for side, report in zip(result.sides, result.reports, strict=True):
        inputs = side.engine.inputs
        applied = inputs["applied"] + inputs["reordered"] + inputs["late"]
        per_side.append(
            (
                f"{applied:,} applied, {inputs['refused']:,} refused, {inputs['duplicate']:,} duplicates",
                f"{report['leads']:,} leads",
            )
        )
    if len(per_side) == 1:
        (decided, leads), *_ = per_side
        return f"{read}, {decided}, {malformed}, {leads}, {timing}"
    sides = "; ".join(
        f"{_side_label(side)}: {decided}, {leads}"
        for side, (decided, leads) in zip(result.sides, per_side, strict=True)
    )
    return f"{read}, {malformed}; {sides}; {timing}"


def _side_label(side: Side) -> str:
    return f"{side.name.upper()} ({side.policy.name} v{side.policy.version})"


RowKind = Literal["count", "share", "seconds"]


@dataclass(frozen=True)
class Row:
    label: str
    kind: RowKind
    a: float | None
    b: float | None

    @property
    def difference(self) -> float | None:
        if self.kind == "seconds" and (self.a is None or self.b is None):
            return None
        return (self.b or 0) - (self.a or 0)

    def cells(self) -> tuple[str, str, str, str]:
        return self.label, _value(self.kind, self.a), _value(self.kind, self.b), _delta(self.kind, self.difference)


def _value(kind: RowKind, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "seconds":
        return f"{value / 3600:,.1f} h"
    return f"{value:,.0f}"


def _delta(kind: RowKind, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value * 100:+.1f} pp"
    if kind == "seconds":
        return f"{value / 3600:+,.1f} h"
    return f"{value:+,.0f}"


def _get(report: dict[str, Any], *path: str) -> float | None:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int | float) and not isinstance(node, bool) else None


def _keys(a: dict[str, Any], b: dict[str, Any], *path: str) -> list[str]:
    def at(report: dict[str, Any]) -> list[str]:
        node: Any = report
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return list(node) if isinstance(node, dict) else []

    return list(dict.fromkeys([*at(a), *at(b)]))


def comparison(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """The figures a what-if is about, A beside B: MQLs, acceptance, conversion, time to meet each SLA (e.g.
    first contact), compliance, breaches, escalations and reassignments per SLA, hand-offs per pool, rejections
    by reason, breaches by team and by pool."""

    def row(label: str, kind: RowKind, *path: str) -> Row:
        return Row(label, kind, _get(a, *path), _get(b, *path))

    rows = [
        row("MQLs (reached mql)", "count", "reached", "mql"),
        row("acceptance (mql->sal)", "share", "conversion", "mql->sal"),
    ]
    rows += [
        row(f"conversion {pair}", "share", "conversion", pair)
        for pair in _keys(a, b, "conversion")
        if pair != "mql->sal"
    ]
    rows.append(row("time to acceptance p50 (mql->sal)", "seconds", "durations_s", "mql->sal", "p50"))
    for sla in _keys(a, b, "sla"):
        rows += [
            row(f"{sla}: time to met p50", "seconds", "sla_time_to_met_s", sla, "p50"),
            row(f"{sla}: compliance", "share", "sla", sla, "compliance"),
            row(f"{sla}: breaches", "count", "sla", sla, "breached"),
            row(f"{sla}: escalations", "count", "sla", sla, "escalated"),
            row(f"{sla}: reassignments", "count", "sla", sla, "reassigned"),
        ]
    rows += [row(f"hand-offs, pool {pool}", "count", "handoffs", pool) for pool in _keys(a, b, "handoffs")]
    rows += [row(f"rejections: {reason}", "count", "rejections", reason) for reason in _keys(a, b, "rejections")]
    for group, label in (("by_team", "team"), ("by_pool", "pool")):
        for name in _keys(a, b, group):
            for sla in _keys(a, b, group, name, "sla"):
                breaches = row(f"breaches, {label} {name}: {sla}", "count", group, name, "sla", sla, "breached")
                if breaches.a or breaches.b:
                    rows.append(breaches)
    return rows


def comparison_table(result: ReplayResult) -> Table:
    a, b = result.sides
    table = Table(title=f"what-if: {result.file.name}", show_edge=False)
    table.add_column("figure", no_wrap=True)
    for side in (a, b):
        table.add_column(_side_label(side), justify="right")
    table.add_column("B - A", justify="right")
    for r in comparison(*result.reports):
        table.add_row(*r.cells())
    return table


def comparison_text(result: ReplayResult) -> str:
    a, b = result.sides
    rows = [("figure", _side_label(a), _side_label(b), "B - A"), *(r.cells() for r in comparison(*result.reports))]
    widths = [max(len(cells[i]) for cells in rows) for i in range(4)]
    return "\n".join(
        "  ".join(
            [cells[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))]
        )
        for cells in rows
    )


def report_summary(report: dict[str, Any]) -> list[str]:
    """A short human summary of a funnel report: stage counts, conversion, SLA compliance, overdue MQLs."""
    stages = ", ".join(f"{stage} {n:,}" for stage, n in report.get("stage_counts", {}).items())
    conversion = ", ".join(f"{pair} {share:.1%}" for pair, share in report.get("conversion", {}).items())
    lines = [f"leads: {report.get('leads', 0):,} (as of {report.get('as_of', '?')})", f"stages: {stages or '-'}"]
    lines.append(f"conversion: {conversion or '-'}")
    for name, figures in report.get("sla", {}).items():
        lines.append(
            f"SLA {name}: compliance {figures.get('compliance', 1.0):.1%}, met {figures.get('met', 0):,}, "
            f"breached {figures.get('breached', 0):,}, open {figures.get('open', 0):,} "
            f"({figures.get('overdue', 0):,} overdue)"
        )
    overdue = {
        owner: figures.get("overdue_mqls", 0)
        for owner, figures in report.get("by_owner", {}).items()
        if figures.get("overdue_mqls", 0)
    }
    if overdue:
        lines.append("overdue MQLs by owner: " + ", ".join(f"{owner} {n:,}" for owner, n in sorted(overdue.items())))
    else:
        lines.append("overdue MQLs by owner: none")
    return lines


# ---- the command ---------------------------------------------------------------------------------------------


def run_replay(options: ReplayOptions, *, console: Console | None = None, live: bool | None = None) -> int:
    """`leadflow replay`: the replay with a progress bar on a terminal, then its summary (and the what-if table);
    a one-line error and exit code 2 when it cannot run."""
    out = console or Console()
    err = Console(stderr=True)
    show_progress = err.is_terminal if live is None else live
    try:
        if show_progress:
            size = options.events.stat().st_size if options.events.is_file() else 0
            with RichProgress(err, size) as bar:
                result = replay(options, bar)
        else:
            result = replay(options)
    except ReplayError as error:
        for line in error.lines:
            print(f"leadflow replay: {line}", file=sys.stderr)
        return 2
    print(summary_line(result), file=out.file, flush=True)
    if len(result.sides) > 1:
        if out.is_terminal:
            out.print(comparison_table(result))
        else:
            print(comparison_text(result), file=out.file, flush=True)
    if options.report_json is not None:
        print(f"report written to {options.report_json}", file=out.file, flush=True)
    return 0
