"""`leadflow run` pieces that need no broker: the demo's compressed SLA policy."""

from __future__ import annotations

import pytest
from factories import POLICY

from leadflow.streams.dev.runner import compressed

SPEED = 172_800.0  # the default: two simulated days per second


def test_business_hours_become_the_wall_time_they_span_divided_by_the_speed() -> None:
    demo = compressed(POLICY, SPEED)
    by_name = {s.name: s for s in demo.slas}
    week_hours = POLICY.calendars["inside_sales"].weekly_working_seconds / 3600
    assert week_hours == 40  # 09:00-12:00 and 13:00-18:00, Monday to Friday
    acceptance = by_name["mql_acceptance"].allowance
    assert not acceptance.is_business
    assert acceptance.seconds == pytest.approx(8 * 3600 * 168 / 40 / SPEED)


def test_wall_clock_allowances_and_overrides_are_divided_by_the_speed_only() -> None:
    by_name = {s.name: s for s in compressed(POLICY, SPEED).slas}
    assert by_name["sql_max_dwell"].allowance.seconds == pytest.approx(7 * 86_400 / SPEED)
    (hand_raiser,) = by_name["first_contact"].overrides
    assert hand_raiser.allowance.seconds == pytest.approx(15 * 60 / SPEED)


def test_everything_but_the_allowances_stays() -> None:
    demo = compressed(POLICY, SPEED)
    assert demo.routing == POLICY.routing
    assert [s.model_dump(exclude={"allowance", "overrides"}) for s in demo.slas] == [
        s.model_dump(exclude={"allowance", "overrides"}) for s in POLICY.slas
    ]
