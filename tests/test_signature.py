"""Webhook authenticity (core/signature.py): HubSpot v3, Mautic, shared tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from leadflow.core.signature import (
    check_hubspot_v3,
    check_mautic,
    check_token,
    hubspot_v3_signature,
    mautic_signature,
    presented_token,
)

SECRET = b"client-secret"
URI = "https://hooks.example.com/ingest/hubspot"
BODY = b'[{"eventId":1,"subscriptionType":"contact.creation"}]'
NOW_S = 1_764_600_000.0


def hubspot_headers(timestamp_ms: int, body: bytes = BODY, secret: bytes = SECRET) -> dict[str, str]:
    # Written out from the published scheme, independently of the code under test.
    message = b"POST" + URI.encode() + body + str(timestamp_ms).encode()
    signature = base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
    return {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": str(timestamp_ms)}


def check(headers: dict[str, str], body: bytes = BODY, now_s: float = NOW_S) -> str | None:
    refusal = check_hubspot_v3(SECRET, method="POST", uri=URI, body=body, headers=headers, now_s=now_s)
    return None if refusal is None else refusal.reason


def test_hubspot_v3_accepts_a_fresh_signed_request() -> None:
    headers = hubspot_headers(int(NOW_S * 1000) - 2000)
    assert check(headers) is None
    assert headers["x-hubspot-signature-v3"] == hubspot_v3_signature(
        SECRET, method="post", uri=URI, body=BODY, timestamp=headers["x-hubspot-request-timestamp"]
    )


@pytest.mark.parametrize("age_s", [301, 3600, -301])
def test_hubspot_v3_refuses_a_timestamp_more_than_five_minutes_away(age_s: int) -> None:
    assert check(hubspot_headers(int((NOW_S - age_s) * 1000))) == "stale"


def test_hubspot_v3_accepts_just_under_five_minutes() -> None:
    assert check(hubspot_headers(int((NOW_S - 299) * 1000))) is None


def test_hubspot_v3_refuses_a_changed_body_a_wrong_secret_and_missing_headers() -> None:
    fresh = int(NOW_S * 1000)
    assert check(hubspot_headers(fresh), body=BODY + b" ") == "mismatch"
    assert check(hubspot_headers(fresh, secret=b"other")) == "mismatch"
    assert check({"x-hubspot-request-timestamp": str(fresh)}) == "missing"
    assert check({**hubspot_headers(fresh), "x-hubspot-request-timestamp": "yesterday"}) == "missing"


def test_mautic_signature_is_base64_hmac_of_the_raw_body() -> None:
    body = b'{"mautic.lead_post_save_new":[]}'
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    assert mautic_signature(SECRET, body) == expected
    assert check_mautic(SECRET, body, {"webhook-signature": expected}) is None
    refused = check_mautic(SECRET, body + b"x", {"webhook-signature": expected})
    assert refused is not None
    assert refused.reason == "mismatch"
    missing = check_mautic(SECRET, body, {})
    assert missing is not None
    assert missing.reason == "missing"


def test_tokens_come_from_a_header_a_bearer_or_the_query() -> None:
    assert presented_token({"x-leadflow-token": "t1"}, {}) == "t1"
    assert presented_token({"authorization": "Bearer t2"}, {}) == "t2"
    assert presented_token({}, {"token": "t3"}) == "t3"
    assert check_token(b"t3", {}, {"token": "t3"}) is None
    wrong = check_token(b"t3", {"x-leadflow-token": "t4"}, {})
    assert wrong is not None
    assert wrong.reason == "mismatch"
    none = check_token(b"t3", {}, {})
    assert none is not None
    assert none.reason == "missing"


def test_refusals_never_echo_the_secret() -> None:
    fresh = int(NOW_S * 1000)
    for refusal in (
        check_hubspot_v3(SECRET, method="POST", uri=URI, body=b"x", headers=hubspot_headers(fresh), now_s=NOW_S),
        check_mautic(SECRET, b"x", {"webhook-signature": "bad"}),
        check_token(SECRET, {"x-leadflow-token": "bad"}, {}),
    ):
        assert refusal is not None
        assert SECRET.decode() not in refusal.detail
