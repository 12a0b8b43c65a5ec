"""core/notifications.py: which outputs concern people, who hears, through which channel, when (cadence and quiet
hours in the team calendar), how digests group, and when a waiting notice no longer needs action."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from notify_support import T0, breach, cancelled, escalated, handoff, met, notifications, policy_with, warning

from leadflow.core.calendar import BusinessCalendar
from leadflow.core.notifications import (
    digests_due,
    due_at,
    is_working_day,
    next_working_instant,
    notice_of,
    plan,
    resolves,
)
from leadflow.schemas.notifications import Delivery, PendingItem
from leadflow.schemas.outputs import SlaStarted
from leadflow.schemas.policy import Cadence

SP = ZoneInfo("America/Sao_Paulo")
POLICY = policy_with(notifications())
CALENDAR = BusinessCalendar.from_spec(POLICY.calendars["inside_sales"])


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SP).astimezone(UTC)


def deliveries(planned: tuple[Delivery | PendingItem, ...]) -> list[Delivery]:
    return [p for p in planned if isinstance(p, Delivery)]


def pending(planned: tuple[Delivery | PendingItem, ...]) -> list[PendingItem]:
    return [p for p in planned if isinstance(p, PendingItem)]


# -- which outputs concern people ---------------------------------------------------------------------------------


def test_a_handoff_names_its_owner_the_pool_manager_and_the_soonest_deadline() -> None:
    notice = notice_of(handoff(hand_raiser=True), POLICY)
    assert notice is not None
    assert (notice.kind, notice.owner_id, notice.manager_id) == ("handoff", "rep-01", "mgr-enterprise")
    assert notice.sla == "first_contact"
    assert notice.deadline == T0 + timedelta(minutes=15)


def test_sla_outputs_become_warning_breach_and_escalation_notices() -> None:
    kinds = [notice_of(output, POLICY) for output in (warning(), breach(), escalated())]
    assert [n.kind if n else None for n in kinds] == ["warning", "breach", "escalation"]
    escalation = kinds[2]
    assert escalation is not None
    assert escalation.manager_id == "mgr-enterprise"


def test_clocks_started_met_or_cancelled_and_old_breaches_tell_nobody() -> None:
    started = SlaStarted(
        id="s", lead_id="l", sla="first_contact", owner_id="rep-01", team="inside_sales", pool="enterprise",
        started_at=T0, deadline=T0, occurred_at=T0, allowance_s=60, business=False,
    )  # fmt: skip
    for output in (started, met(), cancelled(), breach(old=True)):
        assert notice_of(output, POLICY) is None


def test_an_escalation_that_only_reassigns_tells_nobody() -> None:
    output = escalated().model_copy(update={"actions": ("reassign",)})
    assert notice_of(output, POLICY) is None


# -- who hears, where, when ---------------------------------------------------------------------------------------


def test_a_handoff_in_working_hours_goes_to_the_owner_the_crm_and_the_channels_at_once() -> None:
    notice = notice_of(handoff(), POLICY)
    assert notice is not None
    planned = plan(notice, POLICY, T0)
    sent = {(d.channel, d.recipient) for d in deliveries(planned) if d.due == T0}
    assert sent == {("email", "rep-01"), ("crm", "rep-01"), ("sales_slack", None), ("automations", None)}
    assert not pending(planned)


def test_at_night_the_owner_still_hears_but_the_team_channel_waits_for_the_morning() -> None:
    night = local(2026, 12, 7, 22, 30)  # Monday 22:30 in São Paulo
    notice = notice_of(handoff(at=night, hand_raiser=True), POLICY)
    assert notice is not None
    planned = {(d.channel, d.recipient): d.due for d in deliveries(plan(notice, POLICY, night))}
    assert planned[("email", "rep-01")] == night  # quiet_hours: false (15 minutes, day or night)
    assert planned[("sales_slack", None)] == local(2026, 12, 8, 9, 0)  # Tuesday when the calendar opens


def test_a_breach_reaches_the_manager_and_lands_in_the_owners_daily_digest() -> None:
    notice = notice_of(breach(), POLICY)
    assert notice is not None
    planned = plan(notice, POLICY, T0)
    assert {(d.channel, d.recipient) for d in deliveries(planned)} == {
        ("email", "mgr-enterprise"),
        ("automations", None),
    }
    (item,) = pending(planned)
    assert (item.channel, item.recipient) == ("email", "rep-01")
    assert item.due == local(2026, 12, 8, 8, 30)  # the next 08:30 of a working day


def test_two_rules_for_the_same_person_and_channel_give_one_message() -> None:
    rules = [
        {"kinds": ["handoff"], "to": ["owner"], "channel": "email", "quiet_hours": False},
        {"kinds": ["handoff", "breach"], "to": ["owner", "owner"], "channel": "email", "quiet_hours": False},
    ]
    policy = policy_with(notifications(rules=rules))
    notice = notice_of(handoff(), policy)
    assert notice is not None
    assert len(plan(notice, policy, T0)) == 1


def test_filters_by_pool_team_and_sla() -> None:
    rules = [
        {"kinds": ["warning"], "to": ["owner"], "channel": "email", "pools": ["latam"]},
        {"kinds": ["warning"], "to": ["manager"], "channel": "email", "slas": ["mql_acceptance"]},
        {"kinds": ["warning"], "to": ["channel"], "channel": "sales_slack", "teams": ["inside_sales"]},
    ]
    policy = policy_with(notifications(rules=rules))
    first_contact = notice_of(warning(sla="first_contact"), policy)
    acceptance = notice_of(warning(sla="mql_acceptance"), policy)
    assert first_contact is not None
    assert acceptance is not None
    assert {(d.channel, d.recipient) for d in deliveries(plan(first_contact, policy, T0))} == {("sales_slack", None)}
    assert {(d.channel, d.recipient) for d in deliveries(plan(acceptance, policy, T0))} == {
        ("sales_slack", None),
        ("email", "mgr-enterprise"),
    }


def test_a_role_nobody_holds_is_skipped() -> None:
    output = handoff(pool=None)  # an external lead.assigned: no pool, so no manager
    rules = [{"kinds": ["handoff"], "to": ["manager", "owner"], "channel": "email", "quiet_hours": False}]
    policy = policy_with(notifications(rules=rules))
    notice = notice_of(output, policy)
    assert notice is not None
    assert [d.recipient for d in deliveries(plan(notice, policy, T0))] == ["rep-01"]


def test_the_readers_language_wins_then_the_rule_then_the_channel_then_the_default() -> None:
    rules = [
        {"kinds": ["handoff"], "to": ["owner", "channel"], "channel": "sales_slack", "quiet_hours": False},
        {"kinds": ["handoff"], "to": ["owner"], "channel": "email", "quiet_hours": False, "language": "es"},
    ]
    doc = notifications(rules=rules)
    doc["channels"]["sales_slack"]["language"] = "pt-BR"
    policy = policy_with(doc)
    for owner, expected in (("rep-04", {"pt-BR"}), ("rep-06", {"es"}), ("rep-05", {"pt-BR", "es"})):
        notice = notice_of(handoff(owner=owner, pool="latam"), policy)
        assert notice is not None
        got = {(d.channel, d.recipient): d.language for d in deliveries(plan(notice, policy, T0))}
        assert set(v for (c, r), v in got.items() if r == owner) == expected
        assert got[("sales_slack", None)] == "pt-BR"


def test_a_stale_notice_is_history() -> None:
    notice = notice_of(handoff(), POLICY)
    assert notice is not None
    assert plan(notice, POLICY, T0 + timedelta(days=2)) == ()
    assert plan(notice, POLICY, T0 + timedelta(hours=23))


# -- cadence and quiet hours --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cadence", "now", "quiet", "expected"),
    [
        ("immediate", local(2026, 12, 7, 10, 0), True, local(2026, 12, 7, 10, 0)),
        ("immediate", local(2026, 12, 7, 12, 30), True, local(2026, 12, 7, 13, 0)),  # lunch break
        ("immediate", local(2026, 12, 5, 11, 0), True, local(2026, 12, 7, 9, 0)),  # Saturday -> Monday
        ("immediate", local(2026, 12, 5, 11, 0), False, local(2026, 12, 5, 11, 0)),
        ("hourly", local(2026, 12, 7, 10, 20), True, local(2026, 12, 7, 11, 0)),
        ("hourly", local(2026, 12, 7, 17, 40), True, local(2026, 12, 8, 9, 0)),  # 18:00 is closed
        ("hourly", local(2026, 12, 7, 17, 40), False, local(2026, 12, 7, 18, 0)),
        ("daily 08:30", local(2026, 12, 7, 8, 0), True, local(2026, 12, 7, 8, 30)),
        ("daily 08:30", local(2026, 12, 7, 8, 30), True, local(2026, 12, 8, 8, 30)),  # strictly after now
        ("daily 08:30", local(2026, 12, 4, 19, 0), True, local(2026, 12, 7, 8, 30)),  # Friday -> Monday
        ("daily 08:30", local(2026, 12, 4, 19, 0), False, local(2026, 12, 5, 8, 30)),  # every day
        ("daily 08:30", local(2026, 12, 23, 9, 0), True, local(2026, 12, 28, 8, 30)),  # 24th off, 25th Christmas
        ("weekly mon 08:30", local(2026, 12, 9, 10, 0), True, local(2026, 12, 14, 8, 30)),
        ("weekly fri 17:00", local(2026, 12, 21, 10, 0), True, local(2026, 12, 28, 17, 0)),  # 25th: moves to Mon
        ("weekly sat 09:00", local(2026, 12, 7, 10, 0), True, local(2026, 12, 14, 9, 0)),  # never works Saturdays
        ("weekly sat 09:00", local(2026, 12, 7, 10, 0), False, local(2026, 12, 12, 9, 0)),
    ],
)
def test_due_time_in_the_team_calendar(cadence: str, now: datetime, quiet: bool, expected: datetime) -> None:
    rule = {"kinds": ["warning"], "to": ["owner"], "channel": "email", "cadence": cadence}
    policy = policy_with(notifications(rules=[rule]))
    parsed = policy.notifications.rules[0].cadence
    assert due_at(parsed, now, SP, CALENDAR if quiet else None) == expected


def test_holidays_and_working_days_come_from_the_business_calendar() -> None:
    assert not is_working_day(CALENDAR, date(2026, 12, 25))  # national holiday (BR)
    assert not is_working_day(CALENDAR, date(2026, 12, 24))  # company day off (the policy's holidays)
    assert is_working_day(CALENDAR, date(2026, 12, 22))
    assert next_working_instant(CALENDAR, local(2026, 12, 24, 10)) == local(2026, 12, 28, 9)


CADENCES = st.sampled_from(
    ["immediate", "hourly", "daily 08:30", "daily 23:45", "weekly mon 08:30", "weekly sun 00:15", "daily 00:00"]
)
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(CADENCES, INSTANTS, st.booleans())
def test_a_due_time_is_never_before_now_and_respects_quiet_hours(text: str, now: datetime, quiet: bool) -> None:
    rule = {"kinds": ["warning"], "to": ["owner"], "channel": "email", "cadence": text}
    cadence: Cadence = policy_with(notifications(rules=[rule])).notifications.rules[0].cadence
    calendar = CALENDAR if quiet else None
    due = due_at(cadence, now, SP, calendar)
    if cadence.every == "immediate":
        assert due >= now
        assert due == now or calendar is not None
    else:
        assert due > now
    at = due.astimezone(SP)
    match cadence.every:
        case "immediate" | "hourly":
            if calendar is not None:
                assert calendar.is_working(due)
            if cadence.every == "hourly" and calendar is None:
                assert (at.minute, at.second, due - now <= timedelta(hours=1)) == (0, 0, True)
        case "daily" | "weekly":
            assert at.time() == cadence.at or _dst_gap(at.date(), cadence.at)
            if calendar is not None:
                assert is_working_day(calendar, at.date())
            limit = timedelta(days=1 if cadence.every == "daily" else 7)
            if calendar is None:
                assert due - now <= limit + timedelta(hours=1)


def _dst_gap(day: date, at: time | None) -> bool:
    assert at is not None
    wall = datetime.combine(day, at, tzinfo=SP)
    return wall.astimezone(UTC).astimezone(SP).time() != at


# -- digests ------------------------------------------------------------------------------------------------------


def _warnings_for(owner: str, leads: int) -> list[PendingItem]:
    items = []
    for i in range(leads):
        notice = notice_of(warning(lead=f"{owner}-lead-{i}", owner=owner, at=T0 + timedelta(minutes=i)), POLICY)
        assert notice is not None
        # each lead's deadline is an hour after its warning: later leads are due later
        items += pending(plan(notice, POLICY, T0 + timedelta(minutes=i)))
    return items


def test_a_rep_gets_one_digest_of_everything_pending_not_fifty_messages() -> None:
    items = _warnings_for("rep-01", 50) + _warnings_for("rep-02", 3)
    due = items[0].due
    assert digests_due(items, due - timedelta(seconds=1)) == []
    digests = digests_due(items, due)
    assert [(d.recipient, len(d.notices)) for d in digests] == [("rep-01", 50), ("rep-02", 3)]
    rep1 = digests[0]
    assert rep1.kind == "digest"
    assert [n.lead_id for n in rep1.notices][:3] == ["rep-01-lead-0", "rep-01-lead-1", "rep-01-lead-2"]
    assert rep1.id == digests_due(list(reversed(items)), due)[0].id  # the id is the bucket's, whatever the order


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rep-01", "rep-02", "rep-03"]), st.integers(0, 3000)), max_size=40))
def test_every_due_item_is_in_exactly_one_digest_of_its_recipient(spec: list[tuple[str, int]]) -> None:
    items = []
    for i, (owner, minutes) in enumerate(spec):
        at = T0 + timedelta(minutes=minutes)
        notice = notice_of(warning(lead=f"l{i}", owner=owner, at=at), POLICY)
        assert notice is not None
        items += pending(plan(notice, POLICY, at))
    now = T0 + timedelta(days=1)
    digests = digests_due(items, now)
    seen = [(d.recipient, n.id) for d in digests for n in d.notices]
    expected = [(item.recipient, item.notice.id) for item in items if item.due <= now]
    assert sorted(seen) == sorted(expected)
    assert all(len({n.id for n in d.notices}) == len(d.notices) for d in digests)
    assert len({d.id for d in digests}) == len(digests)


# -- what no longer needs action -----------------------------------------------------------------------------------


def test_a_met_clock_takes_its_warning_out_of_the_digest_and_only_that_one() -> None:
    (item,) = pending(plan(notice_of(warning(sla="first_contact"), POLICY), POLICY, T0))  # type: ignore[arg-type]
    assert resolves(item, met(sla="first_contact"))
    assert resolves(item, cancelled(sla="first_contact"))
    assert not resolves(item, met(sla="mql_acceptance"))
    assert not resolves(item, met(lead="another", sla="first_contact"))


def test_a_lead_handed_to_someone_else_leaves_the_old_owners_digest() -> None:
    rules = [{"kinds": ["handoff"], "to": ["owner"], "channel": "email", "cadence": "hourly"}]
    policy = policy_with(notifications(rules=rules))
    (item,) = pending(plan(notice_of(handoff(owner="rep-01"), policy), policy, T0))  # type: ignore[arg-type]
    assert resolves(item, handoff(owner="rep-02", previous_owner="rep-01", reason="escalated"))
    assert not resolves(item, handoff(owner="rep-01"))  # the same hand-off read again
    assert not resolves(item, handoff(lead="lead-2", owner="rep-02"))
    assert resolves(item, met(sla="first_contact"))  # what it asked for (the soonest clock) is done
    assert not resolves(item, met(sla="mql_acceptance"))
