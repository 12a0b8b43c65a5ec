"""Lead scoring: fit points from the profile, engagement points from actions with caps and time decay."""

from __future__ import annotations

from datetime import datetime

from schemas.events import Profile
from schemas.policy import Match, Policy

SECONDS_PER_DAY = 86_400.0


def is_match(rule: Match, profile: Profile) -> bool:
    value = getattr(profile, rule.attribute)
    if value is None:
        return False
    if rule.equals is not None:
        return bool(value == rule.equals)
    if rule.in_ is not None:
        return value in rule.in_
    if rule.contains is not None:
        text = str(value).lower()
        return any(word.lower() in text for word in rule.contains)
    number = value if isinstance(value, int) else None
    if number is None:
        return False
    return (rule.min is None or number >= rule.min) and (rule.max is None or number <= rule.max)


def fit_score(profile: Profile, policy: Policy) -> int:
    """Sum of the points of every matching fit rule, never below zero."""
    return max(0, sum(rule.points for rule in policy.scoring.fit if is_match(rule, profile)))


def decay_factor(elapsed_s: float, half_life_days: float) -> float:
    if elapsed_s <= 0:
        return 1.0
    return float(0.5 ** (elapsed_s / (half_life_days * SECONDS_PER_DAY)))


def decayed(engagement: dict[str, float], as_of: datetime, at: datetime, policy: Policy) -> dict[str, float]:
    """Engagement held per action, decayed from `as_of` to `at` (no change when `at` is not later)."""
    factor = decay_factor((at - as_of).total_seconds(), policy.scoring.decay_half_life_days)
    if factor == 1.0:
        return engagement
    return {action: points * factor for action, points in engagement.items()}


def add_action(
    engagement: dict[str, float], as_of: datetime, action: str, at: datetime, policy: Policy
) -> tuple[dict[str, float], datetime]:
    """Add one action's points at event time `at`; returns the new holdings and their as-of time.

    Holdings are kept at the latest event time seen: an action older than that (a late event beyond the
    lateness bound) is added already decayed to that time. Each action's holding stays within [0, cap]
    (negative points only take back what the action holds), so the total never goes negative.
    """
    new_as_of = max(as_of, at)
    current = dict(decayed(engagement, as_of, new_as_of, policy))
    rule = policy.engagement_rules.get(action)
    if rule is None:
        return current, new_as_of
    points = rule.points * decay_factor((new_as_of - at).total_seconds(), policy.scoring.decay_half_life_days)
    if points < 0:
        # A negative action (e.g. unsubscribe) takes points from every positive holding, largest first.
        remaining = -points
        for name in sorted(current, key=lambda a: (-current[a], a)):
            take = min(remaining, current[name])
            current[name] -= take
            remaining -= take
            if remaining <= 0:
                break
        return current, new_as_of
    current[action] = min(float(rule.cap), current.get(action, 0.0) + points)
    return current, new_as_of


def engagement_at(engagement: dict[str, float], as_of: datetime, at: datetime, policy: Policy) -> int:
    return max(0, round(sum(decayed(engagement, as_of, at, policy).values())))
