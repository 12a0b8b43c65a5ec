"""Delivery mechanics, pure: rate limits as the services document them, retry backoff, Retry-After, signatures.

`RateLimiter` holds one channel's send times and says how long to wait before the next send so that no window
(e.g. Teams: 4 a second, 60 in 30 s, 100 an hour) ever holds more than its maximum; a 429's Retry-After pauses
it. `backoff_s(attempt)` is the exponential wait before a retry. `sign(secret, timestamp, body)` is the generic
webhook's HMAC-SHA256 signature (`X-Leadflow-Signature: sha256=<hex>` over `<timestamp>.<body>`, so a captured
request cannot be replayed with another timestamp); `check(...)` is what a receiver runs, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

SIGNATURE_HEADER = "X-Leadflow-Signature"
TIMESTAMP_HEADER = "X-Leadflow-Timestamp"
DELIVERY_HEADER = "X-Leadflow-Delivery"
MAX_RETRY_AFTER_S = 3600.0
# Sends this close to a window's edge count as outside it: float rounding of now + wait must not hold a send back.
EDGE_S = 1e-9


@dataclass
class RateLimiter:
    """Sliding windows: `limits` holds (seconds, max) pairs; times are monotonic seconds passed in."""

    limits: Sequence[tuple[float, int]]
    _sent: list[deque[float]] = field(default_factory=list)
    _paused_until: float = float("-inf")

    def __post_init__(self) -> None:
        self._sent = [deque() for _ in self.limits]

    def wait_s(self, now: float) -> float:
        """Seconds to wait from `now` before a send keeps every window within its maximum (0: send now)."""
        wait = max(0.0, self._paused_until - now)
        for (seconds, most), sent in zip(self.limits, self._sent, strict=True):
            while sent and sent[0] <= now - seconds + EDGE_S:
                sent.popleft()
            if len(sent) >= most:
                # the oldest send that must leave the window for one more to fit
                wait = max(wait, sent[len(sent) - most] + seconds - now)
        # Rounded up to the microsecond: now + wait then lands past the window's edge despite float rounding
        # (and a send that lands within EDGE_S of it has left the window).
        return 0.0 if wait <= EDGE_S else math.ceil(wait * 1e6) / 1e6

    def record(self, now: float) -> None:
        """A send happened at `now`."""
        for sent in self._sent:
            sent.append(now)

    def pause(self, now: float, seconds: float) -> None:
        """The service said to wait (429 Retry-After): nothing is sent before now + seconds."""
        self._paused_until = max(self._paused_until, now + min(seconds, MAX_RETRY_AFTER_S))


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Wait before retry number `attempt` (1 = the first retry): base, 2 x base, 4 x base, ... at most cap."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 62)))


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from `now`; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, min(float(text), MAX_RETRY_AFTER_S))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - now).total_seconds(), MAX_RETRY_AFTER_S))


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of X-Leadflow-Signature: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check(secret: bytes, timestamp: str, body: bytes, signature: str, *, now_s: float, max_age_s: float = 300) -> bool:
    """What a receiver runs: the signature matches and the timestamp (unix seconds) is within max_age_s of now."""
    try:
        sent_s = float(timestamp)
    except ValueError:
        return False
    if abs(now_s - sent_s) > max_age_s:
        return False
    return hmac.compare_digest(signature.encode(), sign(secret, timestamp, body).encode())


# -- what a send attempt came to -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    """Worth trying again: a 429 (with the service's Retry-After, if any), a 5xx, a timeout, a dropped link."""

    reason: str
    after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Trying again cannot help (a 4xx other than 408/429, a 5xx SMTP reply, a bad address): dead-letter it."""

    reason: str


Result = Sent | Retry | Refused

RETRYABLE_STATUS = frozenset({408, 425, 429})


def classify_http(status: int, body: str, retry_after: str | None, now: datetime) -> Result:
    """An HTTP answer to a post: 2xx sent; 429, 408, 425 and 5xx retried (429 after its Retry-After); other
    statuses refused. The reason quotes the status and the start of the body (services say why there)."""
    reason = f"HTTP {status}: {' '.join(body.split())[:200]}".rstrip(": ")
    if 200 <= status < 300:
        return Sent(reason)
    if status in RETRYABLE_STATUS or status >= 500:
        return Retry(reason, retry_after_s(retry_after, now) if status in (429, 503) else None)
    return Refused(reason)


def classify_smtp(code: int, message: str) -> Result:
    """An SMTP reply that ended a send: 4xx is transient (retry), 5xx permanent (RFC 5321 section 4.2.1)."""
    reason = f"SMTP {code}: {' '.join(message.split())[:200]}"
    return Retry(reason) if 400 <= code < 500 else Refused(reason)
