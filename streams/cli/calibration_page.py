"""The calibration report as one self-contained HTML page (`leadflow calibrate --html`).

`render_calibration(document, lang)` turns the JSON report of streams.cli.calibrate_command into a page both teams
read: ROC curves of each score, conversion and lift by decile, the MQL rule today, hand-raisers and
disqualifiers with their evidence, the proposed changes and their expected effect. It follows the review page
(streams.cli.review_page) and reuses its parts: the page template (plotly.js inlined once, a Content-Security-Policy
that forbids any network load), the locale formats (Babel), the tables and the chart layout; every string from
the data is escaped by Jinja and before it reaches plotly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from leadflow.core.calibration import BOOTSTRAP_RESAMPLES
from leadflow.core.proposal import PDO
from leadflow.streams.cli.calibration_labels import labels_for
from leadflow.streams.cli.review_page import (
    CSP,
    LOCALES,
    PAGE,
    Cell,
    Formats,
    Section,
    Table,
    chart,
    nothing,
    num,
    plot_text,
)

__all__ = ["render_calibration"]

LINE_COLOURS: Final = {
    "fit": "#8ab4f8",
    "engagement": "#f0a35e",
    "combined": "#1f6feb",
    "proposed": "#1a7f37",
    "chance": "#9aa5b1",
}
UTC_ZONE: Final = ZoneInfo("UTC")


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _number(fmt: Formats, value: float | None, digits: str = "0.000") -> str:
    from babel import numbers

    return "—" if value is None else numbers.format_decimal(value, format=digits, locale=fmt.locale)


def _interval(fmt: Formats, ci: Mapping[str, float] | None, percent: bool = False) -> str:
    if not ci:
        return "—"
    shown = fmt.percent if percent else (lambda v: _number(fmt, v))
    return f"{shown(ci['low'])} – {shown(ci['high'])}"


def _date(fmt: Formats, text: str | None) -> str:
    if text is None:
        return "—"
    from babel import dates

    return dates.format_date(datetime.fromisoformat(text).date(), format="medium", locale=fmt.locale)


# --- header -----------------------------------------------------------------------------------------------------


def header(doc: Mapping[str, Any], fmt: Formats) -> dict[str, Any]:
    split = doc["split"]
    history = doc["history"]
    policy = doc["policy"]
    facts = [
        (fmt.say("policy"), fmt.say("policy_value", name=policy["name"], version=str(policy["version"])), ""),
        (fmt.say("fingerprint"), policy["fingerprint"], "code"),
        (
            fmt.say("split"),
            fmt.say(
                "split_value",
                train=fmt.count(split["train"]["leads"]),
                train_from=_date(fmt, split["train"]["created_from"]),
                train_to=_date(fmt, split["train"]["created_to"]),
                test=fmt.count(split["test"]["leads"]),
            ),
            "",
        ),
        (fmt.say("method"), fmt.say("method_value", resamples=fmt.count(BOOTSTRAP_RESAMPLES)), ""),
    ]
    name = str(history["file"]).rsplit("/", 1)[-1]
    return {
        "title": fmt.say("title"),
        "heading": fmt.say("heading", history=name, leads=fmt.count(history["leads"]), target=doc["target"]),
        "days": f"{_date(fmt, history['first_event_at'])} – {_date(fmt, history['last_event_at'])}",
        "elapsed": "",
        "facts": facts,
    }


# --- ROC --------------------------------------------------------------------------------------------------------


def roc_curves(doc: Mapping[str, Any]) -> list[tuple[str, list[Mapping[str, float]]]]:
    curves = [
        (name, _get(doc, "current", "all", "scores", name, "roc") or []) for name in ("fit", "engagement", "combined")
    ]
    proposed = _get(doc, "proposal", "test", "proposed_roc")
    if proposed:
        curves.append(("proposed", proposed))
    return [(name, points) for name, points in curves if points]


def roc_chart(curves: Sequence[tuple[str, Sequence[Mapping[str, float]]]], fmt: Formats) -> Markup:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": LINE_COLOURS["chance"]},
            name=plot_text(fmt.say("chance")),
            hoverinfo="skip",
        )
    )
    for name, points in curves:
        fig.add_trace(
            go.Scatter(
                x=[0.0, *(p["fpr"] for p in points)],
                y=[0.0, *(p["tpr"] for p in points)],
                mode="lines+markers",
                marker={"size": 4},
                line={"color": LINE_COLOURS[name], "shape": "hv" if len(points) > 50 else "linear"},
                name=plot_text(fmt.say(f"score_{name}")),
                hovertemplate="%{x:.1%} → %{y:.1%}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=plot_text(fmt.say("fpr")), range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text=plot_text(fmt.say("tpr")), range=[0, 1], tickformat=".0%")
    return chart(fig, "roc", fmt, height=460)


def auc_table(doc: Mapping[str, Any], fmt: Formats) -> Table:
    rows = []
    for name in ("fit", "engagement", "combined"):
        whole = _get(doc, "current", "all", "scores", name) or {}
        test = _get(doc, "current", "test", "scores", name) or {}
        rows.append(
            (
                Cell(fmt.say(f"score_{name}")),
                num(_number(fmt, whole.get("auc"))),
                num(_interval(fmt, whole.get("auc_ci95"))),
                num(_number(fmt, test.get("auc"))),
                num(_interval(fmt, test.get("auc_ci95"))),
            )
        )
    proposed = _get(doc, "proposal", "test", "combined_auc")
    if proposed:
        rows.append(
            (
                Cell(fmt.say("score_proposed")),
                num("—"),
                num("—"),
                num(_number(fmt, proposed.get("proposed"))),
                num(_interval(fmt, proposed.get("proposed_ci95"))),
            )
        )
    head = ("score", "auc_all", "ci", "auc_test", "ci")
    return Table(head=tuple(fmt.say(h) for h in head), rows=tuple(rows))


def roc_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    curves = roc_curves(doc)
    if not curves:
        return nothing("roc", fmt.say("roc_title"))
    combined = _get(doc, "current", "all", "scores", "combined") or {}
    ci = combined.get("auc_ci95") or {}
    fact = fmt.say(
        "roc_fact",
        auc=_number(fmt, combined.get("auc")),
        low=_number(fmt, ci.get("low")),
        high=_number(fmt, ci.get("high")),
    )
    return Section(
        key="roc",
        title=fmt.say("roc_title"),
        facts=(fact,),
        chart=roc_chart(curves, fmt),
        tables=(auc_table(doc, fmt),),
    )


# --- lift -------------------------------------------------------------------------------------------------------


def lift_chart(current: Sequence[Mapping[str, Any]], proposed: Sequence[Mapping[str, Any]], fmt: Formats) -> Markup:
    fig = go.Figure()
    current_key = "combined_test" if proposed else "combined"
    for key, rows in ((current_key, current), ("proposed", proposed)):
        if not rows:
            continue
        fig.add_trace(
            go.Bar(
                x=[str(r["decile"]) for r in rows],
                y=[r["lift"] or 0.0 for r in rows],
                name=plot_text(fmt.say(f"score_{key}")),
                marker_color=LINE_COLOURS["combined" if key == "combined_test" else key],
                text=[_number(fmt, r["lift"], "0.0") for r in rows],
                textposition="outside",
                hovertemplate="%{x}: %{text}<extra></extra>",
            )
        )
    fig.add_hline(y=1, line_dash="dot", line_color=LINE_COLOURS["chance"])
    fig.update_layout(barmode="group")
    highest = max((r["lift"] or 0.0 for r in (*current, *proposed)), default=1.0)
    fig.update_xaxes(title_text=plot_text(fmt.say("decile")), type="category")
    fig.update_yaxes(title_text=plot_text(fmt.say("lift")), range=[0, max(1.2, highest * 1.15)])
    return chart(fig, "lift", fmt, height=380)


def decile_table(rows: Sequence[Mapping[str, Any]], fmt: Formats, caption: str) -> Table:
    body = tuple(
        (
            num(str(r["decile"])),
            num(fmt.count(r["leads"])),
            num(f"{_number(fmt, r['score_low'], '#,##0')} – {_number(fmt, r['score_high'], '#,##0')}"),
            num(fmt.count(r["converters"])),
            num(fmt.percent(r["conversion"])),
            num(_interval(fmt, r["ci95"], percent=True)),
            num(_number(fmt, r["lift"], "0.00")),
            num(fmt.percent(r["cumulative_capture"])),
        )
        for r in rows
    )
    head = ("decile", "leads", "score_range", "converters", "conversion", "ci", "lift", "capture")
    return Table(head=tuple(fmt.say(h) for h in head), rows=body, caption=caption)


def lift_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    current = _get(doc, "current", "all", "scores", "combined", "deciles") or []
    current_test = _get(doc, "current", "test", "scores", "combined", "deciles") or []
    proposed = _get(doc, "proposal", "test", "proposed_deciles") or []
    if not current:
        return nothing("lift", fmt.say("lift_title"))
    top = current[0]
    base = _get(doc, "current", "all", "mql_rule", "base_rate", "value")
    fact = fmt.say(
        "lift_fact",
        conversion=fmt.percent(top["conversion"]),
        lift=_number(fmt, top["lift"], "0.0"),
        base=fmt.percent(base),
    )
    tables = [decile_table(current, fmt, fmt.say("score_combined"))]
    # The chart compares like with like: both scores on the newer leads (all leads when there is no proposal).
    charted = (current_test, proposed) if proposed and current_test else (current, [])
    if proposed:
        tables.append(decile_table(proposed, fmt, fmt.say("score_proposed")))
    return Section(
        key="lift",
        title=fmt.say("lift_title"),
        facts=(fact,),
        chart=lift_chart(*charted, fmt),
        tables=tuple(tables),
    )


# --- the MQL rule -----------------------------------------------------------------------------------------------


def share_row(label: str, share: Mapping[str, Any], fmt: Formats) -> tuple[Cell, ...]:
    detail = f"{fmt.count(share['part'])} / {fmt.count(share['whole'])}"
    return (
        Cell(label),
        num(fmt.percent(share["value"])),
        num(detail),
        num(_interval(fmt, share["ci95"], percent=True)),
    )


def rule_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    rule = _get(doc, "current", "all", "mql_rule")
    if not rule or not rule["leads"]:
        return nothing("rule", fmt.say("rule_title"))
    fact = fmt.say(
        "rule_fact",
        mqls=fmt.count(rule["mqls"]),
        precision=fmt.percent(rule["precision"]["value"]),
        recall=fmt.percent(rule["recall"]["value"]),
        missed=fmt.percent(rule["converters_missed"]["value"]),
        rejected=fmt.percent(rule["mqls_rejected"]["value"]),
    )
    rows = [
        share_row(fmt.say("precision"), rule["precision"], fmt),
        share_row(fmt.say("recall"), rule["recall"], fmt),
        share_row(fmt.say("missed"), rule["converters_missed"], fmt),
        share_row(fmt.say("rejected"), rule["mqls_rejected"], fmt),
    ]
    rows += [
        share_row(fmt.say("rejected_reason", reason=reason), share, fmt)
        for reason, share in rule["rejected_by_reason"].items()
    ]
    head = (fmt.say("figure"), fmt.say("value"), "", fmt.say("ci"))
    return Section(key="rule", title=fmt.say("rule_title"), facts=(fact,), tables=(Table(head=head, rows=tuple(rows)),))


# --- evidence ---------------------------------------------------------------------------------------------------


def evidence_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    found = [e for e in (*doc.get("hand_raisers", ()), *doc.get("attributes", ())) if e["verdict"] != "none"]
    if not found:
        return nothing("evidence", fmt.say("evidence_title"))
    base = found[0]["base_rate"]
    rows = tuple(
        (
            Cell(e["name"]),
            Cell(fmt.say(f"v_{e['verdict']}")),
            num(fmt.count(e["leads"])),
            num(fmt.count(e["converters"])),
            num(fmt.percent(e["conversion"])),
            num(_interval(fmt, e["ci95"], percent=True)),
            num(_number(fmt, e["lift"], "0.00")),
        )
        for e in found
    )
    head = ("finding", "verdict", "leads", "converters", "conversion", "ci", "lift")
    return Section(
        key="evidence",
        title=fmt.say("evidence_title"),
        facts=(fmt.say("evidence_fact", base=fmt.percent(base)),),
        tables=(Table(head=tuple(fmt.say(h) for h in head), rows=rows),),
    )


# --- proposal ---------------------------------------------------------------------------------------------------


def changes_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    proposal = doc.get("proposal")
    if not proposal:
        reason = doc.get("proposal_error") or "—"
        return Section(key="changes", title=fmt.say("changes_title"), facts=(fmt.say("no_proposal", reason=reason),))
    rows: list[tuple[Cell, ...]] = []
    for rule in proposal["fit"]:
        before = fmt.say("new_rule") if rule["before"] is None else fmt.say("points", points=str(rule["before"]))
        if rule["before"] != rule["after"]:
            rows.append((Cell(rule["rule"]), num(before), num(fmt.say("points", points=str(rule["after"])))))
    for action in proposal["engagement"]:
        before = action["before"]
        after = action["after"]
        if before != after:
            shown = (
                fmt.say("new_rule")
                if before is None
                else fmt.say("points_cap", points=str(before["points"]), cap=str(before["cap"]))
            )
            rows.append(
                (
                    Cell(action["action"]),
                    num(shown),
                    num(fmt.say("points_cap", points=str(after["points"]), cap=str(after["cap"]))),
                )
            )
    half_life = proposal["decay_half_life_days"]
    rows.append(
        (Cell(fmt.say("half_life")), num(fmt.decimal(half_life["before"])), num(fmt.decimal(half_life["after"])))
    )
    mql = proposal["mql"]
    rows += [
        (Cell(fmt.say("min_fit")), num(str(mql["before"]["min_fit"])), num(str(mql["after"]["min_fit"]))),
        (
            Cell(fmt.say("min_engagement")),
            num(str(mql["before"]["min_engagement"])),
            num(str(mql["after"]["min_engagement"])),
        ),
        (
            Cell(fmt.say("hand_raisers")),
            Cell(", ".join(mql["before"]["hand_raisers"]) or "—"),
            Cell(", ".join(mql["after"]["hand_raisers"]) or "—"),
        ),
    ]
    head = (fmt.say("item"), fmt.say("before"), fmt.say("after"))
    return Section(
        key="changes",
        title=fmt.say("changes_title"),
        facts=(fmt.say("changes_fact", pdo=str(PDO)),),
        tables=(Table(head=head, rows=tuple(rows)),),
    )


def effect_value(row: Mapping[str, Any], key: str, fmt: Formats) -> str:
    value = row[key]
    if value is None:
        return "—"
    if row["kind"] == "share":
        if key == "difference":  # a change of a share is in percentage points
            return f"{_number(fmt, value * 100, '#,##0.0')} {fmt.say('pp')}"
        return fmt.percent(value)
    if row["kind"] == "seconds":
        shown = fmt.duration(abs(value))
        return f"-{shown}" if value < 0 else shown
    return fmt.count(value)


def effect_chart(test: Mapping[str, Any], fmt: Formats) -> Markup:
    names = ("precision", "recall")
    fig = go.Figure()
    for key, colour in (("current", LINE_COLOURS["combined"]), ("proposed", LINE_COLOURS["proposed"])):
        values = [_get(test, key, name, "value") or 0.0 for name in names]
        fig.add_trace(
            go.Bar(
                x=[plot_text(fmt.say(name)) for name in names],
                y=values,
                name=plot_text(fmt.say(key)),
                marker_color=colour,
                text=[fmt.percent(v) for v in values],
                textposition="outside",
                hovertemplate="%{x}: %{text}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.15])
    return chart(fig, "effect", fmt, height=340)


def effect_section(doc: Mapping[str, Any], fmt: Formats) -> Section:
    rows = _get(doc, "what_if", "rows") or []
    test = _get(doc, "what_if", "test_leads_replayed") or {}
    if not rows or not test:
        return nothing("effect", fmt.say("effect_title"))
    a, b = test["current"], test["proposed"]
    facts = (
        fmt.say("effect_fact"),
        fmt.say(
            "test_fact",
            mqls_a=fmt.count(a["mqls"]),
            mqls_b=fmt.count(b["mqls"]),
            precision_a=fmt.percent(a["precision"]["value"]),
            precision_b=fmt.percent(b["precision"]["value"]),
            recall_a=fmt.percent(a["recall"]["value"]),
            recall_b=fmt.percent(b["recall"]["value"]),
        ),
    )
    body = tuple(
        (
            Cell(row["figure"]),
            num(effect_value(row, "current", fmt)),
            num(effect_value(row, "proposed", fmt)),
            num(fmt.signed(effect_value(row, "difference", fmt), row["difference"] or 0)),
        )
        for row in rows
        if row["current"] is not None or row["proposed"] is not None
    )
    head = (fmt.say("figure"), fmt.say("current"), fmt.say("proposed"), fmt.say("difference"))
    return Section(
        key="effect",
        title=fmt.say("effect_title"),
        facts=facts,
        chart=effect_chart(test, fmt),
        tables=(Table(head=head, rows=body),),
    )


# --- the page ---------------------------------------------------------------------------------------------------


def render_calibration(document: Mapping[str, Any], lang: str) -> str:
    """The calibration report (the --report-json document) as one HTML page in `lang` (en, pt-BR or es)."""
    labels = labels_for(lang)
    fmt = Formats(labels=labels, locale=LOCALES[lang], currency=None, zone=UTC_ZONE)
    parts = (
        roc_section(document, fmt),
        lift_section(document, fmt),
        rule_section(document, fmt),
        evidence_section(document, fmt),
        changes_section(document, fmt),
        effect_section(document, fmt),
    )
    plotly_js = Markup(get_plotlyjs()) if any(s.chart is not None for s in parts) else None
    return PAGE.render(
        lang=lang,
        csp=Markup(CSP),
        labels=labels,
        header=header(document, fmt),
        sections=parts,
        plotly_js=plotly_js,
        footer=fmt.say("generated"),
    )
