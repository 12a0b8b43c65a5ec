"""A scoring proposal fitted on the history: points per fit rule and per action, caps, decay, MQL thresholds.

An interpretable model (scikit-learn's L2-regularised `LogisticRegression`) is fitted on the *older* leads
(core.calibration.time_split) to predict the target from

- one 0/1 feature per fit rule of the policy, and per fit condition the evidence found (core.calibration:
  disqualifiers and qualifiers, e.g. `occupation=Student`), which become new fit rules;
- one feature per action: how many times the lead did it before its scoring moment, each time decayed by the
  half-life (`0.5 ** (age / half_life)`, as the engine decays engagement), held within a cap of `k` times.

Coefficients are mapped back to integer points the way credit scorecards do it: `points = coefficient x PDO /
ln 2`, with PDO (points to double the odds) = 10, so every 10 points of fit or engagement double the odds of
converting. An action's cap is its points x k, where k is the 90th percentile of how often the leads who did it
did it (at most 20). The half-life is the candidate (7, 14, 30, 60, 90, 180 days) whose model predicts best the
newest fifth of the older leads (log loss), then the model is refitted on all older leads with it.

The MQL thresholds are the pair (min_fit, min_engagement >= 1) that maximises F1 (the harmonic mean of precision:
sales' concern, and recall: marketing's) on the older leads under the proposed points, hand-raisers counted as
MQLs. Hand-raisers are the actions whose evidence says so, plus the policy's own hand-raisers that too few leads
did to judge. The proposal is then scored on the *newer* leads, which it never saw.

Pure: samples and the policy's YAML document in, a `Proposal` (a new document, its changes, its figures) out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from leadflow.core.calibration import (
    BOOTSTRAP_RESAMPLES,
    Candidate,
    Decile,
    Evidence,
    Interval,
    LeadSample,
    RocPoint,
    RuleFigures,
    attribute_values,
    auc,
    bootstrap_auc,
    deciles,
    roc_curve,
    rule_figures,
)
from leadflow.core.scoring import SECONDS_PER_DAY, is_match
from leadflow.schemas.policy import FitRule, Match, Policy

PDO: Final = 10  # points to double the odds
HALF_LIVES: Final = (7.0, 14.0, 30.0, 60.0, 90.0, 180.0)
MAX_CAP_TIMES: Final = 20
MAX_POINTS: Final = 1000
MAX_GRID: Final = 60  # threshold values tried per score
REGULARISATION_C: Final = 1.0


class ProposalError(ValueError):
    """The history cannot support a proposal (too few leads, one class only); the message says what is needed."""


# ---- features --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A fit rule's condition: one of the policy's rules (index into scoring.fit), or a new one from evidence."""

    label: str
    rule: Match
    index: int | None  # position in the policy's scoring.fit; None for a new rule
    evidence: Evidence | None = None


def describe(rule: Match) -> str:
    if rule.equals is not None:
        return f"{rule.attribute} = {rule.equals}"
    if rule.in_ is not None:
        return f"{rule.attribute} in {', '.join(rule.in_)}"
    if rule.contains is not None:
        return f"{rule.attribute} contains {', '.join(rule.contains)}"
    low = f"{rule.min:g} <= " if rule.min is not None else ""
    high = f" <= {rule.max:g}" if rule.max is not None else ""
    return f"{low}{rule.attribute}{high}"


def candidate_rule(candidate: Candidate) -> Match:
    if candidate.matcher == "equals":
        return Match(attribute=candidate.attribute, equals=str(candidate.value))
    return Match(attribute=candidate.attribute, min=candidate.value)


def conditions(policy: Policy, evidence: Sequence[Evidence], train: Sequence[LeadSample]) -> list[Condition]:
    """The policy's fit rules, then each disqualifier or qualifier whose leads no rule already singles out."""
    found = [Condition(describe(rule), rule, i) for i, rule in enumerate(policy.scoring.fit)]
    seen = {tuple(is_match(c.rule, s.profile) for s in train) for c in found}
    for item in evidence:
        if item.kind != "attribute" or item.verdict not in ("disqualifier", "qualifier") or item.attribute is None:
            continue
        assert item.value is not None
        rule = candidate_rule(Candidate(item.attribute, "equals" if item.matcher == "equals" else "min", item.value))
        pattern = tuple(is_match(rule, s.profile) for s in train)
        if pattern in seen:
            continue
        seen.add(pattern)
        found.append(Condition(describe(rule), rule, None, item))
    return found


def fit_matrix(samples: Sequence[LeadSample], found: Sequence[Condition]) -> np.ndarray[Any, np.dtype[np.float64]]:
    matrix = np.zeros((len(samples), len(found)))
    for row, sample in enumerate(samples):
        for col, condition in enumerate(found):
            if is_match(condition.rule, sample.profile):
                matrix[row, col] = 1.0
    return matrix


def decayed_counts(sample: LeadSample, actions: Sequence[str], half_life_days: float) -> list[float]:
    """How many times the lead did each action before its scoring moment, each time decayed by the half-life."""
    index = {action: i for i, action in enumerate(actions)}
    counts = [0.0] * len(actions)
    scale = half_life_days * SECONDS_PER_DAY
    for action, age_s in sample.actions:
        i = index.get(action)
        if i is not None:
            counts[i] += 0.5 ** (max(0.0, age_s) / scale)
    return counts


def action_matrix(
    samples: Sequence[LeadSample], actions: Sequence[str], caps: Mapping[str, int], half_life_days: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    matrix = np.array([decayed_counts(s, actions, half_life_days) for s in samples], dtype=np.float64).reshape(
        len(samples), len(actions)
    )
    limits = np.array([caps[a] for a in actions], dtype=np.float64)
    return np.minimum(matrix, limits)


def cap_times(samples: Sequence[LeadSample], action: str) -> int:
    """How many times of an action count: the 90th percentile among the leads who did it (1 to 20)."""
    counts = [sum(1 for a, _ in s.actions if a == action) for s in samples]
    done = [c for c in counts if c > 0]
    if not done:
        return 1
    return int(min(MAX_CAP_TIMES, max(1, math.ceil(float(np.percentile(done, 90))))))


def is_contradicted(condition: Condition, coefficient: float) -> bool:
    """A new rule (from evidence) whose fitted points are zero or of the sign opposite to its verdict."""
    if condition.index is not None or condition.evidence is None:
        return False
    points = to_points(coefficient)
    return points == 0 or (points > 0) != (condition.evidence.verdict == "qualifier")


def to_points(coefficient: float) -> int:
    return int(max(-MAX_POINTS, min(MAX_POINTS, round(coefficient * PDO / math.log(2)))))


# ---- the proposal ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitChange:
    label: str
    index: int | None  # None: a new rule
    before: int | None
    after: int
    coefficient: float
    leads: int  # older leads the rule matches
    evidence: Evidence | None

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.label,
            "index": self.index,
            "before": self.before,
            "after": self.after,
            "coefficient": self.coefficient,
            "leads": self.leads,
            "evidence": self.evidence.as_dict() if self.evidence else None,
        }


@dataclass(frozen=True)
class ActionChange:
    action: str
    before_points: int | None
    before_cap: int | None
    after_points: int
    after_cap: int
    times: int  # how many times count toward the cap
    coefficient: float
    doers: int

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "before": None if self.before_points is None else {"points": self.before_points, "cap": self.before_cap},
            "after": {"points": self.after_points, "cap": self.after_cap},
            "times_counted": self.times,
            "coefficient": self.coefficient,
            "doers": self.doers,
        }


@dataclass(frozen=True)
class Thresholds:
    min_fit: int
    min_engagement: int
    hand_raisers: tuple[str, ...]


@dataclass
class ProposedScores:
    """The proposal's integer scores on a set of leads, and the rule it implies."""

    fit: list[int]
    engagement: list[int]
    hand_raised: list[bool]

    @property
    def combined(self) -> list[int]:
        return [f + e for f, e in zip(self.fit, self.engagement, strict=True)]

    def predicted(self, thresholds: Thresholds) -> list[bool]:
        return [
            raised or (f >= thresholds.min_fit and e >= thresholds.min_engagement)
            for f, e, raised in zip(self.fit, self.engagement, self.hand_raised, strict=True)
        ]


@dataclass
class TestFigures:
    """Current policy against the proposal, on the newer leads (never used to fit)."""

    leads: int
    current_auc: float | None
    current_ci95: Interval | None
    proposed_auc: float | None
    proposed_ci95: Interval | None
    proposed_roc: list[RocPoint]
    proposed_deciles: list[Decile]
    current_rule: RuleFigures
    proposed_rule: RuleFigures

    def as_dict(self) -> dict[str, object]:
        return {
            "leads": self.leads,
            "combined_auc": {
                "current": self.current_auc,
                "current_ci95": self.current_ci95.as_dict() if self.current_ci95 else None,
                "proposed": self.proposed_auc,
                "proposed_ci95": self.proposed_ci95.as_dict() if self.proposed_ci95 else None,
            },
            "proposed_roc": [
                {"threshold": p.threshold, "fpr": p.fpr, "tpr": p.tpr}
                for p in self.proposed_roc
                if math.isfinite(p.threshold)
            ],
            "proposed_deciles": [d.as_dict() for d in self.proposed_deciles],
            "mql_rule": {"current": self.current_rule.as_dict(), "proposed_estimate": self.proposed_rule.as_dict()},
        }


@dataclass
class Proposal:
    document: dict[str, Any]  # the whole policy document with the proposed scoring and mql sections
    fit: list[FitChange]
    actions: list[ActionChange]
    half_life_before: float
    half_life_after: float
    thresholds_before: Thresholds
    thresholds_after: Thresholds
    test: TestFigures
    half_life_losses: dict[float, float] = field(default_factory=dict)
    intercept: float = 0.0
    thresholds_chosen_by: str = "same_volume"

    def changes(self) -> list[str]:
        """The readable diff: one line per value that changes (or is new), with its evidence."""
        lines = []
        for change in self.fit:
            if change.index is None:
                why = ""
                if change.evidence is not None:
                    e = change.evidence
                    why = f" ({e.verdict}: {e.converters}/{e.leads} converted, {e.conversion:.1%} vs {e.base_rate:.1%})"
                lines.append(f"scoring.fit: new rule {change.label}: {change.after:+d} points{why}")
            elif change.before != change.after:
                lines.append(f"scoring.fit[{change.index}] {change.label}: {change.before} -> {change.after} points")
        for a in self.actions:
            if a.before_points is None:
                lines.append(f"scoring.engagement: new action {a.action}: {a.after_points} points, cap {a.after_cap}")
            elif (a.before_points, a.before_cap) != (a.after_points, a.after_cap):
                lines.append(
                    f"scoring.engagement {a.action}: {a.before_points} points cap {a.before_cap} -> "
                    f"{a.after_points} points cap {a.after_cap}"
                )
        if self.half_life_before != self.half_life_after:
            lines.append(f"scoring.decay_half_life_days: {self.half_life_before:g} -> {self.half_life_after:g}")
        before, after = self.thresholds_before, self.thresholds_after
        if before.min_fit != after.min_fit:
            lines.append(f"mql.min_fit: {before.min_fit} -> {after.min_fit}")
        if before.min_engagement != after.min_engagement:
            lines.append(f"mql.min_engagement: {before.min_engagement} -> {after.min_engagement}")
        if before.hand_raisers != after.hand_raisers:
            lines.append(
                f"mql.hand_raiser_actions: [{', '.join(before.hand_raisers)}] -> [{', '.join(after.hand_raisers)}]"
            )
        return lines

    def as_dict(self) -> dict[str, object]:
        return {
            "model": {
                "kind": "logistic regression (scikit-learn LogisticRegression, L2, C=1.0), fitted on the older leads",
                "points_to_double_the_odds": PDO,
                "intercept": self.intercept,
                "half_life_log_loss": {f"{h:g}": loss for h, loss in self.half_life_losses.items()},
            },
            "fit": [c.as_dict() for c in self.fit],
            "engagement": [a.as_dict() for a in self.actions],
            "decay_half_life_days": {"before": self.half_life_before, "after": self.half_life_after},
            "mql": {
                "chosen_by": self.thresholds_chosen_by,
                "before": vars(self.thresholds_before) | {"hand_raisers": list(self.thresholds_before.hand_raisers)},
                "after": vars(self.thresholds_after) | {"hand_raisers": list(self.thresholds_after.hand_raisers)},
            },
            "changes": self.changes(),
            "test": self.test.as_dict(),
        }


def fitted(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> LogisticRegression:
    model = LogisticRegression(C=REGULARISATION_C, max_iter=5000)
    model.fit(x, y)
    return model


def choose_half_life(
    train: Sequence[LeadSample], fit_x: np.ndarray[Any, Any], actions: Sequence[str], caps: Mapping[str, int]
) -> tuple[float, dict[float, float]]:
    """The half-life whose model, fitted on the older four fifths of `train`, predicts the newest fifth best."""
    y = np.array([s.converted for s in train])
    cut = int(len(train) * 0.8)
    losses: dict[float, float] = {}
    if len(set(y[:cut].tolist())) < 2 or len(set(y[cut:].tolist())) < 2:
        return HALF_LIVES[2], losses
    for half_life in HALF_LIVES:
        x = np.hstack([fit_x, action_matrix(train, actions, caps, half_life)])
        model = fitted(x[:cut], y[:cut])
        losses[half_life] = float(log_loss(y[cut:], model.predict_proba(x[cut:])[:, 1], labels=[False, True]))
    best = min(losses, key=lambda h: (losses[h], h))
    return best, losses


def fit_points_model(
    fit_x: np.ndarray[Any, Any],
    train: Sequence[LeadSample],
    *,
    actions: Sequence[str],
    caps: Mapping[str, int],
    half_life: float,
    y: np.ndarray[Any, Any],
) -> tuple[LogisticRegression, list[float]]:
    """The model and its coefficients (fit conditions, then actions). An action whose coefficient comes out
    zero or negative gets 0 points (the engine takes a negative action's points from every other action, which
    is not what a weak signal means) and the model is refitted without it, so the others carry the weight."""
    act_x = action_matrix(train, actions, caps, half_life)
    keep = list(range(len(actions)))
    while True:
        model = fitted(np.hstack([fit_x, act_x[:, keep]]), y)
        coefficients = [float(c) for c in model.coef_[0]]
        weak = [col for col, c in zip(keep, coefficients[fit_x.shape[1] :], strict=True) if to_points(c) <= 0]
        if not weak:
            break
        keep = [col for col in keep if col not in weak]
    by_action = dict(zip(keep, coefficients[fit_x.shape[1] :], strict=True))
    return model, coefficients[: fit_x.shape[1]] + [by_action.get(col, 0.0) for col in range(len(actions))]


@dataclass(frozen=True)
class Scorecard:
    """The proposed points: what `integer_scores` needs to score leads."""

    conditions: Sequence[Condition]
    fit_points: Sequence[int]
    actions: Sequence[str]
    action_points: Sequence[int]
    caps: Mapping[str, int]
    half_life: float
    hand_raisers: Sequence[str]


def integer_scores(samples: Sequence[LeadSample], card: Scorecard) -> ProposedScores:
    """The proposal's fit and engagement scores, as the engine would roughly compute them: fit never below 0,
    engagement each action within its cap, never below 0."""
    fit_x = fit_matrix(samples, card.conditions)
    act_x = action_matrix(samples, card.actions, card.caps, card.half_life)
    n = len(samples)
    fit = np.maximum(0, fit_x @ np.array(card.fit_points, dtype=np.float64)) if card.conditions else np.zeros(n)
    points = np.array(card.action_points, dtype=np.float64)
    engagement = np.maximum(0, np.rint(act_x @ points)) if card.actions else np.zeros(n)
    raised = [any(s.did(a) for a in card.hand_raisers) for s in samples]
    return ProposedScores([int(v) for v in fit], [int(v) for v in engagement], raised)


def best_thresholds(
    scores: ProposedScores, labels: Sequence[bool], hand_raisers: tuple[str, ...], current_mqls: int
) -> tuple[Thresholds, str]:
    """The MQL thresholds (min_fit, min_engagement >= 1) for the proposed points, and how they were chosen.

    When the current rule made between 1% and 90% of these leads MQL: the pair whose MQL volume is within 10%
    of the current one (sales' capacity and marketing's weekly commitment stay as agreed) with the most
    converters among its MQLs (ties: the volume closest to the current one, then the stricter pair); when none
    is that close, the closest volume. Otherwise (a rule that made almost no MQL, or almost all): the pair with
    the best F1, the balance of precision (sales' concern) and recall (marketing's)."""
    fit = np.array(scores.fit)
    engagement = np.array(scores.engagement)
    raised = np.array(scores.hand_raised, dtype=bool)
    y = np.array(labels, dtype=bool)
    positives = int(y.sum())
    n = len(y)
    same_volume = n > 0 and 0.01 <= current_mqls / n <= 0.9

    def grid(values: np.ndarray[Any, Any], floor: int) -> list[int]:
        distinct = sorted({int(v) for v in values if v >= floor} | {floor})
        if len(distinct) <= MAX_GRID:
            return distinct
        return sorted({int(v) for v in np.percentile(values, np.linspace(0, 100, MAX_GRID))} | {floor})

    best: tuple[float, ...] = (-math.inf,)
    choice = (0, 1)
    for min_fit in grid(fit, 0):
        fit_ok = fit >= min_fit
        for min_engagement in grid(engagement, 1):
            predicted = raised | (fit_ok & (engagement >= min_engagement))
            tp = int((predicted & y).sum())
            count = int(predicted.sum())
            if same_volume:
                gap = abs(count - current_mqls) / current_mqls
                key: tuple[float, ...] = (1.0, tp, -gap) if gap <= 0.1 else (0.0, -gap, tp)
            else:
                key = (2 * tp / (count + positives) if count + positives else 0.0,)
            key = (*key, min_fit, min_engagement)
            if key > best:
                best, choice = key, (min_fit, min_engagement)
    how = "same_volume" if same_volume else "best_f1"
    return Thresholds(choice[0], choice[1], hand_raisers), how


def is_against(evidence: Evidence | None, min_support: int) -> bool:
    """Evidence that a hand-raiser does not deserve an immediate MQL: enough leads did it, and even the upper
    bound of their conversion is below the base rate."""
    if evidence is None or evidence.leads < min_support:
        return False
    interval = evidence.ci95
    return interval is not None and interval.high < evidence.base_rate


def proposed_hand_raisers(policy: Policy, evidence: Sequence[Evidence], min_support: int) -> tuple[str, ...]:
    """The policy's hand-raisers (unless the evidence is against one), and the actions the evidence makes ones."""
    judged = {e.name: e for e in evidence if e.kind == "action"}
    keep = [action for action in policy.mql.hand_raiser_actions if not is_against(judged.get(action), min_support)]
    found = [e.name for e in evidence if e.kind == "action" and e.verdict == "hand_raiser" and e.name not in keep]
    return (*keep, *sorted(found))


def propose(
    policy: Policy,
    document: Mapping[str, Any],
    train: Sequence[LeadSample],
    test: Sequence[LeadSample],
    *,
    hand_raiser_evidence: Sequence[Evidence],
    attribute_evidence: Sequence[Evidence],
    min_support: int = 30,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> Proposal:
    """Fit the proposal on `train` (the older leads) and score it on `test` (the newer ones); see the module
    docstring. `document` is the policy file as loaded from YAML: the proposal replaces its scoring and mql
    sections' values and bumps its version, and keeps everything else."""
    y = np.array([s.converted for s in train], dtype=bool)
    if len(train) < 10 or y.all() or not y.any():
        raise ProposalError(
            f"the older {len(train)} leads need converters and non-converters to fit a proposal (at least 10 leads "
            f"of both kinds); give a longer history or another --target"
        )
    found = conditions(policy, attribute_evidence, train)
    seen_actions = {a for s in train for a, _ in s.actions}
    counts = {a: sum(1 for s in train if s.did(a)) for a in seen_actions}
    actions = [r.action for r in policy.scoring.engagement if r.points >= 0] + sorted(
        a for a in seen_actions if a not in policy.engagement_rules and counts[a] >= min_support
    )
    caps = {a: cap_times(train, a) for a in actions}
    fit_x = fit_matrix(train, found)
    half_life, losses = choose_half_life(train, fit_x, actions, caps)
    model, coefficients = fit_points_model(fit_x, train, actions=actions, caps=caps, half_life=half_life, y=y)
    while contradicted := [i for i, c in enumerate(found) if is_contradicted(c, coefficients[i])]:
        # A new rule whose points would say the opposite of its evidence (or nothing) is left out: the other
        # rules already carry what it holds. Its evidence stays in the report.
        found = [c for i, c in enumerate(found) if i not in contradicted]
        fit_x = fit_matrix(train, found)
        model, coefficients = fit_points_model(fit_x, train, actions=actions, caps=caps, half_life=half_life, y=y)
    fit_points = [to_points(c) for c in coefficients[: len(found)]]
    action_points = [max(0, to_points(c)) for c in coefficients[len(found) :]]

    hand_raisers = proposed_hand_raisers(policy, hand_raiser_evidence, min_support)
    card = Scorecard(found, fit_points, actions, action_points, caps, half_life, hand_raisers)
    train_scores = integer_scores(train, card)
    current_mqls = sum(1 for s in train if s.mql)
    thresholds, how = best_thresholds(train_scores, y.tolist(), hand_raisers, current_mqls)

    fit_changes = [
        FitChange(
            label=c.label,
            index=c.index,
            before=policy.scoring.fit[c.index].points if c.index is not None else None,
            after=points,
            coefficient=coefficient,
            leads=int(fit_x[:, col].sum()),
            evidence=c.evidence,
        )
        for col, (c, points, coefficient) in enumerate(zip(found, fit_points, coefficients, strict=False))
    ]
    action_changes = []
    for action, points, coefficient in zip(actions, action_points, coefficients[len(found) :], strict=True):
        rule = policy.engagement_rules.get(action)
        action_changes.append(
            ActionChange(
                action=action,
                before_points=rule.points if rule else None,
                before_cap=rule.cap if rule else None,
                after_points=points,
                after_cap=max(0, points * caps[action]),
                times=caps[action],
                coefficient=coefficient,
                doers=counts.get(action, 0),
            )
        )

    test_scores = integer_scores(test, card)
    labels = [s.converted for s in test]
    current = [s.combined for s in test]
    proposed = test_scores.combined
    predicted = dict(zip((s.lead_id for s in test), test_scores.predicted(thresholds), strict=True))
    figures = TestFigures(
        leads=len(test),
        current_auc=auc(current, labels),
        current_ci95=bootstrap_auc(current, labels, resamples=resamples) if resamples else None,
        proposed_auc=auc(proposed, labels),
        proposed_ci95=bootstrap_auc(proposed, labels, resamples=resamples) if resamples else None,
        proposed_roc=roc_curve(proposed, labels),
        proposed_deciles=deciles(proposed, labels),
        current_rule=rule_figures(test),
        proposed_rule=rule_figures(test, lambda s: predicted[s.lead_id]),
    )
    before = Thresholds(policy.mql.min_fit, policy.mql.min_engagement, tuple(policy.mql.hand_raiser_actions))
    proposal = Proposal(
        document={},
        fit=fit_changes,
        actions=action_changes,
        half_life_before=policy.scoring.decay_half_life_days,
        half_life_after=half_life,
        thresholds_before=before,
        thresholds_after=thresholds,
        test=figures,
        half_life_losses=losses,
        intercept=float(model.intercept_[0]),
        thresholds_chosen_by=how,
    )
    proposal.document = proposed_document(document, policy, proposal)
    return proposal


def rule_document(rule: Match, points: int) -> dict[str, Any]:
    shown = FitRule.model_validate({**rule.model_dump(by_alias=True, exclude_none=True), "points": points})
    return shown.model_dump(by_alias=True, exclude_none=True)


def proposed_document(document: Mapping[str, Any], policy: Policy, proposal: Proposal) -> dict[str, Any]:
    """The policy document with the proposal's scoring and MQL values: every other section as it was."""
    new = deepcopy(dict(document))
    new["version"] = policy.version + 1
    new["name"] = f"{policy.name}-calibrated"
    scoring = dict(new.get("scoring") or {})
    rules = []
    for change in proposal.fit:
        rule = policy.scoring.fit[change.index] if change.index is not None else None
        if rule is not None:
            rules.append(rule_document(rule, change.after))
        else:
            assert change.evidence is not None
            assert change.evidence.attribute is not None
            value = change.evidence.value
            assert value is not None
            matcher: Match = candidate_rule(
                Candidate(change.evidence.attribute, "equals" if change.evidence.matcher == "equals" else "min", value)
            )
            rules.append(rule_document(matcher, change.after))
    engagement = [{"action": a.action, "points": a.after_points, "cap": a.after_cap} for a in proposal.actions]
    proposed_actions = {a.action for a in proposal.actions}
    engagement += [
        {"action": r.action, "points": r.points, "cap": r.cap}
        for r in policy.scoring.engagement
        if r.action not in proposed_actions  # negative actions (unsubscribe) stay as the policy has them
    ]
    scoring["fit"] = rules
    scoring["engagement"] = engagement
    scoring["decay_half_life_days"] = proposal.half_life_after
    new["scoring"] = scoring
    mql = dict(new.get("mql") or {})
    mql["min_fit"] = proposal.thresholds_after.min_fit
    mql["min_engagement"] = proposal.thresholds_after.min_engagement
    mql["hand_raiser_actions"] = list(proposal.thresholds_after.hand_raisers)
    new["mql"] = mql
    return new


__all__ = ["Proposal", "ProposalError", "attribute_values", "propose"]
