"""Calibration: how well the policy's scores and MQL rule predict conversion, measured on the lead history.

Pure functions over `LeadSample`s (one per lead, built by the shell from a replay of the history with the same core
as `leadflow replay`): AUC and ROC of each score, precision and recall of the MQL rule, conversion and lift by
score decile, the converters the rule misses, the MQLs sales rejects by reason, and the evidence behind
hand-raisers and disqualifiers.

Honest evaluation: leads are split by time (`time_split`: the older ones fit a proposal, the newer ones test it),
and every figure comes with a 95% interval: proportions with the Wilson score interval (closed form), AUC with a
percentile bootstrap (resampling leads with replacement, a seeded generator: the same history gives the same
interval).

A sample's scores are taken at its *scoring moment*: when it first reached `mql` or any later stage (what sales
saw), else at its highest fit + engagement (the best it ever looked to marketing). Only actions up to that moment
count as its features, so nothing sales did after the hand-off leaks into what predicts conversion.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from leadflow.schemas.events import Profile

Target = Literal["customer", "sql", "sal"]
TARGETS: Final[tuple[Target, ...]] = ("customer", "sql", "sal")
Z95: Final = 1.959963984540054  # the standard normal quantile of 0.975
BOOTSTRAP_RESAMPLES: Final = 1000
BOOTSTRAP_SEED: Final = 0
DECILES: Final = 10
RULE_REASONS: Final = frozenset({"score", "hand_raiser"})  # the policy's own MQL rule (not an external MQL)

ScoreName = Literal["fit", "engagement", "combined"]
SCORES: Final[tuple[ScoreName, ...]] = ("fit", "engagement", "combined")


@dataclass(frozen=True)
class LeadSample:
    """One lead as the calibration sees it: its scores and features at its scoring moment, and what became of it."""

    lead_id: str
    created_at: datetime
    scored_at: datetime
    fit: int
    engagement: int
    converted: bool  # reached the target stage (or any later main-funnel stage)
    mql: bool  # became MQL by the policy's rule (score or hand-raiser), at any time
    profile: Profile = field(default_factory=Profile)
    actions: tuple[tuple[str, float], ...] = ()  # (action, seconds before scored_at), activities up to that moment
    rejections: tuple[str, ...] = ()  # rejection reason codes, one per rejection

    @property
    def combined(self) -> int:
        return self.fit + self.engagement

    def score(self, name: ScoreName) -> int:
        return self.fit if name == "fit" else self.engagement if name == "engagement" else self.combined

    def did(self, action: str) -> bool:
        return any(a == action for a, _ in self.actions)


# ---- intervals -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def wilson(successes: int, trials: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of a proportion (95% by default); None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # The bounds hold the observed share exactly at the ends (floating point would leave 1e-18 at 0 of n).
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == trials else min(1.0, max(p, centre + half))
    return Interval(low, high)


@dataclass(frozen=True)
class Share:
    """A proportion with its Wilson interval."""

    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None

    def as_dict(self) -> dict[str, object]:
        interval = wilson(self.part, self.whole)
        return {
            "value": self.value,
            "part": self.part,
            "whole": self.whole,
            "ci95": interval.as_dict() if interval else None,
        }


# ---- ranking metrics -----------------------------------------------------------------------------------------

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def auc(scores: Sequence[float] | FloatArray, labels: Sequence[bool] | BoolArray) -> float | None:
    """The area under the ROC curve: the chance that a random converter scores above a random non-converter,
    ties counting one half (Mann-Whitney U with mid-ranks). None when either class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.bool_)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(s)
    u = float(ranks[y].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def weighted_auc(scores: FloatArray, labels: BoolArray, weights: NDArray[np.int64]) -> float | None:
    """The AUC of a sample where lead i counts weights[i] times: from the weighted counts of converters and
    non-converters per distinct score, in one pass (no sort); None when either class weighs nothing."""
    distinct, index = np.unique(scores, return_inverse=True)
    w = weights.astype(np.float64)
    positives = np.bincount(index, weights=w * labels, minlength=len(distinct))
    negatives = np.bincount(index, weights=w * ~labels, minlength=len(distinct))
    p, q = positives.sum(), negatives.sum()
    if p == 0 or q == 0:
        return None
    below = np.cumsum(negatives) - negatives  # non-converters scoring strictly lower
    return float((positives * (below + negatives / 2)).sum() / (p * q))


def bootstrap_auc(
    scores: Sequence[float] | FloatArray,
    labels: Sequence[bool] | BoolArray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """The 95% percentile-bootstrap interval of the AUC (leads resampled with replacement).

    A resample is a count per lead (how many times it was drawn); its AUC comes from the weighted counts of
    converters and non-converters per distinct score, in one pass (no sort per resample)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.bool_)
    if auc(s, y) is None:
        return None
    rng = np.random.default_rng(seed)
    n = len(s)
    found = []
    for _ in range(resamples):
        value = weighted_auc(s, y, np.bincount(rng.integers(0, n, n), minlength=n))
        if value is not None:
            found.append(value)
    if not found:
        return None
    low, high = np.percentile(found, [2.5, 97.5])
    return Interval(float(low), float(high))


@dataclass(frozen=True)
class RocPoint:
    threshold: float  # leads scoring at least this are predicted to convert
    fpr: float
    tpr: float


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> list[RocPoint]:
    """The ROC curve: one point per distinct score (highest first), from (0, 0) to (1, 1)."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return []
    by_score: dict[float, list[int]] = {}
    for score, label in zip(scores, labels, strict=True):
        counts = by_score.setdefault(float(score), [0, 0])
        counts[0 if label else 1] += 1
    points = [RocPoint(math.inf, 0.0, 0.0)]
    tp = fp = 0
    for score in sorted(by_score, reverse=True):
        tp += by_score[score][0]
        fp += by_score[score][1]
        points.append(RocPoint(score, fp / negatives, tp / positives))
    return points


@dataclass(frozen=True)
class Decile:
    decile: int  # 1 = the highest scores
    leads: int
    converters: int
    low: float  # lowest score in the decile
    high: float  # highest score in the decile
    conversion: float
    ci95: Interval | None
    lift: float | None  # conversion / the base rate
    cumulative_capture: float | None  # share of all converters in deciles 1..this one

    def as_dict(self) -> dict[str, object]:
        return {
            "decile": self.decile,
            "leads": self.leads,
            "converters": self.converters,
            "score_low": self.low,
            "score_high": self.high,
            "conversion": self.conversion,
            "ci95": self.ci95.as_dict() if self.ci95 else None,
            "lift": self.lift,
            "cumulative_capture": self.cumulative_capture,
        }


def deciles(scores: Sequence[float], labels: Sequence[bool]) -> list[Decile]:
    """Conversion and lift by score decile, highest scores first. Leads with the same score always share a
    decile (each lead's decile comes from its mid-rank), so a decile may be empty or hold more than a tenth."""
    n = len(scores)
    if n == 0:
        return []
    ranks = rankdata([-float(s) for s in scores])  # 1 = the highest score; ties share their mid-rank
    total_converters = sum(1 for y in labels if y)
    base = total_converters / n
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(DECILES)]
    for rank, score, label in zip(ranks, scores, labels, strict=True):
        index = min(DECILES - 1, int((rank - 0.5) * DECILES / n))
        groups[index].append((float(score), bool(label)))
    result = []
    captured = 0
    for index, group in enumerate(groups):
        if not group:
            continue
        converters = sum(1 for _, y in group if y)
        captured += converters
        conversion = converters / len(group)
        result.append(
            Decile(
                decile=index + 1,
                leads=len(group),
                converters=converters,
                low=min(s for s, _ in group),
                high=max(s for s, _ in group),
                conversion=conversion,
                ci95=wilson(converters, len(group)),
                lift=conversion / base if base else None,
                cumulative_capture=captured / total_converters if total_converters else None,
            )
        )
    return result


# ---- the MQL rule ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleFigures:
    """The MQL rule as a classifier of the target: precision, recall, what it misses, what sales rejects."""

    leads: int
    converters: int
    mqls: int
    true_positives: int
    rejected_mqls: int
    rejections: Mapping[str, int]  # MQLs rejected at least once, by their (first) reason

    @property
    def precision(self) -> Share:
        return Share(self.true_positives, self.mqls)

    @property
    def recall(self) -> Share:
        return Share(self.true_positives, self.converters)

    @property
    def missed(self) -> Share:
        """Converters the rule never made MQL (they converted through an external MQL or a fact)."""
        return Share(self.converters - self.true_positives, self.converters)

    @property
    def rejected(self) -> Share:
        return Share(self.rejected_mqls, self.mqls)

    def as_dict(self) -> dict[str, object]:
        return {
            "leads": self.leads,
            "converters": self.converters,
            "base_rate": Share(self.converters, self.leads).as_dict(),
            "mqls": self.mqls,
            "precision": self.precision.as_dict(),
            "recall": self.recall.as_dict(),
            "converters_missed": self.missed.as_dict(),
            "mqls_rejected": self.rejected.as_dict(),
            "rejected_by_reason": {
                reason: Share(count, self.mqls).as_dict()
                for reason, count in sorted(self.rejections.items(), key=lambda item: (-item[1], item[0]))
            },
        }


def rule_figures(samples: Sequence[LeadSample], predicted: Callable[[LeadSample], bool] | None = None) -> RuleFigures:
    """Precision and recall of the MQL rule (`predicted`, default: the lead became MQL by the rule in the
    replay), the converters it misses, and its MQLs sales rejected, by reason."""
    is_mql = predicted or (lambda sample: sample.mql)
    mqls = [s for s in samples if is_mql(s)]
    rejected = [s for s in mqls if s.rejections]
    return RuleFigures(
        leads=len(samples),
        converters=sum(1 for s in samples if s.converted),
        mqls=len(mqls),
        true_positives=sum(1 for s in mqls if s.converted),
        rejected_mqls=len(rejected),
        rejections=Counter(s.rejections[0] for s in rejected),
    )


# ---- the split and the evaluation -----------------------------------------------------------------------------


def time_split(samples: Sequence[LeadSample], train_share: float = 0.7) -> tuple[list[LeadSample], list[LeadSample]]:
    """(older, newer): leads ordered by creation (then id), the first `train_share` of them to fit on."""
    if not 0 < train_share < 1:
        raise ValueError("train_share must be between 0 and 1")
    ordered = sorted(samples, key=lambda s: (s.created_at, s.lead_id))
    cut = round(len(ordered) * train_share)
    return ordered[:cut], ordered[cut:]


@dataclass(frozen=True)
class ScoreFigures:
    name: str
    auc: float | None
    ci95: Interval | None
    roc: list[RocPoint]
    deciles: list[Decile]

    def as_dict(self) -> dict[str, object]:
        return {
            "auc": self.auc,
            "auc_ci95": self.ci95.as_dict() if self.ci95 else None,
            "roc": [
                {"threshold": p.threshold, "fpr": p.fpr, "tpr": p.tpr} for p in self.roc if math.isfinite(p.threshold)
            ],
            "deciles": [d.as_dict() for d in self.deciles],
        }


def score_figures(name: str, scores: Sequence[float], labels: Sequence[bool], *, resamples: int) -> ScoreFigures:
    return ScoreFigures(
        name=name,
        auc=auc(scores, labels),
        ci95=bootstrap_auc(scores, labels, resamples=resamples) if resamples else None,
        roc=roc_curve(scores, labels),
        deciles=deciles(scores, labels),
    )


@dataclass(frozen=True)
class Evaluation:
    """The current policy's scores and rule on one set of leads."""

    leads: int
    scores: Mapping[str, ScoreFigures]
    rule: RuleFigures

    def as_dict(self) -> dict[str, object]:
        return {
            "leads": self.leads,
            "scores": {name: figures.as_dict() for name, figures in self.scores.items()},
            "mql_rule": self.rule.as_dict(),
        }


def evaluate(samples: Sequence[LeadSample], *, resamples: int = BOOTSTRAP_RESAMPLES) -> Evaluation:
    labels = [s.converted for s in samples]
    return Evaluation(
        leads=len(samples),
        scores={
            name: score_figures(name, [s.score(name) for s in samples], labels, resamples=resamples) for name in SCORES
        },
        rule=rule_figures(samples),
    )


# ---- evidence: hand-raisers and disqualifiers -------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Leads with a trait (did an action, or hold an attribute value), and how they converted."""

    kind: Literal["action", "attribute"]
    name: str  # the action, or "attribute=value" / "attribute>=cut"
    leads: int
    converters: int
    base_rate: float
    verdict: str  # hand_raiser, disqualifier, qualifier, or none
    attribute: str | None = None
    value: str | float | None = None
    matcher: str | None = None  # equals or min

    @property
    def conversion(self) -> float:
        return self.converters / self.leads if self.leads else 0.0

    @property
    def ci95(self) -> Interval | None:
        return wilson(self.converters, self.leads)

    @property
    def lift(self) -> float | None:
        return self.conversion / self.base_rate if self.base_rate else None

    def as_dict(self) -> dict[str, object]:
        interval = self.ci95
        return {
            "kind": self.kind,
            "name": self.name,
            "leads": self.leads,
            "converters": self.converters,
            "conversion": self.conversion,
            "ci95": interval.as_dict() if interval else None,
            "base_rate": self.base_rate,
            "lift": self.lift,
            "verdict": self.verdict,
        }


def base_rate(samples: Sequence[LeadSample]) -> float:
    return sum(1 for s in samples if s.converted) / len(samples) if samples else 0.0


def action_evidence(
    samples: Sequence[LeadSample], actions: Sequence[str], *, mql_precision: float | None, min_support: int
) -> list[Evidence]:
    """Per action, the conversion of the leads who did it before their scoring moment. A hand-raiser: its
    doers convert at least as well as the rule's MQLs do (the lower bound of their interval is at or above the
    MQL precision, or above the base rate when the rule made no MQL), with at least `min_support` doers."""
    base = base_rate(samples)
    bar = mql_precision if mql_precision is not None else base
    found = []
    for action in actions:
        doers = [s for s in samples if s.did(action)]
        converters = sum(1 for s in doers if s.converted)
        interval = wilson(converters, len(doers))
        qualifies = len(doers) >= min_support and interval is not None and interval.low >= bar and interval.low > base
        verdict = "hand_raiser" if qualifies else "none"
        found.append(Evidence("action", action, len(doers), converters, base, verdict))
    return sorted(found, key=lambda e: (e.verdict != "hand_raiser", -e.conversion, e.name))


def attribute_values(profile: Profile) -> dict[str, str | float]:
    """The profile's attributes a fit rule can read: text (built-in and custom) and numbers, not booleans."""
    values: dict[str, str | float] = {}
    for name, value in profile.model_dump(exclude={"custom", "email", "company"}).items():
        if isinstance(value, str) and value.strip():
            values[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = float(value)
    for name, value in profile.custom.items():
        if isinstance(value, str) and value.strip():
            values[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = float(value)
    return values


@dataclass(frozen=True)
class Candidate:
    """A fit condition found in the data: attribute equals a text value, or attribute >= a number."""

    attribute: str
    matcher: Literal["equals", "min"]
    value: str | float

    @property
    def name(self) -> str:
        return f"{self.attribute}={self.value}" if self.matcher == "equals" else f"{self.attribute}>={self.value:g}"

    def holds(self, values: Mapping[str, str | float]) -> bool:
        value = values.get(self.attribute)
        if value is None:
            return False
        if self.matcher == "equals":
            return isinstance(value, str) and value == self.value
        return isinstance(value, float) and isinstance(self.value, float) and value >= self.value


MAX_TEXT_VALUES: Final = 40  # an attribute with more distinct values is free text (names, e-mails), not a category


def candidates(samples: Sequence[LeadSample], *, min_support: int) -> list[Candidate]:
    """Fit conditions worth testing: each text value held by at least `min_support` leads (attributes with at
    most MAX_TEXT_VALUES distinct values), and each number attribute at its median and upper quartile."""
    texts: dict[str, Counter[str]] = {}
    numbers: dict[str, list[float]] = {}
    for sample in samples:
        for name, value in attribute_values(sample.profile).items():
            if isinstance(value, str):
                texts.setdefault(name, Counter())[value] += 1
            else:
                numbers.setdefault(name, []).append(value)
    found: list[Candidate] = []
    for name, counts in sorted(texts.items()):
        if len(counts) > MAX_TEXT_VALUES:
            continue
        found += [Candidate(name, "equals", value) for value, n in sorted(counts.items()) if n >= min_support]
    for name, values in sorted(numbers.items()):
        if len(set(values)) < 3:
            continue
        for cut in sorted({float(np.percentile(values, 50)), float(np.percentile(values, 75))}):
            rounded = float(round(cut, 2))
            if sum(1 for v in values if v >= rounded) >= min_support and rounded > min(values):
                found.append(Candidate(name, "min", rounded))
    return found


def attribute_evidence(
    samples: Sequence[LeadSample], found: Sequence[Candidate], *, min_support: int
) -> list[Evidence]:
    """Per condition, the conversion of the leads who meet it. A disqualifier: they convert at most half as
    often as the average, and even the upper bound of their interval is below the average; a qualifier: they
    convert at least twice as often (or halfway to certain, when the average is high) and the lower bound of
    their interval is above the average. Both need at least `min_support` leads; the rest: `none`."""
    base = base_rate(samples)
    values = [(s, attribute_values(s.profile)) for s in samples]
    evidence = []
    for candidate in found:
        holders = [s for s, held in values if candidate.holds(held)]
        converters = sum(1 for s in holders if s.converted)
        interval = wilson(converters, len(holders))
        verdict = "none"
        if interval is not None and len(holders) >= min_support and base > 0:
            rate = converters / len(holders)
            if interval.high < base and rate <= base / 2:
                verdict = "disqualifier"
            elif interval.low > base and rate >= min(2 * base, (1 + base) / 2):
                verdict = "qualifier"
        evidence.append(
            Evidence(
                "attribute",
                candidate.name,
                len(holders),
                converters,
                base,
                verdict,
                attribute=candidate.attribute,
                value=candidate.value,
                matcher=candidate.matcher,
            )
        )
    order = {"disqualifier": 0, "qualifier": 1, "none": 2}
    return sorted(evidence, key=lambda e: (order[e.verdict], e.conversion, e.name))


# ---- everything the report holds -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """The current policy measured on the history: on all leads, on the older (fit) and newer (test) ones."""

    target: Target
    all: Evaluation
    train: Evaluation
    test: Evaluation
    train_leads: tuple[datetime, datetime] | None
    test_leads: tuple[datetime, datetime] | None
    hand_raisers: list[Evidence] = field(default_factory=list)
    attributes: list[Evidence] = field(default_factory=list)


def span(samples: Sequence[LeadSample]) -> tuple[datetime, datetime] | None:
    if not samples:
        return None
    return min(s.created_at for s in samples), max(s.created_at for s in samples)


def measure(
    samples: Sequence[LeadSample],
    actions: Sequence[str],
    target: Target,
    *,
    train_share: float = 0.7,
    min_support: int = 30,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[Measurement, list[LeadSample], list[LeadSample]]:
    """Measure the current policy; evidence (hand-raisers, disqualifiers) comes from the older leads only."""
    train, test = time_split(samples, train_share)
    train_eval = evaluate(train, resamples=0)  # only its rule's precision is used: no intervals needed
    measurement = Measurement(
        target=target,
        all=evaluate(samples, resamples=resamples),
        train=train_eval,
        test=evaluate(test, resamples=resamples),
        train_leads=span(train),
        test_leads=span(test),
    )
    measurement.hand_raisers = action_evidence(
        train, actions, mql_precision=train_eval.rule.precision.value, min_support=min_support
    )
    measurement.attributes = attribute_evidence(
        train, candidates(train, min_support=min_support), min_support=min_support
    )
    return measurement, train, test
