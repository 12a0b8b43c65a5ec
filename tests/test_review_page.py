"""The SLA review page (streams.cli.review_page): rendered in each language and opened in a real headless Chromium
(selenium + Debian's chromium-driver) to check that every chart draws with data, nothing errs in the console, the
text is localized and hostile strings from the data stay text; plus pure checks of the labels and the empty page.

Screenshots of each page land in tests/artifacts/review-<lang>.png (gitignored)."""

from __future__ import annotations

import random
import shutil
import statistics
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from leadflow.schemas.review import (
    Change,
    Commitment,
    FunnelStep,
    GoalLine,
    Period,
    PolicyRef,
    ResponseTimes,
    Review,
    SlaLine,
)
from leadflow.streams.cli.review_labels import LABELS, LANGS
from leadflow.streams.cli.review_page import Formats, render_review

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ZONE = ZoneInfo("America/Sao_Paulo")
# A reason typed by a rep: if the page ran it, the console would log an error and the window would carry a flag.
HOSTILE_REASON = '<script>window.__xss = 1; console.error("xss")</script>'
HOSTILE_REP = "<b>rep-9</b>"
CHARTED = ("goals", "funnel", "commitments", "sla", "response", "rejections", "lost", "skips")
SECTIONS = (*CHARTED[:5], "rejections", "lost", "skips", "changes")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
FIX = "apt-get install -y chromium chromium-driver (or `make browser`; `make test` and .ci/run do it when missing)"


# --- the fixture: a week of a BRL company, half gone by -------------------------------------------------------


def week(label: str, start: datetime, as_of: datetime) -> Period:
    end = start + timedelta(days=7)
    elapsed = min(1.0, (as_of - start) / (end - start))
    return Period(kind="week", label=label, start=start, end=end, as_of=as_of, elapsed=elapsed, timezone=ZONE.key)


def goal(measure: Any, target: float | None, actual: float, elapsed: float) -> GoalLine:
    projection = actual / elapsed
    return GoalLine(
        measure=measure,
        target=target,
        actual=actual,
        projection=projection,
        attainment=actual / target if target else None,
        projected_attainment=projection / target if target else None,
    )


def used_times(seed: int, n: int, median_s: float) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(sorted(round(rng.lognormvariate(0, 0.8) * median_s) for _ in range(n)))


def response(sla: str, allowance_s: float, business: bool, used: tuple[float, ...]) -> ResponseTimes:
    cuts = statistics.quantiles(used, n=100, method="inclusive")
    return ResponseTimes(
        sla=sla,
        allowance_s=allowance_s,
        business=business,
        used_s=used,
        within=sum(1 for u in used if u <= allowance_s) / len(used),
        p50=cuts[49],
        p90=cuts[89],
    )


def sla_line(sla: str, scope: Any, key: str, counts: tuple[int, int, int, int]) -> SlaLine:
    started, met, late, breached = counts
    closed = met + breached
    return SlaLine(
        sla=sla,
        scope=scope,
        key=key,
        started=started,
        met=met,
        late=late,
        breached=breached,
        compliance=met / closed if closed else None,
    )


def full_review() -> Review:
    period = week("2026-W48", datetime(2026, 11, 23, tzinfo=ZONE), datetime(2026, 11, 26, 18, tzinfo=ZONE))
    previous = week("2026-W47", datetime(2026, 11, 16, tzinfo=ZONE), datetime(2026, 11, 26, 18, tzinfo=ZONE))
    e = period.elapsed
    plan = [
        ("visitors", 12_000, 6_900),
        ("leads", 600, 331),
        ("mqls", 240, 118),
        ("qualification_calls", 120, 61),
        ("sqls", 72, 33),
        ("proposals", 36, 14),
        ("customers", 12, 5),
        ("revenue", 120_000, 58_400),
    ]
    goals = tuple(goal(m, t, a, e) for m, t, a in plan)
    planned = {
        "leads": 0.05,
        "mqls": 0.4,
        "qualification_calls": 0.5,
        "sqls": 0.6,
        "proposals": 0.5,
        "customers": 1 / 3,
    }
    funnel = tuple(
        FunnelStep(
            measure=m,
            stage=None if m == "visitors" else m.rstrip("s"),
            entered=a,
            conversion=a / plan[i - 1][2] if i else None,
            planned_conversion=planned.get(m),
        )
        for i, (m, _, a) in enumerate(plan[:-1])
    )
    commitments = (
        Commitment(team="marketing", name="mqls", unit="count", target=240, actual=118, projection=118 / e, kept=False),
        Commitment(
            team="marketing",
            name="mql_acceptance_rate",
            unit="share",
            target=0.7,
            actual=0.78,
            projection=None,
            kept=True,
            detail="accepted / decided MQLs",
        ),
        Commitment(
            team="sales", name="contact_attempts", unit="count", target=900, actual=512, projection=512 / e, kept=True
        ),
        Commitment(
            team="sales",
            name="response_compliance",
            unit="share",
            target=0.9,
            actual=0.84,
            projection=None,
            kept=False,
            detail="SLA first_response",
        ),
        Commitment(
            team="sales",
            name="follow_up_depth",
            unit="attempts",
            target=4,
            actual=None,
            projection=None,
            kept=None,
            detail="attempts per lead whose follow-up ended",
        ),
    )
    sla = (
        sla_line("first_response", "sla", "first_response", (118, 96, 7, 18)),
        sla_line("mql_acceptance", "sla", "mql_acceptance", (118, 101, 2, 9)),
        sla_line("first_response", "team", "inbound", (80, 70, 3, 8)),
        sla_line("first_response", "team", "outbound", (38, 26, 4, 10)),
        sla_line("first_response", "rep", "ana.souza", (41, 38, 1, 2)),
        sla_line("first_response", "rep", "bruno.lima", (39, 32, 2, 6)),
        sla_line("first_response", "rep", HOSTILE_REP, (38, 26, 4, 10)),
    )
    response_times = (
        response("first_response", 4 * 3600, True, used_times(48, 103, 5_400)),
        response("mql_acceptance", 24 * 3600, False, used_times(49, 110, 30_000)),
    )
    # Last week as of the same weekday: fewer visitors, more proposals.
    last_week = (7_420, 305, 121, 55, 36, 9, 5, 61_200)
    changes = (
        *(Change(measure=m, previous=before, current=a) for (m, _, a), before in zip(plan, last_week, strict=True)),
        Change(measure="mql_acceptance_rate", previous=0.74, current=0.78),
        Change(measure="response_compliance", previous=0.88, current=0.84),
        Change(measure="follow_up_depth", previous=3.6, current=None),
    )
    return Review(
        period=period,
        previous=previous,
        policy=PolicyRef(name="acme-br", version=7, fingerprint="3f9a1c2be45d0a17"),
        currency="BRL",
        goals=goals,
        bottleneck="proposals",
        funnel=funnel,
        commitments=commitments,
        sla=sla,
        response_times=response_times,
        rejections={
            "wrong ICP: company under 10 employees": 9,
            "student / job seeker": 5,
            "duplicate of an open deal": 3,
            HOSTILE_REASON: 1,
        },
        lost={"price above budget": 4, "chose a competitor": 3, "no decision / went dark": 2},
        skips={"lead->sql": 6, "mql->proposal": 2},
        changes=changes,
    )


def empty_review() -> Review:
    full = full_review()
    return full.model_copy(
        update={
            "goals": (),
            "bottleneck": None,
            "funnel": (),
            "commitments": (),
            "sla": (),
            "response_times": (),
            "rejections": {},
            "lost": {},
            "skips": {},
            "changes": (),
        }
    )


# --- pure checks ----------------------------------------------------------------------------------------------


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_the_same_labels() -> None:
    assert set(LABELS) == set(LANGS)
    keys = {lang: set(labels) for lang, labels in LABELS.items()}
    assert keys["pt-BR"] == keys["en"]
    assert keys["es"] == keys["en"]


def test_every_label_has_the_same_fields_in_every_language() -> None:
    for key, text in LABELS["en"].items():
        for lang in LANGS:
            assert fields(LABELS[lang][key]) == fields(text), (lang, key)


def test_an_unknown_language_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="en, pt-BR, es"):
        render_review(full_review(), "fr")


@pytest.mark.parametrize("lang", LANGS)
def test_an_empty_review_says_nothing_happened_and_draws_no_chart(lang: str) -> None:
    page = render_review(empty_review(), lang)
    assert page.count(LABELS[lang]["nothing"]) == len(SECTIONS)
    assert "plotly-graph-div" not in page
    assert "Plotly.newPlot" not in page
    assert "plotly.js" not in page  # no chart, no 4.8 MB library


def test_the_page_loads_nothing_and_inlines_plotly_once() -> None:
    page = render_review(full_review(), "en")
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert "<script src" not in page
    assert "<link" not in page
    assert page.count("Plotly.newPlot(") == len(CHARTED)
    assert page.count("* plotly.js v") == 1


def test_strings_from_the_data_are_escaped_in_the_source() -> None:
    page = render_review(full_review(), "en")
    assert "<script>window.__xss" not in page
    assert "&lt;script&gt;window.__xss" in page
    assert HOSTILE_REP not in page


def test_the_header_names_the_agreement_measured() -> None:
    page = render_review(full_review(), "pt-BR")
    assert "acme-br, versão 7" in page
    assert "3f9a1c2be45d0a17" in page
    assert "Semana 2026-W48" in page


@pytest.mark.parametrize(
    ("locale", "seconds", "business", "expected"),
    [
        ("pt_BR", 4_800, True, "1 h 20 min"),
        ("en", 4_800, True, "1 hr 20 min"),
        ("es", 45, False, "45 s"),
        ("pt_BR", 2 * 86_400 + 3 * 3_600, False, "2 dias 3 h"),
        ("pt_BR", 2 * 86_400 + 3 * 3_600, True, "51 h"),
    ],
)
def test_durations_read_like_a_person_says_them(locale: str, seconds: float, business: bool, expected: str) -> None:
    fmt = Formats(labels=LABELS["en"], locale=locale, currency="BRL", zone=ZONE)
    assert fmt.duration(seconds, business=business) == expected


@pytest.mark.parametrize(
    ("lang", "locale", "separators"), [("en", "en", ".,"), ("pt-BR", "pt_BR", ",."), ("es", "es", ",.")]
)
def test_charts_use_the_locale_separators(lang: str, locale: str, separators: str) -> None:
    assert Formats(labels=LABELS[lang], locale=locale, currency="BRL", zone=ZONE).separators == separators


# --- in a real browser ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Browser:
    driver: webdriver.Chrome

    def open(self, path: Path) -> None:
        self.driver.get(path.as_uri())

    def run(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def errors(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    if chromium is None or chromedriver is None:
        pytest.fail(f"headless Chromium is missing (chromium: {chromium}, chromedriver: {chromedriver}): {FIX}")
    return chromium, chromedriver


def test_headless_chromium_is_installed() -> None:
    """Fails (never skips) on a machine without the browser, naming the fix; the browser tests then error."""
    browser_binaries()


def headless_chromium(profile: Path) -> Iterator[Browser]:
    """A headless Chromium with its console log kept, quit at the end (the browser fixtures of the page tests)."""
    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield Browser(driver)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from headless_chromium(tmp_path_factory.mktemp("chromium-profile"))


CHARTS_JS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
  id: el.id,
  points: (el.data || []).map(t => Math.max((t.x || []).length, (t.y || []).length)),
  svg: el.querySelectorAll('svg.main-svg').length,
  drawn: el.querySelectorAll('g.point').length,
  separators: el._fullLayout ? el._fullLayout.separators : null,
}));
"""
ALL_DRAWN_JS = """
const plots = document.querySelectorAll('.js-plotly-plot');
return plots.length > 0 && Array.from(plots).every(el => el._fullLayout && el.querySelector('g.point'));
"""


def screenshot(browser: Browser, path: Path) -> None:
    """The whole page: grow the window to the page's height, let plotly relayout, then shoot."""
    height = browser.run("return document.documentElement.scrollHeight")
    browser.driver.set_window_size(1280, height + 40)
    WebDriverWait(browser.driver, 10).until(lambda d: d.execute_script(ALL_DRAWN_JS))
    browser.driver.execute_async_script(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    assert browser.driver.save_screenshot(str(path))
    browser.driver.set_window_size(1280, 900)


@pytest.mark.parametrize("lang", LANGS)
def test_the_page_renders_in_a_real_browser(browser: Browser, lang: str, tmp_path: Path) -> None:
    page = tmp_path / f"review-{lang}.html"
    page.write_text(render_review(full_review(), lang), encoding="utf-8")
    browser.driver.get_log("browser")  # start from a clean log
    browser.open(page)
    WebDriverWait(browser.driver, 30).until(lambda d: d.execute_script(ALL_DRAWN_JS))

    charts = browser.run(CHARTS_JS)
    assert sorted(c["id"] for c in charts) == sorted(f"chart-{key}" for key in CHARTED)
    for c in charts:
        assert c["points"], c
        assert all(n > 0 for n in c["points"]), c
        assert c["svg"] > 0, c
        assert c["drawn"] > 0, c
    locale = {"en": "en", "pt-BR": "pt_BR", "es": "es"}[lang]
    expected = Formats(labels=LABELS[lang], locale=locale, currency="BRL", zone=ZONE).separators
    assert {c["separators"] for c in charts} == {expected}

    text = browser.run("return document.body.innerText")
    assert LABELS[lang]["goals_title"] in text
    assert LABELS[lang]["funnel_title"] in text
    if lang == "en":
        assert "R$120,000.00" in text
        assert "120.000" not in text
        assert LABELS["pt-BR"]["goals_title"] not in text
    else:
        assert "120.000" in text  # the revenue target, grouped the pt-BR / es way
    assert HOSTILE_REASON in text  # shown as text
    assert HOSTILE_REP in text
    assert browser.run("return window.__xss === undefined")

    screenshot(browser, ARTIFACTS / f"review-{lang}.png")
    assert browser.errors() == []
