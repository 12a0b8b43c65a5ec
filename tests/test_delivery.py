"""core/delivery.py: rate limits as the services document them, backoff, Retry-After, answers classified, and
the generic webhook's signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.delivery import (
    EDGE_S,
    RateLimiter,
    Refused,
    Retry,
    Sent,
    backoff_s,
    check,
    classify_http,
    classify_smtp,
    retry_after_s,
    sign,
)
from leadflow.schemas.policy import DEFAULT_RATES

NOW = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)


def send_all(limiter: RateLimiter, arrivals: list[float]) -> list[float]:
    """Send each message at its arrival or as soon as the limiter allows, in order; the send times."""
    clock, sent = 0.0, []
    for arrival in arrivals:
        clock = max(clock, arrival)
        clock += limiter.wait_s(clock)
        assert limiter.wait_s(clock) == 0
        limiter.record(clock)
        sent.append(clock)
    return sent


def test_slack_one_a_second() -> None:
    limiter = RateLimiter([(w.seconds, w.max) for w in DEFAULT_RATES["slack"]])
    assert send_all(limiter, [0.0] * 4) == [0.0, 1.0, 2.0, 3.0]


def test_teams_four_a_second_and_sixty_in_thirty_seconds() -> None:
    limiter = RateLimiter([(w.seconds, w.max) for w in DEFAULT_RATES["teams"]])
    sent = send_all(limiter, [0.0] * 64)
    assert sent[:5] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert sent[59] < 30 <= sent[60]  # the 61st waits for the first to leave the 30 s window


def test_a_pause_holds_every_send_until_it_ends() -> None:
    limiter = RateLimiter([(1.0, 10)])
    limiter.pause(5.0, 30.0)
    assert limiter.wait_s(5.0) == pytest.approx(30.0)
    assert limiter.wait_s(35.0) == 0


WINDOWS = st.lists(st.tuples(st.floats(0.1, 60), st.integers(1, 6)), min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(WINDOWS, st.lists(st.floats(0, 120), max_size=60))
def test_no_window_ever_holds_more_than_its_maximum(limits: list[tuple[float, int]], arrivals: list[float]) -> None:
    sent = send_all(RateLimiter(limits), sorted(arrivals))
    for seconds, most in limits:
        for i, start in enumerate(sent):
            inside = [t for t in sent[i:] if t < start + seconds - EDGE_S]
            assert len(inside) <= most, (seconds, most, sent)


@settings(max_examples=100, deadline=None)
@given(WINDOWS, st.lists(st.floats(0, 120), max_size=40))
def test_a_send_never_waits_longer_than_its_windows_need(
    limits: list[tuple[float, int]], arrivals: list[float]
) -> None:
    limiter = RateLimiter(limits)
    clock = 0.0
    for arrival in sorted(arrivals):
        clock = max(clock, arrival)
        wait = limiter.wait_s(clock)
        assert wait <= max(seconds for seconds, _ in limits) + 2e-6  # rounded up to the microsecond, in floats
        clock += wait
        limiter.record(clock)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 2.0, 60.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(10_000, 1.0, 300.0) == 300
    with pytest.raises(ValueError, match="from 1"):
        backoff_s(0, 1.0, 1.0)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7", NOW) == 7.0
    assert retry_after_s(format_datetime(NOW + timedelta(seconds=30), usegmt=True), NOW) == 30.0
    assert retry_after_s(None, NOW) is None
    assert retry_after_s("soon", NOW) is None
    assert retry_after_s("999999", NOW) == 3600.0  # capped: a broken header must not park a channel for days


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, Sent), (201, Sent), (204, Sent), (429, Retry), (500, Retry), (503, Retry), (408, Retry),
     (400, Refused), (401, Refused), (403, Refused), (404, Refused), (410, Refused)],
)  # fmt: skip
def test_http_answers(status: int, expected: type) -> None:
    assert isinstance(classify_http(status, "x", None, NOW), expected)


def test_a_429_carries_its_retry_after_and_the_reason_quotes_the_service() -> None:
    result = classify_http(429, "rate_limited", "3", NOW)
    assert result == Retry("HTTP 429: rate_limited", 3.0)
    assert classify_http(400, "invalid_blocks\n", None, NOW) == Refused("HTTP 400: invalid_blocks")


def test_smtp_replies_4xx_retry_5xx_refuse() -> None:
    assert isinstance(classify_smtp(451, "try later"), Retry)
    assert isinstance(classify_smtp(421, "closing"), Retry)
    assert isinstance(classify_smtp(550, "no such user"), Refused)
    assert isinstance(classify_smtp(535, "bad credentials"), Refused)


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    # computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
    assert (
        sign(b"key", "1700000000", b'{"a":1}')
        == "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
    )
    good = sign(b"key", "1700000000", b"body")
    assert check(b"key", "1700000000", b"body", good, now_s=1700000100)
    assert not check(b"other", "1700000000", b"body", good, now_s=1700000100)
    assert not check(b"key", "1700000000", b"body!", good, now_s=1700000100)
    assert not check(b"key", "1700000000", b"body", good, now_s=1700000000 + 301)  # replayed later
    assert not check(b"key", "not-a-time", b"body", good, now_s=1700000000)
