"""The weekly or monthly SLA review as one self-contained HTML page (`leadflow report --html`).

`render_review(review, lang)` turns a `schemas.review.Review` (computed by core.review) into a page a sales or
marketing manager reads at a glance: each section is a plotly chart plus its key figures as text, or a sentence
saying the period has nothing to show. The page loads nothing at view time: plotly.js is inlined once and a
Content-Security-Policy forbids any network load. Words come from streams.cli.review_labels; numbers, percentages,
money and dates are formatted by Babel for the language's locale, the charts' separators too. Every string from
the data (reasons, rep ids, SLA names) is escaped: by Jinja's autoescape in the page, and before it reaches
plotly, whose labels understand a few HTML tags.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import plotly.io as pio
from babel import dates, numbers, units
from jinja2 import Environment
from markupsafe import Markup, escape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from leadflow.schemas.review import Change, Commitment, FunnelStep, GoalLine, ResponseTimes, Review, SlaLine
from leadflow.streams.cli.review_labels import EN, LANGS, labels_for

__all__ = ["LANGS", "render_review"]

LOCALES: Final = {"en": "en", "pt-BR": "pt_BR", "es": "es"}
# Nothing leaves the page: scripts and styles are inline, images are data: URLs (plotly's PNG export).
CSP: Final = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
# No mode bar: the page is read, not explored; hover still shows each figure.
CHART_CONFIG: Final = {"displayModeBar": False, "responsive": True}
COLOURS: Final = {
    "target": "#9aa5b1",
    "actual": "#1f6feb",
    "projection": "#8ab4f8",
    "kept": "#1a7f37",
    "missed": "#cf222e",
    "unknown": "#8c959f",
    "line": "#cf222e",
}
SHARE_COMMITMENTS: Final = frozenset({"mql_acceptance_rate", "response_compliance"})
DEPTH_COMMITMENTS: Final = frozenset({"follow_up_depth"})
GOALS_PER_ROW: Final = 4
BAR_PX: Final = 30
BINS_PER_ALLOWANCE: Final = 8


# --- formatting ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formats:
    """The words and the locale's number, money, date and duration formats of one page."""

    labels: Mapping[str, str]
    locale: str
    currency: str | None
    zone: ZoneInfo

    def say(self, key: str, **fields: str) -> str:
        return self.labels[key].format(**fields) if fields else self.labels[key]

    @property
    def separators(self) -> str:
        """plotly's `separators`: the decimal then the group symbol, as the locale writes them."""
        return numbers.get_decimal_symbol(self.locale) + numbers.get_group_symbol(self.locale)

    def count(self, value: float | None) -> str:
        return "—" if value is None else numbers.format_decimal(round(value), locale=self.locale)

    def decimal(self, value: float | None) -> str:
        return "—" if value is None else numbers.format_decimal(value, format="#,##0.#", locale=self.locale)

    def percent(self, share: float | None) -> str:
        return "—" if share is None else numbers.format_percent(share, format="#,##0.#%", locale=self.locale)

    def money(self, value: float | None) -> str:
        if value is None or self.currency is None:
            return self.count(value)
        return numbers.format_currency(value, self.currency, locale=self.locale)

    def short_money(self, value: float) -> str:
        """For bar labels, where R$ 120.000,00 is too wide: R$ 120 mil."""
        if self.currency is None:
            return numbers.format_compact_decimal(value, locale=self.locale, fraction_digits=1)
        return numbers.format_compact_currency(value, self.currency, locale=self.locale, fraction_digits=1)

    def amount(self, measure: str, value: float | None) -> str:
        return self.money(value) if measure == "revenue" else self.count(value)

    def measure(self, measure: str) -> str:
        return self.labels.get(f"m_{measure}", measure)

    def commitment(self, name: str) -> str:
        return self.labels.get(f"c_{name}", name)

    def moment(self, at: datetime) -> str:
        return dates.format_datetime(at, format="medium", tzinfo=self.zone, locale=self.locale)

    def days(self, start: datetime, end: datetime) -> str:
        """The local days from `start` to the instant before `end` (the first instant after the period)."""
        first = start.astimezone(self.zone).date()
        last = (end - timedelta(microseconds=1)).astimezone(self.zone).date()
        return dates.format_interval(first, last, skeleton="yMMMd", locale=self.locale)

    def duration(self, seconds: float | None, *, business: bool = False) -> str:
        """Humanized: 45 s, 20 min, 1 h 20 min, 2 days 3 h. Business time is not cut into days (a business day
        is not 24 hours)."""
        if seconds is None:
            return "—"
        if seconds < 60:
            return self.unit(round(seconds), "duration-second")
        minutes = round(seconds / 60)
        day_minutes = 0 if business else 24 * 60
        days, minutes = divmod(minutes, day_minutes) if day_minutes else (0, minutes)
        hours, minutes = divmod(minutes, 60)
        parts = [(days, "duration-day"), (hours, "duration-hour"), (minutes, "duration-minute")]
        shown = [(n, u) for n, u in parts if n][:2]
        return " ".join(self.unit(n, u) for n, u in shown)

    def unit(self, value: int, unit: str) -> str:
        return units.format_unit(value, unit, length="short", locale=self.locale)

    def signed(self, text: str, delta: float) -> str:
        return f"+{text}" if delta > 0 else text


def plot_text(text: str) -> str:
    """A string as plotly may show it: plotly reads <b>, <a href> and friends in labels, so data is escaped
    (plotly turns the entities back into the characters)."""
    return str(escape(text))


def plot_texts(texts: Iterable[str]) -> list[str]:
    return [plot_text(t) for t in texts]


def hover_lines(*lines: str) -> str:
    return "<br>".join(plot_texts(lines))


# --- the page's parts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""

    @property
    def numeric(self) -> tuple[bool, ...]:
        """Which columns hold numbers (their headers align right with them), read off the first row."""
        first = self.rows[0] if self.rows else ()
        return tuple("num" in cell.css.split() for cell in first)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    facts: tuple[str, ...] = ()
    chart: Markup | None = None
    tables: tuple[Table, ...] = ()
    empty: bool = False


def num(text: str) -> Cell:
    return Cell(text, "num")


def nothing(key: str, title: str) -> Section:
    return Section(key=key, title=title, empty=True)


def chart(fig: Any, key: str, fmt: Formats, height: int) -> Markup:
    """A figure as a div and its newPlot call (plotly.js itself is inlined once, in the head)."""
    fig.update_layout(
        template="plotly_white",
        separators=fmt.separators,
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13},
        legend={"orientation": "h", "y": -0.12},
    )
    html = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{key}", config=CHART_CONFIG)
    return Markup(html)  # plotly's own output: its JSON escapes <, > and /


# --- header ---------------------------------------------------------------------------------------------------


def header(review: Review, fmt: Formats) -> dict[str, Any]:
    period = review.period
    heading = fmt.say(f"period_{period.kind}", label=period.label)
    previous = review.previous
    facts = [
        (fmt.say("as_of"), fmt.moment(period.as_of), ""),
        (fmt.say("policy"), fmt.say("policy_value", name=review.policy.name, version=str(review.policy.version)), ""),
        (fmt.say("fingerprint"), review.policy.fingerprint, "code"),
        (fmt.say("currency"), review.currency or fmt.say("no_currency"), ""),
        (fmt.say("timezone"), period.timezone, ""),
        (
            fmt.say("previous_period"),
            f"{fmt.say(f'period_{previous.kind}', label=previous.label)} ({fmt.days(previous.start, previous.end)})",
            "",
        ),
    ]
    elapsed = fmt.say("elapsed", share=fmt.percent(period.elapsed)) if period.elapsed < 1 else ""
    return {
        "title": fmt.say("title"),
        "heading": heading,
        "days": fmt.days(period.start, period.end),
        "elapsed": elapsed,
        "facts": facts,
    }


# --- goals ----------------------------------------------------------------------------------------------------


def has_goal_data(line: GoalLine) -> bool:
    return line.target is not None or line.actual > 0


def goal_title(line: GoalLine, fmt: Formats, bottleneck: str | None) -> str:
    """The measure, then its attainment so far and projected (the bottleneck is judged on the projection)."""
    title = plot_text(f"⚠ {fmt.measure(line.measure)}" if line.measure == bottleneck else fmt.measure(line.measure))
    if line.attainment is None:
        return title
    projected = fmt.say("projected_marker", value=fmt.percent(line.projected_attainment))
    return f"{title}<br>{plot_text(f'{fmt.percent(line.attainment)} · {projected}')}"


def goal_bar_text(line: GoalLine, value: float, fmt: Formats) -> str:
    return fmt.short_money(value) if line.measure == "revenue" else fmt.count(value)


def goals_chart(lines: Sequence[GoalLine], review: Review, fmt: Formats) -> Markup:
    """One small chart per measure, each on its own scale (visitors and revenue dwarf customers)."""
    cols = min(GOALS_PER_ROW, len(lines))
    rows = math.ceil(len(lines) / cols)
    titles = [goal_title(line, fmt, review.bottleneck) for line in lines]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.2, horizontal_spacing=0.06)
    for i, line in enumerate(lines):
        bars = [("target", line.target), ("actual", line.actual), ("projection", line.projection)]
        shown = [(name, value) for name, value in bars if value is not None]
        fig.add_trace(
            go.Bar(
                x=plot_texts(fmt.say(name) for name, _ in shown),
                y=[value for _, value in shown],
                marker_color=[COLOURS[name] for name, _ in shown],
                text=plot_texts(goal_bar_text(line, value, fmt) for _, value in shown),
                textposition="inside",
                textangle=0,
                hovertemplate="%{x}: %{text}<extra></extra>",
                showlegend=False,
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    # d3's default ticks say 10k; ",~r" writes 10.000 with the locale's separators.
    fig.update_yaxes(tickformat=",~r")
    fig.update_annotations(font_size=14)
    return chart(fig, "goals", fmt, height=80 + 290 * rows)


def goals_table(lines: Sequence[GoalLine], fmt: Formats) -> Table:
    head = ("measure", "target", "actual", "projection", "attainment", "projected_attainment")
    rows = tuple(
        (
            Cell(fmt.measure(line.measure)),
            num(fmt.amount(line.measure, line.target) if line.target is not None else fmt.say("not_planned")),
            num(fmt.amount(line.measure, line.actual)),
            num(fmt.amount(line.measure, line.projection)),
            num(fmt.percent(line.attainment)),
            num(fmt.percent(line.projected_attainment)),
        )
        for line in lines
    )
    return Table(head=tuple(fmt.say(h) for h in head), rows=rows)


def bottleneck_fact(review: Review, fmt: Formats) -> str:
    line = next((g for g in review.goals if g.measure == review.bottleneck), None)
    if line is None:
        return fmt.say("no_bottleneck")
    return fmt.say("bottleneck", measure=fmt.measure(line.measure), share=fmt.percent(line.projected_attainment))


def goals_section(review: Review, fmt: Formats) -> Section:
    lines = [g for g in review.goals if has_goal_data(g)]
    if not lines:
        return nothing("goals", fmt.say("goals_title"))
    return Section(
        key="goals",
        title=fmt.say("goals_title"),
        facts=(bottleneck_fact(review, fmt),),
        chart=goals_chart(lines, review, fmt),
        tables=(goals_table(lines, fmt),),
    )


# --- funnel ---------------------------------------------------------------------------------------------------


def funnel_point_text(step: FunnelStep, fmt: Formats) -> str:
    text = fmt.count(step.entered)
    return f"{text} · {fmt.percent(step.conversion)}" if step.conversion is not None else text


def funnel_chart(steps: Sequence[FunnelStep], fmt: Formats) -> Markup:
    hover = [
        hover_lines(
            f"{fmt.say('conversion')}: {fmt.percent(s.conversion)}",
            f"{fmt.say('planned_conversion')}: {fmt.percent(s.planned_conversion)}",
        )
        for s in steps
    ]
    fig = go.Figure(
        go.Funnel(
            y=plot_texts(fmt.measure(s.measure) for s in steps),
            x=[s.entered for s in steps],
            text=plot_texts(funnel_point_text(s, fmt) for s in steps),
            textinfo="text",
            customdata=hover,
            hovertemplate="%{y}: %{x}<br>%{customdata}<extra></extra>",
            marker_color=COLOURS["actual"],
        )
    )
    fig.update_yaxes(type="category")
    return chart(fig, "funnel", fmt, height=80 + 55 * len(steps))


def conversion_css(step: FunnelStep) -> str:
    behind = (
        step.conversion is not None
        and step.planned_conversion is not None
        and step.conversion < step.planned_conversion
    )
    return "num behind" if behind else "num"


def funnel_table(steps: Sequence[FunnelStep], fmt: Formats) -> Table:
    rows = tuple(
        (
            Cell(fmt.measure(s.measure)),
            num(fmt.count(s.entered)),
            Cell(fmt.percent(s.conversion), conversion_css(s)),
            num(fmt.percent(s.planned_conversion)),
        )
        for s in steps
    )
    head = ("step", "entered", "conversion", "planned_conversion")
    return Table(head=tuple(fmt.say(h) for h in head), rows=rows)


def funnel_fact(steps: Sequence[FunnelStep], fmt: Formats) -> str:
    top, bottom = steps[0], steps[-1]
    share = bottom.entered / top.entered if top.entered else None
    return fmt.say(
        "funnel_fact", top=fmt.measure(top.measure), bottom=fmt.measure(bottom.measure), share=fmt.percent(share)
    )


def funnel_section(review: Review, fmt: Formats) -> Section:
    # Revenue is money, not a stage of people: it has its chart among the goals.
    steps = [s for s in review.funnel if s.measure != "revenue"]
    if not any(s.entered > 0 for s in steps):
        return nothing("funnel", fmt.say("funnel_title"))
    return Section(
        key="funnel",
        title=fmt.say("funnel_title"),
        facts=(funnel_fact(steps, fmt),),
        chart=funnel_chart(steps, fmt),
        tables=(funnel_table(steps, fmt),),
    )


# --- commitments ----------------------------------------------------------------------------------------------


def commitment_value(c: Commitment, value: float | None, fmt: Formats) -> str:
    if c.unit == "share":
        return fmt.percent(value)
    if c.unit == "attempts":
        return fmt.decimal(value)
    return fmt.count(value)


def status_key(c: Commitment) -> str:
    return "not_measurable" if c.kept is None else "kept" if c.kept else "missed"


def judged(c: Commitment) -> float | None:
    """What `kept` was decided on: the projection for a count, the actual for a floor."""
    return c.projection if c.projection is not None else c.actual


def commitment_label(c: Commitment, fmt: Formats) -> str:
    return f"{fmt.say(f'team_{c.team}')} · {fmt.commitment(c.name)}"


def share_of_target(c: Commitment) -> float | None:
    value = judged(c)
    return value / c.target if value is not None and c.target > 0 else None


def commitment_bar_text(c: Commitment, fmt: Formats) -> str:
    of_target = share_of_target(c)
    if of_target is None:
        return fmt.say(status_key(c))
    share = fmt.percent(of_target)
    return fmt.say("projected_marker", value=share) if c.projection is not None else share


def commitments_chart(commitments: Sequence[Commitment], fmt: Formats) -> Markup:
    """Each commitment as a share of its target, coloured kept or missed, against a line at the target."""
    hover = [
        hover_lines(
            f"{fmt.say('actual')}: {commitment_value(c, c.actual, fmt)}",
            f"{fmt.say('target')}: {commitment_value(c, c.target, fmt)}",
        )
        for c in commitments
    ]
    fig = go.Figure(
        go.Bar(
            y=plot_texts(commitment_label(c, fmt) for c in commitments),
            x=[share_of_target(c) or 0 for c in commitments],
            orientation="h",
            marker_color=[COLOURS.get(status_key(c), COLOURS["unknown"]) for c in commitments],
            text=plot_texts(commitment_bar_text(c, fmt) for c in commitments),
            # A bar of nothing (not measurable) shows its words outside it.
            textposition=["auto" if share_of_target(c) else "outside" for c in commitments],
            customdata=hover,
            hovertemplate="%{y}<br>%{customdata}<extra></extra>",
        )
    )
    fig.add_vline(x=1, line_dash="dash", line_color=COLOURS["line"], annotation_text=plot_text(fmt.say("target_line")))
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(tickformat=".0%", title_text=fmt.say("of_target"), rangemode="tozero")
    return chart(fig, "commitments", fmt, height=110 + BAR_PX * len(commitments))


def badge(c: Commitment, fmt: Formats) -> Cell:
    key = status_key(c)
    return Cell(fmt.say(key), f"badge {key.replace('_', '-')}")


def measured(c: Commitment, fmt: Formats) -> str:
    """The translated meaning, plus core's detail when it says more (the SLA behind response_compliance)."""
    meaning = fmt.labels.get(f"cd_{c.name}", "")
    # core.review writes its detail in English: shown only when it is not just the English meaning.
    if c.detail and c.detail != EN.get(f"cd_{c.name}"):
        return f"{meaning} — {c.detail}" if meaning else c.detail
    return meaning


def commitments_table(team: str, commitments: Sequence[Commitment], fmt: Formats) -> Table:
    rows = tuple(
        (
            Cell(fmt.commitment(c.name)),
            num(commitment_value(c, c.target, fmt)),
            num(commitment_value(c, c.actual, fmt)),
            num(commitment_value(c, c.projection, fmt) if c.projection is not None else "—"),
            badge(c, fmt),
            Cell(measured(c, fmt), "detail"),
        )
        for c in commitments
    )
    head = ("commitment", "target", "actual", "projection", "status", "measured")
    return Table(head=tuple(fmt.say(h) for h in head), rows=rows, caption=fmt.say(f"team_{team}"))


def commitments_fact(team: str, commitments: Sequence[Commitment], fmt: Formats) -> str:
    kept = sum(1 for c in commitments if c.kept)
    return fmt.say("commitments_fact", team=fmt.say(f"team_{team}"), kept=str(kept), total=str(len(commitments)))


def commitments_section(review: Review, fmt: Formats) -> Section:
    if not review.commitments:
        return nothing("commitments", fmt.say("commitments_title"))
    by_team = {team: [c for c in review.commitments if c.team == team] for team in ("marketing", "sales")}
    teams = [(team, lines) for team, lines in by_team.items() if lines]
    return Section(
        key="commitments",
        title=fmt.say("commitments_title"),
        facts=tuple(commitments_fact(team, lines, fmt) for team, lines in teams),
        chart=commitments_chart(review.commitments, fmt),
        tables=tuple(commitments_table(team, lines, fmt) for team, lines in teams),
    )


# --- SLA compliance -------------------------------------------------------------------------------------------

SCOPES: Final = ("sla", "team", "rep")


def sla_label(line: SlaLine, several_slas: bool) -> str:
    return f"{line.key} · {line.sla}" if line.scope != "sla" and several_slas else line.key


def compliance_text(line: SlaLine, fmt: Formats) -> str:
    return fmt.percent(line.compliance) if line.compliance is not None else fmt.say("no_compliance")


def sla_chart(lines: Sequence[SlaLine], fmt: Formats) -> Markup:
    """Compliance per SLA, per team and per rep: one panel each, on the same 0-100 % scale."""
    several = len({line.sla for line in lines}) > 1
    scoped = [(scope, [line for line in lines if line.scope == scope]) for scope in SCOPES]
    scoped = [(scope, group) for scope, group in scoped if group]
    fig = make_subplots(
        rows=len(scoped),
        cols=1,
        shared_xaxes=True,
        subplot_titles=plot_texts(fmt.say(f"scope_{scope}") for scope, _ in scoped),
        row_heights=[len(group) for _, group in scoped],
        vertical_spacing=0.25 / len(scoped),
    )
    for row, (_, group) in enumerate(scoped, start=1):
        fig.add_trace(
            go.Bar(
                y=plot_texts(sla_label(line, several) for line in group),
                x=[line.compliance for line in group],
                orientation="h",
                marker_color=COLOURS["actual"],
                text=plot_texts(compliance_text(line, fmt) for line in group),
                textposition="auto",
                hovertemplate="%{y}: %{text}<extra></extra>",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(tickformat=".0%", range=[0, 1.05])
    return chart(fig, "sla", fmt, height=90 + BAR_PX * len(lines) + 50 * len(scoped))


def sla_table(lines: Sequence[SlaLine], fmt: Formats) -> Table:
    rows = tuple(
        (
            Cell(fmt.say(f"scope_{line.scope}")),
            Cell(line.sla),
            Cell(line.key),
            num(fmt.count(line.started)),
            num(fmt.count(line.met)),
            num(fmt.count(line.late)),
            num(fmt.count(line.breached)),
            num(compliance_text(line, fmt)),
        )
        for line in lines
    )
    head = ("", "sla", "key", "started", "met", "late", "breached", "compliance")
    return Table(head=tuple(fmt.say(h) if h else "" for h in head), rows=rows)


def sla_fact(line: SlaLine, fmt: Formats) -> str:
    return fmt.say(
        "sla_fact",
        sla=line.sla,
        compliance=compliance_text(line, fmt),
        met=fmt.count(line.met),
        breached=fmt.count(line.breached),
        late=fmt.count(line.late),
        started=fmt.count(line.started),
    )


def sla_section(review: Review, fmt: Formats) -> Section:
    if not review.sla:
        return nothing("sla", fmt.say("sla_title"))
    return Section(
        key="sla",
        title=fmt.say("sla_title"),
        facts=tuple(sla_fact(line, fmt) for line in review.sla if line.scope == "sla"),
        chart=sla_chart(review.sla, fmt),
        tables=(sla_table(review.sla, fmt),),
    )


# --- response times -------------------------------------------------------------------------------------------


def clock_words(times: ResponseTimes, fmt: Formats) -> str:
    return fmt.say("business_time" if times.business else "calendar_time")


def axis_unit(times: ResponseTimes) -> tuple[float, str]:
    """Hours for allowances of several hours, minutes below."""
    return (3600.0, "hours") if times.allowance_s >= 3 * 3600 else (60.0, "minutes")


def response_chart(all_times: Sequence[ResponseTimes], fmt: Formats) -> Markup:
    """A histogram of the allowance used per SLA, with the allowance as a dashed line."""
    fig = make_subplots(
        rows=len(all_times),
        cols=1,
        subplot_titles=plot_texts(t.sla for t in all_times),
        vertical_spacing=0.35 / len(all_times),
    )
    for row, times in enumerate(all_times, start=1):
        scale, unit = axis_unit(times)
        fig.add_trace(
            go.Histogram(
                x=[used / scale for used in times.used_s],
                marker_color=COLOURS["actual"],
                xbins={"start": 0, "size": times.allowance_s / scale / BINS_PER_ALLOWANCE},
                name=plot_text(times.sla),
                hovertemplate="%{x}: %{y}<extra></extra>",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        allowance = f"{fmt.say('allowance')}: {fmt.duration(times.allowance_s, business=times.business)}"
        fig.add_vline(
            x=times.allowance_s / scale,
            line_dash="dash",
            line_color=COLOURS["line"],
            annotation_text=plot_text(allowance),
            annotation_position="top right",
            row=row,
            col=1,
        )
        axis = fmt.say(f"used_{unit}", clock=clock_words(times, fmt))
        fig.update_xaxes(title_text=plot_text(axis), rangemode="tozero", row=row, col=1)
        fig.update_yaxes(title_text=plot_text(fmt.say("responses")), row=row, col=1)
    fig.update_layout(bargap=0.06)
    return chart(fig, "response", fmt, height=60 + 280 * len(all_times))


def response_fact(times: ResponseTimes, fmt: Formats) -> str:
    return fmt.say(
        "response_fact",
        sla=times.sla,
        allowance=fmt.duration(times.allowance_s, business=times.business),
        clock=clock_words(times, fmt),
        within=fmt.percent(times.within),
        p50=fmt.duration(times.p50, business=times.business),
        p90=fmt.duration(times.p90, business=times.business),
        count=fmt.count(len(times.used_s)),
    )


def response_section(review: Review, fmt: Formats) -> Section:
    measured_times = [t for t in review.response_times if t.used_s]
    if not measured_times:
        return nothing("response", fmt.say("response_title"))
    return Section(
        key="response",
        title=fmt.say("response_title"),
        facts=tuple(response_fact(t, fmt) for t in measured_times),
        chart=response_chart(measured_times, fmt),
    )


# --- reasons and skips ----------------------------------------------------------------------------------------


def ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def ranked_chart(items: Sequence[tuple[str, int]], key: str, fmt: Formats) -> Markup:
    """Horizontal bars, the most frequent on top."""
    fig = go.Figure(
        go.Bar(
            y=plot_texts(name for name, _ in items),
            x=[count for _, count in items],
            orientation="h",
            marker_color=COLOURS["actual"],
            text=[fmt.count(count) for _, count in items],
            textposition="auto",
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(tickformat=",~r")
    return chart(fig, key, fmt, height=90 + BAR_PX * len(items))


def ranked_table(items: Sequence[tuple[str, int]], first: str, fmt: Formats) -> Table:
    total = sum(count for _, count in items)
    rows = tuple((Cell(name), num(fmt.count(count)), num(fmt.percent(count / total))) for name, count in items)
    return Table(head=(fmt.say(first), fmt.say("count"), fmt.say("share")), rows=rows)


def top_fact(items: Sequence[tuple[str, int]], fmt: Formats) -> str:
    total = sum(count for _, count in items)
    name, count = items[0]
    return fmt.say("top_fact", total=fmt.count(total), top=name, share=fmt.percent(count / total))


def ranked_section(
    key: str, counts: Mapping[str, int], fmt: Formats, *, first: str, intro: str | None = None
) -> Section:
    items = [(name, count) for name, count in ranked(counts) if count > 0]
    title = fmt.say(f"{key}_title")
    if not items:
        return nothing(key, title)
    facts = (*((fmt.say(intro),) if intro else ()), top_fact(items, fmt))
    return Section(
        key=key,
        title=title,
        facts=facts,
        chart=ranked_chart(items, key, fmt),
        tables=(ranked_table(items, first, fmt),),
    )


def skip_name(key: str) -> str:
    """core.review keys a skip "<from>-><to>"; the page draws the arrow."""
    source, sep, target = key.partition("->")
    return f"{source} → {target}" if sep else key


# --- changes --------------------------------------------------------------------------------------------------


def change_value(measure: str, value: float | None, fmt: Formats) -> str:
    if measure in SHARE_COMMITMENTS:
        return fmt.percent(value)
    if measure in DEPTH_COMMITMENTS:
        return fmt.decimal(value)
    return fmt.amount(measure, value)


def change_delta(change: Change, fmt: Formats) -> str:
    if change.previous is None or change.current is None:
        return "—"
    delta = change.current - change.previous
    if change.measure in SHARE_COMMITMENTS:
        points = numbers.format_decimal(delta * 100, format="#,##0.#", locale=fmt.locale)
        return fmt.signed(f"{points} {fmt.say('points')}", delta)
    text = fmt.signed(change_value(change.measure, delta, fmt), delta)
    if change.previous and change.measure not in DEPTH_COMMITMENTS:
        text = f"{text} ({fmt.signed(fmt.percent(delta / change.previous), delta)})"
    return text


def change_name(measure: str, fmt: Formats) -> str:
    return fmt.labels.get(f"m_{measure}") or fmt.labels.get(f"c_{measure}") or measure


def delta_css(change: Change) -> str:
    if change.previous is None or change.current is None or change.current == change.previous:
        return "num"
    return "num up" if change.current > change.previous else "num down"


def changes_section(review: Review, fmt: Formats) -> Section:
    title = fmt.say("changes_title")
    if not review.changes:
        return nothing("changes", title)
    rows = tuple(
        (
            Cell(change_name(c.measure, fmt)),
            num(change_value(c.measure, c.previous, fmt)),
            num(change_value(c.measure, c.current, fmt)),
            Cell(change_delta(c, fmt), delta_css(c)),
        )
        for c in review.changes
    )
    head = (fmt.say("measure"), fmt.say("previous"), fmt.say("current"), fmt.say("delta"))
    caption = f"{fmt.say(f'period_{review.previous.kind}', label=review.previous.label)} → {review.period.label}"
    return Section(key="changes", title=title, tables=(Table(head=head, rows=rows, caption=caption),))


# --- the page -------------------------------------------------------------------------------------------------


def sections(review: Review, fmt: Formats) -> tuple[Section, ...]:
    return (
        goals_section(review, fmt),
        funnel_section(review, fmt),
        commitments_section(review, fmt),
        sla_section(review, fmt),
        response_section(review, fmt),
        ranked_section("rejections", review.rejections, fmt, first="reason", intro="rejections_intro"),
        ranked_section("lost", review.lost, fmt, first="reason"),
        ranked_section("skips", {skip_name(k): v for k, v in review.skips.items()}, fmt, first="skip"),
        changes_section(review, fmt),
    )


def render_review(review: Review, lang: str) -> str:
    """The review as one HTML page in `lang` (one of LANGS); a language not in LANGS is a ValueError."""
    labels = labels_for(lang)
    fmt = Formats(labels=labels, locale=LOCALES[lang], currency=review.currency, zone=ZoneInfo(review.period.timezone))
    parts = sections(review, fmt)
    # plotly.js is ~4.8 MB: inline it once, and only when there is a chart to draw.
    plotly_js = Markup(get_plotlyjs()) if any(s.chart is not None for s in parts) else None
    return PAGE.render(
        lang=lang,
        csp=Markup(CSP),  # our constant, written as is (its quotes are part of the syntax)
        labels=labels,
        header=header(review, fmt),
        sections=parts,
        plotly_js=plotly_js,
        footer=fmt.say("generated", as_of=fmt.moment(review.period.as_of)),
    )


PAGE_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ header.title }} · {{ header.heading }}</title>
<style>
  :root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --card: #ffffff; --page: #f6f8fa; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--page); color: var(--ink);
         font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  main { max-width: 1200px; margin: 0 auto; padding: 24px 16px 48px; }
  header.review { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; }
  header.review h1 { margin: 0 0 4px; font-size: 24px; }
  header.review .days { color: var(--muted); margin: 0 0 12px; }
  dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
  dl.facts dt { color: var(--muted); }
  dl.facts dd { margin: 0; }
  code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
  section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
                 padding: 16px 20px; margin-top: 16px; }
  section.card h2 { margin: 0 0 8px; font-size: 19px; }
  p.fact { margin: 4px 0; }
  p.nothing { color: var(--muted); font-style: italic; margin: 4px 0; }
  .chart { margin: 8px 0; }
  table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 14px; }
  caption { text-align: left; font-weight: 600; padding: 4px 0; }
  th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
  th { color: var(--muted); font-weight: 600; }
  th.num { text-align: right; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.behind, td.down { color: #cf222e; text-align: right; white-space: nowrap; }
  td.up { color: #1a7f37; text-align: right; white-space: nowrap; }
  td.detail { color: var(--muted); }
  td.badge { white-space: nowrap; }
  td.badge::before { content: ""; display: inline-block; width: 10px; height: 10px; border-radius: 50%;
                     margin-right: 6px; background: currentColor; }
  td.kept { color: #1a7f37; font-weight: 600; }
  td.missed { color: #cf222e; font-weight: 600; }
  td.not-measurable { color: #59636e; }
  footer { color: var(--muted); font-size: 13px; margin-top: 24px; }
</style>
{% if plotly_js %}<script>{{ plotly_js }}</script>{% endif %}
</head>
<body>
<main>
<header class="review">
  <h1>{{ header.title }} · {{ header.heading }}</h1>
  <p class="days">{{ header.days }}{% if header.elapsed %} · {{ header.elapsed }}{% endif %}</p>
  <dl class="facts">
  {% for fact in header.facts %}
    <dt>{{ fact[0] }}</dt>
    <dd>{% if fact[2] == "code" %}<code>{{ fact[1] }}</code>{% else %}{{ fact[1] }}{% endif %}</dd>
  {% endfor %}
  </dl>
</header>
{% for s in sections %}
<section class="card" id="{{ s.key }}">
  <h2>{{ s.title }}</h2>
  {% if s.empty %}
  <p class="nothing">{{ labels.nothing }}</p>
  {% else %}
  {% for fact in s.facts %}<p class="fact">{{ fact }}</p>{% endfor %}
  {% if s.chart %}<div class="chart">{{ s.chart }}</div>{% endif %}
  {% for table in s.tables %}
  <table>
    {% if table.caption %}<caption>{{ table.caption }}</caption>{% endif %}
    <thead><tr>
    {% for h in table.head %}<th{% if table.numeric[loop.index0] %} class="num"{% endif %}>{{ h }}</th>{% endfor %}
    </tr></thead>
    <tbody>
    {% for row in table.rows %}
      <tr>
      {% for cell in row %}<td{% if cell.css %} class="{{ cell.css }}"{% endif %}>{{ cell.text }}</td>{% endfor %}
      </tr>
    {% endfor %}
    </tbody>
  </table>
  {% endfor %}
  {% endif %}
</section>
{% endfor %}
<footer>{{ footer }}</footer>
</main>
</body>
</html>
"""

# Autoescape on: every value from the data is text, only plotly's output and plotly.js are Markup.
PAGE: Final = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(PAGE_TEMPLATE)
