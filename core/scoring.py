"""Lead scoring: fit points from the profile, engagement points from actions with caps and time decay."""

from __future__ import annotations

from datetime import datetime
from typing import TypeGuard

from leadflow.schemas.events import PROFILE_ATTRIBUTES, CustomValue, Profile
from leadflow.schemas.policy import Match, Policy

SECONDS_PER_DAY = 86_400.0


def attribute_value(profile: Profile, attribute: str) -> CustomValue:
    """A built-in attribute, else the custom attribute of that name (None when the lead has neither)."""
    if attribute in PROFILE_ATTRIBUTES:
        value: CustomValue = getattr(profile, attribute)
        return value
    return profile.custom.get(attribute)


def is_number(value: CustomValue) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_match(rule: Match, profile: Profile) -> bool:
    """Strings match equals/in/contains, numbers match min/max; any other value (or none) matches nothing."""
    value = attribute_value(profile, rule.attribute)
    if value is None:
        return False
    if rule.equals is not None:
        return isinstance(value, str) and value == rule.equals
    if rule.in_ is not None:
        return isinstance(value, str) and value in rule.in_
    if rule.contains is not None:
        return isinstance(value, str) and any(word.lower() in value.lower() for word in rule.contains)
    if not is_number(value):
        return False
    return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)


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
    current = decayed(engagement, as_of, new_as_of, policy)
    if current is engagement:
        current = dict(engagement)  # the lead's own holdings: never changed in place
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
