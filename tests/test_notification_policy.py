"""The policy's `notifications` section: the shipped example is valid, and each mistake is one line naming the
field's path and the fix."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest
from notify_support import default_document, notifications

from leadflow.schemas.policy import PolicyError, load_policy, notification_problems, parse_policy


def problems(change: Any) -> list[str]:
    """A mistake in the section itself stops the policy from loading; one in what it names (pools, teams, SLAs,
    people's addresses) is found by notification_problems (`policy check`, `leadflow notify`)."""
    document = default_document()
    document["notifications"] = notifications()
    change(document["notifications"])
    try:
        policy = parse_policy(document, "test")
    except PolicyError as error:
        return error.problems
    found = notification_problems(policy)
    assert found, "the mistake was not found"
    return found


def test_the_worker_loads_a_policy_whose_notifications_name_what_it_lacks() -> None:
    """An SLA removed or a rep without an address stops the notifier, never the SLA engine."""
    document = default_document()
    document["notifications"] = notifications()
    document["notifications"]["people"]["rep-02"].pop("email")
    document["notifications"]["rules"][3]["slas"] = ["first_response"]
    policy = parse_policy(document, "test")
    paths = {p.split(":")[0] for p in notification_problems(policy)}
    assert {"notifications.rules[0].to", "notifications.rules[3].slas"} <= paths


def test_the_shipped_policy_has_an_example_that_validates() -> None:
    settings = load_policy().notifications
    assert {c.type for c in settings.channels.values()} == {"slack", "teams", "email", "webhook", "hubspot"}
    daily = [r for r in settings.rules if r.cadence.is_digest]
    assert daily
    assert (daily[0].cadence.every, daily[0].cadence.at) == ("daily", time(8, 30))


def test_a_policy_without_the_section_notifies_nobody() -> None:
    document = default_document()
    del document["notifications"]
    assert parse_policy(document).notifications.rules == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda n: n["rules"][0].update(channel="pager"),
            "notifications.rules[0].channel: 'pager' is not a channel; name one of: sales_slack, managers_teams",
        ),
        (
            lambda n: n["rules"][3].update(cadence="every morning"),
            "notifications.rules[3].cadence: 'every morning' is not a cadence: write immediate, hourly, "
            "'daily HH:MM' or 'weekly DAY HH:MM'",
        ),
        (
            lambda n: n["rules"][3].update(cadence="weekly 08:30"),
            "notifications.rules[3].cadence: 'weekly 08:30' is not a cadence",
        ),
        (
            lambda n: n["rules"][3].update(cadence="daily 25:00"),
            "notifications.rules[3].cadence.at:",
        ),
        (
            lambda n: n["people"]["rep-02"].pop("email"),
            "notifications.rules[0].to: sends email to rep-02, who has no email: give "
            "notifications.people.rep-02.email",
        ),
        (
            lambda n: n["people"]["mgr-enterprise"].pop("email"),
            "notifications.rules[4].to: sends email to mgr-enterprise, who has no email",
        ),
        (
            lambda n: n["people"]["rep-03"].pop("hubspot_owner_id"),
            "notifications.rules[1].to: sends hubspot to rep-03, who has no hubspot owner id: give "
            "notifications.people.rep-03.hubspot_owner_id",
        ),
        (
            lambda n: n["channels"]["sales_slack"].pop("secret"),
            "notifications.channels.sales_slack: a slack channel needs secret",
        ),
        (
            lambda n: n["channels"]["automations"].pop("url"),
            "notifications.channels.automations: a webhook channel needs url",
        ),
        (
            lambda n: n["channels"]["email"].pop("secret"),
            "notifications.channels.email.username: an SMTP login needs its password: name it in `secret`",
        ),
        (
            lambda n: n["rules"][0].update(pools=["nowhere"]),
            "notifications.rules[0].pools: 'nowhere' is not a pool",
        ),
        (
            lambda n: n["rules"][3].update(slas=["first_response"]),
            "notifications.rules[3].slas: 'first_response' is not an SLA",
        ),
        (
            lambda n: n["rules"][0].update(kinds=["deal_won"]),
            "notifications.rules[0].kinds[0]: must be 'handoff', 'warning', 'breach' or 'escalation'",
        ),
        (
            lambda n: n["rules"].append({"kinds": ["handoff"], "to": ["channel"], "channel": "email"}),
            "notifications.rules[7].to: an e-mail channel needs `address` to be sent to as a channel",
        ),
        (
            lambda n: n["rules"].append({"kinds": ["handoff"], "to": ["channel"], "channel": "crm"}),
            "notifications.rules[7].to: a hubspot task is assigned to a person",
        ),
        (
            lambda n: n.update(crm_url="https://crm.example.com/leads"),
            "notifications.crm_url:",
        ),
        (
            lambda n: n.update(timezone="Mars/Olympus"),
            "notifications: timezone 'Mars/Olympus' is not an IANA time zone",
        ),
    ],
)
def test_each_mistake_names_its_path_and_the_fix(change: Any, expected: str) -> None:
    found = problems(change)
    assert any(p.startswith(expected) for p in found), found
