"""`leadflow calibrate HISTORY.jsonl`: the MQL definition measured on the history, and a proposal to review.

The shell around core.calibration (metrics, evidence) and core.proposal (the fitted scoring):

1. replay the history with the policy, through `streams.cli.replay` (the same core, sort and intake as `leadflow
   replay`); while it runs, `SampleTracker` looks at each lead's state just before each of its events, and keeps
   the lead's scores at its scoring moment (first at or past `mql`, else its best fit + engagement) and the
   actions it did until then (core.calibration's module docstring);
2. measure the policy on all leads, on the older ones and on the newer ones (time-based split), and find the
   hand-raisers and disqualifiers on the older ones;
3. fit the proposal on the older leads and score it on the newer ones; write it as a policy YAML file (checked
   with the same validator as `leadflow policy check`) and its readable diff;
4. replay the history again under the proposed policy (the what-if of `replay --compare`: core.report's
   compare_reports and streams.cli.replay's comparison rows) for its effect on MQL volume, acceptance and
   conversion; the newer leads' MQLs under the proposal, replayed, against what they went on to do;
5. write the JSON report, the HTML page (streams.cli.calibration_page) and a short text summary.

Nothing is ever applied: adopting the proposal is a person's decision (README "Calibrating the MQL definition").
"""

from __future__ import annotations

import difflib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from leadflow.core.calibration import (
    BOOTSTRAP_RESAMPLES,
    RULE_REASONS,
    LeadSample,
    Measurement,
    Target,
    measure,
    rule_figures,
)
from leadflow.core.engine import Engine
from leadflow.core.lifecycle import funnel_position
from leadflow.core.proposal import Proposal, ProposalError, propose
from leadflow.core.report import compare_reports
from leadflow.schemas.events import Activity, LeadEvent
from leadflow.schemas.outputs import DeadLetter
from leadflow.schemas.policy import Policy, PolicyError, parse_policy
from leadflow.schemas.state import LeadState
from leadflow.streams.cli.output_paths import first_unwritable
from leadflow.streams.cli.replay import (
    ExternalSort,
    Replay,
    ReplayError,
    ReplayOptions,
    ReplayResult,
    comparison,
    read_policy,
)

PROG = "leadflow calibrate"
EFFECT_FIGURES = ("MQLs", "acceptance", "conversion", "rejections")  # streams.cli.replay.comparison's row labels


class CalibrationError(Exception):
    """What stops a calibration before it measures anything; one line per problem, exit code 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


# ---- watching the replay ---------------------------------------------------------------------------------------


@dataclass
class Track:
    """One lead while the replay runs."""

    best: LeadState | None = None  # the state with the highest fit + engagement before the scoring moment
    best_score: int = -1
    frozen: LeadState | None = None  # the state at the scoring moment, once reached
    done: bool = False
    actions: list[tuple[str, datetime]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class SampleTracker:
    """Keeps, per lead, its scores at its scoring moment and its actions until then (see the module docstring)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.mql_rank = policy.stage_rank("mql")
        self.tracks: dict[str, Track] = {}

    def observe(self, track: Track, state: LeadState) -> None:
        if track.done:
            return
        if funnel_position(state, self.policy) >= self.mql_rank:
            track.done = True
            # At or past mql now: this state is the scoring moment, unless the lead already left the funnel again
            # (a recycle between two of its events), when the best state before it stands.
            track.frozen = state if self.policy.stage_rank(state.stage) >= self.mql_rank else track.best
            return
        score = state.fit + state.engagement_score
        if score > track.best_score:
            track.best, track.best_score = state, score

    def before(self, event: LeadEvent, engine: Engine) -> None:
        """Called with each input event just before the engine applies it."""
        track = self.tracks.get(event.lead_id)
        if track is None:
            track = self.tracks[event.lead_id] = Track()
        record = engine.records.get(event.lead_id)
        if record is not None and record.state is not None:
            self.observe(track, record.state)
        if not track.done and isinstance(event, Activity) and event.event_id not in track.seen:
            track.seen.add(event.event_id)
            track.actions.append((event.data.action, event.occurred_at))

    def samples(self, engine: Engine, target: Target) -> list[LeadSample]:
        """One sample per lead (merged and erased leads left out), labelled with the target it reached."""
        target_rank = self.policy.stage_rank(target)
        found = []
        for record in engine.leads():
            state = record.state
            if state is None or state.merged_into is not None:
                continue
            track = self.tracks.setdefault(state.lead_id, Track())
            self.observe(track, state)
            moment = track.frozen or track.best or state
            scored_at = moment.engagement_as_of  # its engagement's time: a later fact (deal.won) adds no decay
            converted = any(self.policy.stage_rank(entry.stage) >= target_rank for entry in state.history)
            found.append(
                LeadSample(
                    lead_id=state.lead_id,
                    created_at=state.created_at,
                    scored_at=scored_at,
                    fit=moment.fit,
                    engagement=moment.engagement_score,
                    converted=converted,
                    mql=any(e.stage == "mql" and e.reason in RULE_REASONS for e in state.history),
                    profile=moment.profile,
                    actions=tuple(
                        (action, (scored_at - at).total_seconds()) for action, at in track.actions if at <= scored_at
                    ),
                    rejections=tuple(
                        e.reason.partition(":")[2] for e in state.history if e.reason.startswith("rejected:")
                    ),
                )
            )
        return found


class ObservedReplay(Replay):
    """`streams.cli.replay.Replay`, with the tracker shown every input event just before the first engine takes it."""

    def __init__(self, options: ReplayOptions, tracker: SampleTracker) -> None:
        super().__init__(options, None)
        self.tracker = tracker
        self.observing = False

    def feed(self, sorter: ExternalSort) -> datetime | None:
        self.observing = True  # lines decoded while reading (no usable occurred_at) are decoded again here
        try:
            return super().feed(sorter)
        finally:
            self.observing = False

    def decode(self, number: int, key: bytes, value: bytes) -> LeadEvent | DeadLetter:
        event = super().decode(number, key, value)
        if self.observing and not isinstance(event, DeadLetter):
            self.tracker.before(event, self.sides[0].engine)
        return event


def replay_samples(
    history: Path, policy_file: Path | None, policy: Policy, target: Target
) -> tuple[ReplayResult, list[LeadSample]]:
    tracker = SampleTracker(policy)
    result = ObservedReplay(ReplayOptions(events=history, policy=policy_file), tracker).run()
    return result, tracker.samples(result.sides[0].engine, target)


# ---- the calibration -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrateOptions:
    history: Path
    policy: Path | None = None
    target: Target = "customer"
    report_json: Path | None = None
    html: Path | None = None
    lang: str = "en"
    proposal: Path | None = None
    train_share: float = 0.7
    min_support: int = 30
    resamples: int = BOOTSTRAP_RESAMPLES


@dataclass
class Calibration:
    options: CalibrateOptions
    policy: Policy
    replay: ReplayResult
    samples: list[LeadSample]
    measurement: Measurement
    proposal: Proposal | None = None
    proposal_error: str | None = None
    proposal_yaml: str | None = None
    proposal_diff: str | None = None
    what_if: list[dict[str, Any]] = field(default_factory=list)
    what_if_difference: dict[str, Any] = field(default_factory=dict)
    replayed_test: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """What --report-json holds."""
        m = self.measurement
        split = {
            "train_share": self.options.train_share,
            "train": {"leads": m.train.leads, **_span(m.train_leads)},
            "test": {"leads": m.test.leads, **_span(m.test_leads)},
        }
        return {
            "history": {
                "file": str(self.options.history),
                "events": self.replay.events,
                "malformed": self.replay.malformed.count,
                "leads": len(self.samples),
                "first_event_at": _iso(self.replay.first_event_at),
                "last_event_at": _iso(self.replay.last_event_at),
            },
            "policy": {
                "file": str(self.options.policy) if self.options.policy else None,
                "name": self.policy.name,
                "version": self.policy.version,
                "fingerprint": self.policy.fingerprint,
            },
            "target": m.target,
            "method": {
                **METHOD,
                "auc_ci": f"95% percentile bootstrap, {self.options.resamples} resamples of leads, seed 0",
            },
            "split": split,
            "current": {"all": m.all.as_dict(), "train": m.train.as_dict(), "test": m.test.as_dict()},
            "hand_raisers": [e.as_dict() for e in m.hand_raisers],
            "attributes": [e.as_dict() for e in m.attributes],
            "proposal": None
            if self.proposal is None
            else {
                **self.proposal.as_dict(),
                "file": str(self.options.proposal) if self.options.proposal else None,
                "diff": self.proposal_diff,
            },
            "proposal_error": self.proposal_error,
            "what_if": {
                "rows": self.what_if,
                "difference": self.what_if_difference,
                "test_leads_replayed": self.replayed_test,
            },
        }


METHOD = {
    "split": "time-based: leads ordered by creation; the older share fits the proposal and finds the evidence, "
    "the newer share tests it",
    "scoring_moment": "first entry at or past mql, else the lead's highest fit + engagement",
    "auc_ci": f"95% percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples of leads, seed 0",
    "proportion_ci": "95% Wilson score interval",
    "thresholds": "the (min_fit, min_engagement >= 1) pair with the best F1 on the older leads",
}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _span(span: tuple[datetime, datetime] | None) -> dict[str, str | None]:
    return {"created_from": _iso(span[0]) if span else None, "created_to": _iso(span[1]) if span else None}


def policy_document(path: Path | None) -> dict[str, Any]:
    """The policy file as YAML data (the shipped default without a path); it was validated before."""
    if path is None:
        text = resources.files("leadflow.schemas").joinpath("default_policy.yaml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def proposal_text(policy: Policy, proposal: Proposal, history: Path) -> str:
    header = [
        f"# Proposed by `leadflow calibrate {history.name}` from {policy.name} v{policy.version}: review it, check it",
        "# with `leadflow policy check`, and adopt it by hand (README: Calibrating the MQL definition).",
        "# What changes, with its evidence:",
        *(f"#   {line}" for line in proposal.changes() or ["(nothing)"]),
    ]
    return "\n".join(header) + "\n" + to_yaml(proposal.document)


def unified_diff(before: dict[str, Any], after: dict[str, Any], name: str) -> str:
    old = to_yaml({k: before.get(k) for k in ("version", "name", "scoring", "mql")}).splitlines(keepends=True)
    new = to_yaml({k: after.get(k) for k in ("version", "name", "scoring", "mql")}).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile="current policy", tofile=name))


def check_options(options: CalibrateOptions) -> Policy:
    if not options.history.exists():
        raise CalibrationError(
            f"{options.history}: no such file: name a JSONL file of lead events (one envelope a line)"
        )
    if not 0 < options.train_share < 1:
        raise CalibrationError(f"--train-share {options.train_share}: must be between 0 and 1, e.g. 0.7")
    if options.html is not None and options.lang not in ("en", "pt-BR", "es"):
        raise CalibrationError(f"--lang {options.lang}: the page is written in en, pt-BR, es")
    outputs = [("--report-json", options.report_json), ("--html", options.html), ("--proposal", options.proposal)]
    if options.proposal is not None:
        outputs.append(("--proposal", options.proposal.with_suffix(".diff")))  # written beside it
    problem = first_unwritable(outputs, reads=(options.history, *([options.policy] if options.policy else [])))
    if problem is not None:
        raise CalibrationError(problem)
    try:
        return read_policy(options.policy, "--policy")
    except ReplayError as error:
        raise CalibrationError(*error.lines) from None


def calibrate(options: CalibrateOptions) -> Calibration:
    """The whole calibration (see the module docstring); raises CalibrationError when it cannot start."""
    policy = check_options(options)
    try:
        result, samples = replay_samples(options.history, options.policy, policy, options.target)
    except ReplayError as error:
        raise CalibrationError(*error.lines) from None
    if not samples:
        raise CalibrationError(
            f"{options.history}: no leads in the history ({result.events:,} events, {result.malformed.count:,} "
            "malformed lines): it needs lead.created events and what became of the leads"
        )
    actions = sorted({r.action for r in policy.scoring.engagement} | {a for s in samples for a, _ in s.actions})
    measurement, train, test = measure(
        samples,
        actions,
        options.target,
        train_share=options.train_share,
        min_support=options.min_support,
        resamples=options.resamples,
    )
    calibration = Calibration(options, policy, result, samples, measurement)
    try:
        proposal = propose(
            policy,
            policy_document(options.policy),
            train,
            test,
            hand_raiser_evidence=measurement.hand_raisers,
            attribute_evidence=measurement.attributes,
            min_support=options.min_support,
            resamples=options.resamples,
        )
    except ProposalError as error:
        calibration.proposal_error = str(error)
        return calibration
    calibration.proposal = proposal
    what_if(calibration, proposal, test)
    return calibration


def what_if(calibration: Calibration, proposal: Proposal, test: Sequence[LeadSample]) -> None:
    """Check the proposal (the policy validator), write it, and replay the history under it."""
    options = calibration.options
    text = proposal_text(calibration.policy, proposal, options.history)
    name = str(options.proposal) if options.proposal else "proposed policy"
    try:
        proposed = parse_policy(yaml.safe_load(text), name)
    except PolicyError as error:  # a defect: the proposal must always be a valid policy
        raise AssertionError(f"the proposed policy is not valid: {error}") from None
    calibration.proposal_yaml = text
    calibration.proposal_diff = unified_diff(policy_document(options.policy), proposal.document, name)
    with tempfile.TemporaryDirectory(prefix="leadflow-calibrate-") as temp:
        path = options.proposal or Path(temp) / "proposed.yaml"
        try:
            path.write_text(text, encoding="utf-8")
            if options.proposal is not None:
                path.with_suffix(".diff").write_text(calibration.proposal_diff, encoding="utf-8")
        except OSError as error:
            raise CalibrationError(f"--proposal {path}: cannot write: {error.strerror}") from None
        result, samples = replay_samples(options.history, path, proposed, options.target)
    report_a = calibration.replay.reports[0]
    report_b = result.reports[0]
    rows = comparison(report_a, report_b)
    # Volume, acceptance, conversion and rejections only: sales' answers in the history happened when they
    # happened, so under a policy that makes leads MQL at other moments the SLA clocks (time to met, breaches)
    # would measure the history's timing, not the proposal.
    calibration.what_if = [
        {"figure": r.label, "kind": r.kind, "current": r.a, "proposed": r.b, "difference": r.difference}
        for r in rows
        if r.label.startswith(EFFECT_FIGURES)
    ]
    calibration.what_if_difference = {
        key: value
        for key, value in compare_reports(report_a, report_b).items()
        if key in ("reached", "conversion", "rejections")
    }
    # Labels from the history under the current policy (what the leads went on to do), MQLs from the replay
    # under the proposal: a lead the proposal never made MQL counts as not predicted.
    replayed = {s.lead_id: s.mql for s in samples}
    calibration.replayed_test = {
        "current": rule_figures(test).as_dict(),
        "proposed": rule_figures(test, lambda s: replayed.get(s.lead_id, False)).as_dict(),
    }


# ---- what a person reads ---------------------------------------------------------------------------------------


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"


def _auc(figures: dict[str, Any]) -> str:
    value, ci = figures.get("auc"), figures.get("auc_ci95")
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")


def summary_lines(calibration: Calibration) -> list[str]:
    doc = calibration.document()
    current = doc["current"]
    rule = current["all"]["mql_rule"]
    lines = [
        f"calibrated {calibration.options.history.name}: {len(calibration.samples):,} leads, target {doc['target']}, "
        f"policy {calibration.policy.name} v{calibration.policy.version}; older {doc['split']['train']['leads']:,} "
        f"leads fit, newer {doc['split']['test']['leads']:,} test",
        "AUC (all leads, 95% CI): "
        + ", ".join(f"{name} {_auc(current['all']['scores'][name])}" for name in ("fit", "engagement", "combined")),
        f"MQL rule: precision {_pct(rule['precision']['value'])}, recall {_pct(rule['recall']['value'])}, "
        f"converters missed {_pct(rule['converters_missed']['value'])}, MQLs rejected "
        f"{_pct(rule['mqls_rejected']['value'])}",
    ]
    raisers = [e["name"] for e in doc["hand_raisers"] if e["verdict"] == "hand_raiser"]
    lines.append(f"hand-raisers: {', '.join(raisers) or 'none found'}")
    disqualifiers = [e["name"] for e in doc["attributes"] if e["verdict"] == "disqualifier"]
    lines.append(f"disqualifiers: {', '.join(disqualifiers) or 'none found'}")
    if calibration.proposal is None:
        lines.append(f"no proposal: {calibration.proposal_error}")
        return lines
    test = calibration.proposal.test
    lines.append(
        f"proposal on the newer leads: combined AUC {_auc({'auc': test.current_auc, 'auc_ci95': None})} -> "
        f"{_auc({'auc': test.proposed_auc, 'auc_ci95': test.proposed_ci95.as_dict() if test.proposed_ci95 else None})}"
    )
    lines += [f"  {line}" for line in calibration.proposal.changes()]
    replayed = calibration.replayed_test
    if replayed:
        a, b = replayed["current"], replayed["proposed"]
        lines.append(
            f"newer leads replayed: MQLs {a['mqls']:,} -> {b['mqls']:,}, precision {_pct(a['precision']['value'])} -> "
            f"{_pct(b['precision']['value'])}, recall {_pct(a['recall']['value'])} -> {_pct(b['recall']['value'])}"
        )
    for row in calibration.what_if[:2]:
        lines.append(f"what-if (whole history): {row['figure']}: {_value(row, 'current')} -> {_value(row, 'proposed')}")
    return lines


def _value(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if value is None:
        return "-"
    return f"{value:.1%}" if row["kind"] == "share" else f"{value:,.0f}"


def run_calibrate(options: CalibrateOptions) -> int:
    """`leadflow calibrate`: exit 0 done, 1 when no proposal could be fitted, 2 when it could not start."""
    try:
        calibration = calibrate(options)
        written = write_outputs(calibration)
    except CalibrationError as error:
        for line in error.lines:
            print(f"{PROG}: {line}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(calibration)))
    for path in written:
        print(f"written: {path}")
    if calibration.proposal is None:
        print(f"{PROG}: no proposal: {calibration.proposal_error}", file=sys.stderr)
        return 1
    return 0


def write_outputs(calibration: Calibration) -> list[Path]:
    options = calibration.options
    written = []
    if options.proposal is not None and calibration.proposal is not None:
        written += [options.proposal, options.proposal.with_suffix(".diff")]
    try:
        if options.report_json is not None:
            options.report_json.write_bytes(orjson.dumps(calibration.document(), option=orjson.OPT_INDENT_2))
            written.append(options.report_json)
        if options.html is not None:
            from leadflow.streams.cli.calibration_page import render_calibration

            options.html.write_text(render_calibration(calibration.document(), options.lang), encoding="utf-8")
            written.append(options.html)
    except OSError as error:
        raise CalibrationError(f"cannot write {error.filename}: {error.strerror}") from None
    return written


__all__ = ["CalibrateOptions", "Calibration", "calibrate", "run_calibrate"]
