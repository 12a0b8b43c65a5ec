"""Soak: one hour of simulated traffic through the worker's core path in one process, RSS sampled as it goes.

Run from the repository root (the module imports ``streams``)::

    .venv/bin/python -m benchmarks.soak --write-results        # 10,000 leads, then one hour at 30 events/s
    .venv/bin/python -m benchmarks.soak --leads 200 --rate 5 --seconds 600   # a quick look

What runs, per event, is what the lead agent runs, without Kafka and Faust: decode the record (core.intake: the
envelope, the schema, the internal-event proof), the whole worker in one process (core.engine: decide, SLA clocks
in event time, the router, hand-offs, the timer index), then every output into the live tally of ``leadflow run``
(core.funnel.FunnelTally).

Traffic, in two phases:

  warm-up  the lead set: ``--leads`` simulated journeys (streams.dev.simulator.journeys, seed 7) from creation to their
           end (weeks of event time), in event-time order;
  soak     ``--seconds`` of event time (default one hour) at ``--rate`` events/s after the last warm-up event, only
           for the leads that exist: activities (page views, e-mail, downloads, pricing, now and then a demo
           request), profile updates and contact attempts; mixed in, events for leads that do not exist (a
           mis-keyed producer, hostile input: ``--unknown`` of the events, a new lead id each) and redeliveries of
           recent records (``--redeliver``). The lead set is stable: every lead the soak touches exists.
           A lead's events come in sessions (1-5 in a row), the lead set visited in shuffled rounds, so a lead comes
           back after ~18 min of event time (default sizes), past its lateness window (10 min). ``--uniform`` picks
           a lead at random for every event instead: most leads then always have an event inside their window,
           which the core settles only once 64 events are pending (core.decision.settle, MAX_PENDING), so their
           records grow to that bound first.

The warm-up is generated once into ``--cache-dir`` and streamed from there, so the input is not in the heap.

RSS (VmRSS of /proc/self/status) and the Python heap (sys.getallocatedblocks) are sampled every
``--sample-every`` events. The soak phase is split in halves; each half's slope is a least-squares fit of RSS
against events (MB per 100,000 events). Flat memory: the second half's slope near zero.

Cases, each in a fresh interpreter (one case's heap must not hide the other's), over the same events:

  a  baseline: the growth this benchmark guards against, put back: records of leads that do not exist kept for
     ever (the engine ignores `Decision.forget`), and the tally remembering every output id
  b  leadflow as it is: such records forgotten when their lateness window closes (core.decision.forget_at), the
     tally remembering the newest core.funnel.MAX_SEEN_IDS output ids
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.machine import machine_info
from benchmarks.results import RESULTS_MD, append_section

SECTION_TITLE = "soak"
SEED = 7
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
ACTIONS = ("page_view", "email_open", "email_click", "content_download", "pricing_view", "demo_request")
ACTION_WEIGHTS = (50, 20, 10, 8, 6, 1)
CHANNELS = ("phone", "email", "linkedin")
OUTCOMES = ("connected", "no_answer", "voicemail", "replied")
TITLES = ("Marketing Manager", "Head of Sales", "VP Marketing", "Analyst", "CEO")


@dataclass
class Soak:
    leads: int = 10_000
    seconds: float = 3_600.0
    rate: float = 30.0  # ~2.6M events a day
    unknown: float = 0.05
    redeliver: float = 0.02
    sample_every: int = 0  # 0: about 100 samples over the run
    uniform: bool = False  # a random lead per event instead of sessions
    cache_dir: Path = Path(tempfile.gettempdir()) / "leadflow-bench-soak"

    @property
    def variant(self) -> str:
        return "uniform" if self.uniform else "sessions"

    @property
    def soak_events(self) -> int:
        return round(self.seconds * self.rate)


# -- traffic -----------------------------------------------------------------------------------------------------


def warm_up_file(soak: Soak) -> Path:
    """The warm-up's events, one JSON envelope a line, generated once (the cache is keyed by seed and leads)."""
    from leadflow.streams.dev.simulator import journeys

    soak.cache_dir.mkdir(parents=True, exist_ok=True)
    path = soak.cache_dir / f"warm-seed{SEED}-{soak.leads}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            for event in journeys(SEED, soak.leads, START, mean_gap_s=2.0, id_prefix="soak"):
                out.write(orjson.dumps(event) + b"\n")
        partial.rename(path)
    return path


def warm_up(path: Path) -> Iterator[tuple[bytes, bytes]]:
    with path.open("rb") as lines:
        for line in lines:
            value = line.rstrip(b"\n")
            yield str(orjson.loads(value)["lead_id"]).encode(), value


def warm_up_summary(path: Path) -> tuple[int, list[str], dt.datetime]:
    """Events, lead ids and the last event time of the warm-up file."""
    events, leads, last = 0, set(), ""
    for key, value in warm_up(path):
        events += 1
        leads.add(key.decode())
        last = max(last, orjson.loads(value)["occurred_at"])
    return events, sorted(leads), dt.datetime.fromisoformat(last)


def soak_traffic(soak: Soak, lead_ids: list[str], after: dt.datetime) -> Iterator[tuple[bytes, bytes]]:
    """The soak phase's records (key = lead_id, JSON envelope), deterministic for the same arguments."""
    rng = random.Random(f"{SEED}:soak")
    recent: deque[tuple[bytes, bytes]] = deque(maxlen=1_000)
    rounds: list[str] = []
    lead, session = "", 0
    start = after + dt.timedelta(minutes=1)
    for i in range(soak.soak_events):
        roll = rng.random()
        if recent and roll < soak.redeliver:
            yield recent[rng.randrange(len(recent))]
            continue
        at = (start + dt.timedelta(seconds=i / soak.rate)).isoformat()
        envelope: dict[str, Any] = {"event_id": f"soak-{i}", "occurred_at": at, "source": "soak"}
        if roll < soak.redeliver + soak.unknown:
            envelope |= {"lead_id": f"nobody-{i}", "type": "activity", "data": {"action": "page_view"}}
        else:
            if soak.uniform:
                lead = rng.choice(lead_ids)
            elif session > 0:
                session -= 1
            else:
                if not rounds:
                    rounds = list(lead_ids)
                    rng.shuffle(rounds)
                lead, session = rounds.pop(), rng.randint(0, 4)
            kind = rng.random()
            if kind < 0.85:
                action = rng.choices(ACTIONS, ACTION_WEIGHTS)[0]
                data: dict[str, Any] = {"action": action}
                if action in ("email_open", "email_click"):
                    data["campaign"] = "newsletter-weekly"
                envelope |= {"lead_id": lead, "type": "activity", "data": data}
            elif kind < 0.93:
                envelope |= {"lead_id": lead, "type": "lead.updated", "data": {"job_title": rng.choice(TITLES)}}
            else:
                data = {"channel": rng.choice(CHANNELS), "outcome": rng.choice(OUTCOMES)}
                envelope |= {"lead_id": lead, "type": "contact.attempted", "data": data,
                             "actor": {"team": "sales", "user_id": "rep-01"}}  # fmt: skip
        record = (str(envelope["lead_id"]).encode(), orjson.dumps(envelope))
        recent.append(record)
        yield record


# -- one case, in its own interpreter ------------------------------------------------------------------------------


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: the peak instead


def run_case(case: str, soak: Soak) -> dict[str, Any]:
    """Feed warm-up then soak through decode, the engine and the tally; sample memory every N events."""
    from leadflow.core.decision import Decision
    from leadflow.core.engine import Engine
    from leadflow.core.funnel import FunnelTally
    from leadflow.core.intake import decode
    from leadflow.schemas.events import LeadEvent
    from leadflow.schemas.outputs import DeadLetter
    from leadflow.schemas.policy import load_policy

    class Unbounded(Engine):
        """The baseline: a lead that does not exist keeps its record for ever (as before core.decision.forget_at)."""

        def decide(self, event: LeadEvent) -> Decision:
            kept = self.records.get(event.lead_id)
            decision = super().decide(event)
            if decision.forget and kept is not None:
                self.records[event.lead_id] = kept
            return decision

    policy = load_policy(None)
    engine = Unbounded(policy) if case == "a" else Engine(policy)
    tally = FunnelTally(stages=policy.all_stages, funnel=policy.lifecycle.stages)
    if case == "a":
        tally.max_seen_ids = sys.maxsize

    path = warm_up_file(soak)
    warm_events, lead_ids, last = warm_up_summary(path)
    total = warm_events + soak.soak_events
    every = soak.sample_every or max(1, total // 100)
    samples: list[tuple[int, str, int, int, int, int]] = []
    received_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    done = 0
    phases: dict[str, float] = {}

    def records() -> Iterator[tuple[str, bytes, bytes]]:
        for key, value in warm_up(path):
            yield "warm-up", key, value
        for key, value in soak_traffic(soak, lead_ids, last):
            yield "soak", key, value

    samples.append((0, "start", rss_kb(), sys.getallocatedblocks(), 0, 0))
    phase = "warm-up"
    for phase_now, key, value in records():
        if phase_now != phase:
            phases[phase] = time.perf_counter() - started
            samples.append((done, phase, rss_kb(), sys.getallocatedblocks(), len(engine.records), len(tally.seen_ids)))
            phase = phase_now
        event = decode(key, value, topic="leads.events", partition=0, offset=done, received_at=received_at)
        if isinstance(event, DeadLetter):
            tally.add(event)
        else:
            seen_at = (event.occurred_at - last).total_seconds()
            for output in engine.feed(event):
                tally.add(output, seen_at=seen_at)
        done += 1
        if done % every == 0:
            samples.append((done, phase, rss_kb(), sys.getallocatedblocks(), len(engine.records), len(tally.seen_ids)))
    phases[phase] = time.perf_counter() - started
    samples.append((done, "end", rss_kb(), sys.getallocatedblocks(), len(engine.records), len(tally.seen_ids)))
    return {
        "case": case,
        "events": done,
        "warm_events": warm_events,
        "leads": len(lead_ids),
        "seconds": time.perf_counter() - started,
        "warm_s": phases.get("warm-up", 0.0),
        "samples": samples,
        "records": len(engine.records),
        "seen_ids": len(tally.seen_ids),
        "outcomes": dict(engine.inputs),
    }


# -- figures -------------------------------------------------------------------------------------------------------


def slope_mb_per_100k(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (kB) against events, as MB per 100,000 events."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 100_000 / 1024


@dataclass
class Figures:
    case: str
    events: int
    seconds: float
    rss_start_mb: float
    rss_warm_mb: float
    rss_mid_mb: float
    rss_end_mb: float
    first_half: float
    second_half: float
    records: int
    seen_ids: int
    notes: list[str] = field(default_factory=list)

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def figures(result: dict[str, Any]) -> Figures:
    samples = result["samples"]
    warm = result["warm_events"]
    soak = [(done, rss) for done, phase, rss, *_ in samples if phase in ("soak", "end") and done > warm]
    soak = [(warm, next(rss for done, phase, rss, *_ in samples if phase == "warm-up" and done == warm)), *soak]
    middle = warm + (result["events"] - warm) / 2
    first = [(x, y) for x, y in soak if x <= middle]
    second = [(x, y) for x, y in soak if x >= middle]
    mid_rss = min(soak, key=lambda p: abs(p[0] - middle))[1]
    return Figures(
        case=result["case"],
        events=result["events"],
        seconds=result["seconds"],
        rss_start_mb=samples[0][2] / 1024,
        rss_warm_mb=soak[0][1] / 1024,
        rss_mid_mb=mid_rss / 1024,
        rss_end_mb=samples[-1][2] / 1024,
        first_half=slope_mb_per_100k(first),
        second_half=slope_mb_per_100k(second),
        records=result["records"],
        seen_ids=result["seen_ids"],
    )


VARIANTS = {
    "sessions": "a lead's events in sessions of 1-5, the lead set visited in shuffled rounds (a lead comes back after "
    "its lateness window)",
    "uniform": "a random lead for every event (most leads always have an event inside their lateness window)",
}

LABELS = {
    "a": "baseline: unknown leads kept, tally unbounded",
    "b": "leadflow: unknown leads forgotten, tally bounded",
}


def format_table(rows: list[Figures]) -> str:
    lines = [
        "| case | what | events | events/s | RSS start MB | after warm-up | mid-soak | end | slope 1st half "
        "| slope 2nd half | records at end | tally ids at end |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {LABELS[r.case]} | {r.events:,} | {r.eps:,.0f} | {r.rss_start_mb:,.1f} "
            f"| {r.rss_warm_mb:,.1f} | {r.rss_mid_mb:,.1f} | {r.rss_end_mb:,.1f} | {r.first_half:+.2f} "
            f"| {r.second_half:+.2f} | {r.records:,} | {r.seen_ids:,} |"
        )
    return "\n".join(lines)


def run_child(case: str, soak: Soak) -> dict[str, Any]:
    """One case in a fresh interpreter; its result comes back as JSON on stdout."""
    command = [
        sys.executable, "-m", "benchmarks.soak", "--child", case, "--leads", str(soak.leads),
        "--seconds", str(soak.seconds), "--rate", str(soak.rate), "--unknown", str(soak.unknown),
        "--redeliver", str(soak.redeliver), "--sample-every", str(soak.sample_every),
        "--cache-dir", str(soak.cache_dir),
        *(["--uniform"] if soak.uniform else []),
    ]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, cwd=root, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def results_section(soak: Soak, rows: list[Figures], results: list[dict[str, Any]], load: str, note: str) -> str:
    info = machine_info()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    a, b = rows
    warm_events = results[0]["warm_events"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(results[1]["outcomes"].items()))
    return (
        f"## {now}: {title(soak)}\n\n"
        f"Machine: `{info['arch']}`, {info['cpu']} ({info['cpus']} CPUs); Python {info['python']}. Load average "
        f"(1 min) {load}.\n"
        f"Traffic (`benchmarks/soak.py`): warm-up {warm_events:,} events of {soak.leads:,} simulated journeys "
        f"(streams.dev.simulator.journeys, seed {SEED}), then {soak.soak_events:,} events over {soak.seconds:g} s of "
        f"event time for the existing leads only, {soak.unknown:.0%} of them for leads that do not exist (a new id "
        f"each) and {soak.redeliver:.0%} redeliveries; {VARIANTS[soak.variant]}; decode (core.intake) + core.engine "
        f"+ the live tally "
        f"(core.funnel.FunnelTally), each case in a fresh interpreter. Slopes: least squares of VmRSS against "
        f"events over each half of the soak phase, MB per 100,000 events. Inputs of case (b): {outcomes}.\n"
        f"{note}\n" + format_table(rows) + "\n\n"
        f"RSS growth over the soak phase: (a) {a.rss_end_mb - a.rss_warm_mb:+,.1f} MB, (b) "
        f"{b.rss_end_mb - b.rss_warm_mb:+,.1f} MB; second-half slope (b) / (a): "
        f"{(b.second_half / a.second_half) if a.second_half else float('nan'):.2f}.\n"
    )


def title(soak: Soak) -> str:
    hours = f"{soak.seconds / 3600:g} hour" + ("" if soak.seconds == 3600 else "s")
    return f"{SECTION_TITLE} ({soak.variant}), {soak.leads:,} leads, {hours} at {soak.rate:g} events/s, one process"


def write_results(section: str, soak: Soak) -> None:
    """Append the section to RESULTS.md, replacing an earlier soak section of the same day and sizes."""
    append_section(section, re.escape(title(soak)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=Soak.leads, help="simulated journeys of the warm-up")
    parser.add_argument("--seconds", type=float, default=Soak.seconds, help="event time of the soak phase")
    parser.add_argument("--rate", type=float, default=Soak.rate, help="events per second of event time")
    parser.add_argument("--unknown", type=float, default=Soak.unknown, help="share of events for unknown leads")
    parser.add_argument("--redeliver", type=float, default=Soak.redeliver, help="share of redelivered records")
    parser.add_argument("--sample-every", type=int, default=0, help="events between samples (0: ~100 samples)")
    parser.add_argument("--uniform", action="store_true", help="a random lead per event instead of sessions")
    parser.add_argument("--cache-dir", type=Path, default=Soak.cache_dir, help="where the warm-up file is kept")
    parser.add_argument("--cases", default="ab", help="which cases to run (default: ab)")
    parser.add_argument("--write-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="a sentence to add to the RESULTS.md section")
    parser.add_argument("--child", choices=("a", "b"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.leads < 1 or args.seconds <= 0 or args.rate <= 0 or not 0 <= args.unknown + args.redeliver <= 1:
        parser.error("--leads, --seconds and --rate must be positive; --unknown + --redeliver between 0 and 1")
    sizes = (args.leads, args.seconds, args.rate, args.unknown, args.redeliver, args.sample_every)
    soak = Soak(*sizes, uniform=args.uniform, cache_dir=args.cache_dir)
    if args.child:
        print(json.dumps(run_case(args.child, soak)))
        return 0

    warm_up_file(soak)  # generated here, once: a child that generated it would start with the journeys in its heap
    load_before = os.getloadavg()[0]
    results = []
    for case in args.cases:
        print(f"case {case} ({LABELS[case]}) ...", flush=True)
        results.append(run_child(case, soak))
        row = figures(results[-1])
        print(f"  {row.events:,} events in {row.seconds:.1f} s; RSS {row.rss_warm_mb:,.1f} -> {row.rss_end_mb:,.1f} MB")
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    rows = [figures(r) for r in results]
    print(format_table(rows))
    print(f"load average {load}")
    if args.write_results:
        if [r.case for r in rows] != ["a", "b"]:
            parser.error("--write-results needs both cases (--cases ab)")
        write_results(results_section(soak, rows, results, load, args.note), soak)
        print(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
