"""Profile completeness: the fields sales needs before taking a lead, and which of them a lead still lacks.

The policy's `required_fields` lists, per stage, the profile attributes (built-in or custom) sales needs before it
takes a lead in that stage. A lead holds an attribute when its value is set: None, and text that is empty or only
spaces, count as missing (0 and false are values). The hand-off names the missing ones (`HandOff.missing_fields`);
the funnel report counts completeness by stage from the attributes each lead summary says the lead holds
(`LeadSummary.known_fields`), so the report stays a function of the summaries and one policy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from leadflow.schemas.events import PROFILE_ATTRIBUTES, Profile
from leadflow.schemas.policy import Policy

_BUILT_IN = frozenset(PROFILE_ATTRIBUTES)


def is_blank(value: object) -> bool:
    """Not a value of the attribute: None, or text that is empty or only spaces."""
    return value is None or (isinstance(value, str) and not value.strip())


def _custom(profile: Profile) -> Mapping[str, object]:
    # Read through __dict__, as core.report does: a state decoded from an older record may lack `custom`.
    custom = profile.__dict__.get("custom")
    return custom if isinstance(custom, Mapping) else {}


def has_field(profile: Profile, name: str) -> bool:
    """The profile holds attribute `name` (a built-in one, else a custom one)."""
    value = profile.__dict__.get(name) if name in _BUILT_IN else _custom(profile).get(name)
    return not is_blank(value)


def known_fields(profile: Profile) -> tuple[str, ...]:
    """The attributes the profile holds, built-in and custom, sorted (what a lead summary keeps).

    It runs on every lead of a worker for each /funnel request, so `is_blank` is inlined here. A custom attribute
    under a built-in's name (only in a profile built by hand) is ignored, as `has_field` ignores it."""
    attributes = profile.__dict__
    names = [
        name
        for name in PROFILE_ATTRIBUTES
        if (value := attributes.get(name)) is not None and (not isinstance(value, str) or value.strip())
    ]
    custom = _custom(profile)
    if custom:
        names += (
            name
            for name, value in custom.items()
            if name not in _BUILT_IN and value is not None and (not isinstance(value, str) or value.strip())
        )
    names.sort()
    return tuple(names)


def required_for(stage: str, policy: Policy) -> tuple[str, ...]:
    """The attributes the policy requires in `stage`, in the policy's order, each once (none: empty)."""
    return tuple(dict.fromkeys(policy.required_fields.get(stage, ())))


def missing_fields(profile: Profile, stage: str, policy: Policy) -> tuple[str, ...]:
    """The attributes required in `stage` that the profile does not hold, in the policy's order."""
    return tuple(name for name in required_for(stage, policy) if not has_field(profile, name))


def missing_from(known: Collection[str], required: tuple[str, ...]) -> tuple[str, ...]:
    """The required attributes not among `known` (a summary's `known_fields`), in the order of `required`."""
    return tuple(name for name in required if name not in known)
