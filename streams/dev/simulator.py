"""Funnel simulator: realistic lead journeys for demos, tests and benchmarks.

One state machine per lead (`LeadJourney`) yields the lead's next `Step`: a delay in *simulated* seconds after
the lead's previous step, and an envelope without `occurred_at` (GUIDE.md section 3, `schemas/events.py`).
Two drivers stamp the time:

- `journeys()` (pure, deterministic from a seed, no clock reads): occurred_at = start + arrival + delays;
- `LiveSimulator` (real time): occurred_at = the step's due time; simulated delays are divided by `speed`.

So a lead walks the same path in both drivers for the same seed and index; only the timestamps differ.

The funnel shape follows practice (see `FunnelShape`): about 20 % of leads become MQL (mostly good-fit leads
with real engagement, plus hand-raisers and MQLs asserted by an external tool), 70 % of MQLs are accepted and
30 % rejected with a reason code, about half of the accepted leads get a qualified call, and each pipeline stage
loses some deals; about 20 % of proposals end in `deal.won`.

`records()` turns events into Kafka (key, value) pairs and can add deliberately bad records (invalid JSON,
unknown type, missing field, timestamp without offset) for the dead-letter demo.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

Event = dict[str, Any]
"""A JSON-ready envelope (the shape `schemas.events.EVENT_ADAPTER` validates)."""

Send = Callable[[bytes, bytes], Awaitable[None]]
"""Sends one Kafka record: (key, value)."""

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

SENIORITIES: Final = ("c_level", "vp", "director", "manager", "individual", "student")
INDUSTRIES: Final = ("saas", "retail", "finance", "education", "health", "manufacturing", "services")
COUNTRIES: Final = ("BR", "US", "PT", "MX", "DE", "GB")
PERSONAS: Final = ("decision_maker", "champion", "end_user", "student")
ENGAGEMENT_POINTS: Final[dict[str, int]] = {
    "page_view": 1,
    "email_open": 1,
    "email_click": 3,
    "content_download": 8,
    "form_submit": 10,
    "webinar_attended": 12,
    "pricing_view": 15,
}
"""Engagement actions with the points the default policy roughly gives them (the generator aims at these)."""
HAND_RAISER_ACTIONS: Final = ("demo_request", "contact_sales")
ADVOCACY_ACTIONS: Final = ("referral_given", "review_posted")
REJECTION_REASONS: Final = (
    "not_icp",
    "no_budget",
    "wrong_contact",
    "bad_data",
    "duplicate",
    "competitor",
    "student",
    "no_interest",
)
LOST_REASONS: Final = ("price", "competitor", "no_decision", "timing", "product_fit")
REPS: Final = tuple(f"rep-{n:02d}" for n in range(1, 9))
PIPELINE: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("qualified_call", ("need",)),
    ("demo_scheduled", ("need",)),
    ("framing_meeting", ("need", "authority")),
    ("proposal_sent", ("budget", "authority", "need")),
    ("negotiation", ("budget", "authority", "need", "timeline")),
    ("contract_signed", ("budget", "authority", "need", "timeline")),
)
"""Deal stages in order with the BANT prerequisites each one confirms."""

BAD_KINDS: Final = ("invalid_json", "unknown_type", "missing_field", "naive_timestamp")

MARKETING_AUTOMATION: Final[dict[str, str]] = {"team": "marketing", "user_id": "marketing-automation"}
ROUTER: Final[dict[str, str]] = {"team": "system", "user_id": "router"}
MARKETING_OPS: Final = ("mkt-01", "mkt-02", "mkt-03")
SOURCE_MARKETING: Final = "simulator.marketing"
SOURCE_CRM: Final = "simulator.crm"
SOURCE_ROUTER: Final = "simulator.router"

MIN_LIVE_GAP_S: Final = 0.002
"""Live mode: at least this much wall time between two events of one lead, so occurred_at strictly increases."""

_TITLES: Final[dict[str, tuple[str, ...]]] = {
    "c_level": ("CEO", "CTO", "CMO", "CFO", "COO", "Founder"),
    "vp": ("VP of Sales", "VP of Marketing", "VP of Engineering", "VP of Operations"),
    "director": ("Director of Marketing", "Sales Director", "IT Director", "Director of Operations"),
    "manager": ("Marketing Manager", "Sales Manager", "Product Manager", "IT Manager"),
    "individual": ("Analyst", "Software Developer", "Marketing Analyst", "Account Executive", "Designer"),
    "student": ("Student", "Intern", "MBA Student"),
}
_COMPANY_A: Final = ("Nova", "Blue", "Prime", "Terra", "Vert", "Alto", "Iris", "Lumen", "Orbit", "Solar")
_COMPANY_B: Final = ("Systems", "Labs", "Bank", "Retail", "Health", "Works", "Soft", "Foods", "Logistics")
_CAMPAIGNS: Final = ("newsletter-weekly", "sla-playbook", "q4-nurture", "webinar-funnel-metrics", "retargeting")
_PAGES: Final = ("/", "/blog/lead-scoring", "/blog/sla-marketing-sales", "/product", "/customers", "/integrations")
_EXTERNAL_MQL_REASONS: Final = ("sdr_referral", "event_booth", "partner_referral", "manual_review")
ORIGINS: Final = ("organic_search", "paid_search", "social", "email", "referral", "direct_traffic", "events")
"""Marketing origins, sent as the custom attribute `origin` of lead.created (as RD Station and Olist do)."""


@dataclass(frozen=True, slots=True)
class FunnelShape:
    """Probabilities that shape the funnel. Defaults follow practice; demos may raise them."""

    good_fit: float = 0.30
    subscriber: float = 0.15
    hand_raiser_good_fit: float = 0.08
    hand_raiser_poor_fit: float = 0.02
    external_mql: float = 0.02
    engaged_given_good_fit: float = 0.55
    heavy_engagement_poor_fit: float = 0.12
    duplicate: float = 0.008
    erase: float = 0.004
    profile_update: float = 0.10
    disqualify_student: float = 0.15
    assign: float = 0.10
    """P(a CRM assigns the MQL itself, overriding leadflow's routing)."""
    crm_won_early: float = 0.05
    """P(the CRM reports a deal won right after its qualification call: a fact that skips the pipeline stages
    nobody recorded, as real exports do)."""
    won_amount_unknown: float = 0.10
    """P(a won deal comes without an amount, as in real exports: a customer with unknown revenue)."""
    ignored: float = 0.06
    """P(nobody in sales ever reviews the MQL: its acceptance SLA breaches and escalates)."""
    accept: float = 0.70
    pause: float = 0.04
    connect_after: tuple[float, float, float, float] = (0.35, 0.25, 0.15, 0.10)
    """P(first connection on attempt 1..4); the rest never connect (6 attempts, then give up)."""
    qualify_given_connected: float = 0.59
    advance: tuple[float, float, float, float, float] = (0.75, 0.75, 0.70, 0.40, 0.50)
    advocacy: float = 0.40  # customers who later give a referral or a review (customer -> evangelist)
    """P(a deal moves on) from qualified_call->demo_scheduled ... negotiation->contract_signed."""


DEFAULT_SHAPE: Final = FunnelShape()


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a lead's journey.

    delay_s: simulated seconds after the lead's previous step (for the first step: after the lead's arrival).
    event: the envelope without occurred_at.
    starts_in_s: for meeting.scheduled, the meeting start in simulated seconds after occurred_at.
    """

    delay_s: float
    event: Event
    starts_in_s: float | None = None


def lead_id(id_prefix: str, index: int) -> str:
    """The lead id of the index-th simulated lead, e.g. ``sim-lead-000042``."""
    return f"{id_prefix}-lead-{index:06d}"


def rfc3339(at: datetime) -> str:
    """``2026-11-24T10:00:00.000Z``: UTC, millisecond precision (truncated), explicit offset."""
    if at.utcoffset() is None:
        raise ValueError(f"timestamp {at!r} has no time zone; pass an aware datetime")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(step: Step, at: datetime, time_scale: float = 1.0) -> Event:
    """The step's envelope with occurred_at = `at` (meeting start = at + starts_in_s / time_scale)."""
    event = step.event
    data = event["data"]
    if step.starts_in_s is not None:
        data = {**data, "starts_at": rfc3339(at + timedelta(seconds=step.starts_in_s / time_scale))}
    out: Event = {
        "event_id": event["event_id"],
        "lead_id": event["lead_id"],
        "type": event["type"],
        "occurred_at": rfc3339(at),
        "source": event["source"],
    }
    if "actor" in event:
        out["actor"] = event["actor"]
    out["data"] = data
    return out


def _lognormal(rng: random.Random, median_s: float, sigma: float, low: float, high: float) -> float:
    return min(max(median_s * math.exp(rng.gauss(0.0, sigma)), low), high)


def _pick(rng: random.Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(options, weights)[0]


def _profile(rng: random.Random, good_fit: bool, index: int) -> dict[str, Any]:
    """Profile attributes; good-fit leads are senior, at 50-5000 people, mostly SaaS/finance."""
    if good_fit:
        seniority = _pick(rng, ("c_level", "vp", "director", "manager"), (2, 3, 4, 2))
        size = round(math.exp(rng.uniform(math.log(50), math.log(5000))))
        industry = _pick(rng, INDUSTRIES, (5, 0.5, 4, 0.2, 1, 0.5, 1))
        persona = _pick(rng, ("decision_maker", "champion", "end_user"), (6, 3, 1))
    else:
        seniority = _pick(rng, SENIORITIES, (0.3, 0.3, 0.6, 2, 4, 1.5))
        if rng.random() < 0.8:
            size = rng.randint(1, 49)
        else:
            size = round(math.exp(rng.uniform(math.log(5001), math.log(200_000))))
        industry = _pick(rng, INDUSTRIES, (0.5, 3, 0.5, 3, 1, 2, 2))
        persona = "student" if seniority == "student" else _pick(rng, ("end_user", "champion"), (4, 1))
    country = _pick(rng, COUNTRIES, (5, 3, 1, 1.5, 1, 1))
    company = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)} {index % 997}"
    profile: dict[str, Any] = {
        "email": f"contact{index}@{company.lower().replace(' ', '-')}.example",
        "job_title": rng.choice(_TITLES[seniority]),
        "seniority": seniority,
    }
    if seniority != "student":
        profile["company"] = company
        profile["company_size"] = size
        profile["segment"] = "smb" if size < 100 else "mid_market" if size < 1000 else "enterprise"
    profile["industry"] = industry
    profile["country"] = country
    profile["persona"] = persona
    profile["territory"] = {"BR": "latam", "MX": "latam", "US": "na"}.get(country, "emea")
    return profile


def _activity_data(rng: random.Random, action: str) -> dict[str, Any]:
    if action in ("email_open", "email_click"):
        return {"action": action, "campaign": rng.choice(_CAMPAIGNS)}
    if action == "webinar_attended":
        return {"action": action, "campaign": "webinar-funnel-metrics"}
    url = {
        "pricing_view": "/pricing",
        "content_download": "/ebooks/sla-playbook.pdf",
        "form_submit": "/forms/ebook",
        "demo_request": "/forms/demo",
        "contact_sales": "/forms/contact-sales",
    }.get(action) or rng.choice(_PAGES)
    return {"action": action, "url": f"https://www.example.com{url}"}


class LeadJourney:
    """The state machine of one simulated lead: `next_step()` returns its next `Step`, or None when done.

    Deterministic from (seed, index). Delays are simulated seconds; the driver decides how they map to time.
    """

    def __init__(self, seed: int, index: int, *, id_prefix: str = "sim", shape: FunnelShape = DEFAULT_SHAPE) -> None:
        self.index = index
        self.lead_id = lead_id(id_prefix, index)
        self._id_prefix = id_prefix
        self._shape = shape
        self._rng = random.Random(f"{seed}:lead:{index}")
        # CRM-export quirks draw from their own stream, so they leave the rest of the journey as it was.
        self._quirks = random.Random(f"{seed}:quirks:{index}")
        self._count = 0
        self._rep = self._rng.choice(REPS)
        self._steps = self._script()

    def next_step(self) -> Step | None:
        return next(self._steps, None)

    # -- building blocks -------------------------------------------------------------------------------------

    def _step(
        self,
        delay_s: float,
        type_: str,
        data: dict[str, Any],
        *,
        actor: dict[str, str],
        source: str,
        starts_in_s: float | None = None,
    ) -> Step:
        event: Event = {
            "event_id": f"{self._id_prefix}-{self.index:06d}-{self._count}",
            "lead_id": self.lead_id,
            "type": type_,
            "source": source,
            "actor": actor,
            "data": data,
        }
        delay = delay_s if self._count == 0 else max(delay_s, 1.0)
        self._count += 1
        return Step(delay, event, starts_in_s)

    def _marketing(self, delay_s: float, type_: str, data: dict[str, Any]) -> Step:
        return self._step(delay_s, type_, data, actor=MARKETING_AUTOMATION, source=SOURCE_MARKETING)

    def _ops(self, delay_s: float, type_: str, data: dict[str, Any]) -> Step:
        actor = {"team": "marketing", "user_id": self._rng.choice(MARKETING_OPS)}
        return self._step(delay_s, type_, data, actor=actor, source=SOURCE_MARKETING)

    def _sales(self, delay_s: float, type_: str, data: dict[str, Any], starts_in_s: float | None = None) -> Step:
        actor = {"team": "sales", "user_id": self._rep}
        return self._step(delay_s, type_, data, actor=actor, source=SOURCE_CRM, starts_in_s=starts_in_s)

    def _activity(self, delay_s: float, action: str) -> Step:
        return self._marketing(delay_s, "activity", _activity_data(self._rng, action))

    def _engagement(self, target: int, gap_median_s: float, gap_max_s: float) -> Iterator[Step]:
        """Activities until their points reach `target` (each action at most 3 times, so caps don't bite)."""
        rng = self._rng
        actions = list(ENGAGEMENT_POINTS)
        weights = (3, 2, 2.5, 2, 1, 1, 1.5)
        counts = dict.fromkeys(actions, 0)
        points = 0
        while points < target:
            action = _pick(rng, actions, weights)
            if counts[action] >= 3:
                continue
            counts[action] += 1
            points += ENGAGEMENT_POINTS[action]
            yield self._activity(_lognormal(rng, gap_median_s, 1.0, MINUTE, gap_max_s), action)

    def _light_engagement(self, n: int, budget: int, newsletter: bool) -> Iterator[Step]:
        """At most `n` low-value activities whose points stay below `budget`, days apart."""
        rng = self._rng
        actions = (
            ("email_open", "email_click", "page_view")
            if newsletter
            else ("page_view", "email_open", "email_click", "content_download")
        )
        weights = (5, 2, 2) if newsletter else (5, 3, 2, 0.7)
        points = 0
        for _ in range(n):
            action = _pick(rng, actions, weights)
            if points + ENGAGEMENT_POINTS[action] >= budget:
                continue
            points += ENGAGEMENT_POINTS[action]
            yield self._activity(_lognormal(rng, 1.5 * DAY, 1.0, 10 * MINUTE, 20 * DAY), action)

    def _lateral_update(self, profile: dict[str, Any]) -> dict[str, Any]:
        """A fit-neutral change: a new title at the same seniority, or a company-size correction."""
        rng = self._rng
        if "company_size" in profile and rng.random() < 0.4:
            size = int(profile["company_size"])
            return {"company_size": max(1, round(size * rng.uniform(0.8, 1.2)))}
        return {"job_title": rng.choice(_TITLES[str(profile["seniority"])])}

    # -- the journey -----------------------------------------------------------------------------------------

    def _script(self) -> Iterator[Step]:
        rng, shape = self._rng, self._shape
        good_fit = rng.random() < shape.good_fit
        subscriber = rng.random() < shape.subscriber
        profile = _profile(rng, good_fit, self.index)
        if subscriber:
            # Newsletter sign-up: only the e-mail and country; the full profile comes with the first form.
            created = {"email": profile["email"], "country": profile["country"], "initial_stage": "subscriber"}
        else:
            created = {**profile, "initial_stage": "lead"}
        created["origin"] = _pick(self._quirks, ORIGINS, (5, 3, 2, 2, 1, 1, 0.5))
        yield self._marketing(0.0, "lead.created", created)

        roll = rng.random()
        hand_raiser_p = shape.hand_raiser_good_fit if good_fit else shape.hand_raiser_poor_fit
        if roll < hand_raiser_p:
            path = "hand_raiser"
        elif roll < hand_raiser_p + shape.external_mql:
            path = "external"
        elif good_fit and rng.random() < shape.engaged_given_good_fit:
            path = "engaged"
        else:
            path = "cold"

        # A few leads are duplicates merged early, or ask to be erased before anything else happens.
        side = rng.random()
        if side < shape.duplicate + shape.erase:
            yield from self._light_engagement(rng.randint(0, 2), 10, subscriber)
            if side < shape.duplicate and self.index > 0:
                yield self._ops(
                    _lognormal(rng, DAY, 1.0, HOUR, 10 * DAY), "lead.merged", {"into_lead_id": self._merge_target()}
                )
            else:
                yield self._ops(_lognormal(rng, 3 * DAY, 1.0, HOUR, 30 * DAY), "lead.erased", {})
            return

        if subscriber and (path != "cold" or rng.random() < 0.3):
            # Conversion: the subscriber fills a form and becomes a lead with a full profile.
            yield self._activity(_lognormal(rng, DAY, 1.0, 10 * MINUTE, 10 * DAY), "form_submit")
            yield self._marketing(2.0, "lead.updated", {k: v for k, v in profile.items() if k != "email"})
            subscriber, converted = False, True
        else:
            converted = False

        if path == "engaged":
            update_after = rng.randint(1, 4) if rng.random() < shape.profile_update else 0
            # Just past the MQL rule (engagement >= 30): sales takes over from there.
            for n, step in enumerate(self._engagement(rng.randint(32, 35), 3 * HOUR, 10 * HOUR), start=1):
                yield step
                if n == update_after:
                    yield self._marketing(HOUR, "lead.updated", self._lateral_update(profile))
        elif path == "hand_raiser":
            yield from self._light_engagement(rng.randint(0, 3), 20, newsletter=False)
            yield self._activity(_lognormal(rng, HOUR, 1.0, MINUTE, 2 * DAY), rng.choice(HAND_RAISER_ACTIONS))
        elif path == "external":
            yield from self._light_engagement(rng.randint(1, 4), 20, newsletter=False)
            yield self._ops(
                _lognormal(rng, 6 * HOUR, 1.0, 10 * MINUTE, 5 * DAY),
                "lead.qualified",
                {"reason": rng.choice(_EXTERNAL_MQL_REASONS)},
            )
        else:
            yield from self._cold(good_fit, subscriber, profile, budget=(25 if good_fit else 30) - 10 * converted)
            return

        yield from self._handoff(hand_raiser=path == "hand_raiser")

    def _merge_target(self) -> str:
        return lead_id(self._id_prefix, self._rng.randrange(self.index))

    def _cold(self, good_fit: bool, subscriber: bool, profile: dict[str, Any], *, budget: int) -> Iterator[Step]:
        """Leads that never become MQL: engagement below `budget` points (or much engagement but poor fit)."""
        rng, shape = self._rng, self._shape
        if not good_fit and not subscriber and rng.random() < shape.heavy_engagement_poor_fit:
            yield from self._engagement(rng.randint(30, 60), 6 * HOUR, 2 * DAY)
        else:
            yield from self._light_engagement(rng.randint(0, 6), budget, subscriber)
        if not subscriber and rng.random() < shape.profile_update:
            yield self._marketing(
                _lognormal(rng, 5 * DAY, 1.0, HOUR, 60 * DAY), "lead.updated", self._lateral_update(profile)
            )
        if profile["seniority"] == "student" and not subscriber and rng.random() < shape.disqualify_student:
            yield self._ops(_lognormal(rng, 2 * DAY, 1.0, HOUR, 20 * DAY), "lead.disqualified", {"reason": "student"})

    def _handoff(self, *, hand_raiser: bool) -> Iterator[Step]:
        """From MQL on: now and then a CRM assignment (leadflow routes the rest), review, contact, the pipeline."""
        rng, shape = self._rng, self._shape
        if rng.random() < shape.assign:
            yield self._step(
                rng.uniform(5, 120),
                "lead.assigned",
                {"owner_id": self._rep, "team": "inside_sales"},
                actor=ROUTER,
                source=SOURCE_ROUTER,
            )
        if rng.random() < shape.ignored:
            return
        # Review times around the 8 business hour acceptance SLA: most in time, some late.
        review = _lognormal(rng, HOUR if hand_raiser else 6 * HOUR, 1.2, 2 * MINUTE, 5 * DAY)
        if rng.random() >= shape.accept:
            yield from self._rejected(review)
            return
        # Contact attempts: most connect after 1-4 attempts, some never (6 attempts, then give up). The first
        # call does not wait for the acceptance: hand-raisers are called within minutes (first_contact SLA).
        roll, connect_on = rng.random(), 0
        for n, p in enumerate(shape.connect_after, start=1):
            roll -= p
            if roll < 0:
                connect_on = n
                break
        attempts: list[tuple[float, dict[str, str]]] = []
        for attempt in range(1, (connect_on or 6) + 1):
            if attempt == 1:
                delay = _lognormal(rng, 6 * MINUTE if hand_raiser else 40 * MINUTE, 1.0, MINUTE, 2 * DAY)
                channel = "phone"
            else:
                delay = _lognormal(rng, 10 * HOUR, 0.7, HOUR, 3 * DAY)
                channel = _pick(rng, ("phone", "email", "whatsapp", "linkedin"), (5, 3, 2, 1))
            if attempt == connect_on:
                outcome = "connected" if channel == "phone" else "replied"
            elif channel == "phone":
                outcome = _pick(rng, ("no_answer", "voicemail", "wrong_number"), (6, 3, 0.2))
            else:
                outcome = _pick(rng, ("no_answer", "bounced"), (10, 0.5))
            attempts.append((delay, {"channel": channel, "outcome": outcome}))
        first_delay, first = attempts[0]
        if first_delay < review:
            yield self._sales(first_delay, "contact.attempted", first)
            yield self._sales(review - first_delay, "lead.accepted", {})
        else:
            yield self._sales(review, "lead.accepted", {})
            yield self._sales(first_delay - review, "contact.attempted", first)
        if rng.random() < shape.pause:
            yield self._sales(_lognormal(rng, HOUR, 1.0, MINUTE, DAY), "lead.paused", {"reason": "lead_on_leave"})
            yield self._sales(_lognormal(rng, 2 * DAY, 0.5, HOUR, 10 * DAY), "lead.resumed", {})
        for delay, data in attempts[1:]:
            yield self._sales(delay, "contact.attempted", data)
        if not connect_on:
            if rng.random() < 0.3:
                yield self._sales(
                    _lognormal(rng, DAY, 1.0, HOUR, 5 * DAY), "lead.disqualified", {"reason": "unreachable"}
                )
            return

        if rng.random() >= shape.qualify_given_connected:
            if rng.random() < 0.4:
                yield self._sales(
                    _lognormal(rng, HOUR, 1.0, MINUTE, 2 * DAY), "lead.disqualified", {"reason": "no_need"}
                )
            return
        yield from self._pipeline()

    def _rejected(self, review_s: float) -> Iterator[Step]:
        rng, shape = self._rng, self._shape
        reason = _pick(rng, REJECTION_REASONS, (25, 15, 12, 10, 8, 6, 6, 18))
        yield self._sales(review_s, "lead.rejected", {"reason": reason})
        if reason == "duplicate" and self.index > 0 and rng.random() < 0.6:
            yield self._ops(
                _lognormal(rng, 4 * HOUR, 1.0, 10 * MINUTE, 5 * DAY),
                "lead.merged",
                {"into_lead_id": self._merge_target()},
            )
            return
        if reason in ("bad_data", "student", "competitor") and rng.random() < 0.5:
            yield self._ops(
                _lognormal(rng, 4 * HOUR, 1.0, 10 * MINUTE, 5 * DAY), "lead.disqualified", {"reason": reason}
            )
            return
        # Back to nurturing: a little more engagement, and now and then a deletion request.
        yield from self._light_engagement(rng.randint(0, 3), 20, newsletter=True)
        if rng.random() < shape.erase * 3:
            yield self._ops(_lognormal(rng, 10 * DAY, 1.0, HOUR, 60 * DAY), "lead.erased", {})

    def _pipeline(self) -> Iterator[Step]:
        rng, shape = self._rng, self._shape
        amount = round(math.exp(rng.uniform(math.log(5000), math.log(50_000))), -2)
        call_in = _lognormal(rng, DAY, 0.6, HOUR, 5 * DAY)
        yield self._sales(
            _lognormal(rng, 10 * MINUTE, 1.0, MINUTE, HOUR),
            "meeting.scheduled",
            {"kind": "qualified_call"},
            starts_in_s=call_in,
        )
        yield self._sales(call_in + 45 * MINUTE, "deal.stage_changed", _stage_data(*PIPELINE[0]))
        if self._quirks.random() < shape.crm_won_early:
            yield self._won(_lognormal(rng, 5 * DAY, 0.7, DAY, 30 * DAY), amount)
            return
        for (stage, bant), advance in zip(PIPELINE[1:], shape.advance, strict=True):
            if rng.random() >= advance:
                reason = _pick(
                    rng,
                    LOST_REASONS,
                    (3, 2, 3, 2, 1.5) if stage in ("negotiation", "contract_signed") else (1, 1.5, 3, 2, 2.5),
                )
                yield self._sales(_lognormal(rng, 4 * DAY, 0.7, HOUR, 30 * DAY), "deal.lost", {"reason": reason})
                return
            delay = _lognormal(rng, 3 * DAY, 0.6, 2 * HOUR, 20 * DAY)
            if rng.random() < shape.pause / 2:
                yield self._sales(delay / 2, "lead.paused", {"reason": "customer_on_hold"})
                yield self._sales(_lognormal(rng, 3 * DAY, 0.5, HOUR, 15 * DAY), "lead.resumed", {})
                delay /= 2
            if stage == "negotiation":
                amount = round(amount * rng.uniform(0.85, 1.0), -2)
            with_amount = stage in ("proposal_sent", "negotiation", "contract_signed")
            yield self._sales(delay, "deal.stage_changed", _stage_data(stage, bant, amount if with_amount else None))
            if stage == "demo_scheduled":
                yield self._sales(
                    _lognormal(rng, 5 * MINUTE, 0.5, MINUTE, HOUR),
                    "meeting.scheduled",
                    {"kind": "demo"},
                    starts_in_s=_lognormal(rng, 2 * DAY, 0.5, HOUR, 7 * DAY),
                )
        yield self._won(_lognormal(rng, 3 * HOUR, 1.0, 10 * MINUTE, 3 * DAY), amount)
        if rng.random() < shape.advocacy:
            yield self._activity(_lognormal(rng, 20 * DAY, 0.6, DAY, 90 * DAY), rng.choice(ADVOCACY_ACTIONS))

    def _won(self, delay_s: float, amount: float) -> Step:
        known = self._quirks.random() >= self._shape.won_amount_unknown
        return self._sales(delay_s, "deal.won", {"amount": amount, "currency": "USD"} if known else {"currency": "USD"})


def _stage_data(stage: str, bant: tuple[str, ...], amount: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"stage": stage, "bant": dict.fromkeys(bant, True)}
    if amount is not None:
        data["amount"] = amount
    return data


# -- pure driver -------------------------------------------------------------------------------------------------


def journeys(
    seed: int,
    n_leads: int,
    start: datetime,
    *,
    mean_gap_s: float = 2.0,
    id_prefix: str = "sim",
    shape: FunnelShape = DEFAULT_SHAPE,
) -> list[Event]:
    """`n_leads` complete lead journeys as envelopes sorted by occurred_at (ties: by lead, then step).

    Leads arrive from `start` with exponential gaps of mean `mean_gap_s`; each lead then follows its own
    journey (simulated delays from minutes to weeks). Pure: the same arguments give the same events.
    """
    if start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    if n_leads < 0 or mean_gap_s < 0:
        raise ValueError("n_leads and mean_gap_s must not be negative")
    arrivals = random.Random(f"{seed}:arrivals")
    rows: list[tuple[float, int, int, Event]] = []
    arrival = 0.0
    for index in range(n_leads):
        if index and mean_gap_s > 0:
            arrival += arrivals.expovariate(1.0 / mean_gap_s)
        journey = LeadJourney(seed, index, id_prefix=id_prefix, shape=shape)
        at, n = arrival, 0
        while (step := journey.next_step()) is not None:
            at += step.delay_s
            rows.append((at, index, n, stamp(step, start + timedelta(seconds=at))))
            n += 1
    rows.sort(key=lambda row: row[:3])
    return [row[3] for row in rows]


# -- Kafka records, with deliberately bad ones -------------------------------------------------------------------


def event_key(event: Event) -> bytes:
    """The Kafka key of an envelope: its lead_id (GUIDE.md section 3)."""
    return str(event["lead_id"]).encode()


def bad_record(event: Event, kind: str, rng: random.Random) -> tuple[bytes, bytes]:
    """A deliberately broken copy of `event` that the worker must dead-letter (kind: one of BAD_KINDS).

    The key stays the event's lead_id, so the bad record lands on the lead's partition.
    """
    broken: Event = {**event, "event_id": f"{event['event_id']}-bad"}
    if kind == "invalid_json":
        encoded = orjson.dumps(broken)
        return event_key(event), encoded[: rng.randint(1, len(encoded) - 2)]
    if kind == "unknown_type":
        broken["type"] = "lead.teleported"
    elif kind == "missing_field":
        del broken[rng.choice(("event_id", "occurred_at", "source", "type"))]
    elif kind == "naive_timestamp":
        broken["occurred_at"] = str(event["occurred_at"]).removesuffix("Z")
    else:
        raise ValueError(f"unknown bad record kind {kind!r}; expected one of {BAD_KINDS}")
    return event_key(event), orjson.dumps(broken)


def _check_bad_ratio(bad_ratio: float) -> None:
    if not 0.0 <= bad_ratio < 1.0:
        raise ValueError(f"bad_ratio must be in [0, 1), got {bad_ratio}")


def records(events: Sequence[Event], *, seed: int = 0, bad_ratio: float = 0.0) -> list[tuple[bytes, bytes]]:
    """(key, value) Kafka records for `events` (key = lead_id, value = orjson), in order.

    With `bad_ratio` > 0, extra bad records (BAD_KINDS in turn) are inserted right after randomly chosen events,
    so that bad records make up `bad_ratio` of the output (rounded); every good event is still there.
    """
    _check_bad_ratio(bad_ratio)
    rng = random.Random(f"{seed}:bad")
    n_bad = round(bad_ratio * len(events) / (1.0 - bad_ratio)) if events else 0
    after: dict[int, int] = {}
    for position in rng.choices(range(len(events)), k=n_bad):
        after[position] = after.get(position, 0) + 1
    out: list[tuple[bytes, bytes]] = []
    made = 0
    for position, event in enumerate(events):
        out.append((event_key(event), orjson.dumps(event)))
        for _ in range(after.get(position, 0)):
            out.append(bad_record(event, BAD_KINDS[made % len(BAD_KINDS)], rng))
            made += 1
    return out


# -- live driver -------------------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LiveSimulator:
    """Journeys in real time: occurred_at is each step's due time on the wall clock (never ahead of it).

    New leads arrive at `leads_per_s` (exponential gaps); each lead's next step is due after its simulated
    delay divided by `speed` (default: two simulated days per second, so a lead that becomes a customer gets
    there in 8-16 s, and a 60 s demo at the default 20 leads/s shows every stage, customers included).
    A heap holds each active lead's next step. Wall time is spent only in `sleep`, between due steps.

    `seed` and `id_prefix` make lead and event ids; running twice with both unchanged produces the same ids,
    which an idempotent worker drops as duplicates, so give each demo run its own `id_prefix`.
    `clock` and `sleep` are injectable for tests (a fake sleep must advance the fake clock).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        leads_per_s: float = 20.0,
        speed: float = 2 * DAY,
        id_prefix: str = "live",
        shape: FunnelShape = DEFAULT_SHAPE,
        bad_ratio: float = 0.0,
        max_leads: int | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if leads_per_s <= 0 or speed <= 0:
            raise ValueError("leads_per_s and speed must be positive")
        _check_bad_ratio(bad_ratio)
        self.seed = seed
        self.leads_per_s = leads_per_s
        self.speed = speed
        self.id_prefix = id_prefix
        self.shape = shape
        self.bad_ratio = bad_ratio
        self.max_leads = max_leads
        self._clock = clock
        self._sleep = sleep
        self.leads_started = 0
        self.events_sent = 0
        self.bad_sent = 0

    async def run(
        self,
        producer_send: Send,
        *,
        duration_s: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> int:
        """Emit events until `duration_s` (wall seconds) has passed, `stop` is set, or all journeys have ended
        (only possible with `max_leads`). Returns the number of records sent (bad ones included)."""
        start = self._clock()
        arrivals = random.Random(f"{self.seed}:arrivals")
        bad_rng = random.Random(f"{self.seed}:bad")
        heap: list[tuple[float, int, LeadJourney, Step]] = []
        seq = 0
        next_arrival = 0.0
        sent = 0

        def elapsed() -> float:
            return (self._clock() - start).total_seconds()

        def schedule(journey: LeadJourney, base: float, first: bool) -> None:
            nonlocal seq
            step = journey.next_step()
            if step is None:
                return
            gap = step.delay_s / self.speed
            due = base + (gap if first else max(gap, MIN_LIVE_GAP_S))
            heapq.heappush(heap, (due, seq, journey, step))
            seq += 1

        while True:
            now = elapsed()
            if (stop is not None and stop.is_set()) or (duration_s is not None and now >= duration_s):
                break
            more_leads = self.max_leads is None or self.leads_started < self.max_leads
            while more_leads and next_arrival <= now:
                journey = LeadJourney(self.seed, self.leads_started, id_prefix=self.id_prefix, shape=self.shape)
                self.leads_started += 1
                schedule(journey, next_arrival, first=True)
                next_arrival += arrivals.expovariate(self.leads_per_s)
                more_leads = self.max_leads is None or self.leads_started < self.max_leads
            while heap and heap[0][0] <= now:
                due, _, journey, step = heapq.heappop(heap)
                sent += await self._emit(step, start + timedelta(seconds=due), producer_send, bad_rng)
                schedule(journey, due, first=False)
            wake = [heap[0][0]] if heap else []
            if more_leads:
                wake.append(next_arrival)
            if not wake:
                break  # every journey has ended and no more leads will come
            if duration_s is not None:
                wake.append(duration_s)
            wait = min(wake) - elapsed()
            if stop is not None:
                wait = min(wait, 0.1)
            await self._sleep(max(wait, 0.001) if wait > 0 else 0.0)
        return sent

    async def _emit(self, step: Step, due: datetime, producer_send: Send, bad_rng: random.Random) -> int:
        """Send the step stamped with its due time, plus now and then a bad record; returns records sent.

        The due time, not the clock at emission: when sending lags behind the schedule, delivery is late but
        the event time stays what the journey says (a reply 10 simulated minutes after the MQL stays one)."""
        event = stamp(step, due, self.speed)
        await producer_send(event_key(event), orjson.dumps(event))
        self.events_sent += 1
        if not self.bad_ratio:
            return 1
        # Expected bad records per event: r / (1 - r), so that bad records are a share r of all records.
        expected = self.bad_ratio / (1.0 - self.bad_ratio)
        n_bad = int(expected) + (bad_rng.random() < expected % 1.0)
        for _ in range(n_bad):
            kind = BAD_KINDS[self.bad_sent % len(BAD_KINDS)]
            await producer_send(*bad_record(event, kind, bad_rng))
            self.bad_sent += 1
        return 1 + n_bad
