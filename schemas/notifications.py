"""What `leadflow notify` reads, keeps and writes besides the messages themselves (streams/runtime/notifier.py).

A `Notice` is a hand-off or an SLA output that may concern people; a `Delivery` is one message to one recipient in
one channel (one notice, or a digest of several); a `PendingItem` is a notice waiting in a digest, kept in the
compacted state topic so a restart loses none; a `SentMark` says a delivery is done (sent or dead-lettered), so a
restart never sends it again; a `NotificationDeadLetter` is a delivery a channel kept refusing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, TypeAdapter

from leadflow.schemas.base import Frozen
from leadflow.schemas.outputs import HandOff
from leadflow.schemas.policy import NoticeKind

DeliveryKind = Literal["handoff", "warning", "breach", "escalation", "digest"]


class Notice(Frozen):
    id: str = Field(description="the output's id (leads.handoffs / leads.sla): deliveries derive theirs from it")
    kind: NoticeKind
    lead_id: str
    owner_id: str | None
    manager_id: str | None
    team: str | None
    pool: str | None
    sla: str | None = None
    deadline: datetime | None = None
    fraction: float | None = Field(default=None, description="share of the allowance used (warnings)")
    occurred_at: datetime
    handoff: HandOff | None = Field(default=None, description="the hand-off itself (profile, score, SLA clocks)")


class Delivery(Frozen):
    id: str = Field(description="deterministic: the same notice, channel and recipient always give the same id")
    channel: str
    recipient: str | None = Field(description="a person's id (owner, manager); None: the channel itself")
    kind: DeliveryKind
    language: str
    zone: str = Field(description="IANA time zone the message states times in (the team's calendar)")
    due: datetime
    not_before: datetime | None = Field(
        default=None, description="held back by the channel's rate limits until then (parked, not blocking)"
    )
    notices: tuple[Notice, ...] = Field(min_length=1)


class PendingItem(Frozen):
    """A notice waiting for its digest (state topic key `pending|<bucket>|<notice id>`)."""

    bucket: str
    channel: str
    recipient: str | None
    language: str
    zone: str
    due: datetime
    notice: Notice


class SentMark(Frozen):
    """A delivery that is done (state topic key `sent|<delivery id>`)."""

    status: Literal["sent", "dead_lettered"]
    channel: str
    kind: DeliveryKind
    at: datetime


class NotificationDeadLetter(Frozen):
    """A delivery its channel refused, or kept failing for every attempt: on leads.notifications.deadletter,
    with what it would have said, so an operator can read it and send it by hand."""

    type: Literal["notification.dead_letter"] = "notification.dead_letter"
    id: str
    channel: str
    channel_type: str
    kind: DeliveryKind
    recipient: str | None
    attempts: int
    error: str = Field(description="the last answer: an HTTP status and reason, an SMTP reply, a network error")
    failed_at: datetime
    delivery: Delivery


PENDING_ADAPTER: TypeAdapter[PendingItem] = TypeAdapter(PendingItem)
SENT_ADAPTER: TypeAdapter[SentMark] = TypeAdapter(SentMark)
NOTIFICATION_DEAD_LETTER_ADAPTER: TypeAdapter[NotificationDeadLetter] = TypeAdapter(NotificationDeadLetter)
