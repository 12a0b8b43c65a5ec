"""Lead scoring: fit rules, engagement points with caps, decay by event time, negative actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from factories import DAY, POLICY, T0, at, make_event, make_policy
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.pipeline import apply
from leadflow.core.routing import pool_for
from leadflow.core.scoring import add_action, decay_factor, decayed, engagement_at, fit_score, is_match
from leadflow.schemas.events import Profile
from leadflow.schemas.policy import FitRule, Policy

HALF_LIFE_S = POLICY.scoring.decay_half_life_days * DAY


def fit_policy(*rules: dict[str, Any]) -> Policy:
    def change(document: dict[str, Any]) -> None:
        document["scoring"]["fit"] = list(rules)

    return make_policy(change)


# --- fit: one matcher kind at a time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "profile", "matches"),
    [
        ({"attribute": "seniority", "equals": "manager"}, {"seniority": "manager"}, True),
        ({"attribute": "seniority", "equals": "manager"}, {"seniority": "director"}, False),
        ({"attribute": "seniority", "equals": "manager"}, {}, False),
        ({"attribute": "industry", "in": ["saas", "finance"]}, {"industry": "finance"}, True),
        ({"attribute": "industry", "in": ["saas", "finance"]}, {"industry": "retail"}, False),
        ({"attribute": "country", "in": ["BR", "US"]}, {"country": "BR"}, True),
        ({"attribute": "job_title", "contains": ["marketing", "growth"]}, {"job_title": "Head of MARKETING"}, True),
        ({"attribute": "job_title", "contains": ["Growth"]}, {"job_title": "growth lead"}, True),
        ({"attribute": "job_title", "contains": ["marketing"]}, {"job_title": "CFO"}, False),
        ({"attribute": "job_title", "contains": ["marketing"]}, {}, False),
        ({"attribute": "company_size", "min": 50, "max": 5000}, {"company_size": 50}, True),
        ({"attribute": "company_size", "min": 50, "max": 5000}, {"company_size": 5000}, True),
        ({"attribute": "company_size", "min": 50, "max": 5000}, {"company_size": 49}, False),
        ({"attribute": "company_size", "min": 50, "max": 5000}, {"company_size": 5001}, False),
        ({"attribute": "company_size", "min": 5001}, {"company_size": 10_000_000}, True),
        ({"attribute": "company_size", "max": 10}, {"company_size": 0}, True),
        ({"attribute": "company_size", "max": 10}, {}, False),
    ],
)
def test_fit_matcher(rule: dict[str, Any], profile: dict[str, Any], matches: bool) -> None:
    fit_rule = FitRule.model_validate({**rule, "points": 7})
    assert is_match(fit_rule, Profile(**profile)) is matches
    assert fit_score(Profile(**profile), fit_policy({**rule, "points": 7})) == (7 if matches else 0)


def test_fit_sums_every_matching_rule() -> None:
    policy = fit_policy(
        {"attribute": "seniority", "equals": "vp", "points": 20},
        {"attribute": "company_size", "min": 100, "points": 15},
        {"attribute": "industry", "in": ["saas"], "points": 10},
        {"attribute": "country", "in": ["US"], "points": 5},
    )
    profile = Profile(seniority="vp", company_size=500, industry="saas", country="BR")
    assert fit_score(profile, policy) == 45


def test_negative_fit_points_subtract() -> None:
    policy = fit_policy(
        {"attribute": "company_size", "min": 100, "points": 30},
        {"attribute": "persona", "equals": "student", "points": -20},
    )
    assert fit_score(Profile(company_size=200, persona="student"), policy) == 10


def test_fit_never_below_zero() -> None:
    policy = fit_policy(
        {"attribute": "seniority", "equals": "student", "points": -30},
        {"attribute": "persona", "equals": "student", "points": -20},
        {"attribute": "country", "in": ["BR"], "points": 5},
    )
    assert fit_score(Profile(seniority="student", persona="student", country="BR"), policy) == 0


def test_default_policy_fit_for_an_ideal_profile() -> None:
    profile = Profile(
        seniority="director",
        company_size=300,
        industry="saas",
        country="BR",
        persona="decision_maker",
        job_title="Director of Revenue Operations",
    )
    assert fit_score(profile, POLICY) == 20 + 15 + 10 + 5 + 10 + 5
    assert fit_score(Profile(), POLICY) == 0


# --- custom attributes: any other attribute name ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "custom", "matches"),
    [
        ({"attribute": "origin", "equals": "partner"}, {"origin": "partner"}, True),
        ({"attribute": "origin", "equals": "partner"}, {"origin": "Partner"}, False),
        ({"attribute": "origin", "in": ["partner", "event"]}, {"origin": "event"}, True),
        ({"attribute": "origin", "in": ["partner"]}, {}, False),
        ({"attribute": "landing_page", "contains": ["PRICING"]}, {"landing_page": "/en/pricing-2026"}, True),
        ({"attribute": "landing_page", "contains": ["pricing"]}, {"landing_page": "/blog"}, False),
        ({"attribute": "annual_revenue", "min": 1_000_000}, {"annual_revenue": 2.5e6}, True),
        ({"attribute": "annual_revenue", "min": 1_000_000}, {"annual_revenue": 999_999}, False),
        ({"attribute": "nps", "min": 0.5, "max": 9}, {"nps": 9}, True),
        # Strings match equals/in/contains, numbers match min/max; nothing else matches.
        ({"attribute": "annual_revenue", "min": 10}, {"annual_revenue": "2500000"}, False),
        ({"attribute": "employees", "equals": "50"}, {"employees": 50}, False),
        ({"attribute": "is_partner", "min": 1}, {"is_partner": True}, False),
        ({"attribute": "is_partner", "equals": "true"}, {"is_partner": True}, False),
        ({"attribute": "ref", "contains": ["1"]}, {"ref": 123}, False),
    ],
)
def test_custom_attribute_matcher(rule: dict[str, Any], custom: dict[str, Any], matches: bool) -> None:
    fit_rule = FitRule.model_validate({**rule, "points": 7})
    assert is_match(fit_rule, Profile(custom=custom)) is matches


CUSTOM_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    st.integers(-(10**18), 10**18),
    st.floats(-1e18, 1e18, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(CUSTOM_SCALARS, st.integers(-100, 100), st.text(max_size=5))
def test_any_custom_value_matches_only_its_own_kind_of_matcher(value: Any, bound: int, word: str) -> None:
    profile = Profile(custom={"x": value})
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    at_least = FitRule.model_validate({"attribute": "x", "min": bound, "points": 1})
    assert is_match(at_least, profile) is (is_number and value >= bound)
    equals = FitRule.model_validate({"attribute": "x", "equals": word, "points": 1})
    assert is_match(equals, profile) is (isinstance(value, str) and value == word)
    contains = FitRule.model_validate({"attribute": "x", "contains": [word], "points": 1})
    assert is_match(contains, profile) is (isinstance(value, str) and word.lower() in value.lower())


def test_a_built_in_attribute_is_read_from_the_profile_not_from_custom() -> None:
    rule = FitRule.model_validate({"attribute": "industry", "equals": "saas", "points": 1})
    assert not is_match(rule, Profile(custom={"industry": "saas"}))  # cannot happen from events; still not read
    assert is_match(rule, Profile(industry="saas"))


def test_a_custom_attribute_drives_a_fit_rule_from_lead_created_to_mql() -> None:
    policy = fit_policy({"attribute": "origin", "equals": "partner_referral", "points": 40})
    created = make_event("lead.created", 0, origin="partner_referral", landing_page_id=12)
    step = apply(None, created, policy)
    assert step.state is not None
    assert step.state.profile.custom == {"origin": "partner_referral", "landing_page_id": 12}
    assert step.state.fit == 40
    other = apply(None, make_event("lead.created", 0, lead_id="L2", origin="organic"), policy).state
    assert other is not None
    assert other.fit == 0
    updated = apply(other, make_event("lead.updated", 60, lead_id="L2", origin="partner_referral"), policy).state
    assert updated is not None
    assert updated.fit == 40


def test_a_custom_attribute_drives_a_routing_condition() -> None:
    def change(document: dict[str, Any]) -> None:
        document["routing"]["pools"].insert(
            0,
            {
                "name": "partners",
                "team": "inside_sales",
                "when": [{"attribute": "origin", "equals": "partner_referral"}, {"attribute": "deal_size", "min": 5e4}],
                "owners": [{"id": "rep-99"}],
            },
        )

    policy = make_policy(change)
    assert policy.routing is not None
    assert pool_for(Profile(custom={"origin": "partner_referral", "deal_size": 80_000.0}), policy.routing) == "partners"
    assert pool_for(Profile(custom={"origin": "partner_referral", "deal_size": 100}), policy.routing) == "general"
    assert pool_for(Profile(country="BR", custom={"deal_size": 80_000}), policy.routing) == "latam"


# --- engagement: points and caps ---------------------------------------------------------------------------


def test_action_adds_its_points_and_moves_as_of() -> None:
    held, as_of = add_action({}, T0, "email_click", at(60), POLICY)
    assert as_of == at(60)
    assert held == {"email_click": 3.0}


def test_unknown_action_scores_nothing_but_decays() -> None:
    held, as_of = add_action({"page_view": 8.0}, T0, "tweet_liked", T0 + timedelta(seconds=HALF_LIFE_S), POLICY)
    assert held == {"page_view": pytest.approx(4.0)}
    assert as_of == T0 + timedelta(seconds=HALF_LIFE_S)


def test_each_action_is_capped() -> None:
    held: dict[str, float] = {}
    as_of = T0
    for _ in range(20):  # 20 page views in the same instant: 1 point each, cap 10
        held, as_of = add_action(held, as_of, "page_view", T0, POLICY)
    for _ in range(3):  # 3 downloads: 8 points each, cap 24
        held, as_of = add_action(held, as_of, "content_download", T0, POLICY)
    held, as_of = add_action(held, as_of, "content_download", T0, POLICY)
    assert held == {"page_view": 10.0, "content_download": 24.0}
    assert engagement_at(held, as_of, as_of, POLICY) == 34


def test_cap_applies_after_decay_room_frees_up() -> None:
    held, as_of = add_action({"demo_request": 30.0}, T0, "demo_request", T0, POLICY)
    assert held["demo_request"] == 30.0  # already at the cap
    later = T0 + timedelta(seconds=HALF_LIFE_S)
    held, as_of = add_action(held, as_of, "demo_request", later, POLICY)
    assert held["demo_request"] == pytest.approx(30.0)  # decayed to 15, +30, capped at 30
    assert as_of == later


# --- decay by event time -----------------------------------------------------------------------------------


def test_decay_is_exactly_half_after_one_half_life() -> None:
    assert decay_factor(HALF_LIFE_S, POLICY.scoring.decay_half_life_days) == 0.5
    assert decay_factor(2 * HALF_LIFE_S, POLICY.scoring.decay_half_life_days) == 0.25
    assert decay_factor(0, 30) == 1.0
    assert decay_factor(-5, 30) == 1.0  # a time before as_of never inflates a holding
    later = T0 + timedelta(seconds=HALF_LIFE_S)
    assert decayed({"form_submit": 30.0, "page_view": 10.0}, T0, later, POLICY) == {
        "form_submit": 15.0,
        "page_view": 5.0,
    }
    assert engagement_at({"form_submit": 30.0}, T0, later, POLICY) == 15


def test_decay_uses_event_time_not_wall_clock() -> None:
    """Two actions a half-life apart: the first is worth half when the second arrives."""
    held, as_of = add_action({}, T0, "form_submit", T0, POLICY)
    later = T0 + timedelta(seconds=HALF_LIFE_S)
    held, as_of = add_action(held, as_of, "pricing_view", later, POLICY)
    assert held == {"form_submit": 5.0, "pricing_view": 15.0}
    assert as_of == later


def test_decayed_is_unchanged_for_an_earlier_time() -> None:
    held = {"form_submit": 10.0}
    assert decayed(held, at(100), at(50), POLICY) == held


def test_half_life_comes_from_the_policy() -> None:
    policy = make_policy(lambda d: d["scoring"].__setitem__("decay_half_life_days", 1))
    assert decayed({"form_submit": 10.0}, T0, T0 + timedelta(days=1), policy) == {"form_submit": 5.0}


def test_late_action_is_added_already_decayed() -> None:
    """An action older than the holdings is added decayed to the holdings' time; as_of does not move back."""
    now = T0 + timedelta(seconds=HALF_LIFE_S)
    held, as_of = add_action({}, now, "form_submit", T0, POLICY)
    assert as_of == now
    assert held == {"form_submit": 5.0}


def test_late_action_gives_the_same_holdings_as_in_order() -> None:
    later = T0 + timedelta(seconds=HALF_LIFE_S)
    in_order, _ = add_action(*add_action({}, T0, "form_submit", T0, POLICY), "pricing_view", later, POLICY)
    late, _ = add_action(*add_action({}, T0, "pricing_view", later, POLICY), "form_submit", T0, POLICY)
    assert late == pytest.approx(in_order)


# --- negative actions --------------------------------------------------------------------------------------


def test_unsubscribe_takes_points_from_the_largest_holding_first() -> None:
    held = {"page_view": 5.0, "pricing_view": 15.0, "email_click": 9.0}
    after, _ = add_action(held, T0, "unsubscribe", T0, POLICY)
    assert after == {"page_view": 5.0, "pricing_view": 0.0, "email_click": 4.0}
    assert "unsubscribe" not in after


def test_unsubscribe_never_makes_a_holding_or_the_total_negative() -> None:
    held = {"page_view": 3.0, "email_open": 2.0}
    after, as_of = add_action(held, T0, "unsubscribe", T0, POLICY)
    assert after == {"page_view": 0.0, "email_open": 0.0}
    assert engagement_at(after, as_of, as_of, POLICY) == 0
    nothing, _ = add_action({}, T0, "unsubscribe", T0, POLICY)
    assert nothing == {}


def test_late_unsubscribe_takes_decayed_points() -> None:
    now = T0 + timedelta(seconds=HALF_LIFE_S)
    after, _ = add_action({"pricing_view": 30.0}, now, "unsubscribe", T0, POLICY)
    assert after == {"pricing_view": 20.0}  # -20 decayed by one half-life is -10


def test_does_not_mutate_its_input() -> None:
    held = {"page_view": 5.0}
    add_action(held, T0, "unsubscribe", T0, POLICY)
    add_action(held, T0, "page_view", T0, POLICY)
    add_action(held, T0, "page_view", at(DAY), POLICY)
    assert held == {"page_view": 5.0}


# --- properties --------------------------------------------------------------------------------------------

ACTIONS = [rule.action for rule in POLICY.scoring.engagement] + ["not_in_policy"]
CAPS = {rule.action: float(rule.cap) for rule in POLICY.scoring.engagement}

action_sequences = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.floats(min_value=0, max_value=200 * DAY, allow_nan=False)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(action_sequences)
def test_holdings_stay_within_zero_and_cap(sequence: list[tuple[str, float]]) -> None:
    held: dict[str, float] = {}
    as_of = T0
    for action, seconds in sequence:
        held, as_of = add_action(held, as_of, action, at(seconds), POLICY)
        for name, points in held.items():
            assert 0.0 <= points <= CAPS[name], (name, points)
        assert engagement_at(held, as_of, as_of, POLICY) >= 0
        assert engagement_at(held, as_of, at(400 * DAY), POLICY) >= 0
        assert sum(held.values()) >= 0.0
    if sequence:
        assert as_of == at(max(seconds for _, seconds in sequence))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1000 * DAY, allow_nan=False), st.floats(min_value=0, max_value=DAY * 500))
def test_decay_only_shrinks(elapsed: float, more: float) -> None:
    first = decay_factor(elapsed, 30)
    assert 0.0 <= first <= 1.0
    assert decay_factor(elapsed + more, 30) <= first
