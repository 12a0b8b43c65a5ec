"""Lifecycle: what one event does to one lead, applied in event-time order.

`apply_lifecycle(state, event, policy)` is the business rule book, the first step of the per-event chain
(core.pipeline). It never refuses silently: an event the policy does not allow leaves the state as it was and
returns an `EventRefused` that says why and what would fix it. Ordering, dedupe and lateness are handled one level
up, in `core.decision`.

Requests and facts (README "Facts and requests"): sales *requests* (lead.accepted, lead.rejected,
deal.stage_changed) obey the policy's transitions and prerequisites, or are refused. *Facts* reported by a system
of record (deal.won, deal.lost, lead.disqualified, an external lead.qualified, meeting.scheduled) already
happened elsewhere: they are applied whatever the stage and whatever `lifecycle.transitions` lists, and a stage
change they cause names the main-funnel stages it jumped over (`skipped`): a process gap, never invented entries.

Merged leads (core.merges): an event sent to a lead merged into another is forwarded there (a `Forward` output,
the step `forwarded`), not applied here; a merge tells the surviving lead (`lead.absorbed`), which keeps the
leads it is made of and refuses a merge into one of them (`merge_cycle`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadflow.core.handoff import assign, unclaimed
from leadflow.core.ids import output_id
from leadflow.core.merges import (
    MAX_FORWARD_HOPS,
    absorb,
    absorbed,
    chain_detail,
    cycle_detail,
    forward,
    hops_of,
    is_cycle,
    is_forwardable,
    is_repeated_merge,
    merge_cycle_detail,
    unknown_target_detail,
)
from leadflow.core.scoring import add_action, fit_score
from leadflow.core.step import Step
from leadflow.schemas.events import (
    MAX_CUSTOM_ATTRIBUTES,
    Activity,
    Bant,
    ContactAttempted,
    CustomValue,
    DealLost,
    DealStageChanged,
    DealWon,
    LeadAbsorbed,
    LeadAccepted,
    LeadAssigned,
    LeadCreated,
    LeadDisqualified,
    LeadErased,
    LeadEvent,
    LeadMerged,
    LeadPaused,
    LeadQualified,
    LeadRejected,
    LeadResumed,
    LeadUpdated,
    MeetingScheduled,
    Profile,
    RouteUnassigned,
    TimerDue,
)
from leadflow.schemas.outputs import (
    EventRefused,
    LeadErasedNotice,
    LeadMergedNotice,
    RefusalReason,
    StageChanged,
)
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadState, StageEntry

# Stages in which a lead has a deal in the sales pipeline.
DEAL_STAGES = ("sal", "sql", "opportunity")
# What a system of record reports as done (applied whatever the stage) and what sales asks for (refused when it
# breaks the policy); README "Facts and requests".
FACTS = frozenset({"deal.won", "deal.lost", "lead.disqualified", "lead.qualified", "meeting.scheduled"})
REQUESTS = frozenset({"lead.accepted", "lead.rejected", "deal.stage_changed"})


# What makes an event for a lead that does not exist apply (core.decision keeps it while its window is open).
UNKNOWN_LEAD_FIX = (
    "no lead with this lead_id; send its lead.created, dated before this event: one that comes within "
    "processing.lateness_seconds applies this event as it is; after that, send this event again"
)


def refuse(state: LeadState | None, event: LeadEvent, reason: RefusalReason, detail: str) -> Step:
    refusal = EventRefused(
        id=output_id(event.lead_id, event.event_id, "refused", reason),
        lead_id=event.lead_id,
        event_id=event.event_id,
        event_type=event.type,
        occurred_at=event.occurred_at,
        reason=reason,
        detail=detail,
    )
    return Step(state, (refusal,), refused=True)


def is_allowed(policy: Policy, source: str, target: str) -> bool:
    return policy.lifecycle.allows(source, target)


def move(state: LeadState, target: str, event: LeadEvent, policy: Policy, reason: str, **updates: object) -> Step:
    """Move the lead to `target` if the policy allows it, recording the entry in its history."""
    if not is_allowed(policy, state.stage, target):
        allowed = ", ".join(policy.lifecycle.transitions.get(state.stage, ())) or "none"
        return refuse(
            state,
            event,
            "illegal_transition",
            f"{event.type} would move the lead from {state.stage} to {target}; "
            f"from {state.stage} the policy allows: {allowed}",
        )
    return enter(state, target, event, policy, reason, skipped=(), updates=updates)


def move_by_fact(
    state: LeadState, target: str, event: LeadEvent, policy: Policy, reason: str, **updates: object
) -> Step:
    """A fact moves the lead to `target` whatever the transitions say (it already happened elsewhere), naming
    the stages it skipped; a fact that finds the lead already there changes no stage."""
    if target == state.stage:
        return touch(state, event, **updates)
    return enter(state, target, event, policy, reason, skipped=skipped_stages(state, target, policy), updates=updates)


def funnel_position(state: LeadState, policy: Policy) -> int:
    """Where the lead is in the main funnel: its stage's rank, or in a side stage (nurturing, disqualified) the
    highest main-funnel stage it ever entered (-1 when none)."""
    rank = policy.stage_rank(state.stage)
    if rank >= 0:
        return rank
    return max((policy.stage_rank(entry.stage) for entry in state.history), default=-1)


def skipped_stages(state: LeadState, target: str, policy: Policy) -> tuple[str, ...]:
    """Main-funnel stages strictly between where the lead is and `target` that it never entered, in order."""
    entered = {entry.stage for entry in state.history}
    between = policy.lifecycle.stages[funnel_position(state, policy) + 1 : max(policy.stage_rank(target), 0)]
    return tuple(stage for stage in between if stage not in entered)


def is_at_or_past(state: LeadState, stage: str, policy: Policy) -> bool:
    """The lead is in `stage` or further down the main funnel (a side stage is neither)."""
    rank = policy.stage_rank(stage)
    return state.stage == stage or (rank >= 0 and policy.stage_rank(state.stage) > rank)


def enter(
    state: LeadState,
    target: str,
    event: LeadEvent,
    policy: Policy,
    reason: str,
    *,
    skipped: tuple[str, ...],
    updates: dict[str, object],
) -> Step:
    """The lead enters `target`: a history entry, a stage change, and what entering a side stage implies."""
    entry = StageEntry(
        stage=target, entered_at=event.occurred_at, event_id=event.event_id, reason=reason, skipped=skipped
    )
    if target in policy.lifecycle.side_stages:
        # Back to marketing (recycled, disqualified): no sales owner; a re-qualified lead is routed afresh.
        updates = {"owner_id": None, "pool": None, **updates}
    if target == "nurturing" and policy.mql.recycle_resets_engagement:
        updates = {"engagement": {}, "engagement_as_of": event.occurred_at, **updates}
    moved = state.model_copy(
        update={
            **updates,
            "stage": target,
            "stage_entered_at": event.occurred_at,
            "updated_at": max(state.updated_at, event.occurred_at),
            "history": (*state.history, entry),
        }
    )
    return Step(moved, (stage_changed(state.stage, moved, event, reason, skipped),))


def stage_changed(
    source: str | None, state: LeadState, event: LeadEvent, reason: str, skipped: tuple[str, ...] = ()
) -> StageChanged:
    return StageChanged(
        id=output_id(event.lead_id, event.event_id, "stage", str(source), state.stage),
        lead_id=state.lead_id,
        from_stage=source,
        to_stage=state.stage,
        occurred_at=event.occurred_at,
        cause_event_id=event.event_id,
        cause_type=event.type,
        reason=reason,
        skipped=skipped,
        fit=state.fit,
        engagement=state.engagement_score,
        owner_id=state.owner_id,
    )


def touch(state: LeadState, event: LeadEvent, **updates: object) -> Step:
    return Step(state.model_copy(update={**updates, "updated_at": max(state.updated_at, event.occurred_at)}))


def is_mql_by_score(state: LeadState, policy: Policy) -> bool:
    rule = policy.mql
    return (
        state.stage in rule.eligible_stages
        and state.fit >= rule.min_fit
        and state.engagement_score >= rule.min_engagement
    )


def then_qualify(step: Step, event: LeadEvent, policy: Policy) -> Step:
    """After a score change: promote to MQL when the MQL rule now holds."""
    state = step.state
    if state is None or step.refused or not is_mql_by_score(state, policy):
        return step
    qualified = move(state, "mql", event, policy, "score")
    if qualified.refused:
        return step  # the policy does not allow MQL from here; the score change still stands
    return Step(qualified.state, step.outputs + qualified.outputs)


def apply_lifecycle(state: LeadState | None, event: LeadEvent, policy: Policy) -> Step:
    """What the event does to the lead's stage, scores and facts."""
    if isinstance(event, TimerDue | RouteUnassigned):
        # Time passes (core.sla.due emits what has come due), or the router found nobody: the lead waits on.
        return Step(state)
    if isinstance(event, LeadCreated):
        if state is not None:
            return refuse(
                state, event, "lead_exists", "the lead already exists; send lead.updated to change its profile"
            )
        return then_qualify(create(event, policy), event, policy)
    if state is None:
        if isinstance(event, LeadAbsorbed):
            return refuse(None, event, "unknown_lead", unknown_target_detail(event))
        return refuse(None, event, "unknown_lead", UNKNOWN_LEAD_FIX)
    if state.merged_into is not None and not isinstance(event, LeadErased):  # an erasure request always wins
        return pass_on(state, event)
    return HANDLERS[type(event)](state, event, policy)


def update(state: LeadState, event: LeadUpdated, policy: Policy) -> Step:
    return then_qualify(update_profile(state, event, policy), event, policy)


def take_assignment(state: LeadState, event: LeadAssigned, policy: Policy) -> Step:
    assigned, outputs = assign(state, event, policy)
    return Step(assigned, outputs)


def accept(state: LeadState, event: LeadAccepted, policy: Policy) -> Step:
    if state.stage != "mql":
        return refuse(state, event, "illegal_transition", f"only an mql can be accepted; lead is {state.stage}")
    return move(state, "sal", event, policy, "accepted")


def count_contact(state: LeadState, event: ContactAttempted, policy: Policy) -> Step:
    last = max(state.last_contact_at or event.occurred_at, event.occurred_at)
    return touch(state, event, contact_attempts=state.contact_attempts + 1, last_contact_at=last)


def count_meeting(state: LeadState, event: MeetingScheduled, policy: Policy) -> Step:
    return touch(state, event, meetings=state.meetings + 1)


def disqualify(state: LeadState, event: LeadDisqualified, policy: Policy) -> Step:
    return move_by_fact(state, "disqualified", event, policy, "disqualified")


def pause_lead(state: LeadState, event: LeadPaused, policy: Policy) -> Step:
    return touch(state, event, paused=True)


def resume_lead(state: LeadState, event: LeadResumed, policy: Policy) -> Step:
    return touch(state, event, paused=False)


def take_merge(state: LeadState, event: LeadMerged, policy: Policy) -> Step:
    return merge(state, event)


def take_absorb(state: LeadState, event: LeadAbsorbed, policy: Policy) -> Step:
    return Step(absorb(state, event))


def erase(state: LeadState, event: LeadErased, policy: Policy) -> Step:
    notice = LeadErasedNotice(
        id=output_id(event.lead_id, event.event_id, "erased"),
        lead_id=event.lead_id,
        occurred_at=event.occurred_at,
        cause_event_id=event.event_id,
    )
    return Step(None, (notice,), erased=True)


def create(event: LeadCreated, policy: Policy) -> Step:
    data = event.data
    attributes = {name: value for name, value in data.attributes_set().items() if value is not None}
    profile = Profile.model_validate({**attributes, "custom": merge_custom({}, data.custom_attributes())})
    at = event.occurred_at
    state = LeadState(
        lead_id=event.lead_id,
        stage=data.initial_stage,
        created_at=at,
        updated_at=at,
        stage_entered_at=at,
        profile=profile,
        fit=fit_score(profile, policy),
        engagement_as_of=at,
        history=(StageEntry(stage=data.initial_stage, entered_at=at, event_id=event.event_id, reason="created"),),
    )
    return Step(state, (stage_changed(None, state, event, "created"),))


def update_profile(state: LeadState, event: LeadUpdated, policy: Policy) -> Step:
    changed = event.data.attributes_set()
    custom = merge_custom(state.profile.custom, event.data.custom_attributes())
    profile = state.profile.model_copy(update={**changed, "custom": custom})
    return touch(state, event, profile=profile, fit=fit_score(profile, policy))


def merge_custom(kept: dict[str, CustomValue], new: dict[str, CustomValue]) -> dict[str, CustomValue]:
    """Custom attributes after an update: new values win, null clears. A lead keeps at most
    MAX_CUSTOM_ATTRIBUTES: the most recently set ones (so its record stays bounded over many updates)."""
    merged = {name: value for name, value in kept.items() if name not in new}
    merged.update((name, value) for name, value in new.items() if value is not None)
    if len(merged) <= MAX_CUSTOM_ATTRIBUTES:
        return merged
    return dict(list(merged.items())[-MAX_CUSTOM_ATTRIBUTES:])


def record_activity(state: LeadState, event: Activity, policy: Policy) -> Step:
    action = event.data.action
    engagement, as_of = add_action(state.engagement, state.engagement_as_of, action, event.occurred_at, policy)
    step = touch(state, event, engagement=engagement, engagement_as_of=as_of)
    scored = step.state
    assert scored is not None
    if action in policy.mql.hand_raiser_actions and scored.stage in policy.mql.eligible_stages:
        raised = move(scored, "mql", event, policy, "hand_raiser")
        if not raised.refused:
            return raised
    if action in policy.lifecycle.advocacy_actions and scored.stage == "customer":
        advocated = move(scored, "evangelist", event, policy, "advocacy")
        if not advocated.refused:
            return advocated
    if action in policy.mql.conversion_actions and scored.stage == "subscriber":
        converted = move(scored, "lead", event, policy, "converted")
        if not converted.refused:
            return then_qualify(converted, event, policy)
    return then_qualify(step, event, policy)


def qualify(state: LeadState, event: LeadQualified, policy: Policy) -> Step:
    """An external MQL is a fact, but it never moves a lead backwards: one already at or past mql stays put."""
    if is_at_or_past(state, "mql", policy):
        return touch(state, event)
    return move_by_fact(state, "mql", event, policy, "external")


def win(state: LeadState, event: DealWon, policy: Policy) -> Step:
    """A won deal makes a customer from any stage. Without an amount the revenue is unknown (None, never 0); a
    lead already won only records the amount, if given."""
    amount = event.data.amount
    if is_at_or_past(state, "customer", policy):
        return touch(state, event, **({"won_amount": amount} if amount is not None else {}))
    return move_by_fact(state, "customer", event, policy, "won", won_amount=amount)


def lose(state: LeadState, event: DealLost, policy: Policy) -> Step:
    """A lost deal sends a lead before customer where the policy sends lost deals, whatever its reason (kept on
    the stage change; metrics count a reason the policy does not list as other). A customer's lost deal (an
    upsell) leaves the customer as it is."""
    if is_at_or_past(state, "customer", policy):
        return touch(state, event)
    reason = f"lost:{event.data.reason}"
    return move_by_fact(state, policy.deals.lost_to_stage, event, policy, reason, deal_stage=None)


def reject(state: LeadState, event: LeadRejected, policy: Policy) -> Step:
    code = event.data.reason
    if code not in policy.rejection_codes:
        return refuse(
            state,
            event,
            "invalid_rejection_reason",
            f"data.reason {code!r} is not a rejection reason in the policy; "
            f"use one of: {', '.join(sorted(policy.rejection_codes))}",
        )
    if state.stage not in ("mql", "sal"):
        return refuse(state, event, "illegal_transition", f"only an mql or sal can be rejected; lead is {state.stage}")
    return move(
        state,
        "nurturing",
        event,
        policy,
        f"rejected:{code}",
        rejections=state.rejections + 1,
        last_rejection=code,
    )


def missing_bant(confirmed: Bant, required: tuple[str, ...]) -> list[str]:
    return [name for name in required if not getattr(confirmed, name)]


def advance_deal(state: LeadState, event: DealStageChanged, policy: Policy) -> Step:
    target = policy.pipeline_stages.get(event.data.stage)
    if target is None:
        known = ", ".join(p.stage for p in policy.deals.pipeline)
        return refuse(
            state,
            event,
            "unknown_pipeline_stage",
            f"data.stage {event.data.stage!r} is not a pipeline stage in the policy; use one of: {known}",
        )
    if state.stage not in DEAL_STAGES:
        return refuse(
            state,
            event,
            "illegal_transition",
            f"deal stages apply to accepted leads ({', '.join(DEAL_STAGES)}); lead is {state.stage}",
        )
    given = event.data.bant
    confirmed = Bant(
        budget=state.bant.budget or given.budget,
        authority=state.bant.authority or given.authority,
        need=state.bant.need or given.need,
        timeline=state.bant.timeline or given.timeline,
    )
    missing = missing_bant(confirmed, target.requires)
    if missing:
        return refuse(
            state,
            event,
            "missing_prerequisites",
            f"deal stage {target.stage} requires BANT {', '.join(target.requires)}; "
            f"confirm {', '.join(missing)} in data.bant",
        )
    updates: dict[str, object] = {"deal_stage": target.stage, "bant": confirmed}
    if event.data.amount is not None:
        updates["deal_amount"] = event.data.amount
    if policy.stage_rank(target.lifecycle_stage) > policy.stage_rank(state.stage):
        return move(state, target.lifecycle_stage, event, policy, f"deal:{target.stage}", **updates)
    return touch(state, event, **updates)  # a deal moving within (or back inside) the lifecycle stage


def merge(state: LeadState, event: LeadMerged) -> Step:
    """The lead is merged into another: it is closed here, and the other one is told (core.merges.absorbed)."""
    into = event.data.into_lead_id
    if into == state.lead_id and hops_of(event.event_id) > 0:
        return Step(state)  # forwarded from a lead merged into this one, naming this one: done already
    if into == state.lead_id:
        return refuse(state, event, "self_merge", "data.into_lead_id must name another lead")
    if is_cycle(state, into):
        return refuse(state, event, "merge_cycle", merge_cycle_detail(into))
    notice = LeadMergedNotice(
        id=output_id(event.lead_id, event.event_id, "merged", into),
        lead_id=event.lead_id,
        into_lead_id=into,
        occurred_at=event.occurred_at,
        cause_event_id=event.event_id,
    )
    step = touch(state, event, merged_into=into)
    return Step(step.state, (notice, absorbed(state, event)))


def pass_on(state: LeadState, event: LeadEvent) -> Step:
    """An event for a lead merged into another: forwarded there (core.merges), or refused with the reason."""
    if is_repeated_merge(state, event):
        return Step(state)
    if not is_forwardable(event):
        detail = f"this lead was merged into {state.merged_into}; send events there"
        refused = refuse(state, event, "lead_merged", detail)
        return Step(state, (*refused.outputs, *unclaimed(event)), refused=True)
    into = state.merged_into
    assert into is not None
    if isinstance(event, LeadAbsorbed):
        # Kept here too, and passed on down the chain; a notice naming the lead this one went into closed a cycle.
        state = absorb(state, event)
        if is_cycle(state, into):
            return Step(state, refuse(state, event, "merge_cycle", cycle_detail(state)).outputs, refused=True)
    hops = hops_of(event.event_id)
    if hops >= MAX_FORWARD_HOPS:
        refused = refuse(state, event, "merge_chain_too_long", chain_detail(state, hops))
        return Step(state, refused.outputs, refused=True)
    return Step(state, (forward(state, event),), forwarded=True)


# What each event type does to an existing lead (lead.created, timer ticks and router misses are handled before).
# A new event type: its model in schemas/events.py and its handler here. The handlers take the event type they
# are listed under; the table's type cannot say so.
HANDLERS: dict[type[LeadEvent], Callable[[LeadState, Any, Policy], Step]] = {
    LeadUpdated: update,
    Activity: record_activity,
    LeadQualified: qualify,
    LeadAssigned: take_assignment,
    LeadAccepted: accept,
    LeadRejected: reject,
    ContactAttempted: count_contact,
    MeetingScheduled: count_meeting,
    DealStageChanged: advance_deal,
    DealWon: win,
    DealLost: lose,
    LeadDisqualified: disqualify,
    LeadPaused: pause_lead,
    LeadResumed: resume_lead,
    LeadMerged: take_merge,
    LeadAbsorbed: take_absorb,
    LeadErased: erase,
}
