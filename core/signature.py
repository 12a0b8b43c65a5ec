"""Webhook authenticity: each tool's published scheme, compared in constant time. Pure (the clock is passed in).

- HubSpot v3: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(app client secret, method + URI + body + timestamp)),
  `X-HubSpot-Request-Timestamp` in milliseconds; a timestamp more than 5 minutes away from now is refused, so a
  captured request cannot be replayed later.
- Mautic: `Webhook-Signature` = base64(HMAC-SHA256(webhook secret, raw body)).
- A shared secret token (RD Station, web forms, canonical producers: tools that sign nothing): the
  `X-Leadflow-Token` header, `Authorization: Bearer <token>`, or the `token` query parameter (for tools whose
  webhook settings take only a URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

HUBSPOT_MAX_AGE_S = 300.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not authentic: said to the caller (401) and counted; never echoes a secret."""

    reason: str  # a metric label: missing, mismatch, stale
    detail: str


def _b64_hmac(secret: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def hubspot_v3_signature(secret: bytes, *, method: str, uri: str, body: bytes, timestamp: str) -> str:
    return _b64_hmac(secret, method.upper().encode() + uri.encode() + body + timestamp.encode())


def check_hubspot_v3(
    secret: bytes, *, method: str, uri: str, body: bytes, headers: Mapping[str, str], now_s: float
) -> Refusal | None:
    signature = headers.get("x-hubspot-signature-v3")
    timestamp = headers.get("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        return Refusal("missing", "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required (v3 scheme)")
    try:
        sent_s = int(timestamp) / 1000
    except ValueError:
        return Refusal("missing", "X-HubSpot-Request-Timestamp must be milliseconds since the epoch")
    if abs(now_s - sent_s) > HUBSPOT_MAX_AGE_S:
        return Refusal("stale", "X-HubSpot-Request-Timestamp is more than 5 minutes from now: replay refused")
    if not _same(signature, hubspot_v3_signature(secret, method=method, uri=uri, body=body, timestamp=timestamp)):
        return Refusal("mismatch", "X-HubSpot-Signature-v3 does not match: check the app's client secret")
    return None


def mautic_signature(secret: bytes, body: bytes) -> str:
    return _b64_hmac(secret, body)


def check_mautic(secret: bytes, body: bytes, headers: Mapping[str, str]) -> Refusal | None:
    signature = headers.get("webhook-signature")
    if not signature:
        return Refusal("missing", "Webhook-Signature is required: set the webhook's secret in Mautic")
    if not _same(signature, mautic_signature(secret, body)):
        return Refusal("mismatch", "Webhook-Signature does not match: check the webhook secret")
    return None


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return headers.get("x-leadflow-token") or query.get("token")


def check_token(secret: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> Refusal | None:
    token = presented_token(headers, query)
    if not token:
        return Refusal("missing", "a token is required: X-Leadflow-Token, Authorization: Bearer, or ?token=")
    if not hmac.compare_digest(token.encode(), secret):
        return Refusal("mismatch", "the token does not match")
    return None
