"""What the worker's /leads/{id} view may show: the lead without its personal data, unless the caller proved it may
see it (the configured web token). Pure functions: the web view around them stays thin.

Personal data of a lead (it identifies, or with little effort points to, a person):
- `profile.email`: the person's address;
- `profile.job_title` and `profile.company`: together they name one person at most companies;
- `profile.custom`: anything a producer sent besides the built-in attributes (the adapters drop names and phones,
  but an envelope producer may send any field), so its values are withheld as a whole.
The other profile attributes are codes and sizes that fit rules and routing compare (seniority, company_size,
industry, country, persona, territory, segment): they stay, as do the stage, scores, owner, clocks and history.
"""

from __future__ import annotations

import hmac
from typing import Any

from leadflow.schemas.events import PROFILE_ATTRIBUTES
from leadflow.schemas.state import RECORD_ADAPTER, LeadRecord

PERSONAL_ATTRIBUTES: tuple[str, ...] = ("email", "job_title", "company")
assert set(PERSONAL_ATTRIBUTES) <= set(PROFILE_ATTRIBUTES), "a personal attribute that the profile does not have"
PERSONAL_FIELDS: tuple[str, ...] = (*(f"profile.{name}" for name in PERSONAL_ATTRIBUTES), "profile.custom")
VIEW_FIELDS = {"state", "version", "watermark"}


def public_view(record: LeadRecord, authorized: bool) -> dict[str, Any]:
    """The JSON-ready view of a lead record: its state, version and watermark. Unless `authorized`, every personal
    field (PERSONAL_FIELDS) is removed from the state's profile, and `withheld` lists the ones the lead had."""
    view: dict[str, Any] = RECORD_ADAPTER.dump_python(record, mode="json", include=VIEW_FIELDS)
    if authorized or view.get("state") is None:
        return view
    profile: dict[str, Any] = view["state"]["profile"]
    withheld = []
    for path in PERSONAL_FIELDS:
        name = path.removeprefix("profile.")
        if profile.pop(name, None) not in (None, {}, ""):
            withheld.append(path)
    view["withheld"] = withheld
    return view


def is_authorized(authorization: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries the configured bearer token (compared in constant time). With no
    token configured (None or blank) nobody is: personal fields are then never shown."""
    if not token or not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
