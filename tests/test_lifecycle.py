"""Lifecycle: what one event does to one lead (core.lifecycle.apply), stage by stage, refusal by refusal."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from factories import LEAD, POLICY, T0, at, lead_in, make_event, make_policy, refusal, run, stage_changes
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.lifecycle import FACTS, HANDLERS, REQUESTS
from leadflow.core.pipeline import apply
from leadflow.core.step import Step
from leadflow.schemas.events import (
    EVENT_TYPES,
    INTERNAL_EVENT_TYPES,
    MAX_CUSTOM_ATTRIBUTES,
    LeadCreated,
    LeadEvent,
    RouteUnassigned,
    TimerDue,
)
from leadflow.schemas.outputs import EventRefused, Forward, LeadErasedNotice, LeadMergedNotice, SlaCancelled
from leadflow.schemas.state import LeadState

LATER = 3600.0  # events under test happen an hour after the lead was walked to its stage

# A valid data object for every event type, so any type can be sent to any stage.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "lead.created": {},
    "lead.updated": {"job_title": "CMO"},
    "activity": {"action": "page_view"},
    "lead.qualified": {},
    "lead.assigned": {"owner_id": "rep-1"},
    "lead.accepted": {},
    "lead.rejected": {"reason": "no_budget"},
    "contact.attempted": {"channel": "phone", "outcome": "no_answer"},
    "meeting.scheduled": {},
    "deal.stage_changed": {"stage": "qualified_call", "bant": {"need": True}},
    "deal.won": {"amount": 5000.0},
    "deal.lost": {"reason": "price"},
    "lead.disqualified": {},
    "lead.paused": {},
    "lead.resumed": {},
    "lead.merged": {"into_lead_id": "L2"},
    "lead.erased": {},
    "timer.due": {},
    "route.unassigned": {"pool": "general"},
    "lead.absorbed": {"from_lead_id": "L3"},
}
# What producers send. The internal types never refuse: timer.due (time passes) is covered in test_sla.py,
# route.unassigned (the router found nobody; the lead only stops waiting) below.
BUSINESS_TYPES = sorted(set(EVENT_TYPES) - set(INTERNAL_EVENT_TYPES))
STAGES = ["subscriber", "lead", "mql", "sal", "sql", "opportunity", "customer", "nurturing", "disqualified"]
HIGH_FIT = {"seniority": "director", "company_size": 300, "industry": "saas"}  # 20 + 15 + 10 = 45 >= 40


def send(state: LeadState | None, type_: str, t: float = LATER, **data: Any) -> Step:
    return apply(state, make_event(type_, t, **data), POLICY)


def assert_refused(state: LeadState | None, step: Step, reason: str, *words: str) -> EventRefused:
    """A refusal: the state is the very same, one EventRefused with `reason` and a detail naming `words`."""
    refused = refusal(step)
    assert step.state == state
    assert step.state is state
    assert refused.reason == reason
    assert refused.lead_id == LEAD
    for word in words:
        assert word in refused.detail, (word, refused.detail)
    return refused


def assert_moved(before: LeadState, step: Step, to_stage: str, reason: str, skipped: tuple[str, ...] = ()) -> LeadState:
    """A stage change: one StageChanged output and one new history entry that say the same, skips included."""
    assert not step.refused, step.outputs
    after = step.state
    assert after is not None
    assert after.stage == to_stage
    (changed,) = stage_changes(step.outputs)
    assert (changed.from_stage, changed.to_stage, changed.reason) == (before.stage, to_stage, reason)
    assert changed.skipped == skipped
    assert after.history[:-1] == before.history
    last = after.history[-1]
    assert (last.stage, last.reason, last.event_id, last.skipped) == (to_stage, reason, changed.cause_event_id, skipped)
    assert after.stage_entered_at == last.entered_at == changed.occurred_at
    return after


def assert_touched(before: LeadState, step: Step) -> LeadState:
    """A fact applied without a stage change: not refused, no output, the event's time recorded."""
    assert not step.refused, step.outputs
    assert step.outputs == ()
    after = step.state
    assert after is not None
    assert (after.stage, after.history, after.updated_at) == (before.stage, before.history, at(LATER))
    return after


def walked(stage: str) -> LeadState:
    """lead_in, and evangelist too (a customer who gave a referral)."""
    if stage != "evangelist":
        return lead_in(stage)
    state = send(lead_in("customer"), "activity", 600, action="referral_given").state
    assert state is not None
    assert state.stage == "evangelist"
    return state


def test_sample_data_covers_every_event_type() -> None:
    assert sorted(SAMPLE_DATA) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("stage", [*STAGES, "evangelist"])
def test_the_router_finding_nobody_changes_nothing_in_the_lead(stage: str) -> None:
    """route.unassigned only ends the lead's wait for an owner (core.decision): no stage, owner or time changes."""
    state = walked(stage)
    step = send(state, "route.unassigned", **SAMPLE_DATA["route.unassigned"])
    assert not step.refused
    assert step.state is state
    assert step.outputs == ()


# --- creation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "stage"), [({}, "lead"), ({"initial_stage": "subscriber"}, "subscriber")])
def test_create(data: dict[str, Any], stage: str) -> None:
    event = make_event("lead.created", 0, **data, email="a@b.co", seniority="manager", company_size=60)
    step = apply(None, event, POLICY)
    state = step.state
    assert state is not None
    assert (state.lead_id, state.stage, state.created_at, state.updated_at) == (LEAD, stage, T0, T0)
    assert state.profile.email == "a@b.co"
    assert state.fit == 10 + 15
    assert state.engagement == {}
    assert [(h.stage, h.reason, h.event_id) for h in state.history] == [(stage, "created", event.event_id)]
    (changed,) = step.outputs
    assert changed == stage_changes(step.outputs)[0]
    assert (changed.from_stage, changed.to_stage, changed.reason, changed.fit) == (None, stage, "created", 25)


def test_create_twice_is_refused_lead_exists() -> None:
    state = lead_in("mql")
    assert_refused(state, send(state, "lead.created", **HIGH_FIT), "lead_exists", "lead.updated")


@pytest.mark.parametrize("type_", sorted(set(BUSINESS_TYPES) - {"lead.created"}))
def test_every_other_type_before_create_is_refused_unknown_lead(type_: str) -> None:
    step = send(None, type_, **SAMPLE_DATA[type_])
    refused = assert_refused(None, step, "unknown_lead", "lead.created")
    assert refused.event_type == type_


# --- profile updates and MQL by score ----------------------------------------------------------------------


def test_update_rescores_without_losing_other_attributes() -> None:
    state = run([make_event("lead.created", 0, seniority="manager", country="BR")])
    assert state is not None
    assert state.fit == 15
    step = send(state, "lead.updated", company_size=300)
    after = step.state
    assert after is not None
    assert step.outputs == ()
    assert (after.profile.seniority, after.profile.country, after.profile.company_size) == ("manager", "BR", 300)
    assert after.fit == 30
    assert after.updated_at == at(LATER)
    assert after.stage == "lead"
    assert after.history == state.history


def test_custom_attributes_are_kept_on_the_profile() -> None:
    event = make_event("lead.created", 0, seniority="vp", origin="rd_station", landing_page_id=812, utm_term=None)
    state = apply(None, event, POLICY).state
    assert state is not None
    assert state.profile.seniority == "vp"
    assert state.profile.custom == {"origin": "rd_station", "landing_page_id": 812}, "null means no value"


def test_an_update_merges_custom_attributes_and_null_clears_one() -> None:
    state = run([make_event("lead.created", 0, origin="rd_station", landing_page_id=812, hs_score=10)])
    after = send(state, "lead.updated", hs_score=55.5, landing_page_id=None, persona_hs="buyer").state
    assert after is not None
    assert after.profile.custom == {"origin": "rd_station", "hs_score": 55.5, "persona_hs": "buyer"}
    plain = send(after, "lead.updated", LATER + 1, company_size=90).state
    assert plain is not None
    assert plain.profile.custom == after.profile.custom, "an update without custom attributes keeps them"
    assert plain.profile.company_size == 90


def test_a_lead_keeps_at_most_fifty_custom_attributes_the_most_recently_set() -> None:
    state = run([make_event("lead.created", 0, **{f"old_{i:02d}": i for i in range(50)})])
    after = send(state, "lead.updated", old_00=100, **{f"new_{i}": i for i in range(5)}).state
    assert after is not None
    custom = after.profile.custom
    assert len(custom) == MAX_CUSTOM_ATTRIBUTES == 50
    assert custom["old_00"] == 100, "just set: kept"
    assert set(custom) >= {f"new_{i}" for i in range(5)}
    assert not {f"old_{i:02d}" for i in range(1, 6)} & set(custom), "the five set longest ago make room"


def test_update_can_lower_fit() -> None:
    state = run([make_event("lead.created", 0, **HIGH_FIT)])
    assert state is not None
    after = send(state, "lead.updated", persona="student").state
    assert after is not None
    assert after.fit == 45 - 20


def test_update_promotes_to_mql_when_the_rule_holds() -> None:
    state = run([make_event("lead.created", 0), make_event("activity", 10, action="pricing_view")])
    state = run(
        [make_event("activity", 20, action="form_submit"), make_event("activity", 30, action="page_view")], state=state
    )
    assert state is not None
    assert state.engagement_score >= 26
    assert state.fit == 0
    state = run([make_event("activity", 40, action="page_view") for _ in range(5)], state=state)
    assert state is not None
    assert state.engagement_score >= 30
    assert state.stage == "lead"
    after = assert_moved(state, send(state, "lead.updated", **HIGH_FIT), "mql", "score")
    assert after.fit == 45


def test_activity_promotes_to_mql_when_fit_is_already_there() -> None:
    state = run([make_event("lead.created", 0, **HIGH_FIT), make_event("activity", 10, action="pricing_view")])
    assert state is not None
    assert state.stage == "lead"
    assert state.engagement_score == 15
    after = assert_moved(state, send(state, "activity", action="pricing_view"), "mql", "score")
    assert after.engagement_score >= 29  # 15 decayed by an hour, +15


def test_score_below_the_rule_does_not_promote() -> None:
    state = run([make_event("lead.created", 0, **HIGH_FIT)])
    step = send(state, "activity", action="form_submit")
    assert step.outputs == ()
    assert step.state is not None
    assert step.state.stage == "lead"


def test_create_with_high_fit_and_no_engagement_stays_lead() -> None:
    policy = make_policy(lambda d: d["mql"].__setitem__("min_engagement", 0))
    state = apply(None, make_event("lead.created", 0, **HIGH_FIT), policy).state
    assert state is not None
    assert state.stage == "mql"
    assert [h.reason for h in state.history] == ["created", "score"]
    default = run([make_event("lead.created", 0, **HIGH_FIT)])
    assert default is not None
    assert default.stage == "lead"


# --- activities: hand-raisers and conversion ---------------------------------------------------------------


@pytest.mark.parametrize("stage", ["subscriber", "lead", "nurturing"])
@pytest.mark.parametrize("action", ["demo_request", "contact_sales"])
def test_hand_raiser_becomes_mql_at_once(stage: str, action: str) -> None:
    state = lead_in(stage)
    assert state.fit == 0
    after = assert_moved(state, send(state, "activity", action=action), "mql", "hand_raiser")
    assert after.engagement[action] == 30.0


@pytest.mark.parametrize("stage", ["mql", "sal", "sql", "opportunity", "customer", "disqualified"])
def test_hand_raiser_outside_eligible_stages_only_scores(stage: str) -> None:
    state = lead_in(stage)
    step = send(state, "activity", action="demo_request")
    assert step.outputs == ()
    assert not step.refused
    assert step.state is not None
    assert step.state.stage == stage
    assert step.state.engagement.get("demo_request") == 30.0


@pytest.mark.parametrize("action", ["form_submit", "content_download", "webinar_attended"])
def test_conversion_action_turns_a_subscriber_into_a_lead(action: str) -> None:
    state = lead_in("subscriber")
    assert_moved(state, send(state, "activity", action=action), "lead", "converted")


def test_non_conversion_action_keeps_a_subscriber() -> None:
    state = lead_in("subscriber")
    step = send(state, "activity", action="email_click")
    assert step.outputs == ()
    assert step.state is not None
    assert step.state.stage == "subscriber"


def test_conversion_then_score_reaches_mql_in_one_event() -> None:
    state = run([make_event("lead.created", 0, initial_stage="subscriber", **HIGH_FIT)])
    views = [make_event("activity", 1, action="page_view") for _ in range(5)]
    state = run([make_event("activity", 1, action="pricing_view"), *views], state=state)
    assert state is not None
    assert state.stage == "subscriber"
    assert state.engagement_score == 20
    step = send(state, "activity", 3, action="form_submit")
    after = step.state
    assert after is not None
    assert after.stage == "mql"
    assert [(c.from_stage, c.to_stage, c.reason) for c in stage_changes(step.outputs)] == [
        ("subscriber", "lead", "converted"),
        ("lead", "mql", "score"),
    ]
    assert [h.stage for h in after.history] == ["subscriber", "lead", "mql"]


# --- external qualification, acceptance, rejection ---------------------------------------------------------


@pytest.mark.parametrize(("stage", "skipped"), [("subscriber", ("lead",)), ("lead", ()), ("nurturing", ())])
def test_external_qualification(stage: str, skipped: tuple[str, ...]) -> None:
    state = lead_in(stage)
    after = assert_moved(state, send(state, "lead.qualified"), "mql", "external", skipped)
    if skipped:
        assert [h.stage for h in after.history] == ["subscriber", "mql"], "no entry invented for a skipped stage"


def test_external_qualification_is_a_fact_even_for_a_disqualified_lead() -> None:
    """The marketing tool qualified it again: a fact, applied although the policy lists only disqualified -> lead."""
    state = lead_in("disqualified")
    assert not POLICY.lifecycle.allows("disqualified", "mql")
    assert_moved(state, send(state, "lead.qualified"), "mql", "external")


@pytest.mark.parametrize("stage", ["mql", "sal", "sql", "opportunity", "customer", "evangelist"])
def test_external_qualification_never_moves_a_lead_backwards(stage: str) -> None:
    state = walked(stage)
    assert_touched(state, send(state, "lead.qualified"))


def test_accept_an_mql() -> None:
    state = lead_in("mql")
    assert_moved(state, send(state, "lead.accepted"), "sal", "accepted")


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "mql"])
def test_accept_only_from_mql(stage: str) -> None:
    state = lead_in(stage)
    assert_refused(state, send(state, "lead.accepted"), "illegal_transition", "only an mql", stage)


@pytest.mark.parametrize("stage", ["mql", "sal"])
def test_reject_with_a_valid_reason(stage: str) -> None:
    state = send(lead_in(stage), "lead.assigned", 100, owner_id="rep-9").state
    assert state is not None
    assert state.owner_id == "rep-9"
    after = assert_moved(state, send(state, "lead.rejected", reason="not_icp"), "nurturing", "rejected:not_icp")
    assert after.owner_id is None
    assert (after.rejections, after.last_rejection) == (1, "not_icp")
    again = send(send(after, "lead.qualified", LATER + 1).state, "lead.rejected", LATER + 2, reason="student").state
    assert again is not None
    assert (again.rejections, again.last_rejection) == (2, "student")


def test_reject_with_an_unknown_reason_lists_the_valid_codes() -> None:
    state = lead_in("mql")
    refused = assert_refused(state, send(state, "lead.rejected", reason="too_busy"), "invalid_rejection_reason")
    assert "'too_busy'" in refused.detail
    assert refused.detail.endswith("use one of: " + ", ".join(sorted(POLICY.rejection_codes)))


@pytest.mark.parametrize("stage", ["subscriber", "lead", "sql", "opportunity", "customer", "nurturing"])
def test_reject_from_a_wrong_stage(stage: str) -> None:
    state = lead_in(stage)
    assert_refused(state, send(state, "lead.rejected", reason="not_icp"), "illegal_transition", "mql", stage)


# --- assignment, contact, meetings, pause ------------------------------------------------------------------


def test_bookkeeping_events_touch_without_moving() -> None:
    state = lead_in("mql")
    state = run(
        [
            make_event("lead.assigned", 100, owner_id="rep-1", team="smb"),
            make_event("contact.attempted", 200, channel="phone", outcome="no_answer"),
            make_event("contact.attempted", 300, channel="email", outcome="replied"),
            make_event("meeting.scheduled", 400),
            make_event("lead.paused", 500),
        ],
        state=state,
    )
    assert state is not None
    assert (state.owner_id, state.team, state.contact_attempts, state.last_contact_at) == ("rep-1", "smb", 2, at(300))
    assert (state.meetings, state.paused, state.stage, state.updated_at) == (1, True, "mql", at(500))
    resumed = send(state, "lead.resumed", 600).state
    assert resumed is not None
    assert not resumed.paused
    assert len(resumed.history) == len(state.history)


def test_reassignment_without_team_keeps_the_team() -> None:
    state = run([make_event("lead.assigned", 100, owner_id="rep-1", team="smb")], state=lead_in("mql"))
    after = send(state, "lead.assigned", owner_id="rep-2").state
    assert after is not None
    assert (after.owner_id, after.team) == ("rep-2", "smb")


# --- the deal pipeline and BANT ----------------------------------------------------------------------------


def deal(state: LeadState | None, stage: str, t: float = LATER, **bant: bool) -> Step:
    return send(state, "deal.stage_changed", t, stage=stage, bant=bant)


@pytest.mark.parametrize(
    ("stage", "bant", "missing"),
    [
        ("qualified_call", {}, "need"),
        ("framing_meeting", {"need": True}, "authority"),
        ("proposal_sent", {"need": True, "authority": True}, "budget"),
        ("proposal_sent", {}, "budget, authority, need"),
        ("negotiation", {"budget": True, "authority": True, "need": True}, "timeline"),
    ],
)
def test_deal_stage_without_bant_is_refused_naming_the_missing_fields(
    stage: str, bant: dict[str, bool], missing: str
) -> None:
    state = lead_in("sal")
    refused = assert_refused(state, deal(state, stage, **bant), "missing_prerequisites", stage)
    assert refused.detail.endswith(f"confirm {missing} in data.bant")


def test_bant_accumulates_across_events() -> None:
    state = lead_in("sal")
    sql = assert_moved(state, deal(state, "qualified_call", need=True), "sql", "deal:qualified_call")
    assert sql.deal_stage == "qualified_call"
    framing = assert_moved(
        sql, deal(sql, "framing_meeting", LATER + 1, authority=True), "opportunity", "deal:framing_meeting"
    )
    assert (framing.bant.need, framing.bant.authority, framing.bant.budget) == (True, True, False)
    proposal = deal(framing, "proposal_sent", LATER + 2, budget=True)
    assert proposal.outputs == ()
    assert proposal.state is not None
    assert proposal.state.deal_stage == "proposal_sent"
    assert proposal.state.stage == "opportunity"
    refused = deal(proposal.state, "negotiation", LATER + 3)
    assert_refused(proposal.state, refused, "missing_prerequisites", "timeline")


def test_deal_advance_from_sal_straight_to_opportunity() -> None:
    state = lead_in("sal")
    full = {"budget": True, "authority": True, "need": True, "timeline": True}
    after = assert_moved(state, deal(state, "negotiation", **full), "opportunity", "deal:negotiation")
    assert after.deal_stage == "negotiation"


def test_deal_amount_is_kept() -> None:
    state = lead_in("sal")
    after = send(state, "deal.stage_changed", stage="qualified_call", bant={"need": True}, amount=12_000.0).state
    assert after is not None
    assert after.deal_amount == 12_000.0


def test_moving_a_deal_back_keeps_the_lifecycle_stage() -> None:
    state = lead_in("opportunity")
    step = deal(state, "qualified_call")
    assert step.outputs == ()
    assert step.state is not None
    assert (step.state.stage, step.state.deal_stage) == ("opportunity", "qualified_call")
    assert step.state.history == state.history
    sql = lead_in("sql")
    within = deal(sql, "demo_scheduled")
    assert within.outputs == ()
    assert within.state is not None
    assert (within.state.stage, within.state.deal_stage) == ("sql", "demo_scheduled")


def test_unknown_pipeline_stage_lists_the_pipeline() -> None:
    state = lead_in("sal")
    refused = assert_refused(state, deal(state, "handshake", need=True), "unknown_pipeline_stage", "'handshake'")
    assert refused.detail.endswith("use one of: " + ", ".join(p.stage for p in POLICY.deals.pipeline))


@pytest.mark.parametrize("stage", ["subscriber", "lead", "mql", "nurturing", "customer", "disqualified"])
def test_deal_stage_only_for_accepted_leads(stage: str) -> None:
    state = lead_in(stage)
    assert_refused(state, deal(state, "qualified_call", need=True), "illegal_transition", "sal, sql, opportunity")


def test_won_from_opportunity() -> None:
    state = lead_in("opportunity")
    after = assert_moved(state, send(state, "deal.won", amount=9_000.0), "customer", "won")
    assert after.won_amount == 9_000.0


# A won deal is a fact from the CRM: a customer from any stage, the stages it jumped over named (never invented).
WON_SKIPS = {
    "subscriber": ("lead", "mql", "sal", "sql", "opportunity"),
    "lead": ("mql", "sal", "sql", "opportunity"),
    "mql": ("sal", "sql", "opportunity"),
    "sal": ("sql", "opportunity"),
    "sql": ("opportunity",),
    "opportunity": (),
    "nurturing": ("sal", "sql", "opportunity"),  # it had reached mql before it was recycled
    "disqualified": ("mql", "sal", "sql", "opportunity"),  # disqualified as a lead
}


@pytest.mark.parametrize(("stage", "skipped"), WON_SKIPS.items())
def test_won_from_any_stage_makes_a_customer_and_names_the_skipped_stages(stage: str, skipped: tuple[str, ...]) -> None:
    state = lead_in(stage)
    after = assert_moved(state, send(state, "deal.won", amount=1.0), "customer", "won", skipped)
    assert after.won_amount == 1.0
    assert not set(skipped) & {h.stage for h in after.history}, "no entry invented for a skipped stage"


def test_won_on_an_mql_cancels_its_clocks_and_releases_nothing_it_never_held() -> None:
    state = lead_in("mql")
    assert set(state.clocks) == {"mql_acceptance", "first_contact"}
    step = send(state, "deal.won", amount=2_000.0)
    after = assert_moved(state, step, "customer", "won", ("sal", "sql", "opportunity"))
    cancelled = {o.sla: o.reason for o in step.outputs if isinstance(o, SlaCancelled)}
    assert cancelled == dict.fromkeys(state.clocks, "left:mql skipped:sal,sql,opportunity")
    assert after.clocks == {}


def test_won_a_lead_in_a_later_cycle_skips_only_what_it_never_entered() -> None:
    """An SQL lost to nurturing, re-qualified as MQL and won: it had been sal and sql, never opportunity."""
    lost = send(lead_in("sql"), "deal.lost", 600, reason="timing").state
    again = send(lost, "lead.qualified", 1200).state
    assert again is not None
    assert again.stage == "mql"
    assert_moved(again, send(again, "deal.won", amount=5.0), "customer", "won", ("opportunity",))


def test_won_without_an_amount_is_a_customer_with_unknown_revenue() -> None:
    state = lead_in("opportunity")
    after = assert_moved(state, send(state, "deal.won"), "customer", "won")
    assert after.won_amount is None
    sql = lead_in("sql")
    in_reais = assert_moved(sql, send(sql, "deal.won", currency="BRL"), "customer", "won", ("opportunity",))
    assert in_reais.won_amount is None


@pytest.mark.parametrize("stage", ["customer", "evangelist"])
def test_won_again_records_the_amount_and_changes_no_stage(stage: str) -> None:
    state = walked(stage)
    assert state.won_amount == 1000.0
    assert assert_touched(state, send(state, "deal.won", amount=2_500.0)).won_amount == 2_500.0
    assert assert_touched(state, send(state, "deal.won")).won_amount == 1000.0, "an unknown amount keeps the known one"


@pytest.mark.parametrize("stage", ["sal", "sql", "opportunity"])
def test_lost_with_a_valid_reason_goes_to_nurturing(stage: str) -> None:
    state = lead_in(stage)
    after = assert_moved(state, send(state, "deal.lost", reason="competitor"), "nurturing", "lost:competitor")
    assert after.deal_stage is None


def test_lost_with_a_reason_outside_the_policy_is_applied_and_keeps_it() -> None:
    state = lead_in("opportunity")
    assert "bad_luck" not in POLICY.deals.lost_reasons
    after = assert_moved(state, send(state, "deal.lost", reason="bad_luck"), "nurturing", "lost:bad_luck")
    assert after.deal_stage is None


@pytest.mark.parametrize("stage", ["subscriber", "lead", "mql", "disqualified"])
def test_lost_before_a_deal_is_a_fact_too(stage: str) -> None:
    state = lead_in(stage)
    assert not POLICY.lifecycle.allows(stage, "nurturing") or stage in ("lead", "mql")
    assert_moved(state, send(state, "deal.lost", reason="price"), "nurturing", "lost:price")


def test_lost_in_nurturing_changes_no_stage() -> None:
    state = lead_in("nurturing")
    assert_touched(state, send(state, "deal.lost", reason="price"))


@pytest.mark.parametrize("stage", ["customer", "evangelist"])
def test_lost_deal_of_a_customer_leaves_the_customer(stage: str) -> None:
    """A customer's lost deal (an upsell) is applied, and does not unmake the customer."""
    state = walked(stage)
    assert assert_touched(state, send(state, "deal.lost", reason="price")).won_amount == 1000.0


def test_lost_to_stage_comes_from_the_policy() -> None:
    policy = make_policy(lambda doc: doc["deals"].update(lost_to_stage="disqualified"))
    state = lead_in("sal", policy)
    step = apply(state, make_event("deal.lost", LATER, reason="competitor"), policy)
    assert_moved(state, step, "disqualified", "lost:competitor")


# --- disqualify, merge, erase ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["subscriber", "lead", "mql", "sal", "sql", "opportunity", "nurturing"])
def test_disqualify(stage: str) -> None:
    state = lead_in(stage)
    assert_moved(state, send(state, "lead.disqualified"), "disqualified", "disqualified")


@pytest.mark.parametrize("stage", ["customer", "evangelist"])
def test_disqualify_is_a_fact_whatever_the_stage(stage: str) -> None:
    state = walked(stage)
    assert not POLICY.lifecycle.allows(stage, "disqualified")
    assert_moved(state, send(state, "lead.disqualified"), "disqualified", "disqualified")


def test_disqualify_a_disqualified_lead_changes_nothing_but_its_time() -> None:
    state = lead_in("disqualified")
    assert_touched(state, send(state, "lead.disqualified"))


def test_merge_then_every_event_is_forwarded_to_the_lead_it_was_merged_into() -> None:
    """Facts are never lost: what is sent to a merged lead is passed on (core.merges; tests/test_merges.py)."""
    state = lead_in("mql")
    step = send(state, "lead.merged", into_lead_id="L2")
    merged = step.state
    assert merged is not None
    assert merged.merged_into == "L2"
    assert merged.stage == "mql"
    notice, absorbed, *cancellations = step.outputs
    assert isinstance(notice, LeadMergedNotice)
    assert isinstance(absorbed, Forward)
    assert (absorbed.into_lead_id, absorbed.event.type, absorbed.event.lead_id) == ("L2", "lead.absorbed", "L2")
    assert {c.reason for c in cancellations if isinstance(c, SlaCancelled)} <= {"merged:L2"}
    assert merged.clocks == {}
    assert notice.into_lead_id == "L2"
    again = send(merged, "lead.merged", LATER + 1, into_lead_id="L2")
    assert (again.state, again.outputs, again.refused, again.forwarded) == (merged, (), False, False), "done already"
    for type_ in sorted(set(BUSINESS_TYPES) - {"lead.created", "lead.erased"}):
        data = {"into_lead_id": "L3"} if type_ == "lead.merged" else SAMPLE_DATA[type_]
        event = make_event(type_, LATER + 1, **data)
        forwarded = apply(merged, event, POLICY)
        assert (forwarded.forwarded, forwarded.refused, forwarded.state) == (True, False, merged), type_
        (sent,) = forwarded.outputs
        assert isinstance(sent, Forward)
        assert (sent.lead_id, sent.into_lead_id, sent.event.lead_id, sent.event.type) == (LEAD, "L2", "L2", type_)
        assert sent.event.event_id == f"fwd:1:{LEAD}:{event.event_id}"
    assert_refused(merged, send(merged, "lead.created", LATER + 1), "lead_exists")


def test_merge_into_itself_is_refused() -> None:
    state = lead_in("lead")
    assert_refused(state, send(state, "lead.merged", into_lead_id=LEAD), "self_merge", "another lead")


@pytest.mark.parametrize("stage", STAGES)
def test_erase(stage: str) -> None:
    before = lead_in(stage)
    step = send(before, "lead.erased")
    assert step.state is None
    assert step.erased
    assert not step.refused
    notice, *cancellations = step.outputs
    assert isinstance(notice, LeadErasedNotice)
    assert sorted(c.sla for c in cancellations if isinstance(c, SlaCancelled) and c.reason == "erased") == sorted(
        before.clocks
    )
    assert (notice.lead_id, notice.occurred_at) == (LEAD, at(LATER))
    assert_refused(None, send(None, "activity", LATER + 1, action="page_view"), "unknown_lead")


def test_erase_a_merged_lead() -> None:
    """An erasure request must be honoured even after the lead was merged into another one."""
    merged = send(lead_in("lead"), "lead.merged", into_lead_id="L2").state
    step = send(merged, "lead.erased", LATER + 1)
    assert step.state is None
    assert step.erased
    assert isinstance(step.outputs[0], LeadErasedNotice)


# --- every stage change is in the history; every refusal changes nothing ----------------------------------


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("type_", BUSINESS_TYPES)
def test_any_event_in_any_stage(stage: str, type_: str) -> None:
    """The full table: either a refusal that changes nothing, or a state whose history grew by its moves."""
    state = lead_in(stage)
    step = send(state, type_, **SAMPLE_DATA[type_])
    if step.refused:
        assert step.state is state
        (only,) = step.outputs
        assert isinstance(only, EventRefused)
        assert only.detail
        return
    if step.erased:
        assert step.state is None
        return
    after = step.state
    assert after is not None
    moves = stage_changes(step.outputs)
    assert after.history[: len(state.history)] == state.history
    new_entries = [(h.stage, h.reason, h.skipped) for h in after.history[len(state.history) :]]
    assert new_entries == [(m.to_stage, m.reason, m.skipped) for m in moves]
    assert after.stage == (moves[-1].to_stage if moves else stage)
    for move in moves:
        # Requests and leadflow's own moves obey the transitions; facts may skip, and say what they skipped.
        assert type_ in FACTS or POLICY.lifecycle.allows(move.from_stage or "", move.to_stage)
        assert type_ in FACTS or not move.skipped
    assert after.updated_at == at(LATER)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("type_", sorted(FACTS))
def test_a_fact_is_never_refused(stage: str, type_: str) -> None:
    state = lead_in(stage)
    assert not send(state, type_, **SAMPLE_DATA[type_]).refused


@pytest.mark.parametrize("type_", sorted(REQUESTS))
def test_requests_are_still_refused_when_they_break_the_policy(type_: str) -> None:
    state = lead_in("lead")
    assert_refused(state, send(state, type_, **SAMPLE_DATA[type_]), "illegal_transition", "lead")


def test_outputs_have_deterministic_ids() -> None:
    state = lead_in("mql")
    event = make_event("lead.rejected", LATER, reason="not_icp")
    assert apply(state, event, POLICY).outputs == apply(state, event, POLICY).outputs
    bad = make_event("lead.rejected", LATER, reason="nope")
    assert apply(state, bad, POLICY).outputs[0].id == apply(state, bad, POLICY).outputs[0].id


@pytest.mark.parametrize("action", ["referral_given", "review_posted", "case_study"])
def test_advocacy_makes_a_customer_an_evangelist(action: str) -> None:
    customer = lead_in("customer")
    assert_moved(customer, send(customer, "activity", action=action), "evangelist", "advocacy")


@pytest.mark.parametrize("stage", ["lead", "mql", "sal", "opportunity", "nurturing"])
def test_advocacy_before_the_sale_moves_nothing(stage: str) -> None:
    step = send(lead_in(stage), "activity", action="referral_given")
    assert step.state is not None
    assert step.state.stage == stage
    assert stage_changes(step.outputs) == []


def test_advocacy_refused_by_the_policy_still_scores_and_changes_no_stage() -> None:
    policy = make_policy(lambda doc: doc["lifecycle"]["transitions"].update(customer=[]))
    customer = lead_in("customer", policy)
    step = apply(customer, make_event("activity", LATER, action="referral_given"), policy)
    assert not step.refused
    assert step.state is not None
    assert step.state.stage == "customer"
    assert stage_changes(step.outputs) == []


DECISION_MAKER = {"seniority": "vp", "company_size": 200, "industry": "saas", "persona": "decision_maker"}


def engaged_mql() -> LeadState:
    """A high-fit lead that became MQL by score (pricing views and a webinar)."""
    state = run(
        [
            make_event("lead.created", 0, **DECISION_MAKER),
            make_event("activity", 60, action="pricing_view"),
            make_event("activity", 120, action="pricing_view"),
        ]
    )
    assert state is not None
    assert state.stage == "mql"
    return state


def test_a_rejected_lead_must_earn_its_engagement_again() -> None:
    rejected = send(engaged_mql(), "lead.rejected", LATER, reason="no_budget").state
    assert rejected is not None
    assert (rejected.stage, rejected.engagement_score) == ("nurturing", 0)
    viewed = send(rejected, "activity", LATER + 60, action="page_view").state
    assert viewed is not None
    assert viewed.stage == "nurturing", "one page view does not bring back an MQL sales just rejected"
    views = [make_event("activity", LATER + t, action="pricing_view") for t in (120, 180)]
    again = run(views, state=viewed)
    assert again is not None
    assert again.stage == "mql"


def test_a_policy_may_keep_engagement_on_recycle() -> None:
    def keep(document: dict[str, Any]) -> None:
        document["mql"]["recycle_resets_engagement"] = False

    policy = make_policy(keep)
    rejected = apply(engaged_mql(), make_event("lead.rejected", LATER, reason="no_budget"), policy).state
    assert rejected is not None
    assert rejected.engagement_score >= 30
    requalified = apply(rejected, make_event("activity", LATER + 60, action="page_view"), policy).state
    assert requalified is not None
    assert requalified.stage == "mql"


# --- facts in any order: what a skip names -----------------------------------------------------------------

JOURNEY_STEP = st.sampled_from(sorted(set(BUSINESS_TYPES) - {"lead.created", "lead.merged", "lead.erased"}))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["subscriber", "lead"]), st.lists(JOURNEY_STEP, max_size=12))
def test_a_skip_names_exactly_the_main_stages_jumped_over_and_never_entered(start: str, steps: list[str]) -> None:
    """Any mix of facts and requests: a request never skips, and a fact's skip is the main-funnel stages strictly
    between where the lead was (for a side stage, the furthest it got) and where it went, that it never entered;
    the history never gets an entry for them."""
    state = run([make_event("lead.created", 0, initial_stage=start)])
    for i, type_ in enumerate(steps, start=1):
        assert state is not None
        step = send(state, type_, 60.0 * i, **SAMPLE_DATA[type_])
        if type_ in FACTS:
            assert not step.refused, step.outputs
        for change in stage_changes(step.outputs):
            assert type_ in FACTS or not change.skipped
            entered = {h.stage for h in state.history}
            ranks = [POLICY.stage_rank(h.stage) for h in state.history]
            position = POLICY.stage_rank(state.stage) if POLICY.stage_rank(state.stage) >= 0 else max(ranks)
            between = POLICY.lifecycle.stages[position + 1 : max(POLICY.stage_rank(change.to_stage), 0)]
            assert change.skipped == tuple(s for s in between if s not in entered)
        after = step.state
        if after is not None and not step.refused:
            new = after.history[len(state.history) :]
            assert not {h.stage for h in new} & {s for c in stage_changes(step.outputs) for s in c.skipped}
        state = after


def test_every_event_type_has_a_handler_or_is_taken_before_the_table() -> None:
    """A new event type in the LeadEvent union without a lifecycle handler fails here, not on its first event."""
    union, _ = get_args(LeadEvent)
    before_the_table = {LeadCreated, TimerDue, RouteUnassigned}
    assert set(get_args(union)) - before_the_table == set(HANDLERS)
