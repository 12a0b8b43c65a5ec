"""leadflow calibrate: the metrics against values computed independently, the proposal (a policy `leadflow policy
check` accepts, whose what-if is in the report), the CSV converter, the CLI, and the HTML page in a real headless
Chromium.

The history fixture is built here, lead by lead, from a rule the test knows: who is a good fit, how many pages each
lead viewed, who converts, who sales rejects. The expected scores, MQLs and conversions are derived from that rule
by hand, never by the code under test. `tests/data/crm_leads.csv` is a small synthetic export in the shape of the
public "Lead Scoring" (X Education) CSV, written for these tests: no real data."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from selenium.webdriver.support.ui import WebDriverWait
from test_review_page import Browser, headless_chromium

from leadflow.core.adapters.crm_csv import CsvOptions, action_code, column_key, columns, lead_events
from leadflow.core.calibration import (
    LeadSample,
    auc,
    bootstrap_auc,
    deciles,
    roc_curve,
    rule_figures,
    time_split,
    weighted_auc,
    wilson,
)
from leadflow.core.intake import decode
from leadflow.core.proposal import ProposedScores, best_thresholds
from leadflow.schemas.events import Profile
from leadflow.schemas.outputs import DeadLetter
from leadflow.schemas.policy import load_policy
from leadflow.streams.cli.calibrate_command import CalibrateOptions, calibrate
from leadflow.streams.cli.calibration_labels import LABELS
from leadflow.streams.cli.calibration_page import render_calibration
from leadflow.streams.cli.main import main

DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
N_LEADS = 240
HOSTILE = "<script>window.__xss = 1</script>"

# A small policy of its own, so the expected scores follow from it by hand: vp = 30 fit points, a page view 5
# engagement points (cap 50); MQL at fit >= 30 and engagement >= 10 (a vp with two page views).
POLICY = """
version: 3
name: calibration-test
lifecycle:
  stages: [subscriber, lead, mql, sal, sql, opportunity, customer, evangelist]
  side_stages: [nurturing, disqualified]
  transitions:
    subscriber: [lead, mql, disqualified]
    lead: [mql, nurturing, disqualified]
    mql: [sal, nurturing, disqualified]
    sal: [sql, opportunity, nurturing, disqualified]
    sql: [opportunity, nurturing, disqualified]
    opportunity: [customer, nurturing, disqualified]
    customer: [evangelist]
    evangelist: []
    nurturing: [mql, lead, disqualified]
    disqualified: [lead]
  advocacy_actions: [referral_given]
scoring:
  fit:
    - {attribute: seniority, equals: vp, points: 30}
    - {attribute: seniority, equals: intern, points: 5}
  engagement:
    - {action: page_view, points: 5, cap: 50}
    - {action: demo_request, points: 30, cap: 30}
  decay_half_life_days: 30
mql:
  min_fit: 30
  min_engagement: 10
  hand_raiser_actions: [demo_request]
rejection_reasons:
  - {code: student, description: "Student"}
  - {code: no_budget, description: "No budget"}
deals:
  pipeline:
    - {stage: proposal_sent, lifecycle_stage: opportunity, requires: []}
  lost_reasons: [price]
"""


# --- the history fixture -------------------------------------------------------------------------------------


def lead_plan(i: int) -> dict[str, Any]:
    """What lead i is and does, by construction (the test's ground truth)."""
    vp = i % 3 == 0
    views = i % 5  # 0..4 page views
    student = i % 7 == 0
    mql = vp and views >= 2  # fit 30 >= 30 and engagement 5 x views >= 10
    converted = (mql and not student) or (i % 11 == 0 and not student)
    return {
        "vp": vp,
        "views": views,
        "student": student,
        "mql": mql,
        "converted": converted,
        "fit": 30 if vp else 5,
        # Scored when it became MQL (its second page view), else with every view it made.
        "engagement": 10 if mql else 5 * views,
        "rejected": mql and student,
    }


def envelope(lead: str, n: int, kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{lead}-{n}",
        "lead_id": lead,
        "type": kind,
        "occurred_at": at.isoformat(),
        "source": "test",
        "data": data,
    }


def history_events() -> list[dict[str, Any]]:
    events = []
    for i in range(N_LEADS):
        plan = lead_plan(i)
        lead = f"lead-{i:04d}"
        created = START + timedelta(hours=i)
        profile = {
            "seniority": "vp" if plan["vp"] else "intern",
            "occupation": "Student" if plan["student"] else "Professional",
            "lead_source": HOSTILE if i == 1 else ("Google" if i % 2 else "Reference"),
        }
        events.append(envelope(lead, 0, "lead.created", created, profile))
        for v in range(plan["views"]):
            events.append(
                envelope(lead, 1 + v, "activity", created + timedelta(minutes=5 * (v + 1)), {"action": "page_view"})
            )
        if plan["rejected"]:
            events.append(envelope(lead, 10, "lead.rejected", created + timedelta(days=1), {"reason": "student"}))
        if plan["converted"]:
            events.append(envelope(lead, 11, "deal.won", created + timedelta(days=10), {"amount": 1000}))
    return events


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calibration")
    history = root / "history.jsonl"
    # Written out of order: the replay sorts by occurred_at.
    history.write_text("\n".join(json.dumps(e) for e in reversed(history_events())) + "\n", encoding="utf-8")
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    return {"root": root, "history": history, "policy": policy}


@pytest.fixture(scope="module")
def report(files: dict[str, Path]) -> dict[str, Any]:
    out = files["root"] / "report.json"
    code = main(
        [
            "calibrate",
            str(files["history"]),
            "--policy",
            str(files["policy"]),
            "--report-json",
            str(out),
            "--proposal",
            str(files["root"] / "proposed.yaml"),
            "--min-support",
            "5",
        ]
    )
    assert code == 0
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


# --- metrics against independent computations ----------------------------------------------------------------


def pairwise_auc(scores: list[float], labels: list[bool]) -> float:
    """The definition: over every (converter, non-converter) pair, 1 when the converter scores higher, 1/2 on a tie."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


@given(
    st.lists(st.tuples(st.integers(min_value=-5, max_value=5), st.booleans()), min_size=2, max_size=60).filter(
        lambda rows: 0 < sum(y for _, y in rows) < len(rows)
    )
)
@settings(max_examples=200, deadline=None)
def test_auc_is_the_pairwise_probability(rows: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in rows]
    labels = [y for _, y in rows]
    value = auc(scores, labels)
    assert value is not None
    assert value == pytest.approx(pairwise_auc(scores, labels))


def test_auc_of_one_class_is_undefined() -> None:
    assert auc([1.0, 2.0], [True, True]) is None
    assert auc([], []) is None


def test_wilson_interval_matches_the_textbook_values() -> None:
    # 8 of 10 and 0 of 20 at 95% (Newcombe 1998, method 3; Agresti & Coull 1998).
    eight = wilson(8, 10)
    assert eight is not None
    assert (round(eight.low, 4), round(eight.high, 4)) == (0.4902, 0.9433)
    none = wilson(0, 20)
    assert none is not None
    assert none.low == 0.0
    assert round(none.high, 4) == 0.1611
    assert wilson(0, 0) is None


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=500))
def test_wilson_interval_holds_the_observed_share(successes: int, extra: int) -> None:
    trials = successes + extra
    interval = wilson(successes, trials)
    assert interval is not None
    assert 0.0 <= interval.low <= successes / trials <= interval.high <= 1.0


def test_roc_curve_steps_through_each_distinct_score() -> None:
    points = roc_curve([3, 3, 2, 1], [True, False, True, False])
    assert [(p.fpr, p.tpr) for p in points] == [(0.0, 0.0), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]


def test_deciles_by_hand() -> None:
    # 20 leads with scores 19..0; the top 4 convert and lead 0 too: decile 1 = scores 19, 18 (both convert).
    scores = list(range(20))
    labels = [s >= 16 or s == 0 for s in scores]
    found = deciles(scores, labels)
    assert [d.leads for d in found] == [2] * 10
    assert [d.converters for d in found] == [2, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert found[0].lift == pytest.approx(1.0 / (5 / 20))
    assert found[1].cumulative_capture == pytest.approx(4 / 5)
    assert (found[0].high, found[0].low) == (19, 18)


def test_tied_scores_share_a_decile() -> None:
    found = deciles([5] * 7 + [1] * 3, [True] * 3 + [False] * 7)
    assert sum(d.leads for d in found) == 10
    assert all(d.low == d.high for d in found)
    assert len(found) == 2


def sample(i: int, *, mql: bool, converted: bool, rejections: tuple[str, ...] = ()) -> LeadSample:
    at = START + timedelta(hours=i)
    return LeadSample(
        lead_id=f"l{i}",
        created_at=at,
        scored_at=at,
        fit=0,
        engagement=0,
        converted=converted,
        mql=mql,
        profile=Profile(),
        rejections=rejections,
    )


def test_rule_figures_by_hand() -> None:
    samples = [
        sample(0, mql=True, converted=True),
        sample(1, mql=True, converted=False, rejections=("no_budget",)),
        sample(2, mql=True, converted=False, rejections=("student", "no_budget")),
        sample(3, mql=False, converted=True),
        sample(4, mql=False, converted=False),
    ]
    figures = rule_figures(samples)
    assert (figures.precision.part, figures.precision.whole) == (1, 3)
    assert (figures.recall.part, figures.recall.whole) == (1, 2)
    assert figures.missed.value == 0.5
    assert figures.rejected.value == pytest.approx(2 / 3)
    assert dict(figures.rejections) == {"no_budget": 1, "student": 1}


def test_time_split_fits_on_the_older_leads() -> None:
    samples = [sample(i, mql=False, converted=False) for i in (5, 1, 4, 0, 3, 2, 9, 8, 7, 6)]
    older, newer = time_split(samples, 0.7)
    assert [s.lead_id for s in older] == [f"l{i}" for i in range(7)]
    assert [s.lead_id for s in newer] == ["l7", "l8", "l9"]


# --- the calibration of the fixture history --------------------------------------------------------------------


def expected() -> list[dict[str, Any]]:
    return [lead_plan(i) for i in range(N_LEADS)]


def test_the_report_counts_what_the_history_holds(report: dict[str, Any]) -> None:
    plans = expected()
    rule = report["current"]["all"]["mql_rule"]
    assert report["history"]["leads"] == N_LEADS
    assert rule["converters"] == sum(p["converted"] for p in plans)
    assert rule["mqls"] == sum(p["mql"] for p in plans)
    true_positives = sum(p["mql"] and p["converted"] for p in plans)
    assert rule["precision"]["part"] == true_positives
    assert rule["recall"]["value"] == pytest.approx(true_positives / sum(p["converted"] for p in plans))
    missed = sum(p["converted"] and not p["mql"] for p in plans)
    assert rule["converters_missed"]["part"] == missed
    rejected = sum(p["rejected"] for p in plans)
    assert rule["rejected_by_reason"] == {
        "student": {
            "value": rejected / rule["mqls"],
            "part": rejected,
            "whole": rule["mqls"],
            "ci95": rule["rejected_by_reason"]["student"]["ci95"],
        }
    }


@pytest.mark.parametrize("score", ["fit", "engagement", "combined"])
def test_the_report_auc_is_the_pairwise_auc_of_the_scores_by_hand(report: dict[str, Any], score: str) -> None:
    plans = expected()
    values = [float(p["fit"] + p["engagement"]) if score == "combined" else float(p[score]) for p in plans]
    labels = [p["converted"] for p in plans]
    figures = report["current"]["all"]["scores"][score]
    assert figures["auc"] == pytest.approx(pairwise_auc(values, labels), abs=1e-9)
    assert figures["auc_ci95"]["low"] <= figures["auc"] <= figures["auc_ci95"]["high"]


def test_the_split_tests_on_the_newest_leads(report: dict[str, Any]) -> None:
    split = report["split"]
    assert split["train"]["leads"] == round(N_LEADS * 0.7)
    assert split["test"]["leads"] == N_LEADS - round(N_LEADS * 0.7)
    assert split["train"]["created_to"] < split["test"]["created_from"]
    plans = expected()[round(N_LEADS * 0.7) :]
    test_rule = report["current"]["test"]["mql_rule"]
    assert test_rule["converters"] == sum(p["converted"] for p in plans)


def test_students_are_found_as_a_disqualifier(report: dict[str, Any]) -> None:
    found = {e["name"]: e for e in report["attributes"]}
    student = found["occupation=Student"]
    older = expected()[: round(N_LEADS * 0.7)]
    assert student["leads"] == sum(p["student"] for p in older)
    assert student["converters"] == 0
    assert student["verdict"] == "disqualifier"


def test_the_proposal_is_a_policy_that_policy_check_accepts(
    report: dict[str, Any], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = files["root"] / "proposed.yaml"
    capsys.readouterr()
    assert main(["policy", "check", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    proposed = load_policy(path)
    current = load_policy(files["policy"])
    assert proposed.version == current.version + 1
    assert proposed.rejection_reasons == current.rejection_reasons  # everything else kept as it was
    assert proposed.mql.min_fit == report["proposal"]["mql"]["after"]["min_fit"]
    # The students' disqualifier became a fit rule with negative points.
    rules = {(r.attribute, r.equals): r.points for r in proposed.scoring.fit}
    assert rules[("occupation", "Student")] < 0
    diff = path.with_suffix(".diff").read_text(encoding="utf-8")
    assert diff.startswith("--- current policy")
    assert "occupation" in diff


def test_the_what_if_replays_the_proposed_policy(report: dict[str, Any]) -> None:
    rows = {row["figure"]: row for row in report["what_if"]["rows"]}
    mqls = rows["MQLs (reached mql)"]
    assert mqls["current"] == sum(p["mql"] for p in expected())
    assert mqls["difference"] == mqls["proposed"] - mqls["current"]
    replayed = report["what_if"]["test_leads_replayed"]
    assert replayed["current"]["leads"] == report["split"]["test"]["leads"]
    # The proposal stops making students MQL: none of the newer leads' proposed MQLs is rejected.
    assert replayed["proposed"]["rejected_by_reason"] == {}
    assert replayed["proposed"]["precision"]["value"] >= replayed["current"]["precision"]["value"]


def test_a_missing_history_is_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("leadflow calibrate: ")
    assert "no such file" in err[0]


def test_a_history_of_one_class_reports_without_a_proposal(tmp_path: Path, files: dict[str, Path]) -> None:
    history = tmp_path / "none-converted.jsonl"
    events = [e for e in history_events() if e["type"] != "deal.won"]
    history.write_text("\n".join(json.dumps(e) for e in events), encoding="utf-8")
    options = CalibrateOptions(history=history, policy=files["policy"], resamples=0, min_support=5)
    calibration = calibrate(options)
    assert calibration.proposal is None
    assert calibration.proposal_error is not None
    assert "converters and non-converters" in calibration.proposal_error
    assert calibration.document()["current"]["all"]["scores"]["combined"]["auc"] is None


# --- the CSV converter ------------------------------------------------------------------------------------------


def test_headers_and_actions_become_codes() -> None:
    assert column_key("Total Time Spent on Website") == "total_time_spent_on_website"
    assert column_key("What is your current occupation") == "what_is_your_current_occupation"
    assert column_key("2nd touch") == "c_2nd_touch"
    assert action_code("Email Opened") == "email_open"
    assert action_code("Olark Chat Conversation") == "olark_chat_conversation"


def test_a_row_becomes_a_lead_with_its_views_last_activity_and_won_deal() -> None:
    headers = [
        "Prospect ID",
        "Converted",
        "TotalVisits",
        "Page Views Per Visit",
        "Last Activity",
        "Lead Origin",
        "Country",
    ]
    cols = columns(headers)
    row = dict(zip(headers, ["p-1", "1", "3", "2", "Email Opened", "API", "India"], strict=True))
    events = lead_events(row, 2, cols, CsvOptions())
    assert isinstance(events, list)
    created = events[0]
    assert created["type"] == "lead.created"
    assert created["occurred_at"] == "2026-01-01T02:00:00Z"  # start + 2 x one hour
    assert created["data"] == {"origin": "API", "country_name": "India"}
    assert [e["data"]["action"] for e in events[1:-1]] == ["page_view"] * 6 + ["email_open"]
    assert events[-1]["type"] == "deal.won"
    for number, event in enumerate(events):
        decoded = decode(b"p-1", json.dumps(event).encode(), topic="t", partition=0, offset=number, received_at=START)
        assert not isinstance(decoded, DeadLetter), decoded


def test_a_row_with_a_bad_flag_is_refused_naming_the_column() -> None:
    cols = columns(["Prospect ID", "Converted"])
    reason = lead_events({"Prospect ID": "p-1", "Converted": "maybe"}, 0, cols, CsvOptions())
    assert reason == "Converted: must be 1/0, yes/no or true/false (got 'maybe')"


def test_import_csv_then_calibrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "history.jsonl"
    assert main(["import-csv", str(DATA / "crm_leads.csv"), "--out", str(out), "--drop", "Tags"]) == 0
    said = capsys.readouterr().out
    assert "24 leads" in said
    assert "2 rows skipped" in said
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sum(e["type"] == "lead.created" for e in lines) == 24
    assert all("tags" not in e["data"] for e in lines if e["type"] == "lead.created")
    # Ordered by lead number: lead-023 has the smallest, so it was created first.
    assert lines[0]["lead_id"] == "lead-023"
    report = tmp_path / "report.json"
    code = main(["calibrate", str(out), "--report-json", str(report), "--min-support", "3"])
    assert code in (0, 1)  # 1: too few leads for a proposal is a failure the command names
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["history"]["leads"] == 24
    assert document["current"]["all"]["mql_rule"]["converters"] == sum(e["type"] == "deal.won" for e in lines)


def test_import_csv_without_a_converted_column_says_which_names_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export.csv"
    export.write_text("Prospect ID,Lead Source\np-1,Google\n", encoding="utf-8")
    assert main(["import-csv", str(export), "--out", str(tmp_path / "h.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no converted flag column: name one converted" in err[0]


# --- the page ---------------------------------------------------------------------------------------------------


def test_every_language_has_the_same_labels() -> None:
    assert set(LABELS["pt-BR"]) == set(LABELS["en"])
    assert set(LABELS["es"]) == set(LABELS["en"])


def test_an_unknown_language_is_refused(report: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="en, pt-BR, es"):
        render_calibration(report, "fr")


def test_the_page_loads_nothing_and_escapes_the_data(report: dict[str, Any]) -> None:
    page = render_calibration(report, "en")
    assert "default-src 'none'" in page
    assert "<script src" not in page
    assert page.count("* plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == 3  # roc, lift, effect


# Bars draw as g.point, scatter markers (the ROC curves) as path.point.
CHARTS_JS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
  id: el.id,
  points: (el.data || []).map(t => Math.max((t.x || []).length, (t.y || []).length)),
  drawn: el.querySelectorAll('g.point, path.point').length,
}));
"""
ALL_DRAWN_JS = """
const plots = document.querySelectorAll('.js-plotly-plot');
return plots.length > 0 && Array.from(plots).every(el => el._fullLayout && el.querySelector('g.point, path.point'));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from headless_chromium(tmp_path_factory.mktemp("chromium-calibration"))


@pytest.mark.parametrize("lang", ["en", "pt-BR", "es"])
def test_the_page_renders_in_a_real_browser(
    browser: Browser, report: dict[str, Any], lang: str, tmp_path: Path
) -> None:
    page = tmp_path / f"calibration-{lang}.html"
    page.write_text(render_calibration(report, lang), encoding="utf-8")
    browser.driver.get_log("browser")
    browser.open(page)
    WebDriverWait(browser.driver, 30).until(lambda d: d.execute_script(ALL_DRAWN_JS))
    charts = browser.run(CHARTS_JS)
    assert sorted(c["id"] for c in charts) == ["chart-effect", "chart-lift", "chart-roc"]
    for c in charts:
        assert c["points"], c
        assert all(n > 0 for n in c["points"]), c
        assert c["drawn"] > 0, c
    text = browser.run("return document.body.innerText")
    labels = LABELS[lang]
    for key in ("roc_title", "lift_title", "rule_title", "evidence_title", "changes_title", "effect_title"):
        assert labels[key] in text
    assert "occupation=Student" in text
    combined = report["current"]["all"]["scores"]["combined"]["auc"]
    shown = f"{combined:.3f}" if lang == "en" else f"{combined:.3f}".replace(".", ",")
    assert shown in text
    assert browser.run("return window.__xss === undefined")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.driver.save_screenshot(str(ARTIFACTS / f"calibration-{lang}.png"))
    assert browser.errors() == []


def test_the_proposal_file_names_its_changes_in_comments(files: dict[str, Path], report: dict[str, Any]) -> None:
    text = (files["root"] / "proposed.yaml").read_text(encoding="utf-8")
    comments = [line for line in text.splitlines() if line.startswith("#   ")]
    assert [line[4:] for line in comments] == report["proposal"]["changes"]
    assert yaml.safe_load(text)["name"] == "calibration-test-calibrated"


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=6), st.booleans(), st.integers(min_value=0, max_value=3)),
        min_size=2,
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_a_weighted_auc_is_the_pairwise_auc_of_the_repeated_leads(rows: list[tuple[int, bool, int]]) -> None:
    """The bootstrap's fast AUC (each lead counted as often as it was drawn) against the definition on the
    sample written out with its repeats."""
    repeated = [(float(s), y) for s, y, times in rows for _ in range(times)]
    scores = np.array([float(s) for s, _, _ in rows])
    labels = np.array([y for _, y, _ in rows])
    weights = np.array([times for _, _, times in rows])
    value = weighted_auc(scores, labels, weights)
    if not any(y for _, y in repeated) or all(y for _, y in repeated):
        assert value is None
    else:
        assert value == pytest.approx(pairwise_auc([s for s, _ in repeated], [y for _, y in repeated]))


def test_the_bootstrap_interval_is_reproducible_and_holds_the_auc() -> None:
    scores = [float(i % 13) for i in range(300)]
    labels = [(i % 13) + (i % 5) > 9 for i in range(300)]
    first = bootstrap_auc(scores, labels, resamples=300)
    assert first == bootstrap_auc(scores, labels, resamples=300)
    value = auc(scores, labels)
    assert first is not None
    assert value is not None
    assert first.low < value < first.high


def test_a_bad_policy_stops_calibrate_naming_the_problem(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(POLICY.replace("min_fit: 30", "min_fit: -1"), encoding="utf-8")
    assert main(["calibrate", str(files["history"]), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err
    assert all(line.startswith("leadflow calibrate: ") for line in err)
    assert any("mql.min_fit" in line for line in err)


def test_a_train_share_of_zero_is_refused(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(files["history"]), "--train-share", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--train-share 0.0: must be between 0 and 1" in err[0]


def test_thresholds_keep_the_current_mql_volume_with_the_most_converters() -> None:
    scores = ProposedScores(
        fit=[10, 10, 10, 10, 0, 0, 0, 0, 0, 0],
        engagement=[5, 4, 3, 2, 5, 4, 3, 2, 1, 1],
        hand_raised=[False] * 10,
    )
    labels = [True, True, False, False, True, False, False, False, False, False]
    # Three MQLs today: the only pairs that make exactly three are fit >= 10 (or any cut up to 10) with
    # engagement >= 3, catching two converters; the grid's fit cuts are the scores seen, 0 and 10.
    thresholds, how = best_thresholds(scores, labels, (), current_mqls=3)
    assert (thresholds.min_fit, thresholds.min_engagement, how) == (10, 3, "same_volume")
    # A rule that made no MQL: the best F1 instead. By hand: (0, 4) makes leads 0, 1, 4, 5 MQL, three of them
    # converters: F1 = 2 x 3 / (4 + 3) = 0.857, above (10, 4) and (0, 5) at 0.8 and (0, 3) at 0.667.
    thresholds, how = best_thresholds(scores, labels, (), current_mqls=0)
    assert (thresholds.min_fit, thresholds.min_engagement, how) == (0, 4, "best_f1")
