"""Who hears about a hand-off or an SLA, through which channel, and when: pure (the clock is passed in).

`notice_of(output, policy)` keeps the outputs that concern people (hand-offs, warnings, recent breaches,
escalations); `plan(notice, policy, now)` applies the policy's notification rules: each matching rule and recipient
gives either a `Delivery` due now (or when the team's working hours open, with quiet hours) or a `PendingItem` for
a digest due at the rule's cadence, in the team calendar's local time. `digests_due(items, now)` groups the items
whose time has come into one delivery per recipient, channel and due time: a rep reads one digest, not fifty
messages. `resolves(item, output)` says when a pending item no longer needs action (its clock was met or
cancelled, or the lead went to another owner), so digests list only what still needs doing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import assert_never
from zoneinfo import ZoneInfo

from leadflow.core.calendar import BusinessCalendar, calendar_for
from leadflow.core.ids import output_id
from leadflow.schemas.notifications import Delivery, Notice, PendingItem
from leadflow.schemas.outputs import HandOff, SlaBreached, SlaCancelled, SlaEscalated, SlaMet, SlaOutput, SlaWarning
from leadflow.schemas.policy import WEEKDAYS, Cadence, NotificationRule, Policy

# How far ahead the next working time or working day is looked for (a calendar with no working time at all).
SEARCH_DAYS = 400

Planned = Delivery | PendingItem


def notice_of(output: HandOff | SlaOutput, policy: Policy) -> Notice | None:
    """The notice an output gives people, or None (clocks started, met, cancelled; breaches kept as history)."""
    match output:
        case HandOff():
            slas = sorted(output.slas, key=lambda s: s.deadline)
            return Notice(
                id=output.id,
                kind="handoff",
                lead_id=output.lead_id,
                owner_id=output.owner_id,
                manager_id=_manager(output.pool, policy),
                team=output.team,
                pool=output.pool,
                sla=slas[0].sla if slas else None,
                deadline=slas[0].deadline if slas else None,
                occurred_at=output.occurred_at,
                handoff=output,
            )
        case SlaWarning():
            return _sla_notice(output, "warning", policy, fraction=output.fraction)
        case SlaBreached():
            if output.not_escalated is not None:
                return None  # older than the escalation horizon: history, not a call to act now
            return _sla_notice(output, "breach", policy)
        case SlaEscalated():
            if "notify" not in output.actions:
                return None
            notice = _sla_notice(output, "escalation", policy)
            return notice.model_copy(update={"manager_id": output.manager_id or notice.manager_id})
        case _:
            return None


def _sla_notice(output: SlaOutput, kind: str, policy: Policy, fraction: float | None = None) -> Notice:
    return Notice.model_validate(
        {
            "id": output.id,
            "kind": kind,
            "lead_id": output.lead_id,
            "owner_id": output.owner_id,
            "manager_id": _manager(output.pool, policy),
            "team": output.team,
            "pool": output.pool,
            "sla": output.sla,
            "deadline": output.deadline,
            "fraction": fraction,
            "occurred_at": output.occurred_at,
        }
    )


def _manager(pool: str | None, policy: Policy) -> str | None:
    if pool is None or policy.routing is None or pool not in policy.routing.by_name:
        return None
    return policy.routing.by_name[pool].manager


def is_stale(notice: Notice, now: datetime, policy: Policy) -> bool:
    """Older than notifications.stale_after_seconds when read: history (a backlog, a replay), nobody is told."""
    return (now - notice.occurred_at).total_seconds() > policy.notifications.stale_after_seconds


def is_matching(rule: NotificationRule, notice: Notice) -> bool:
    if notice.kind not in rule.kinds:
        return False
    if rule.pools and notice.pool not in rule.pools:
        return False
    if rule.teams and notice.team not in rule.teams:
        return False
    if rule.slas:
        slas = {s.sla for s in notice.handoff.slas} if notice.handoff is not None else {notice.sla}
        if not slas & set(rule.slas):
            return False
    return True


def calendar_of(team: str | None, policy: Policy) -> BusinessCalendar | None:
    spec = policy.calendars.get(team) if team is not None else None
    return calendar_for(spec) if spec is not None else None


def zone_of(team: str | None, policy: Policy) -> str:
    spec = policy.calendars.get(team) if team is not None else None
    return spec.timezone if spec is not None else policy.notifications.timezone


def recipients(rule: NotificationRule, notice: Notice) -> Iterator[str | None]:
    """Person ids (None: the channel itself), each once; a role nobody holds (no owner, no manager) is skipped."""
    seen: set[str | None] = set()
    for role in rule.to:
        who = {"owner": notice.owner_id, "manager": notice.manager_id, "channel": None}[role]
        if role != "channel" and who is None:
            continue
        if who not in seen:
            seen.add(who)
            yield who


def language_of(rule: NotificationRule, recipient: str | None, channel: str, policy: Policy) -> str:
    settings = policy.notifications
    person = settings.people.get(recipient) if recipient is not None else None
    return (
        (person.language if person is not None else None)
        or rule.language
        or settings.channels[channel].language
        or settings.language
    )


def plan(notice: Notice, policy: Policy, now: datetime) -> tuple[Planned, ...]:
    """Every message the rules ask for: deliveries (due now or when quiet hours end) and digest items."""
    if is_stale(notice, now, policy):
        return ()
    calendar = calendar_of(notice.team, policy)
    zone = zone_of(notice.team, policy)
    planned: dict[str, Planned] = {}
    for index, rule in enumerate(policy.notifications.rules):
        if not is_matching(rule, notice):
            continue
        quiet = calendar if rule.quiet_hours else None
        due = due_at(rule.cadence, now, ZoneInfo(zone), quiet)
        for recipient in recipients(rule, notice):
            language = language_of(rule, recipient, rule.channel, policy)
            who = recipient or "*"
            if rule.cadence.is_digest:
                bucket = f"{index}|{rule.channel}|{who}|{due.isoformat()}"
                item = PendingItem(
                    bucket=bucket,
                    channel=rule.channel,
                    recipient=recipient,
                    language=language,
                    zone=zone,
                    due=due,
                    notice=notice,
                )
                planned.setdefault(f"{bucket}|{notice.id}", item)
            else:
                delivery = Delivery(
                    id=output_id("notify", rule.channel, who, notice.id),
                    channel=rule.channel,
                    recipient=recipient,
                    kind=notice.kind,
                    language=language,
                    zone=zone,
                    due=due,
                    notices=(notice,),
                )
                planned.setdefault(delivery.id, delivery)  # two rules, same person and channel: one message
    return tuple(planned.values())


def due_at(cadence: Cadence, now: datetime, zone: ZoneInfo, quiet: BusinessCalendar | None) -> datetime:
    """When a notice planned at `now` goes out (UTC). With a calendar for quiet hours, an immediate or hourly
    message waits for the next working time, and a daily or weekly digest moves to the next working day."""
    now = now.astimezone(UTC)
    match cadence.every:
        case "immediate":
            return next_working_instant(quiet, now) if quiet is not None else now
        case "hourly":
            local = now.astimezone(zone)
            top = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            due = top.astimezone(UTC)
            return next_working_instant(quiet, due) if quiet is not None else due
        case "daily" | "weekly":
            assert cadence.at is not None
            weekday = WEEKDAYS.index(cadence.day) if cadence.day is not None else None
            for day in _local_days(now, zone):
                if weekday is not None and day.weekday() != weekday and not _moved_here(day, weekday, quiet):
                    continue
                if quiet is not None and not is_working_day(quiet, day):
                    continue
                due = datetime.combine(day, cadence.at, tzinfo=zone).astimezone(UTC)
                if due > now:
                    return due
            raise ValueError(f"no working day within {SEARCH_DAYS} days of {now.isoformat()} for a {cadence.every}")
        case unknown:
            assert_never(unknown)


def _moved_here(day: date, weekday: int, quiet: BusinessCalendar | None) -> bool:
    """A weekly digest whose day is not a working day moves to the next working day: is `day` that day?"""
    if quiet is None:
        return False
    back = (day.weekday() - weekday) % 7
    if back == 0:
        return False
    skipped = [day - timedelta(days=n) for n in range(back, 0, -1)]
    return not any(is_working_day(quiet, d) for d in skipped)


def _local_days(now: datetime, zone: ZoneInfo) -> Iterator[date]:
    first = now.astimezone(zone).date()
    for offset in range(SEARCH_DAYS):
        yield first + timedelta(days=offset)


def is_working_day(calendar: BusinessCalendar, day: date) -> bool:
    return any(True for _ in calendar.windows(day))


def next_working_instant(calendar: BusinessCalendar, at: datetime) -> datetime:
    """`at` itself when it is working time, else when the calendar next opens."""
    local = at.astimezone(calendar.zone).date() - timedelta(days=1)
    for offset in range(SEARCH_DAYS):
        for opens, closes in calendar.windows(local + timedelta(days=offset)):
            if closes > at:
                return max(opens, at)
    raise ValueError(f"the calendar has no working time within {SEARCH_DAYS} days of {at.isoformat()}")


def resolves(item: PendingItem, output: HandOff | SlaOutput) -> bool:
    """Whether `output` means the pending item no longer needs action: its clock was met or cancelled, or the
    lead went to another owner (the old owner's digest drops it; the new owner hears about it)."""
    notice = item.notice
    if output.lead_id != notice.lead_id:
        return False
    match output:
        case SlaMet() | SlaCancelled():
            return notice.sla == output.sla  # what the message asks for (a hand-off: its soonest clock) is done
        case HandOff():
            return output.id != notice.id and output.owner_id != notice.owner_id and item.recipient == notice.owner_id
        case _:
            return False


def digests_due(items: Iterable[PendingItem], now: datetime) -> list[Delivery]:
    """One delivery per bucket (rule, channel, recipient, due time) whose time has come, its notices in the order
    of their deadlines (soonest first; those without a deadline last)."""
    buckets: dict[str, list[PendingItem]] = defaultdict(list)
    for item in items:
        if item.due <= now:
            buckets[item.bucket].append(item)
    deliveries = []
    for bucket, pending in sorted(buckets.items(), key=lambda kv: (kv[1][0].due, kv[0])):
        first = pending[0]
        notices = sorted(
            {item.notice.id: item.notice for item in pending}.values(),
            key=lambda n: (n.deadline is None, n.deadline or n.occurred_at, n.lead_id, n.id),
        )
        deliveries.append(
            Delivery(
                id=output_id("digest", bucket),
                channel=first.channel,
                recipient=first.recipient,
                kind="digest",
                language=first.language,
                zone=first.zone,
                due=first.due,
                notices=tuple(notices),
            )
        )
    return deliveries
